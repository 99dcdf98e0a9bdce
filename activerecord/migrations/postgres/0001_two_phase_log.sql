-- The two-phase coordinator's decision log: a row means "commit" (see activerecord::two_phase).
-- IF NOT EXISTS: databases set up before migrations already have this table, created by the same
-- statement.
CREATE TABLE IF NOT EXISTS activerecord_two_phase_log (
    gtrid VARCHAR(64) PRIMARY KEY,
    coordinator VARCHAR(64) NOT NULL,
    branches JSONB NOT NULL,
    decided_at BIGINT NOT NULL
);
