-- Idempotency keys: a unit of work run with a key claims it here, in its own transaction, and
-- stores its serialized result with its work; a second call with the key returns that result
-- (see docs/transactions.md, "Idempotency keys").
CREATE TABLE IF NOT EXISTS activerecord_idempotency (
    idempotency_key VARCHAR(128) PRIMARY KEY,
    fingerprint VARCHAR(64) NOT NULL,
    result TEXT,
    created_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS activerecord_idempotency_created ON activerecord_idempotency (created_ms);
