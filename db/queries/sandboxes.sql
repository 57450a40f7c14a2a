-- name: CreateSandbox :one
-- end_in_sec: the sandbox ends that many seconds from now (end_at); NULL: no end.
-- on_timeout: NULL is kill.
INSERT INTO sandboxes (id, team_id, host_id, template, status, vcpus, memory_mb, disk_mb,
                       timeout_sec, allow_internet_access, metadata, allow_public_traffic, traffic_token_hash,
                       end_at, on_timeout)
VALUES (@id, @team_id, @host_id, @template, @status, @vcpus, @memory_mb, @disk_mb,
        @timeout_sec, @allow_internet_access, coalesce(sqlc.narg(metadata)::jsonb, '{}'),
        @allow_public_traffic, sqlc.narg(traffic_token_hash),
        now() + make_interval(secs => sqlc.narg(end_in_sec)::int), coalesce(sqlc.narg(on_timeout)::text, 'kill'))
RETURNING *;

-- name: GetSandboxForProxy :one
-- The port proxy addresses sandboxes by id alone; it decides access itself.
SELECT id, team_id, host_id, status, allow_public_traffic, traffic_token_hash
FROM sandboxes WHERE id = @id;

-- name: GetSandbox :one
-- Another team's id is no row, never its data.
SELECT * FROM sandboxes WHERE id = @id AND team_id = @team_id;

-- name: ListSandboxes :many
-- The team's sandboxes in the given statuses (all when empty), newest first.
SELECT * FROM sandboxes
WHERE team_id = @team_id AND (coalesce(cardinality(@statuses::text[]), 0) = 0 OR status = ANY(@statuses::text[]))
ORDER BY created_at DESC, id
LIMIT @max_rows;

-- name: UpdateSandboxStatus :one
-- Sandboxes are never deleted: destroying one moves it to 'stopped' (rows go with their team).
-- Sets the status and error (NULL clears it); host_ip and limits are kept when NULL. The first
-- 'running' sets started_at, the first 'stopped' or 'error' sets stopped_at.
UPDATE sandboxes SET
    status     = @status::text,
    host_ip    = coalesce(sqlc.narg(host_ip), host_ip),
    limits     = coalesce(sqlc.narg(limits)::jsonb, limits),
    error      = sqlc.narg(error),
    started_at = CASE WHEN @status::text = 'running' THEN coalesce(started_at, now()) ELSE started_at END,
    stopped_at = CASE WHEN @status::text IN ('stopped', 'error') THEN coalesce(stopped_at, now()) ELSE stopped_at END,
    last_active_at = CASE WHEN @status::text = 'running' THEN now() ELSE last_active_at END,
    paused_at  = CASE WHEN @status::text = 'paused' THEN coalesce(paused_at, now())
                      WHEN @status::text IN ('missing', 'pausing', 'resuming') THEN paused_at END,
    -- end_in_sec: a sandbox with an end ends that many seconds from now (a create's
    -- timeout counts from when the sandbox runs, not from when its boot began).
    end_at     = CASE WHEN end_at IS NULL OR sqlc.narg(end_in_sec)::int IS NULL THEN end_at
                      ELSE now() + make_interval(secs => sqlc.narg(end_in_sec)::int) END
WHERE id = @id AND team_id = @team_id
RETURNING *;

