-- +goose Up
-- Platform administrators' listings (issue 15) page every team, user and sandbox newest
-- first by (created_at, id): each page is one range scan of these, however many rows
-- the platform holds. (The user listing's email prefix search uses 00009's
-- users_email_prefix, in pattern order.)
CREATE INDEX teams_created ON teams (created_at DESC, id DESC);
CREATE INDEX users_created ON users (created_at DESC, id DESC);
CREATE INDEX sandboxes_created ON sandboxes (created_at DESC, id DESC);

-- +goose Down
DROP INDEX sandboxes_created;
DROP INDEX users_created;
DROP INDEX teams_created;
