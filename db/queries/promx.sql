-- What the control plane's Prometheus collector (internal/promx) counts at each scrape:
-- two small aggregates, so a scrape every few seconds costs PostgreSQL little.

-- name: CountLiveSandboxesByStatus :many
-- Sandboxes by state, all but stopped and failed ones: those are history, which only
-- grows, and would make every scrape read the whole table.
SELECT status, count(*)::bigint AS sandboxes FROM sandboxes
WHERE status NOT IN ('stopped', 'error')
GROUP BY status;

-- name: CountHostsByStatus :many
-- Hosts not deleted, by status.
SELECT status, count(*)::bigint AS hosts FROM hosts
WHERE deleted_at IS NULL
GROUP BY status;
