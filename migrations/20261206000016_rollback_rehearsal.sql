-- Issue 33, item 5: rehearsals of the rollback's data steps on a scratch copy of the newest backup
-- (rollback/rehearsal/). One row per rehearsal: who asked, the backup, each part's time and
-- outcome, the rows by category before and after the round trip, and why it failed. At most one
-- runs at a time (the partial unique index; the dashboard's advisory lock guards the work); one
-- whose heartbeat stopped is failed by the next look. Its scratch database is
-- rollout_rehearsal_<tag>_<id>, the tag this installation's own (drawn once, below), and
-- scratch_dropped says it is gone (a drop that failed is retried by the next rehearsal).
CREATE TABLE rollback_rehearsals (
    id bigserial PRIMARY KEY,
    requested_by text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'passed', 'failed')),
    fill_dose boolean NOT NULL,
    backup_file text,
    backup_at timestamptz,
    failure text,
    parts jsonb NOT NULL DEFAULT '[]',
    categories jsonb NOT NULL DEFAULT '[]',
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    scratch_dropped boolean NOT NULL DEFAULT false
);
CREATE TABLE rollback_rehearsal_installation (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    tag text NOT NULL
);
INSERT INTO rollback_rehearsal_installation (tag) VALUES (substr(md5(random()::text || clock_timestamp()::text), 1, 8));
CREATE UNIQUE INDEX rollback_rehearsals_one_running ON rollback_rehearsals ((true)) WHERE state = 'running';
CREATE INDEX rollback_rehearsals_passed ON rollback_rehearsals (finished_at DESC) WHERE state = 'passed';
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_known;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_known CHECK (action IN (
    'flag.set',
    'flag.kill',
    'flag.kill_retry',
    'flag.external_change',
    'autopilot.start',
    'autopilot.step',
    'autopilot.pause',
    'autopilot.resume',
    'autopilot.check_failing',
    'autopilot.check_blind',
    'autopilot.promote',
    'autopilot.dismiss',
    'autopilot.kill',
    'autopilot.end',
    'autopilot.abort',
    'autopilot.done',
    'rollback.start',
    'rollback.approve',
    'rollback.step',
    'rollback.stopped',
    'rollback.interrupted',
    'rollback.resume',
    'rollback.retry',
    'rollback.skip',
    'rollback.abort',
    'rollback.done',
    'rollback.scale_back',
    'deploy.record',
    'hook.alert',
    'notify.resend',
    'rollback.reapply',
    'rollback.rehearse'
)) NOT VALID;
