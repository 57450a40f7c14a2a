-- name: CreateAPIKey :one
-- No query returns key_hash: it is only ever compared (GetAPIKeyByHash).
INSERT INTO team_api_keys (team_id, name, key_hash, key_prefix, created_by)
VALUES (@team_id, @name, @key_hash, @key_prefix, @created_by)
RETURNING id, team_id, name, key_prefix, created_by, created_at, last_used_at, revoked_at;

-- name: GetAPIKeyByHash :one
-- Authenticates an X-API-Key: revoked keys and keys of deleted teams are not found.
SELECT k.id, k.team_id, k.name, k.key_prefix, k.created_by, k.created_at, k.last_used_at, t.slug AS team_slug, t.is_byoc AS team_is_byoc
FROM team_api_keys k
JOIN teams t ON t.id = k.team_id
WHERE k.key_hash = @key_hash AND k.revoked_at IS NULL AND t.deleted_at IS NULL;

-- name: ListAPIKeys :many
-- A team's keys that still work, newest first.
SELECT id, team_id, name, key_prefix, created_by, created_at, last_used_at
FROM team_api_keys
WHERE team_id = @team_id AND revoked_at IS NULL
ORDER BY created_at DESC, id;

-- name: RevokeAPIKey :execrows
-- 0 rows: no such live key in this team (answer 404, whoever owns the id).
UPDATE team_api_keys SET revoked_at = now()
WHERE id = @id AND team_id = @team_id AND revoked_at IS NULL;

-- name: TouchAPIKey :execrows
-- Records use at most once a minute per key, so busy keys do not write on every request.
UPDATE team_api_keys SET last_used_at = now()
WHERE id = @id AND team_id = @team_id
  AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');
