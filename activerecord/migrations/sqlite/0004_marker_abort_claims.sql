-- Abort claims: recovery, about to roll back the prepared branches of a two-phase unit whose
-- commit point site left no marker, first inserts the unit's id here with aborted set. The site's
-- own commit inserts the same id, so whichever comes second fails on the key: a site commit still
-- on its way can no longer land after recovery decided to roll back (see docs/two_phase.md,
-- "Recovery"). A commit marker has aborted unset.
ALTER TABLE activerecord_markers ADD COLUMN aborted BOOLEAN NOT NULL DEFAULT 0;
