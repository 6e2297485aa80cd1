-- Running total of charges per org, updated in the same transaction as each charge, so a
-- balance is (unexpired grants) - (one row) instead of a scan of every charge.
CREATE TABLE credit_accounts (
    org_id TEXT PRIMARY KEY REFERENCES orgs(id),
    charged_micros BIGINT NOT NULL DEFAULT 0
);
INSERT INTO credit_accounts (org_id, charged_micros)
    SELECT org_id, SUM(amount_micros) FROM credit_ledger WHERE kind = 'charge' GROUP BY org_id;
CREATE INDEX credit_ledger_org_kind ON credit_ledger(org_id, kind);
