-- Commit markers: a participant of a unit of work that wrote inserts the unit's id here in the same
-- round trip as its COMMIT, so that "did this database commit?" is a key lookup once the session
-- that sent the COMMIT is gone (see docs/transactions.md, "Outcomes").
CREATE TABLE activerecord_markers (
    unit_id VARCHAR(64) PRIMARY KEY,
    created_ms BIGINT NOT NULL,
    INDEX activerecord_markers_created (created_ms)
);
