-- Issue 30: a kill is final and the medical check never sleeps.
--
-- What a plan started from, so that nothing automatic lowers the flag by surprise and so that the
-- doubled-dose check compares the whole table's count with its value at the start.
ALTER TABLE autopilot_plans
    ADD COLUMN start_percentage integer,
    -- The flag's version as the plan last knew it (at the start, then after each of its writes):
    -- a flag at 0 % on another version was killed by somebody, even if 0 % is what the plan holds.
    ADD COLUMN flag_version     text,
    -- The starter typed a confirmation that the first step may lower the flag.
    ADD COLUMN lower_confirmed  text,
    -- The ids of the records that copied dose into both parts when the plan started (the whole
    -- table): the doubled-dose check fails on any other.
    ADD COLUMN doubled_at_start bigint[] NOT NULL DEFAULT '{}';

-- Kills asked for (by a person, the alert hook, a check) until the flag reads 0 %. A kill whose
-- write fails stays here and is retried every round; while one is pending nothing raises the flag.
CREATE TABLE kill_requests (
    id              bigserial PRIMARY KEY,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    actor           text NOT NULL,
    reason          text,
    attempts        integer NOT NULL DEFAULT 0,
    last_attempt_at timestamptz,
    last_error      text,
    landed_at       timestamptz
);
CREATE INDEX kill_requests_pending ON kill_requests (id) WHERE landed_at IS NULL;
