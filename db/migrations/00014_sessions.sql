-- +goose Up
-- Browser sessions of the dashboard (issue 18): the dashboard never holds a token; its
-- browser holds an HttpOnly cookie with a random secret, and this table the secret's
-- SHA-256 (never the secret). A row is what makes sign-out real: revoked_at ends the
-- session at once, whatever the browser keeps. Every request still checks the user's
-- membership of team_id, as for a JWT.
CREATE TABLE sessions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The team the session acts for (switch-team changes it).
    team_id      uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Absolute end; the idle end is last_seen_at plus the idle lifetime (in Go).
    expires_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    -- Where it was signed in from, for the user to recognise it (not for decisions).
    user_agent   text NOT NULL DEFAULT '' CHECK (length(user_agent) <= 512),
    ip           text NOT NULL DEFAULT '' CHECK (length(ip) <= 64)
);
CREATE UNIQUE INDEX sessions_token_hash ON sessions (token_hash);
CREATE INDEX sessions_user ON sessions (user_id);

-- +goose Down
DROP TABLE sessions;
