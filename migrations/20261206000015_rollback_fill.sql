-- Issue 33, items 2, 3 and 4. The opt-in fill of `dose` from `insulin_short` (rollback/fill.rs): the
-- run remembers the operator's choice; the archive's header records when the fill was applied to
-- the diary and how many rows each rule touched (the archive itself keeps the values from before
-- it). With the restore chosen, the whole table is archived too (every row, every column as
-- JSON: pg_restore --clean drops the rows written after the backup) and re-inserted after the
-- restore (rollback/archive/whole.rs); the header gets its tally and what the re-insert did.
ALTER TABLE rollback_runs ADD COLUMN fill_dose boolean NOT NULL DEFAULT false;
ALTER TABLE rollback_archives
    ADD COLUMN filled_at timestamptz,
    ADD COLUMN fill_counts jsonb,
    ADD COLUMN whole_rows bigint,
    ADD COLUMN whole_checksum text,
    ADD COLUMN reinserted_at timestamptz,
    ADD COLUMN reinsert_counts jsonb;
CREATE TABLE rollback_archive_whole (
    run_id bigint NOT NULL,
    record_id bigint NOT NULL,
    row jsonb NOT NULL,
    PRIMARY KEY (run_id, record_id)
);
-- The roll-forward (item 4; rollback/archive/reapply.rs): when the archive was re-applied and
-- what each verdict counted; its audit action joins the vocabulary (tests/events.rs).
ALTER TABLE rollback_archives ADD COLUMN reapplied_at timestamptz, ADD COLUMN reapply_counts jsonb;
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
    'rollback.reapply'
)) NOT VALID;
