-- +goose Up
-- The control plane's durable state (DESIGN.md §7). Authorization is decided from
-- these tables on every request; tokens only carry hints.

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    name          text NOT NULL DEFAULT '',
    -- NULL for accounts that only sign in through an OAuth provider.
    password_hash text,
    is_admin      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email ON users (email);

CREATE TABLE teams (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- Immutable public handle: 12 lowercase hex characters.
    slug       text NOT NULL CHECK (slug ~ '^[0-9a-f]{12}$'),
    is_byoc    boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE UNIQUE INDEX teams_slug ON teams (slug);

-- +goose StatementBegin
CREATE FUNCTION teams_slug_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.slug <> OLD.slug THEN
        RAISE EXCEPTION 'team slug is immutable' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER teams_slug_immutable BEFORE UPDATE ON teams
    FOR EACH ROW EXECUTE FUNCTION teams_slug_immutable();

CREATE TABLE users_teams (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    team_id    uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    is_default boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, team_id)
);
CREATE INDEX users_teams_team ON users_teams (team_id);
-- At most one default team per user.
CREATE UNIQUE INDEX users_teams_one_default ON users_teams (user_id) WHERE is_default;

CREATE TABLE team_api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id      uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    name         text NOT NULL DEFAULT '',
    -- SHA-256 of the whole key; the key itself is shown once and never stored.
    key_hash     bytea NOT NULL CHECK (length(key_hash) = 32),
    -- The key's first characters, to tell keys apart in lists.
    key_prefix   text NOT NULL,
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX team_api_keys_hash ON team_api_keys (key_hash);
CREATE INDEX team_api_keys_team ON team_api_keys (team_id);

CREATE TABLE hosts (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL: a platform host; set: a team's own (BYOC) host.
    team_id           uuid REFERENCES teams (id) ON DELETE CASCADE,
    name              text NOT NULL DEFAULT '',
    address           text NOT NULL DEFAULT '',
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'online', 'unreachable', 'draining', 'offline')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz
);

CREATE TABLE templates (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL: a platform template every team may use.
    team_id    uuid REFERENCES teams (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    kind       text NOT NULL CHECK (kind IN ('base', 'snapshot')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX templates_name ON templates (coalesce(team_id, '00000000-0000-0000-0000-000000000000'::uuid), name);

CREATE TABLE sandboxes (
    -- "sb" + 18 lowercase base36: it appears in host names and E2B SDK calls.
    id                    text PRIMARY KEY CHECK (id ~ '^sb[a-z0-9]{18}$'),
    team_id               uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    host_id               uuid REFERENCES hosts (id) ON DELETE SET NULL,
    template              text NOT NULL,
    status                text NOT NULL
                          CHECK (status IN ('pending', 'starting', 'running', 'pausing', 'paused', 'resuming',
                                            'stopping', 'stopped', 'error', 'missing')),
    vcpus                 integer NOT NULL CHECK (vcpus > 0),
    memory_mb             integer NOT NULL CHECK (memory_mb > 0),
    disk_mb               integer NOT NULL DEFAULT 0 CHECK (disk_mb >= 0),
    timeout_sec           integer NOT NULL DEFAULT 0 CHECK (timeout_sec >= 0),
    allow_internet_access boolean NOT NULL,
    metadata              jsonb NOT NULL DEFAULT '{}',
    host_ip               text,
    error                 text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    started_at            timestamptz,
    stopped_at            timestamptz,
    last_active_at        timestamptz
);
CREATE INDEX sandboxes_team ON sandboxes (team_id, created_at DESC);
CREATE INDEX sandboxes_host ON sandboxes (host_id) WHERE status NOT IN ('stopped', 'error');

CREATE TABLE audit_logs (
    id               bigserial PRIMARY KEY,
    team_id          uuid REFERENCES teams (id) ON DELETE SET NULL,
    actor_user_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    actor_api_key_id uuid REFERENCES team_api_keys (id) ON DELETE SET NULL,
    action           text NOT NULL,
    resource_type    text NOT NULL,
    resource_id      text NOT NULL DEFAULT '',
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_logs_team ON audit_logs (team_id, created_at DESC);

-- +goose StatementBegin
CREATE FUNCTION audit_logs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- ON DELETE SET NULL of a referenced row is the one update allowed: it only
    -- forgets who an actor was, never what happened.
    IF TG_OP = 'UPDATE' AND NEW.action = OLD.action AND NEW.resource_type = OLD.resource_type
       AND NEW.resource_id = OLD.resource_id AND NEW.metadata = OLD.metadata
       AND NEW.created_at = OLD.created_at THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_logs is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
-- +goose StatementEnd
CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();

-- +goose Down
DROP TABLE audit_logs;
DROP FUNCTION audit_logs_append_only();
DROP TABLE sandboxes;
DROP TABLE templates;
DROP TABLE hosts;
DROP TABLE team_api_keys;
DROP TABLE users_teams;
DROP TABLE teams;
DROP FUNCTION teams_slug_immutable();
DROP TABLE users;
