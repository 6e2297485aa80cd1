-- Reservations: before a request goes upstream its worst-case cost is held against the org's
-- balance (atomically, so concurrent requests and several replicas cannot spend past it); the
-- hold is released in the transaction that records the request's usage and charge.
ALTER TABLE credit_accounts ADD COLUMN held_micros BIGINT NOT NULL DEFAULT 0;
CREATE TABLE credit_holds (
    request_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    amount_micros BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX credit_holds_created ON credit_holds(created_at);
