-- name: CreateTeam :one
INSERT INTO teams (name, slug, is_byoc)
VALUES (@name, @slug, @is_byoc)
RETURNING *;

-- name: GetTeam :one
-- Deleted teams are gone for every caller.
SELECT * FROM teams WHERE id = @id AND deleted_at IS NULL;

-- name: AddTeamMember :one
INSERT INTO users_teams (user_id, team_id, role, is_default)
VALUES (@user_id, @team_id, @role, @is_default)
RETURNING *;

-- name: GetMembership :one
-- The user's role in a team, the authority for every request (a JWT's role is a hint).
SELECT ut.role, ut.is_default, t.is_byoc, u.is_admin
FROM users_teams ut
JOIN teams t ON t.id = ut.team_id
JOIN users u ON u.id = ut.user_id
WHERE ut.user_id = @user_id AND ut.team_id = @team_id AND t.deleted_at IS NULL;

-- name: GetDefaultTeam :one
SELECT t.id, t.name, t.slug, t.is_byoc, t.created_at, ut.role
FROM users_teams ut
JOIN teams t ON t.id = ut.team_id
WHERE ut.user_id = @user_id AND ut.is_default AND t.deleted_at IS NULL;

-- name: ListUserTeams :many
-- The default team first, then the others oldest first.
SELECT t.id, t.name, t.slug, t.is_byoc, t.created_at, ut.role, ut.is_default
FROM users_teams ut
JOIN teams t ON t.id = ut.team_id
WHERE ut.user_id = @user_id AND t.deleted_at IS NULL
ORDER BY ut.is_default DESC, t.created_at, t.id;

-- name: LockTeamForQuota :one
-- A quota check's step 1: lock the team's row until the transaction ends, so that
-- creates of one team (sandboxes, API keys) count what it holds one after another and
-- each sees every one committed before it. NO KEY UPDATE, as placement locks hosts:
-- it conflicts with other quota checks and with changes of the team's row (quota
-- overrides), not with the inserts that reference the team.
SELECT * FROM teams WHERE id = @id AND deleted_at IS NULL FOR NO KEY UPDATE;

-- name: TeamSandboxUsage :one
-- What a team holds of the hosts: its sandboxes that reserve host capacity, counted as
-- placement counts a host's load (HostLoad) — every one but stopped and error ones,
-- paused ones included (their resume needs the room).
SELECT count(*)::int AS sandboxes, coalesce(sum(vcpus), 0)::int AS vcpus, coalesce(sum(memory_mb), 0)::int AS memory_mb
FROM sandboxes
WHERE team_id = @team_id AND status NOT IN ('stopped', 'error');

-- name: CountLiveAPIKeys :one
-- A team's API keys that still work (as ListAPIKeys lists them).
SELECT count(*)::int FROM team_api_keys WHERE team_id = @team_id AND revoked_at IS NULL;

-- name: SetTeamQuotas :one
-- A platform administrator's overrides; NULL returns a limit to the server's default.
UPDATE teams SET
    quota_sandboxes = sqlc.narg(quota_sandboxes),
    quota_vcpus     = sqlc.narg(quota_vcpus),
    quota_memory_mb = sqlc.narg(quota_memory_mb),
    quota_api_keys  = sqlc.narg(quota_api_keys)
WHERE id = @id AND deleted_at IS NULL
RETURNING *;
