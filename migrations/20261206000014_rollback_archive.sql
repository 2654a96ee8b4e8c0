-- Issue 33 (first part): the split values of the diary, archived by a rollback run before
-- anything destructive, in the state database (a later pg_restore --clean of the diary, or a
-- physical restore, would replace an archive kept in the diary; docs/design/lossless-rollback.md).
-- A header exists only for an archive whose count and checksum matched the diary's when it
-- was taken (rollback/archive.rs writes both in one transaction).
CREATE TABLE rollback_archives (
    run_id bigint PRIMARY KEY,
    archived_at timestamptz NOT NULL DEFAULT now(),
    diary_table text NOT NULL,
    rows bigint NOT NULL,
    checksum text NOT NULL,
    short_units text,
    long_units text,
    dose_units text
);
CREATE TABLE rollback_archive_rows (
    run_id bigint NOT NULL,
    record_id bigint NOT NULL,
    user_id bigint,
    created_at timestamptz NOT NULL,
    dose numeric,
    insulin_short numeric,
    insulin_long numeric,
    PRIMARY KEY (run_id, record_id)
);
