-- +goose Up
-- E2B's lifecycle beside Wrenn's idle timeout (issue 14). end_at is when the sandbox
-- ends whatever it does (E2B's TTL: set at create, moved by setTimeout, only extended
-- by connect); NULL: no such end, only the idle timeout (timeout_sec, the /v1 model).
-- on_timeout is what happens at end_at: 'kill' stops it, 'pause' pauses it (autoPause).
ALTER TABLE sandboxes
    ADD COLUMN end_at timestamptz,
    ADD COLUMN on_timeout text NOT NULL DEFAULT 'kill' CHECK (on_timeout IN ('kill', 'pause'));
-- The expiry loop asks several times a second for running sandboxes past their end.
CREATE INDEX sandboxes_expiry ON sandboxes (end_at) WHERE end_at IS NOT NULL AND status = 'running';
-- E2B's listing pages by start time within a team, over live sandboxes only: a team's
-- stopped ones pile up (rows are never deleted) and must not slow its listing.
CREATE INDEX sandboxes_team_started ON sandboxes (team_id, started_at, id)
    WHERE started_at IS NOT NULL AND status NOT IN ('stopped', 'error');

-- +goose Down
DROP INDEX sandboxes_team_started;
DROP INDEX sandboxes_expiry;
ALTER TABLE sandboxes DROP COLUMN on_timeout, DROP COLUMN end_at;
