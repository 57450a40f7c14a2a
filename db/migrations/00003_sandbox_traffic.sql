-- +goose Up
-- Sandbox ports other than envd's are public unless a sandbox is created with
-- allow_public_traffic = false; then a request needs the team's API key or the
-- sandbox's traffic token (only its SHA-256 is kept).
ALTER TABLE sandboxes
    ADD COLUMN allow_public_traffic boolean NOT NULL DEFAULT true,
    ADD COLUMN traffic_token_hash   bytea CHECK (traffic_token_hash IS NULL OR length(traffic_token_hash) = 32);

-- +goose Down
ALTER TABLE sandboxes DROP COLUMN allow_public_traffic, DROP COLUMN traffic_token_hash;
