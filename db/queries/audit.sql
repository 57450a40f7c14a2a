-- name: InsertAuditLog :one
-- audit_logs is append-only (a trigger refuses updates and deletes).
INSERT INTO audit_logs (team_id, actor_user_id, actor_api_key_id, action, resource_type, resource_id, metadata)
VALUES (@team_id, @actor_user_id, @actor_api_key_id, @action, @resource_type, @resource_id,
        coalesce(sqlc.narg(metadata)::jsonb, '{}'))
RETURNING *;

-- name: ListAuditLogs :many
-- Newest first; pass the last id seen as before for the next page (NULL: from the newest).
SELECT * FROM audit_logs
WHERE team_id = @team_id AND (sqlc.narg(before)::bigint IS NULL OR id < sqlc.narg(before)::bigint)
ORDER BY id DESC
LIMIT @max_rows;
