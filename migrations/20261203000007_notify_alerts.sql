-- Alertmanager receivers: the alerts this dashboard holds firing there, one row per receiver and
-- alert (its labels, sorted, are its identity), from the first post until its resolution has been
-- delivered. Any replica, or the same one after a restart, resolves what another raised.
CREATE TABLE notify_alerts (
    receiver    text NOT NULL,
    key         text NOT NULL,
    labels      jsonb NOT NULL,
    annotations jsonb NOT NULL,
    starts_at   timestamptz NOT NULL,
    last_sent   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (receiver, key)
);
