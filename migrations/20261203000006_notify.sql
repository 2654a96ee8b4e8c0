-- Notifications. The audit trail is the outbox: every event worth telling (a flag change, a
-- kill, an autopilot or rollback event) is an audit entry written with the action itself, often
-- in the same transaction. A receiver has been told about an entry when a row here says so;
-- entries without one are due, oldest first. Nothing is lost to a crash (the entry stays due)
-- nor to a transaction that commits late (it is due whenever it becomes visible).
CREATE TABLE notify_receivers (
    name        text PRIMARY KEY,
    -- Entries up to this id existed before the receiver was configured: not sent.
    first_id    bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notify_sent (
    receiver    text NOT NULL,
    audit_id    bigint NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    -- 'delivered'; 'skipped' (the receiver does not want this event or severity); 'rejected'
    -- (the receiver answered 4xx: sending it again would not help, and it must not block the rest).
    outcome     text NOT NULL CHECK (outcome IN ('delivered', 'skipped', 'rejected')),
    PRIMARY KEY (receiver, audit_id)
);

-- Every delivery attempt, for the page and the counters: what was sent where, and what came back.
CREATE TABLE notify_attempts (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    receiver    text NOT NULL,
    -- The audit entry told about (NULL: an Alertmanager alert's state, re-sent while it holds).
    audit_id    bigint,
    event       text NOT NULL,
    severity    text NOT NULL,
    attempt     integer NOT NULL,
    ok          boolean NOT NULL,
    status      integer,
    detail      text,
    millis      integer NOT NULL
);
CREATE INDEX notify_attempts_by_receiver ON notify_attempts (receiver, id DESC);

-- Grafana: the annotation drawn for a rollback run, a region closed when the run ends.
CREATE TABLE grafana_regions (
    receiver      text NOT NULL,
    run_id        bigint NOT NULL,
    annotation_id bigint NOT NULL,
    closed        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (receiver, run_id)
);

-- Alerts received from Alertmanager that acted, once per alert (fingerprint and start).
CREATE TABLE alert_hook_actions (
    fingerprint text NOT NULL,
    starts_at   timestamptz NOT NULL,
    action      text NOT NULL,
    audit_id    bigint,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fingerprint, starts_at, action)
);
