-- name: LockOAuthIdentity :exec
-- Serialises sign-ins of one provider account until the transaction ends, so two
-- concurrent first sign-ins decide one after another and make one user. The two-key
-- form keeps these locks apart from any single-key advisory lock; a hash collision
-- only makes two sign-ins wait for each other.
SELECT pg_advisory_xact_lock(hashtext(@provider::text), hashtext(@subject::text));

-- name: GetOAuthIdentity :one
SELECT * FROM oauth_identities WHERE provider = @provider AND subject = @subject;

-- name: CreateOAuthIdentity :one
INSERT INTO oauth_identities (provider, subject, user_id, email)
VALUES (@provider, @subject, @user_id, @email)
RETURNING *;
