-- +goose Up
-- The audit log API (GET /v1/audit-logs, /v1/admin/audit-logs) pages newest first by
-- (created_at, id): created_at alone ties within a transaction, id alone is not the
-- order entries happened in across concurrent transactions. The team index gains id,
-- so a page is one index range scan; the platform-wide listing has its own.
DROP INDEX audit_logs_team;
CREATE INDEX audit_logs_team ON audit_logs (team_id, created_at DESC, id DESC);
CREATE INDEX audit_logs_created ON audit_logs (created_at DESC, id DESC);
-- A member reads only their own entries.
CREATE INDEX audit_logs_actor_user ON audit_logs (actor_user_id, created_at DESC, id DESC)
    WHERE actor_user_id IS NOT NULL;

-- +goose Down
DROP INDEX audit_logs_actor_user;
DROP INDEX audit_logs_created;
DROP INDEX audit_logs_team;
CREATE INDEX audit_logs_team ON audit_logs (team_id, created_at DESC);
