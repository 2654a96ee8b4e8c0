-- Issue 33, items 2 and 3. The opt-in fill of `dose` from `insulin_short` (rollback/fill.rs): the
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
