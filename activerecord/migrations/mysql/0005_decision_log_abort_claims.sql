-- Abort claims in the decision log: recovery, about to roll back the prepared branches of a unit
-- that has no decision and no commit point site, first inserts the unit's id here with aborted
-- set. The coordinator's own decision has the same key, so whichever comes second fails: a
-- decision still on its way can no longer land after recovery decided to roll back (see
-- docs/two_phase.md, "Recovery"). A decision has aborted unset.
ALTER TABLE activerecord_two_phase_log ADD COLUMN aborted BOOLEAN NOT NULL DEFAULT FALSE;
