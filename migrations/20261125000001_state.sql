-- The dashboard's own state. Kept in its own database so that restoring the diary database
-- (pg_restore --clean during a rollback) can never erase it.

-- Every flag value the dashboard has seen, one row per change (by resourceVersion).
CREATE TABLE flag_observations (
    id               bigserial PRIMARY KEY,
    observed_at      timestamptz NOT NULL DEFAULT now(),
    flag_key         text NOT NULL,
    source           text NOT NULL,
    raw_value        text,
    percentage       smallint CHECK (percentage BETWEEN 0 AND 100),
    resource_version text
);
CREATE INDEX flag_observations_by_time ON flag_observations (flag_key, observed_at);
