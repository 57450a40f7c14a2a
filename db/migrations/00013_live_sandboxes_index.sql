-- +goose Up
-- The team stats round (every 10 s) and the now of GET /v1/sandboxes/stats read the
-- live sandboxes of every team: a partial index keeps that to the live rows, however
-- many stopped ones the table holds.
CREATE INDEX sandboxes_live_team ON sandboxes (team_id)
    WHERE status IN ('running', 'starting', 'paused', 'pausing', 'resuming');

-- +goose Down
DROP INDEX sandboxes_live_team;
