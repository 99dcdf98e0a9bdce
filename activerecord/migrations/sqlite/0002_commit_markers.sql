-- Commit markers: a participant of a unit of work that wrote inserts the unit's id here in the same
-- round trip as its COMMIT, so that "did this database commit?" is a key lookup once the session
-- that sent the COMMIT is gone (see docs/transactions.md, "Outcomes").
-- IF NOT EXISTS: two SQLite processes migrating at once both run this; the second then loses the
-- race on its row in activerecord_migrations and finds nothing left to do.
CREATE TABLE IF NOT EXISTS activerecord_markers (
    unit_id VARCHAR(64) PRIMARY KEY,
    created_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS activerecord_markers_created ON activerecord_markers (created_ms);
