-- name: CreateSandbox :one
INSERT INTO sandboxes (id, team_id, host_id, template, status, vcpus, memory_mb, disk_mb,
                       timeout_sec, allow_internet_access, metadata, allow_public_traffic, traffic_token_hash)
VALUES (@id, @team_id, @host_id, @template, @status, @vcpus, @memory_mb, @disk_mb,
        @timeout_sec, @allow_internet_access, coalesce(sqlc.narg(metadata)::jsonb, '{}'),
        @allow_public_traffic, sqlc.narg(traffic_token_hash))
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
-- Sets the status and error (NULL clears it); host_ip is kept when NULL. The first
-- 'running' sets started_at, the first 'stopped' or 'error' sets stopped_at.
UPDATE sandboxes SET
    status     = @status::text,
    host_ip    = coalesce(sqlc.narg(host_ip), host_ip),
    error      = sqlc.narg(error),
    started_at = CASE WHEN @status::text = 'running' THEN coalesce(started_at, now()) ELSE started_at END,
    stopped_at = CASE WHEN @status::text IN ('stopped', 'error') THEN coalesce(stopped_at, now()) ELSE stopped_at END,
    last_active_at = CASE WHEN @status::text = 'running' THEN now() ELSE last_active_at END,
    paused_at  = CASE WHEN @status::text = 'paused' THEN coalesce(paused_at, now())
                      WHEN @status::text IN ('missing', 'pausing', 'resuming') THEN paused_at END
WHERE id = @id AND team_id = @team_id
RETURNING *;

-- name: TransitionSandbox :one
-- A pause or resume moves a sandbox of the team to status only while it is still in
-- one of from_statuses, so a concurrent destroy (stopped) or a host monitor's verdict
-- is never overwritten. A paused sandbox has no address (its network slot is freed);
-- a resumed one gets the one its host reports (it may change), and timeout_sec when
-- the resume set one. paused_at as in UpdateSandboxStatus.
UPDATE sandboxes SET
    status         = @status::text,
    error          = NULL,
    host_ip        = CASE WHEN @status::text = 'paused' THEN NULL ELSE coalesce(sqlc.narg(host_ip), host_ip) END,
    timeout_sec    = coalesce(sqlc.narg(timeout_sec), timeout_sec),
    last_active_at = CASE WHEN @status::text = 'running' THEN now() ELSE last_active_at END,
    paused_at      = CASE WHEN @status::text = 'paused' THEN coalesce(paused_at, now())
                          WHEN @status::text IN ('missing', 'pausing', 'resuming') THEN paused_at END
WHERE id = @id AND team_id = @team_id AND status = ANY(@from_statuses::text[])
RETURNING *;
