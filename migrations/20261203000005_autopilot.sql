-- The autopilot's rollout plans. At most one is active across every replica (partial unique
-- index). `pending_step` is the step whose flag write is under way: a driver that dies between
-- the write and its bookkeeping leaves it set, and the next driver finishes the advance by
-- reading the flag instead of writing it twice.
CREATE TABLE autopilot_plans (
    id              bigserial PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    actor           text NOT NULL,
    reason          text NOT NULL,
    state           text NOT NULL CHECK (state IN ('running', 'paused', 'done', 'killed', 'aborted')),
    -- [{"percentage": 5, "bake_secs": 86400, "legacy_ceiling": 0.97}, ...]
    steps           jsonb NOT NULL,
    -- -1 before the first step's flag write is made; then the index of the step being baked.
    current_step    integer NOT NULL DEFAULT -1,
    step_started_at timestamptz,
    pending_step    integer,
    -- Since when every check has passed without a break (NULL: the last round had a non-pass).
    clean_since     timestamptz,
    pause_reason    text,
    -- The starter's reason to let the autopilot's writes pass failed rollout guards (NULL: a
    -- failed guard pauses the plan instead).
    guard_override  text,
    -- Checks an operator dismissed for the current step (their failures no longer act).
    dismissed       jsonb NOT NULL DEFAULT '[]'::jsonb,
    active          boolean GENERATED ALWAYS AS (state IN ('running', 'paused')) STORED
);
CREATE UNIQUE INDEX autopilot_plans_one_active ON autopilot_plans (active) WHERE active;

-- Every check's verdict at every evaluation round, with what it measured and how.
CREATE TABLE autopilot_evaluations (
    id         bigserial PRIMARY KEY,
    plan_id    bigint NOT NULL REFERENCES autopilot_plans (id),
    at         timestamptz NOT NULL DEFAULT now(),
    step       integer NOT NULL,
    check_name text NOT NULL,
    verdict    text NOT NULL CHECK (verdict IN ('pass', 'fail', 'inconclusive')),
    value      double precision,
    threshold  text NOT NULL,
    sample     bigint,
    query      text NOT NULL,
    detail     text NOT NULL,
    action     text NOT NULL CHECK (action IN ('kill', 'pause', 'dry_run')),
    acted      boolean NOT NULL DEFAULT false
);
CREATE INDEX autopilot_evaluations_by_plan ON autopilot_evaluations (plan_id, at DESC);
