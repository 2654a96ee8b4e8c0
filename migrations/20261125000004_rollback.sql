-- The deploy journal: every Alembic revision of the diary database the dashboard observed, and
-- the ones operators entered. The rollback's target (the previous revision) comes from here.
CREATE TABLE deploy_journal (
    id                bigserial PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT now(),
    revision          text NOT NULL,
    previous_revision text,
    source            text NOT NULL CHECK (source IN ('observed', 'operator')),
    actor             text NOT NULL,
    note              text
);
CREATE INDEX deploy_journal_by_time ON deploy_journal (at DESC, id DESC);

-- Rollback runs. At most one is active (not finished) at any time, across every replica of the
-- dashboard: the partial unique index makes a second start find the first run instead.
CREATE TABLE rollback_runs (
    id             bigserial PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    actor          text NOT NULL,
    reason         text NOT NULL,
    environment    text NOT NULL,
    state          text NOT NULL CHECK (state IN
                     ('awaiting_approval', 'running', 'stopped', 'interrupted', 'done', 'aborted')),
    restore_data   boolean NOT NULL,
    approved_by    text,
    bypass_reason  text,
    -- What the run remembers (replica count, old flag value, target revision, baselines).
    memory         jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- The plan as it was shown and confirmed.
    plan           jsonb NOT NULL,
    active         boolean GENERATED ALWAYS AS (state IN ('awaiting_approval', 'running', 'stopped', 'interrupted')) STORED
);
CREATE UNIQUE INDEX rollback_runs_one_active ON rollback_runs (active) WHERE active;

CREATE TABLE rollback_steps (
    run_id       bigint NOT NULL REFERENCES rollback_runs (id),
    idx          integer NOT NULL,
    name         text NOT NULL,
    title        text NOT NULL,
    state        text NOT NULL CHECK (state IN
                   ('pending', 'running', 'done', 'failed', 'skipped', 'interrupted', 'not_chosen')),
    attempts     integer NOT NULL DEFAULT 0,
    started_at   timestamptz,
    finished_at  timestamptz,
    output       text NOT NULL DEFAULT '',
    error        text,
    skip_reason  text,
    PRIMARY KEY (run_id, idx)
);

-- The incident journal: one record per finished or aborted run, with its Markdown.
CREATE TABLE incidents (
    id          bigserial PRIMARY KEY,
    run_id      bigint NOT NULL UNIQUE REFERENCES rollback_runs (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    title       text NOT NULL,
    markdown    text NOT NULL
);
