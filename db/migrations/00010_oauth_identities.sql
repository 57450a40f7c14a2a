-- +goose Up
-- Sign-in through OAuth providers (GitHub first): which provider account is which user.
-- A provider's subject is its stable user id (GitHub's numeric id, never the login,
-- which its owner can rename and someone else can then take). A user may have several
-- identities; an identity belongs to one user and goes with them.
CREATE TABLE oauth_identities (
    provider   text NOT NULL CHECK (provider ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    subject    text NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The address the provider gave when the identity was linked (for people reading
    -- the table; sign-in goes by provider and subject only).
    email      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, subject)
);
-- A user's identities, and the cascade when a user is deleted.
CREATE INDEX oauth_identities_user ON oauth_identities (user_id);

-- +goose Down
DROP TABLE oauth_identities;
