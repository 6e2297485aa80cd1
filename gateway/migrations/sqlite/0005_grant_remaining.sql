-- Each grant keeps what is left of it; charges consume grants soonest-expiring first (grants
-- that never expire last), so a grant that was spent and then expires is not subtracted again.
-- The balance is the sum of what is left of unexpired grants.
ALTER TABLE credit_ledger ADD COLUMN remaining_micros BIGINT NOT NULL DEFAULT 0;
-- Existing data: the org's total charges consume its grants in the same order.
UPDATE credit_ledger SET remaining_micros = (
    SELECT MAX(0, MIN(o.amount_micros, o.cum - COALESCE(
        (SELECT charged_micros FROM credit_accounts a WHERE a.org_id = o.org_id), 0)))
    FROM (SELECT id, org_id, amount_micros,
                 SUM(amount_micros) OVER (PARTITION BY org_id
                     ORDER BY CASE WHEN expires_at = 0 THEN 1 ELSE 0 END, expires_at, id) AS cum
          FROM credit_ledger WHERE kind = 'grant') o
    WHERE o.id = credit_ledger.id)
WHERE kind = 'grant';
CREATE INDEX credit_ledger_grants_open ON credit_ledger(org_id, expires_at) WHERE kind = 'grant' AND remaining_micros > 0;
