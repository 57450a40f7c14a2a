-- name: AdminListTeams :many
-- Platform administrators' views over every team (issue 15). The listings page newest
-- first by (created_at, id); cursor_at and cursor_id (both or neither) are the last
-- row of the page before (see core/page.go).
-- Every team (deleted ones too with include_deleted), with its members and its live
-- sandboxes (every one but stopped and error, as quotas count them).
SELECT t.id, t.name, t.slug, t.is_byoc, t.created_at, t.deleted_at,
       (SELECT count(*) FROM users_teams ut WHERE ut.team_id = t.id)::int AS members,
       (SELECT count(*) FROM sandboxes s WHERE s.team_id = t.id AND s.status NOT IN ('stopped', 'error'))::int AS sandboxes
FROM teams t
WHERE (@include_deleted::boolean OR t.deleted_at IS NULL)
  AND (sqlc.narg(cursor_at)::timestamptz IS NULL
       OR (t.created_at, t.id) < (sqlc.narg(cursor_at)::timestamptz, @cursor_id::uuid))
ORDER BY t.created_at DESC, t.id DESC
LIMIT @max_rows;

-- name: AdminListUsers :many
-- Every user, with how many live teams they belong to. email_like is a LIKE pattern
-- with '\' escaping (a prefix search escapes the caller's % and _); NULL: every user.
SELECT u.id, u.email, u.name, u.is_admin, u.created_at,
       (SELECT count(*) FROM users_teams ut JOIN teams t ON t.id = ut.team_id
        WHERE ut.user_id = u.id AND t.deleted_at IS NULL)::int AS teams
FROM users u
WHERE (sqlc.narg(email_like)::text IS NULL OR u.email LIKE sqlc.narg(email_like)::text ESCAPE '\')
  AND (sqlc.narg(cursor_at)::timestamptz IS NULL
       OR (u.created_at, u.id) < (sqlc.narg(cursor_at)::timestamptz, @cursor_id::uuid))
ORDER BY u.created_at DESC, u.id DESC
LIMIT @max_rows;

-- name: AdminListSandboxes :many
-- Every team's sandboxes in the given statuses (all when empty), of one team and on
-- one host when those are given.
SELECT * FROM sandboxes
WHERE (coalesce(cardinality(@statuses::text[]), 0) = 0 OR status = ANY(@statuses::text[]))
  AND (sqlc.narg(team_id)::uuid IS NULL OR team_id = sqlc.narg(team_id)::uuid)
  AND (sqlc.narg(host_id)::uuid IS NULL OR host_id = sqlc.narg(host_id)::uuid)
  AND (sqlc.narg(cursor_at)::timestamptz IS NULL
       OR (created_at, id) < (sqlc.narg(cursor_at)::timestamptz, @cursor_id::text))
ORDER BY created_at DESC, id DESC
LIMIT @max_rows;

-- name: AdminListTemplates :many
-- One owner's templates by name: a team's (its snapshots) or, with team_id NULL, the
-- platform's; each with the hosts recorded as holding its files.
SELECT sqlc.embed(t),
       coalesce(array_agg(th.host_id ORDER BY th.host_id) FILTER (WHERE th.host_id IS NOT NULL), '{}')::uuid[] AS hosts
FROM templates t
LEFT JOIN template_hosts th ON th.template_id = t.id
WHERE t.team_id IS NOT DISTINCT FROM sqlc.narg(team_id)::uuid
GROUP BY t.id
ORDER BY t.name;

-- name: AdminGetTemplate :one
-- AdminListTemplates' row of one name.
SELECT sqlc.embed(t),
       coalesce(array_agg(th.host_id ORDER BY th.host_id) FILTER (WHERE th.host_id IS NOT NULL), '{}')::uuid[] AS hosts
FROM templates t
LEFT JOIN template_hosts th ON th.template_id = t.id
WHERE t.team_id IS NOT DISTINCT FROM sqlc.narg(team_id)::uuid AND t.name = @name
GROUP BY t.id;

-- name: LockTemplate :one
-- Held across an administrator's delete, as LockSnapshot across a team's: one change
-- of a name at a time, whatever its kind.
SELECT * FROM templates
WHERE team_id IS NOT DISTINCT FROM sqlc.narg(team_id)::uuid AND name = @name
FOR UPDATE;

-- name: CountLiveSandboxesOfTemplate :one
-- Live sandboxes created from a team's template (team_id set) or from the platform's
-- (team_id NULL: sandboxes of teams without a template of their own of that name).
-- For the audit entry of its delete: they run on, on their own disks.
SELECT count(*)::int FROM sandboxes s
WHERE s.template = @name AND s.status NOT IN ('stopped', 'error')
  AND CASE WHEN sqlc.narg(team_id)::uuid IS NULL
           THEN NOT EXISTS (SELECT 1 FROM templates o WHERE o.team_id = s.team_id AND o.name = @name)
           ELSE s.team_id = sqlc.narg(team_id)::uuid END;
