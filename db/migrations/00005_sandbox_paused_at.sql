-- +goose Up
-- Pause and resume (issue 13): when a sandbox was paused, shown while it is paused
-- (by the API or by its agent's idle timeout). NULL while it runs, and once it is
-- stopped or failed; kept while it is missing or resuming, so a failed resume or a
-- host that comes back does not restart the clock.
ALTER TABLE sandboxes ADD COLUMN paused_at timestamptz;

-- +goose Down
ALTER TABLE sandboxes DROP COLUMN paused_at;
