-- name: GetSnapshot :one
SELECT * FROM templates WHERE team_id = @team_id AND name = @name AND kind = 'snapshot';

-- name: LockSnapshot :one
-- Held across a snapshot's overwrite or delete: one change of a name at a time.
SELECT * FROM templates WHERE team_id = @team_id AND name = @name AND kind = 'snapshot' FOR UPDATE;

-- name: ListSnapshots :many
SELECT * FROM templates WHERE team_id = @team_id AND kind = 'snapshot' ORDER BY name;

-- name: InsertSnapshot :one
INSERT INTO templates (team_id, name, kind, host_name, source_sandbox_id, base_template, vcpus, memory_mb, disk_mb, size_bytes)
VALUES (@team_id, @name, 'snapshot', @host_name, @source_sandbox_id, @base_template, @vcpus, @memory_mb, @disk_mb, @size_bytes)
RETURNING *;

-- name: UpdateSnapshot :one
UPDATE templates
SET host_name = @host_name, source_sandbox_id = @source_sandbox_id, base_template = @base_template,
    vcpus = @vcpus, memory_mb = @memory_mb, disk_mb = @disk_mb, size_bytes = @size_bytes, updated_at = now()
WHERE id = @id
RETURNING *;

-- name: DeleteTemplate :exec
DELETE FROM templates WHERE id = @id;

-- name: SnapshotHosts :many
-- The live hosts holding a template's files: a deleted host's are out of reach (its
-- agent is refused) and must not hold up a delete or attract a placement.
SELECT th.host_id FROM template_hosts th JOIN hosts h ON h.id = th.host_id
WHERE th.template_id = @template_id AND h.deleted_at IS NULL ORDER BY th.host_id;

-- name: ClearTemplateHosts :exec
DELETE FROM template_hosts WHERE template_id = @template_id;

-- name: AddTemplateHost :exec
INSERT INTO template_hosts (template_id, host_id) VALUES (@template_id, @host_id) ON CONFLICT DO NOTHING;

-- name: ResolveTemplate :one
-- The template a create names: the team's own (a snapshot) before the platform's.
SELECT * FROM templates WHERE name = @name AND (team_id IS NULL OR team_id = @team_id)
ORDER BY team_id NULLS LAST LIMIT 1;

-- name: HostSnapshotNames :many
-- The host names of the snapshot versions recorded on a host: any other version of
-- Wrenn's on it (snap-…) is an orphan, e.g. of a create whose control plane died
-- before recording it.
SELECT t.host_name::text FROM templates t JOIN template_hosts th ON th.template_id = t.id
WHERE th.host_id = @host_id AND t.host_name IS NOT NULL;
