-- Issue 32: an audit entry about a rollback run or an autopilot plan names it by id, typed,
-- instead of only in the target's text ("rollback run #12"). The trail is append-only, so
-- entries written before this migration keep NULL here (their target still names the run).
ALTER TABLE audit_log ADD COLUMN run_id bigint, ADD COLUMN plan_id bigint;
CREATE INDEX audit_log_run_id ON audit_log (run_id) WHERE run_id IS NOT NULL;
