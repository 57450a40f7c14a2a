-- name: CreateUser :one
-- email must already be lower case (the schema checks it).
INSERT INTO users (email, name, password_hash, is_admin)
VALUES (@email, @name, sqlc.narg(password_hash), @is_admin)
RETURNING *;

-- name: GetUserByEmail :one
SELECT * FROM users WHERE email = @email;

-- name: GetUserByID :one
SELECT * FROM users WHERE id = @id;

-- name: SearchUsersByEmail :many
-- An email-prefix search to add a member: pattern is the prefix with LIKE's wildcards
-- escaped, then %; only what adding needs, at most 10.
SELECT id, email, name FROM users WHERE email LIKE @pattern::text ESCAPE '\' ORDER BY email LIMIT 10;
