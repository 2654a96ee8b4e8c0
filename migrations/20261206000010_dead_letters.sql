-- Dead letters (issue 31): an event a receiver failed to take `notify.dead_letter_after` times in
-- a row is set aside ('dead'), so that the events behind it go on; the notifications page lists
-- it, and an operator can send it again (the row is deleted, the event is due once more).
ALTER TABLE notify_sent DROP CONSTRAINT notify_sent_outcome_check;
ALTER TABLE notify_sent ADD CONSTRAINT notify_sent_outcome_check
    CHECK (outcome IN ('delivered', 'skipped', 'rejected', 'dead'));
