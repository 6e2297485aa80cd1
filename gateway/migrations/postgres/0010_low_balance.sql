-- Low-balance alerts (issue 9): below `low_balance_micros` the org's webhook is called once
-- (`low_balance_alerted_at` set), again only after the balance went back above the threshold.
-- `auto_top_up_micros` is what the webhook's receiver is asked to add (0: just an alert).
ALTER TABLE orgs ADD COLUMN low_balance_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN low_balance_webhook TEXT NOT NULL DEFAULT '';
ALTER TABLE orgs ADD COLUMN auto_top_up_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN low_balance_alerted_at BIGINT;
