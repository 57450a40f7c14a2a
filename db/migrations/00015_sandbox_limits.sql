-- +goose Up
-- What the host's kernel holds a sandbox's VMM to (cgroup CPU, memory and task limits,
-- the jail's uid), as its host reported them when it last started or resumed it; NULL
-- until then. JSON: the host agent's SandboxLimits (cpus, memory_bytes, pids, jail_uid).
ALTER TABLE sandboxes ADD COLUMN limits jsonb;

-- +goose Down
ALTER TABLE sandboxes DROP COLUMN limits;
