-- +goose Up
-- Hosts that register themselves (platform hosts and teams' own, BYOC), their
-- credentials, tags, and where snapshot templates' files are.

ALTER TABLE hosts
    ADD COLUMN created_by        uuid REFERENCES users (id) ON DELETE SET NULL,
    -- SHA-256 (hex) of the agent's TLS certificate, pinned at registration: the
    -- control plane talks to this host only when the certificate matches.
    ADD COLUMN cert_fingerprint  text CHECK (cert_fingerprint ~ '^[0-9a-f]{64}$'),
    -- The per-host secret the control plane presents to the agent, sealed with a key
    -- derived from the server's secret (the agent keeps only its hash).
    ADD COLUMN secret_sealed     bytea,
    ADD COLUMN agent_version     text NOT NULL DEFAULT '',
    ADD COLUMN vcpus             integer NOT NULL DEFAULT 0 CHECK (vcpus >= 0),
    ADD COLUMN memory_mb         integer NOT NULL DEFAULT 0 CHECK (memory_mb >= 0),
    ADD COLUMN registered_at     timestamptz,
    ADD COLUMN deleted_at        timestamptz;
ALTER TABLE hosts ADD CONSTRAINT hosts_name CHECK (length(name) <= 100);
CREATE INDEX hosts_team ON hosts (team_id) WHERE deleted_at IS NULL;

-- One-time registration tokens: the live token is in Redis (with its TTL); this is
-- the durable record of who issued it and whether it was used.
CREATE TABLE host_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    host_id     uuid NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL CHECK (length(token_hash) = 32),
    created_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE UNIQUE INDEX host_tokens_hash ON host_tokens (token_hash);

-- Refresh tokens rotate issue-then-revoke: a new token is issued first and its
-- parent is revoked only when the new one is first used, so a host that crashed
-- before saving the new token can still refresh with the old one.
CREATE TABLE host_refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    host_id     uuid NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL CHECK (length(token_hash) = 32),
    parent_id   uuid REFERENCES host_refresh_tokens (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE UNIQUE INDEX host_refresh_tokens_hash ON host_refresh_tokens (token_hash);
CREATE INDEX host_refresh_tokens_host ON host_refresh_tokens (host_id);

CREATE TABLE host_tags (
    host_id    uuid NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    tag        text NOT NULL CHECK (tag ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host_id, tag)
);

-- Which hosts hold a snapshot template's files (base templates are on every host).
CREATE TABLE template_hosts (
    template_id uuid NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    host_id     uuid NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, host_id)
);

-- +goose Down
DROP TABLE template_hosts;
DROP TABLE host_tags;
DROP TABLE host_refresh_tokens;
DROP TABLE host_tokens;
DROP INDEX hosts_team;
ALTER TABLE hosts DROP CONSTRAINT hosts_name;
ALTER TABLE hosts
    DROP COLUMN created_by, DROP COLUMN cert_fingerprint, DROP COLUMN secret_sealed,
    DROP COLUMN agent_version, DROP COLUMN vcpus, DROP COLUMN memory_mb,
    DROP COLUMN registered_at, DROP COLUMN deleted_at;
