-- What a deleted team still holds on hosts, removed by sandboxes.PurgeDeletedTeams
-- (at the delete, then every host-monitor round until nothing is left).

-- name: ListDeletedTeams :many
-- Deleted teams that still have a sandbox not stopped, a template, or a host.
SELECT t.id FROM teams t
WHERE t.deleted_at IS NOT NULL AND (
    EXISTS (SELECT 1 FROM sandboxes s WHERE s.team_id = t.id AND s.status <> 'stopped')
    OR EXISTS (SELECT 1 FROM templates tp WHERE tp.team_id = t.id)
    OR EXISTS (SELECT 1 FROM hosts h WHERE h.team_id = t.id AND h.deleted_at IS NULL))
ORDER BY t.deleted_at, t.id;

-- name: ListPurgeSandboxes :many
-- A deleted team's sandboxes that are not stopped (error ones included: their host may
-- still run them).
SELECT s.* FROM sandboxes s JOIN teams t ON t.id = s.team_id
WHERE s.team_id = @team_id AND t.deleted_at IS NOT NULL AND s.status <> 'stopped'
ORDER BY s.created_at, s.id;

-- name: StopPurgedSandbox :execrows
-- Recorded stopped only if still as read (a concurrent change is judged next round).
UPDATE sandboxes SET status = 'stopped', error = coalesce(error, 'team deleted'),
    stopped_at = coalesce(stopped_at, now()), host_ip = NULL
WHERE id = @id AND status = @from_status::text;

-- name: ListPurgeTemplates :many
SELECT tp.* FROM templates tp JOIN teams t ON t.id = tp.team_id
WHERE tp.team_id = @team_id AND t.deleted_at IS NOT NULL
ORDER BY tp.created_at, tp.id;

-- name: RemoveTemplateHost :exec
DELETE FROM template_hosts WHERE template_id = @template_id AND host_id = @host_id;

-- name: ListPurgeHosts :many
SELECT h.* FROM hosts h JOIN teams t ON t.id = h.team_id
WHERE h.team_id = @team_id AND t.deleted_at IS NOT NULL AND h.deleted_at IS NULL
ORDER BY h.created_at, h.id;