-- name: TransitionSandbox :one
-- A pause or resume moves a sandbox of the team to status only while it is still in
-- one of from_statuses, so a concurrent destroy (stopped) or a host monitor's verdict
-- is never overwritten. A paused sandbox has no address (its network slot is freed);
-- a resumed one gets the one its host reports (it may change), the limits it reports
-- (NULL keeps them), and timeout_sec when
-- the resume set one. paused_at as in UpdateSandboxStatus.
UPDATE sandboxes SET
    status         = @status::text,
    error          = NULL,
    host_ip        = CASE WHEN @status::text = 'paused' THEN NULL ELSE coalesce(sqlc.narg(host_ip), host_ip) END,
    limits         = coalesce(sqlc.narg(limits)::jsonb, limits),
    timeout_sec    = coalesce(sqlc.narg(timeout_sec), timeout_sec),
    last_active_at = CASE WHEN @status::text = 'running' THEN now() ELSE last_active_at END,
    paused_at      = CASE WHEN @status::text = 'paused' THEN coalesce(paused_at, now())
                          WHEN @status::text IN ('missing', 'pausing', 'resuming') THEN paused_at END,
    -- end_in_sec: a sandbox with an end gets a new one that many seconds from now
    -- (E2B's connect of a paused sandbox), in the same write that makes it running, so
    -- the expiry loop never sees it running with its old, passed end.
    end_at         = CASE WHEN end_at IS NULL OR sqlc.narg(end_in_sec)::int IS NULL THEN end_at
                          ELSE now() + make_interval(secs => sqlc.narg(end_in_sec)::int) END
WHERE id = @id AND team_id = @team_id AND status = ANY(@from_statuses::text[])
RETURNING *;

-- name: SetSandboxEnd :one
-- E2B's setTimeout: the sandbox ends end_in_sec from now, sooner or later than it
-- would have (a sandbox without an end gets one). Only a live sandbox of the team.
UPDATE sandboxes SET end_at = now() + make_interval(secs => @end_in_sec::int)
WHERE id = @id AND team_id = @team_id AND status IN ('running', 'pausing', 'paused', 'resuming', 'missing')
RETURNING *;

-- name: ExtendSandboxEnd :one
-- E2B's connect and refresh: a sandbox with an end ends no sooner than end_in_sec from
-- now; its end never moves earlier, and one without an end keeps none.
UPDATE sandboxes SET end_at = greatest(end_at, now() + make_interval(secs => @end_in_sec::int))
WHERE id = @id AND team_id = @team_id AND end_at IS NOT NULL
  AND status IN ('running', 'pausing', 'paused', 'resuming', 'missing')
RETURNING *;

-- name: ListExpiredSandboxes :many
-- Running sandboxes past their end, the longest overdue first (the expiry loop).
SELECT * FROM sandboxes WHERE end_at <= now() AND status = 'running'
ORDER BY end_at LIMIT @max_rows;

-- name: PageSandboxesAsc :many
-- One page of E2B's listing, oldest start first: the team's started sandboxes in the
-- statuses, matching every metadata pair, started at or after started_after and made
-- from template (NULL: any), after the cursor (start time, id) when given. The
-- statuses are live ones; saying so literally lets the planner use the partial index.
SELECT * FROM sandboxes
WHERE team_id = @team_id AND started_at IS NOT NULL AND status NOT IN ('stopped', 'error') AND status = ANY(@statuses::text[])
  AND metadata @> @metadata::jsonb
  AND (sqlc.narg(started_after)::timestamptz IS NULL OR started_at >= sqlc.narg(started_after)::timestamptz)
  AND (sqlc.narg(template)::text IS NULL OR template = sqlc.narg(template)::text)
  AND (sqlc.narg(cursor_at)::timestamptz IS NULL OR (started_at, id) > (sqlc.narg(cursor_at)::timestamptz, @cursor_id::text))
ORDER BY started_at, id
LIMIT @max_rows;

-- name: PageSandboxesDesc :many
-- PageSandboxesAsc, newest start first.
SELECT * FROM sandboxes
WHERE team_id = @team_id AND started_at IS NOT NULL AND status NOT IN ('stopped', 'error') AND status = ANY(@statuses::text[])
  AND metadata @> @metadata::jsonb
  AND (sqlc.narg(started_after)::timestamptz IS NULL OR started_at >= sqlc.narg(started_after)::timestamptz)
  AND (sqlc.narg(template)::text IS NULL OR template = sqlc.narg(template)::text)
  AND (sqlc.narg(cursor_at)::timestamptz IS NULL OR (started_at, id) < (sqlc.narg(cursor_at)::timestamptz, @cursor_id::text))
ORDER BY started_at DESC, id DESC
LIMIT @max_rows;

-- name: CountPageSandboxes :one
-- How many sandboxes PageSandboxes* would list over all pages.
SELECT count(*) FROM sandboxes
WHERE team_id = @team_id AND started_at IS NOT NULL AND status NOT IN ('stopped', 'error') AND status = ANY(@statuses::text[])
  AND metadata @> @metadata::jsonb
  AND (sqlc.narg(started_after)::timestamptz IS NULL OR started_at >= sqlc.narg(started_after)::timestamptz)
  AND (sqlc.narg(template)::text IS NULL OR template = sqlc.narg(template)::text);
