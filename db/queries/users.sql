-- name: CreateUser :one
-- email must already be lower case (the schema checks it).
INSERT INTO users (email, name, password_hash, is_admin)
VALUES (@email, @name, sqlc.narg(password_hash), @is_admin)
RETURNING *;

-- name: GetUserByEmail :one
SELECT * FROM users WHERE email = @email;

-- name: GetUserByID :one
SELECT * FROM users WHERE id = @id;
