-- name: InsertAuditLog :one
-- audit_logs is append-only (a trigger refuses updates and deletes).
INSERT INTO audit_logs (team_id, actor_user_id, actor_api_key_id, action, resource_type, resource_id, metadata)
VALUES (@team_id, @actor_user_id, @actor_api_key_id, @action, @resource_type, @resource_id,
        coalesce(sqlc.narg(metadata)::jsonb, '{}'))
RETURNING *;

-- name: ListAuditLogs :many
-- Newest first by (created_at, id); before and before_id (both or neither) are the
-- last entry seen, so a page never repeats or skips an entry when new ones arrive.
-- team_id: one team's (NULL: every team's); team_ids narrows further (empty: no
-- filter); actor_user_id: only that user's own entries (a member's view). Empty
-- (or nil) filter arrays filter nothing. actor_ids match a user or an API key; actor_system
-- adds the entries with neither. With the actor's email, or key prefix and name.
SELECT a.id, a.team_id, a.actor_user_id, a.actor_api_key_id, a.action, a.resource_type,
       a.resource_id, a.metadata, a.created_at,
       u.email AS actor_email, k.key_prefix AS actor_key_prefix, k.name AS actor_key_name
FROM audit_logs a
LEFT JOIN users u ON u.id = a.actor_user_id
LEFT JOIN team_api_keys k ON k.id = a.actor_api_key_id
WHERE (sqlc.narg(team_id)::uuid IS NULL OR a.team_id = sqlc.narg(team_id)::uuid)
  AND (coalesce(cardinality(@team_ids::uuid[]), 0) = 0 OR a.team_id = ANY(@team_ids::uuid[]))
  AND (sqlc.narg(actor_user_id)::uuid IS NULL OR a.actor_user_id = sqlc.narg(actor_user_id)::uuid)
  AND (sqlc.narg(before)::timestamptz IS NULL
       OR (a.created_at, a.id) < (sqlc.narg(before)::timestamptz, sqlc.narg(before_id)::bigint))
  AND (coalesce(cardinality(@actions::text[]), 0) = 0 OR a.action = ANY(@actions::text[]))
  AND (coalesce(cardinality(@resource_types::text[]), 0) = 0 OR a.resource_type = ANY(@resource_types::text[]))
  AND ((coalesce(cardinality(@actor_ids::uuid[]), 0) = 0 AND NOT @actor_system::boolean)
       OR a.actor_user_id = ANY(@actor_ids::uuid[])
       OR a.actor_api_key_id = ANY(@actor_ids::uuid[])
       OR (@actor_system::boolean AND a.actor_user_id IS NULL AND a.actor_api_key_id IS NULL))
ORDER BY a.created_at DESC, a.id DESC
LIMIT @max_rows;
