-- Tollgate schema v1 (SQLite). Integers are BIGINT-compatible; times are ms since the epoch.
CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    retention_mode TEXT NOT NULL DEFAULT 'metadata-only',
    retention_days BIGINT NOT NULL DEFAULT 30,
    created_at BIGINT NOT NULL
);

-- Keys are stored as a keyed hash (HMAC-SHA256 with the server secret) plus a visible prefix.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL DEFAULT 0,
    revoked_at BIGINT
);
CREATE INDEX api_keys_org ON api_keys(org_id);

-- Append-only: grants (positive, with expiry) and charges (positive amounts, debited).
CREATE TABLE credit_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    kind TEXT NOT NULL CHECK (kind IN ('grant', 'charge')),
    amount_micros BIGINT NOT NULL,
    expires_at BIGINT NOT NULL DEFAULT 0,
    request_id TEXT,
    memo TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE INDEX credit_ledger_org ON credit_ledger(org_id);
CREATE UNIQUE INDEX credit_ledger_charge_once ON credit_ledger(request_id) WHERE kind = 'charge';

CREATE TABLE usage_events (
    request_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost_micros BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    status BIGINT NOT NULL,
    stream BIGINT NOT NULL,
    attempts TEXT NOT NULL,
    client_ip TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX usage_events_org_time ON usage_events(org_id, created_at);
