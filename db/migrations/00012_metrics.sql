-- +goose Up
-- Sandbox metrics (issue 16). A sandbox's metric tiers live in its agent's memory while
-- it runs; before a pause or destroy ends that series they are kept here, so a paused
-- or stopped sandbox's charts still answer. Pruned after 30 days.
CREATE TABLE sandbox_metric_points (
    sandbox_id       text NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    -- 1: 500 ms apart, 2: 30 s, 3: 5 min (hostagent.v1.MetricTier).
    tier             smallint NOT NULL CHECK (tier BETWEEN 1 AND 3),
    ts               timestamptz NOT NULL,
    cpu_pct          real NOT NULL,
    cpu_pct_max      real NOT NULL,
    mem_bytes        bigint NOT NULL,
    mem_bytes_max    bigint NOT NULL,
    disk_bytes       bigint NOT NULL,
    -- The guest's own view (envd /metrics), when it answered.
    has_guest        boolean NOT NULL DEFAULT false,
    guest_cpu_pct    real NOT NULL DEFAULT 0,
    guest_cpu_count  integer NOT NULL DEFAULT 0,
    guest_mem_used   bigint NOT NULL DEFAULT 0,
    guest_mem_total  bigint NOT NULL DEFAULT 0,
    guest_mem_cache  bigint NOT NULL DEFAULT 0,
    guest_disk_used  bigint NOT NULL DEFAULT 0,
    guest_disk_total bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (sandbox_id, tier, ts)
);
CREATE INDEX sandbox_metric_points_ts ON sandbox_metric_points (ts);

-- What each team holds, every 10 s (one control plane takes each round): the team
-- stats charts and the usage per day. Kept 60 days.
CREATE TABLE team_stats_snapshots (
    team_id    uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    ts         timestamptz NOT NULL,
    -- Running and starting sandboxes, and what they reserve.
    running    integer NOT NULL,
    paused     integer NOT NULL,
    vcpus      integer NOT NULL,
    memory_mb  integer NOT NULL,
    -- Seconds since the round before (what a usage sum multiplies by).
    interval_s real NOT NULL,
    PRIMARY KEY (team_id, ts)
);
CREATE INDEX team_stats_snapshots_ts ON team_stats_snapshots (ts);

-- +goose Down
DROP TABLE team_stats_snapshots;
DROP TABLE sandbox_metric_points;
