-- name: InsertMetricPoints :execrows
-- A flush of an agent's tiers; points already kept (an earlier flush of the same
-- series) are left as they are.
INSERT INTO sandbox_metric_points (sandbox_id, tier, ts, cpu_pct, cpu_pct_max, mem_bytes, mem_bytes_max, disk_bytes,
    has_guest, guest_cpu_pct, guest_cpu_count, guest_mem_used, guest_mem_total, guest_mem_cache, guest_disk_used, guest_disk_total)
SELECT @sandbox_id::text, unnest(@tiers::smallint[]), unnest(@ts::timestamptz[]), unnest(@cpu_pct::real[]), unnest(@cpu_pct_max::real[]),
    unnest(@mem_bytes::bigint[]), unnest(@mem_bytes_max::bigint[]), unnest(@disk_bytes::bigint[]), unnest(@has_guest::boolean[]),
    unnest(@guest_cpu_pct::real[]), unnest(@guest_cpu_count::integer[]), unnest(@guest_mem_used::bigint[]), unnest(@guest_mem_total::bigint[]),
    unnest(@guest_mem_cache::bigint[]), unnest(@guest_disk_used::bigint[]), unnest(@guest_disk_total::bigint[])
ON CONFLICT DO NOTHING;

-- name: ListMetricPoints :many
-- One tier's points of a sandbox in [from, to], oldest first.
SELECT * FROM sandbox_metric_points
WHERE sandbox_id = @sandbox_id AND tier = @tier AND ts >= @from_ts AND ts <= @to_ts
ORDER BY ts;

-- name: LastMetricPointTime :one
-- When the sandbox's kept series ends (no row: nothing kept).
SELECT ts FROM sandbox_metric_points WHERE sandbox_id = @sandbox_id ORDER BY ts DESC LIMIT 1;

-- name: PruneMetricPoints :execrows
DELETE FROM sandbox_metric_points WHERE ts < @before;

-- name: TeamHoldings :many
-- Every team's sandboxes now, as the stats count them: running and starting ones
-- (with what they reserve) and paused ones; only team_id's when given. Teams holding
-- none are left out.
SELECT team_id,
    count(*) FILTER (WHERE status IN ('running', 'starting'))::int AS running,
    count(*) FILTER (WHERE status IN ('paused', 'pausing', 'resuming'))::int AS paused,
    coalesce(sum(vcpus) FILTER (WHERE status IN ('running', 'starting')), 0)::int AS vcpus,
    coalesce(sum(memory_mb) FILTER (WHERE status IN ('running', 'starting')), 0)::int AS memory_mb
FROM sandboxes
WHERE status IN ('running', 'starting', 'paused', 'pausing', 'resuming')
  AND (sqlc.narg(team_id)::uuid IS NULL OR team_id = sqlc.narg(team_id)::uuid)
GROUP BY team_id;

-- name: InsertTeamStats :exec
INSERT INTO team_stats_snapshots (team_id, ts, running, paused, vcpus, memory_mb, interval_s)
SELECT unnest(@team_ids::uuid[]), @ts, unnest(@running::int[]), unnest(@paused::int[]), unnest(@vcpus::int[]),
    unnest(@memory_mb::int[]), @interval_s::real
ON CONFLICT DO NOTHING;

-- name: TeamStatsSeries :many
-- A team's snapshots in [from, to] in buckets of step_s seconds: the largest value of
-- each bucket (peaks are what sizing needs), oldest first. Rounds in which the team
-- held nothing have no row and read as zero.
SELECT date_bin(make_interval(secs => @step_s::float8), ts, '2000-01-01 00:00:00+00'::timestamptz)::timestamptz AS bucket,
    max(running)::int AS running, max(paused)::int AS paused, max(vcpus)::int AS vcpus, max(memory_mb)::int AS memory_mb
FROM team_stats_snapshots
WHERE team_id = @team_id AND ts >= @from_ts AND ts <= @to_ts
GROUP BY bucket
ORDER BY bucket;

-- name: TeamUsageByDay :many
-- A team's reserved vCPU-seconds and MiB-seconds per UTC day in [from, to).
SELECT date_trunc('day', ts AT TIME ZONE 'UTC')::date AS day,
    coalesce(sum(vcpus * interval_s), 0)::float8 AS vcpu_seconds,
    coalesce(sum(memory_mb * interval_s), 0)::float8 AS mib_seconds
FROM team_stats_snapshots
WHERE team_id = @team_id AND ts >= @from_ts AND ts < @to_ts
GROUP BY day
ORDER BY day;

-- name: PruneTeamStats :execrows
DELETE FROM team_stats_snapshots WHERE ts < @before;
