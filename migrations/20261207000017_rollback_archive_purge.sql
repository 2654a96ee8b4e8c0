-- Issue 33: how long an archive of split values is kept. It is the only copy of those doses until
-- they are back in the diary, so it is never purged before its roll-forward; retention_days after
-- the roll-forward its rows go (retention.rs) and the header stays, saying when.
ALTER TABLE rollback_archives ADD COLUMN purged_at timestamptz;
