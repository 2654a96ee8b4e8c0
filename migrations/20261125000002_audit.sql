-- The audit trail: every attempt to change the rollout (done, refused or failed), and every change
-- made outside the dashboard that the poller noticed. Append-only: the database itself refuses
-- UPDATE, DELETE and TRUNCATE, whoever asks.
CREATE TABLE audit_log (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    role          text NOT NULL,
    action        text NOT NULL,
    target        text NOT NULL,
    value_before  text,
    value_after   text,
    reason        text,
    outcome       text NOT NULL CHECK (outcome IN ('done', 'refused', 'failed')),
    outcome_detail text,
    request_id    text
);
CREATE INDEX audit_log_by_time ON audit_log (at DESC);
CREATE INDEX audit_log_by_action ON audit_log (action, at DESC);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
