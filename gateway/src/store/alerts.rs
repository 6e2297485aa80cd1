//! Low-balance alert settings and their once-per-crossing claim: the alert is sent by whichever
//! replica first moves `low_balance_alerted_at` from NULL (a conditional UPDATE), so several
//! replicas send it once; it is re-armed when the balance is back above the threshold.

use sqlx::Row;

use super::{db, Result, Store, StoreError};

/// An org's low-balance alert settings (threshold 0: none).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LowBalance {
    pub threshold_micros: i64,
    /// Where the alert is POSTed (http:// or https://).
    pub webhook: String,
    /// What the receiver is asked to add (0: only an alert).
    pub auto_top_up_micros: i64,
}

/// An org whose alert is armed or fired, with its settings.
#[derive(Debug, Clone)]
pub struct AlertWatch {
    pub org_id: String,
    pub settings: LowBalance,
    pub alerted: bool,
}

impl Store {
    /// Sets (threshold > 0) or clears (threshold 0) an org's low-balance alert.
    pub async fn set_low_balance(&self, org_id: &str, s: &LowBalance) -> Result<()> {
        let done = sqlx::query(
            "UPDATE orgs SET low_balance_micros = $1, low_balance_webhook = $2, \
             auto_top_up_micros = $3, low_balance_alerted_at = NULL WHERE id = $4",
        )
        .bind(s.threshold_micros.max(0))
        .bind(&s.webhook)
        .bind(s.auto_top_up_micros.max(0))
        .bind(org_id)
        .execute(&self.pool)
        .await
        .map_err(db("setting a low-balance alert"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("org '{org_id}'")));
        }
        Ok(())
    }

    pub async fn low_balance(&self, org_id: &str) -> Result<LowBalance> {
        let row = sqlx::query(
            "SELECT low_balance_micros, low_balance_webhook, auto_top_up_micros FROM orgs WHERE id = $1",
        )
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a low-balance alert"))?
        .ok_or_else(|| StoreError::NotFound(format!("org '{org_id}'")))?;
        Ok(LowBalance {
            threshold_micros: row.try_get("low_balance_micros").map_err(db("reading"))?,
            webhook: row.try_get("low_balance_webhook").map_err(db("reading"))?,
            auto_top_up_micros: row.try_get("auto_top_up_micros").map_err(db("reading"))?,
        })
    }

    /// Orgs with an alert configured (bounded: a page of `limit` after `after_id`).
    pub async fn alert_watches(&self, after_id: &str, limit: i64) -> Result<Vec<AlertWatch>> {
        let rows = sqlx::query(
            "SELECT id, low_balance_micros, low_balance_webhook, auto_top_up_micros, \
                    low_balance_alerted_at FROM orgs \
             WHERE low_balance_micros > 0 AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing low-balance alerts"))?;
        rows.iter()
            .map(|r| {
                Ok(AlertWatch {
                    org_id: r.try_get("id")?,
                    settings: LowBalance {
                        threshold_micros: r.try_get("low_balance_micros")?,
                        webhook: r.try_get("low_balance_webhook")?,
                        auto_top_up_micros: r.try_get("auto_top_up_micros")?,
                    },
                    alerted: r
                        .try_get::<Option<i64>, _>("low_balance_alerted_at")?
                        .is_some(),
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(db("reading low-balance alerts"))
    }

    /// Claims the alert for this crossing: true for exactly one caller until re-armed.
    pub async fn claim_low_balance_alert(&self, org_id: &str, now_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE orgs SET low_balance_alerted_at = $1 \
             WHERE id = $2 AND low_balance_alerted_at IS NULL",
        )
        .bind(now_ms)
        .bind(org_id)
        .execute(&self.pool)
        .await
        .map_err(db("claiming a low-balance alert"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Re-arms the alert (the balance is back above the threshold), or gives a failed claim
    /// back so the next round retries it.
    pub async fn rearm_low_balance_alert(&self, org_id: &str) -> Result<()> {
        sqlx::query("UPDATE orgs SET low_balance_alerted_at = NULL WHERE id = $1")
            .bind(org_id)
            .execute(&self.pool)
            .await
            .map_err(db("re-arming a low-balance alert"))?;
        Ok(())
    }
}
