//! The retention purge's statements (issue 10): usage rows and stored content past their
//! `expires_at` are deleted, client IPs past their `ip_expires_at` are nulled, expired Responses
//! state is deleted — each at most `batch` rows per statement, so no write transaction is long
//! and requests' usage batches interleave. Every function takes the time as a parameter: the
//! caller chooses the clock (`tollgate purge --now`, tests).

use serde::Serialize;

use super::{db, DbKind, Result, Store};

/// What one purge pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// The time the pass purged as of (ms since the epoch).
    pub now_ms: i64,
    pub usage_rows: u64,
    pub content_rows: u64,
    pub client_ips: u64,
    pub response_states: u64,
}

impl PurgeReport {
    pub fn total(&self) -> u64 {
        self.usage_rows + self.content_rows + self.client_ips + self.response_states
    }
}

/// One statement per kind: `$1` = now, `$2` = batch.
const DELETE_USAGE: &str = "DELETE FROM usage_events WHERE request_id IN \
    (SELECT request_id FROM usage_events WHERE expires_at <= $1 LIMIT $2)";
const DELETE_CONTENT: &str = "DELETE FROM request_content WHERE request_id IN \
    (SELECT request_id FROM request_content WHERE expires_at <= $1 LIMIT $2)";
const NULL_IPS: &str = "UPDATE usage_events SET client_ip = NULL, ip_expires_at = NULL \
    WHERE request_id IN (SELECT request_id FROM usage_events \
    WHERE client_ip IS NOT NULL AND ip_expires_at <= $1 LIMIT $2)";

impl Store {
    /// Runs `sql` at most `batch` rows at a time until a statement touches fewer; the rows
    /// touched in all.
    async fn purge_batches(
        &self,
        sql: &str,
        now_ms: i64,
        batch: i64,
        doing: &'static str,
    ) -> Result<u64> {
        let batch = batch.max(1);
        let mut total = 0;
        loop {
            let done = {
                let _turn = self.write_turn().await;
                sqlx::query(sql)
                    .bind(now_ms)
                    .bind(batch)
                    .execute(&self.pool)
                    .await
                    .map_err(db(doing))?
                    .rows_affected()
            };
            total += done;
            if done < batch as u64 {
                return Ok(total);
            }
            // Requests' writes take their turn between batches.
            tokio::task::yield_now().await;
        }
    }

    /// One purge pass as of `now_ms`, `batch` rows per statement.
    pub async fn purge_expired(&self, now_ms: i64, batch: i64) -> Result<PurgeReport> {
        let content_rows = self
            .purge_batches(DELETE_CONTENT, now_ms, batch, "purging expired content")
            .await?;
        let usage_rows = self
            .purge_batches(DELETE_USAGE, now_ms, batch, "purging expired usage rows")
            .await?;
        let client_ips = self
            .purge_batches(NULL_IPS, now_ms, batch, "purging expired client IPs")
            .await?;
        let mut response_states = 0;
        loop {
            let n = self.purge_response_states(now_ms, batch.max(1)).await?;
            response_states += n;
            if n < batch.max(1) as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        if self.kind == DbKind::Sqlite && content_rows + response_states + client_ips > 0 {
            // With secure_delete the pages are zeroed in the WAL; the checkpoint moves them
            // into the file and empties the WAL, so the old frames (with the content) go too.
            let _turn = self.write_turn().await;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await
                .map_err(db("checkpointing after a purge"))?;
        }
        Ok(PurgeReport {
            now_ms,
            usage_rows,
            content_rows,
            client_ips,
            response_states,
        })
    }
}
