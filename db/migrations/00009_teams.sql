-- +goose Up
-- Team management (issue 15): slugs are derived from a team's name (a readable part
-- and a random suffix), still unique and immutable; an email-prefix search for adding
-- members; and what a deleted team leaves for the host monitor to finish.
ALTER TABLE teams DROP CONSTRAINT teams_slug_check;
-- The old 12-hex slugs match this too.
ALTER TABLE teams ADD CONSTRAINT teams_slug_check
    CHECK (length(slug) BETWEEN 1 AND 64 AND slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$');

-- GET /v1/users/search: email LIKE 'prefix%' as an index range scan.
CREATE INDEX users_email_prefix ON users (email text_pattern_ops);

-- A deleted team's sandboxes and snapshot files are removed by the host monitor until
-- none is left (DeleteTeam does it at once where the hosts answer).
CREATE INDEX teams_deleted ON teams (deleted_at) WHERE deleted_at IS NOT NULL;

-- +goose Down
DROP INDEX teams_deleted;
DROP INDEX users_email_prefix;
ALTER TABLE teams DROP CONSTRAINT teams_slug_check;
ALTER TABLE teams ADD CONSTRAINT teams_slug_check CHECK (slug ~ '^[0-9a-f]{12}$');
