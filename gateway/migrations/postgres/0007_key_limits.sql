-- API keys with limits (issue 9): scopes (JSON, '' = everything), disable, a spend limit over a
-- period, per-key rate limits, and rotation (the previous secret's hash stays valid until
-- `previous_expires_at`). Orgs get their own rate limits. 0 means "no limit" everywhere.
ALTER TABLE api_keys ADD COLUMN disabled_at BIGINT;
ALTER TABLE api_keys ADD COLUMN spend_limit_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN spend_period TEXT NOT NULL DEFAULT 'total';
ALTER TABLE api_keys ADD COLUMN rpm_limit BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN tpm_limit BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN concurrency_limit BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN previous_hash TEXT;
ALTER TABLE api_keys ADD COLUMN previous_expires_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX api_keys_previous_hash ON api_keys(previous_hash);

ALTER TABLE orgs ADD COLUMN rpm_limit BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN tpm_limit BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN concurrency_limit BIGINT NOT NULL DEFAULT 0;

-- What each key spent, per period ('day', 'week', 'month' starting at UTC boundaries, and
-- 'total' with period_start 0), added in the transaction that records the charge.
CREATE TABLE key_spend (
    key_id TEXT NOT NULL,
    period TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    spent_micros BIGINT NOT NULL,
    PRIMARY KEY (key_id, period, period_start)
);

-- A hold names the key it was made for, so a key's spend limit counts its requests in flight.
ALTER TABLE credit_holds ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
CREATE INDEX credit_holds_key ON credit_holds(key_id);
