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
