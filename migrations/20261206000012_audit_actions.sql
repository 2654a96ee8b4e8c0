-- Issue 32: the audit trail's actions are one vocabulary (`Action` in src/api/audit.rs); the
-- database refuses any other name. NOT VALID: rows written before the vocabulary keep their
-- names (the table is append-only); every new row is checked. tests/events.rs compares this list
-- with the enum.
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
    'notify.resend'
)) NOT VALID;
