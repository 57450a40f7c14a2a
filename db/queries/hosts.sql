-- name: CreateHost :one
INSERT INTO hosts (team_id, name, created_by)
VALUES (sqlc.narg(team_id), @name, sqlc.narg(created_by))
RETURNING *;

-- name: GetHost :one
SELECT * FROM hosts WHERE id = @id AND deleted_at IS NULL;

-- name: ListHosts :many
-- Every host (platform admins), oldest first.
SELECT * FROM hosts WHERE deleted_at IS NULL ORDER BY created_at, id;

-- name: ListTeamHosts :many
SELECT * FROM hosts WHERE team_id = @team_id AND deleted_at IS NULL ORDER BY created_at, id;

-- name: CreateHostToken :one
INSERT INTO host_tokens (host_id, token_hash, created_by, expires_at)
VALUES (@host_id, @token_hash, sqlc.narg(created_by), @expires_at)
RETURNING *;

-- name: UseHostToken :one
-- Marks a registration token used; no row when it is unknown, used or expired.
UPDATE host_tokens SET used_at = now()
WHERE token_hash = @token_hash AND used_at IS NULL AND expires_at > now()
RETURNING *;

-- name: RegisterHost :one
-- Only a host that never registered can register.
UPDATE hosts SET
    address = @address, cert_fingerprint = @cert_fingerprint, secret_sealed = @secret_sealed,
    agent_version = @agent_version, vcpus = @vcpus, memory_mb = @memory_mb,
    status = 'online', registered_at = now(), last_heartbeat_at = now()
WHERE id = @id AND registered_at IS NULL AND deleted_at IS NULL
RETURNING *;

-- name: HostHeartbeat :one
-- Records a heartbeat; an unreachable host is online again.
UPDATE hosts SET
    last_heartbeat_at = now(),
    status = CASE WHEN status IN ('unreachable', 'pending') THEN 'online' ELSE status END,
    vcpus = @vcpus, memory_mb = @memory_mb, agent_version = @agent_version
WHERE id = @id AND registered_at IS NOT NULL AND deleted_at IS NULL
RETURNING *;

