-- Browser sessions (accounts/sessions.go): only the secret's SHA-256 is stored.

-- name: CreateSession :one
INSERT INTO sessions (user_id, team_id, token_hash, created_at, expires_at, last_seen_at, user_agent, ip)
VALUES (@user_id, @team_id, @token_hash, @now, @expires_at, @now, @user_agent, @ip)
RETURNING *;

-- name: GetSessionByHash :one
-- Whatever its state: the caller says why a dead session is refused.
SELECT * FROM sessions WHERE token_hash = @token_hash;

-- name: TouchSession :exec
UPDATE sessions SET last_seen_at = @now WHERE id = @id AND revoked_at IS NULL AND last_seen_at < @now;

-- name: RevokeSession :execrows
UPDATE sessions SET revoked_at = @now WHERE id = @id AND revoked_at IS NULL;

-- name: SetSessionTeam :execrows
UPDATE sessions SET team_id = @team_id WHERE id = @id AND revoked_at IS NULL;

-- name: DeleteDeadSessions :execrows
-- A user's sessions that can never work again, removed at each of their sign-ins so
-- the table holds about as many rows as live browsers.
DELETE FROM sessions
WHERE user_id = @user_id AND (revoked_at IS NOT NULL OR expires_at <= @now OR last_seen_at <= @idle_since);
