-- +goose Up
-- Per-team quotas (issue 12, finding 5): a platform administrator's override of the
-- server's defaults (WRENN_QUOTA_*) for one team. NULL: the default applies; 0: no
-- limit. The effective limits are checked with the team's row locked, so creates of
-- one team are counted one after another and never pass a limit together.
ALTER TABLE teams
    ADD COLUMN quota_sandboxes integer CHECK (quota_sandboxes >= 0),
    ADD COLUMN quota_vcpus     integer CHECK (quota_vcpus >= 0),
    ADD COLUMN quota_memory_mb integer CHECK (quota_memory_mb >= 0),
    ADD COLUMN quota_api_keys  integer CHECK (quota_api_keys >= 0);

-- What a team holds of the hosts is counted on every create: this keeps that count to
-- the team's live sandboxes, however many stopped ones its history has.
CREATE INDEX sandboxes_team_live ON sandboxes (team_id) WHERE status NOT IN ('stopped', 'error');

-- +goose Down
DROP INDEX sandboxes_team_live;
ALTER TABLE teams
    DROP COLUMN quota_sandboxes, DROP COLUMN quota_vcpus,
    DROP COLUMN quota_memory_mb, DROP COLUMN quota_api_keys;