-- name: MarkStaleHostsUnreachable :many
-- Online hosts silent for longer than stale_seconds become unreachable (measured on the
-- database's clock, which also stamped the heartbeats).
UPDATE hosts SET status = 'unreachable'
WHERE status = 'online' AND deleted_at IS NULL
  AND last_heartbeat_at < now() - make_interval(secs => @stale_seconds::float8)
RETURNING id;

-- name: MarkHostUnreachable :exec
UPDATE hosts SET status = 'unreachable' WHERE id = @id AND status = 'online';

-- name: DeleteHost :one
UPDATE hosts SET deleted_at = now(), status = 'offline', secret_sealed = NULL
WHERE id = @id AND deleted_at IS NULL
RETURNING *;

-- name: CreateHostRefreshToken :one
INSERT INTO host_refresh_tokens (host_id, token_hash, parent_id, expires_at)
VALUES (@host_id, @token_hash, sqlc.narg(parent_id), @expires_at)
RETURNING *;

-- name: GetHostRefreshToken :one
-- For update: two refreshes with one token are serialised.
SELECT * FROM host_refresh_tokens WHERE token_hash = @token_hash FOR UPDATE;

-- name: MarkHostRefreshTokenUsed :exec
UPDATE host_refresh_tokens SET used_at = coalesce(used_at, now()) WHERE id = @id;

-- name: RevokeHostRefreshToken :exec
UPDATE host_refresh_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = @id;

-- name: RevokeUnusedHostRefreshChildren :exec
-- A token presented again after a rotation it never completed: the children it was
-- given (and never used) are void; it gets a new one.
UPDATE host_refresh_tokens SET revoked_at = now()
WHERE parent_id = @parent_id AND used_at IS NULL AND revoked_at IS NULL;

-- name: RevokeHostRefreshTokens :exec
UPDATE host_refresh_tokens SET revoked_at = now() WHERE host_id = @host_id AND revoked_at IS NULL;

-- name: ListHostTags :many
SELECT tag FROM host_tags WHERE host_id = @host_id ORDER BY tag;

-- name: AddHostTag :exec
INSERT INTO host_tags (host_id, tag) VALUES (@host_id, @tag) ON CONFLICT DO NOTHING;

-- name: RemoveHostTag :execrows
DELETE FROM host_tags WHERE host_id = @host_id AND tag = @tag;

-- name: HostLoads :many
-- What is placed on each host: live sandboxes and the resources they reserve. Paused
-- ones count in full: their disk and snapshot stay on this host, so their resume needs
-- the room there.
SELECT host_id, count(*)::int AS sandboxes, coalesce(sum(vcpus), 0)::int AS vcpus, coalesce(sum(memory_mb), 0)::int AS memory_mb
FROM sandboxes
WHERE host_id IS NOT NULL AND status NOT IN ('stopped', 'error')
GROUP BY host_id;

-- name: ListHostSandboxes :many
-- Sandboxes placed on a host that are not stopped (error ones included: the host may
-- still run them).
SELECT * FROM sandboxes WHERE host_id = @host_id AND status NOT IN ('stopped') ORDER BY created_at;

-- name: MarkUnreachableSandboxesMissing :many
-- Live sandboxes of every unreachable host are missing until their host is back
-- (idempotent: also catches a round interrupted between marking a host and these).
UPDATE sandboxes SET status = 'missing'
WHERE host_id IN (SELECT id FROM hosts WHERE status = 'unreachable')
  AND status IN ('running', 'paused', 'starting', 'pausing', 'resuming', 'stopping')
RETURNING id, team_id;

-- name: SetSandboxStatusByHost :one
-- Reconciliation: the host's view of one of its sandboxes, applied only if the status
-- is still the one the decision was based on (a concurrent destroy wins). host_ip is
-- the address the host reports (NULL keeps it); a paused sandbox has none; limits the
-- ones it reports (NULL keeps them). started_at, last_active_at and paused_at as in
-- UpdateSandboxStatus (a create the monitor finishes starts the sandbox).
UPDATE sandboxes SET
    status = @status::text,
    error = sqlc.narg(error),
    started_at = CASE WHEN @status::text = 'running' THEN coalesce(started_at, now()) ELSE started_at END,
    last_active_at = CASE WHEN @status::text = 'running' THEN coalesce(last_active_at, now()) ELSE last_active_at END,
    stopped_at = CASE WHEN @status::text IN ('stopped', 'error') THEN coalesce(stopped_at, now()) ELSE stopped_at END,
    host_ip = CASE WHEN @status::text = 'paused' THEN NULL ELSE coalesce(sqlc.narg(host_ip), host_ip) END,
    limits = coalesce(sqlc.narg(limits)::jsonb, limits),
    paused_at = CASE WHEN @status::text = 'paused' THEN coalesce(paused_at, now())
                     WHEN @status::text IN ('missing', 'pausing', 'resuming') THEN paused_at END
WHERE id = @id AND host_id = @host_id AND status = @from_status::text
RETURNING *;

-- name: SetTeamBYOC :one
UPDATE teams SET is_byoc = @is_byoc WHERE id = @id AND deleted_at IS NULL RETURNING *;

-- name: SetUserAdmin :one
UPDATE users SET is_admin = @is_admin, updated_at = now() WHERE email = @email RETURNING *;

-- name: ListAllHostTags :many
-- Every live host's tags in one query (placement, host listings).
SELECT ht.host_id, ht.tag FROM host_tags ht
JOIN hosts h ON h.id = ht.host_id
WHERE h.deleted_at IS NULL
ORDER BY ht.host_id, ht.tag;

-- name: LockHostForPlacement :one
-- Placement's reservation, step 1: lock the picked host's row until the transaction
-- ends, so placements on one host run one after another. Under READ COMMITTED each
-- statement sees what was committed when it started, so the HostLoad read after this
-- lock is granted includes every sandbox reserved there before. NO KEY UPDATE is
-- enough (placements conflict with each other) and, unlike FOR UPDATE, does not hold
-- up inserts that merely reference the host (tags, template files).
SELECT * FROM hosts WHERE id = @id AND deleted_at IS NULL FOR NO KEY UPDATE;

-- name: HostLoad :one
-- Placement's reservation, step 2: what one host has reserved (as HostLoads).
SELECT count(*)::int AS sandboxes, coalesce(sum(vcpus), 0)::int AS vcpus, coalesce(sum(memory_mb), 0)::int AS memory_mb
FROM sandboxes
WHERE host_id = @host_id AND status NOT IN ('stopped', 'error');
