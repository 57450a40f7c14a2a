-- name: CreateTeam :one
-- No row: the slug is taken (the caller draws another), and no error, so that the
-- transaction goes on.
INSERT INTO teams (name, slug, is_byoc)
VALUES (@name, @slug, @is_byoc)
ON CONFLICT DO NOTHING
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
SELECT t.id, t.name, t.slug, t.is_byoc, t.created_at, ut.role, ut.is_default,
       (SELECT count(*) FROM users_teams m WHERE m.team_id = t.id)::int AS members
FROM users_teams ut
JOIN teams t ON t.id = ut.team_id
WHERE ut.user_id = @user_id AND t.deleted_at IS NULL
ORDER BY ut.is_default DESC, t.created_at, t.id;

-- name: LockTeam :one
-- Lock a live team's row until the transaction ends. A quota check's step 1, so that
-- creates of one team (sandboxes, API keys) count what it holds one after another and
-- each sees every one committed before it; and every membership change's, so that
-- they are judged one after another against the members as the last one left them
-- (two owners demoting each other: one wins). NO KEY UPDATE, as placement locks hosts:
-- it conflicts with the others and with changes of the team's row (rename, quota
-- overrides, delete), not with the inserts that reference the team.
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

-- name: GetUserTeam :one
-- One of the user's teams, with their role in it.
SELECT t.id, t.name, t.slug, t.is_byoc, t.created_at, ut.role, ut.is_default,
       (SELECT count(*) FROM users_teams m WHERE m.team_id = t.id)::int AS members
FROM users_teams ut
JOIN teams t ON t.id = ut.team_id
WHERE ut.user_id = @user_id AND ut.team_id = @team_id AND t.deleted_at IS NULL;

-- name: CountOwnedTeams :one
SELECT count(*)::int FROM users_teams ut JOIN teams t ON t.id = ut.team_id
WHERE ut.user_id = @user_id AND ut.role = 'owner' AND t.deleted_at IS NULL;

-- name: RenameTeam :one
UPDATE teams SET name = @name WHERE id = @id AND deleted_at IS NULL RETURNING *;

-- name: SoftDeleteTeam :one
-- The team is gone for every caller from here on (every query reading a team filters
-- deleted_at); its rows stay, so its audit trail stays readable by platform admins.
UPDATE teams SET deleted_at = now() WHERE id = @id AND deleted_at IS NULL RETURNING *;

-- name: ClearTeamDefaults :exec
-- A deleted team is nobody's default (at most one default per user, and login picks
-- another from what is left).
UPDATE users_teams SET is_default = false WHERE team_id = @team_id AND is_default;

-- name: RevokeTeamAPIKeys :execrows
UPDATE team_api_keys SET revoked_at = now() WHERE team_id = @team_id AND revoked_at IS NULL;

-- name: ListTeamMembers :many
-- Owners first, then admins, then members; each by when they joined.
SELECT u.id, u.email, u.name, ut.role, ut.created_at AS joined_at
FROM users_teams ut
JOIN users u ON u.id = ut.user_id
WHERE ut.team_id = @team_id
ORDER BY CASE ut.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, ut.created_at, u.id;

-- name: LockTeamMember :one
SELECT u.id, u.email, u.name, ut.role, ut.is_default, ut.created_at AS joined_at
FROM users_teams ut
JOIN users u ON u.id = ut.user_id
WHERE ut.team_id = @team_id AND ut.user_id = @user_id
FOR UPDATE OF ut;

-- name: CountTeamOwners :one
SELECT count(*)::int FROM users_teams WHERE team_id = @team_id AND role = 'owner';

-- name: SetMemberRole :exec
UPDATE users_teams SET role = @role WHERE team_id = @team_id AND user_id = @user_id;

-- name: RemoveMember :exec
DELETE FROM users_teams WHERE team_id = @team_id AND user_id = @user_id;

-- name: EnsureDefaultTeam :execrows
-- Makes the user's oldest live membership their default when no live team is (their
-- default was left, or deleted); 0 rows: they have a default, or no team at all.
UPDATE users_teams target SET is_default = true
WHERE target.user_id = @user_id::uuid
  AND target.team_id = (SELECT ut.team_id FROM users_teams ut JOIN teams t ON t.id = ut.team_id
                        WHERE ut.user_id = @user_id::uuid AND t.deleted_at IS NULL
                        ORDER BY ut.created_at, ut.team_id LIMIT 1)
  AND NOT EXISTS (SELECT 1 FROM users_teams d JOIN teams t ON t.id = d.team_id
                  WHERE d.user_id = @user_id::uuid AND d.is_default AND t.deleted_at IS NULL);

-- name: ManagesAnyTeam :one
-- Whether the user is an owner or admin of a live team: who may search users to add.
SELECT EXISTS (SELECT 1 FROM users_teams ut JOIN teams t ON t.id = ut.team_id
               WHERE ut.user_id = @user_id AND ut.role IN ('owner', 'admin') AND t.deleted_at IS NULL);

-- name: LockUserTeams :exec
-- Until the transaction ends: one change at a time of which teams a user owns or has
-- as default (a team create's count, a login's fallback to another team).
SELECT pg_advisory_xact_lock(hashtextextended('wrenn:user-teams:' || sqlc.arg(user_id)::uuid::text, 0));
