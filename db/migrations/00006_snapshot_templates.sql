-- +goose Up
-- Snapshots (issue 13): a team's sandbox frozen under a name, a template its sandboxes
-- are created from by restore. The files live on the hosts in template_hosts, under
-- host_name: a fresh name per version, so an overwrite publishes a new version and
-- then removes the old one, and a create never restores a mix of two.
ALTER TABLE templates
    ADD COLUMN host_name         text CHECK (host_name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    ADD COLUMN source_sandbox_id text,
    ADD COLUMN base_template     text,
    ADD COLUMN vcpus             integer CHECK (vcpus > 0),
    ADD COLUMN memory_mb         integer CHECK (memory_mb > 0),
    ADD COLUMN disk_mb           integer CHECK (disk_mb >= 0),
    ADD COLUMN size_bytes        bigint NOT NULL DEFAULT 0,
    ADD COLUMN updated_at        timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT templates_snapshot_complete CHECK (
        kind <> 'snapshot' OR (host_name IS NOT NULL AND vcpus IS NOT NULL
                               AND memory_mb IS NOT NULL AND disk_mb IS NOT NULL AND base_template IS NOT NULL));

-- +goose Down
ALTER TABLE templates
    DROP CONSTRAINT templates_snapshot_complete,
    DROP COLUMN updated_at,
    DROP COLUMN size_bytes,
    DROP COLUMN disk_mb,
    DROP COLUMN memory_mb,
    DROP COLUMN vcpus,
    DROP COLUMN base_template,
    DROP COLUMN source_sandbox_id,
    DROP COLUMN host_name;
