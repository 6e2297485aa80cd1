//! Responses API conversation state. `POST /v1/responses` with `store: true` keeps each
//! response here so a later request can continue it with `previous_response_id`, and
//! `GET`/`DELETE /v1/responses/{id}` can read or remove it. Every read and delete is scoped to
//! the owning org: another org's id looks exactly like a missing one.
//!
//! Each state expires at `expires_at`. An expired row is invisible to reads at once; the rows
//! themselves are removed by [`spawn_response_purge`], a few at a time so one purge never
//! holds a long lock. Every function here takes the time as a parameter (ms since the epoch),
//! so tests choose the clock; only the background task reads the real one.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{db, now_ms, Result, Store};

/// One stored response and the conversation that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseState {
    /// The response id (`resp_...`), as the client sees it.
    pub id: String,
    pub org_id: String,
    /// The key that created it (for audits; access is per org).
    pub key_id: String,
    /// The Response JSON as returned to the client.
    pub response: String,
    /// JSON array of the whole conversation's canonical chat messages, up to and including
    /// this response's output.
    pub messages: String,
    /// Ms since the epoch.
    pub created_at: i64,
    /// Ms since the epoch; at and after this instant the state is gone.
    pub expires_at: i64,
}

fn state_from(row: &AnyRow) -> std::result::Result<ResponseState, sqlx::Error> {
    Ok(ResponseState {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        key_id: row.try_get("key_id")?,
        response: row.try_get("response")?,
        messages: row.try_get("messages")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// Stores a response. Its id must be new: an existing id is an error, never overwritten.
    pub async fn put_response_state(&self, s: &ResponseState) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO response_states (id, org_id, key_id, response, messages, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.id)
        .bind(&s.org_id)
        .bind(&s.key_id)
        .bind(&s.response)
        .bind(&s.messages)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await
        .map_err(db("storing a response"))?;
        Ok(())
    }

    /// The org's response with this id, unless it expired (`expires_at <= now_ms`), even if
    /// the purge has not removed it yet. None for a missing id or another org's.
    pub async fn get_response_state(
        &self,
        id: &str,
        org_id: &str,
        now_ms: i64,
    ) -> Result<Option<ResponseState>> {
        let row = sqlx::query(
            "SELECT id, org_id, key_id, response, messages, created_at, expires_at \
             FROM response_states WHERE id = $1 AND org_id = $2 AND expires_at > $3",
        )
        .bind(id)
        .bind(org_id)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a response"))?;
        row.as_ref()
            .map(state_from)
            .transpose()
            .map_err(db("reading a response"))
    }

    /// Deletes the org's response with this id; false when there is none (or it is another
    /// org's). A row that expired but was not purged yet is still deleted (and counts).
    pub async fn delete_response_state(&self, id: &str, org_id: &str) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM response_states WHERE id = $1 AND org_id = $2")
            .bind(id)
            .bind(org_id)
            .execute(&self.pool)
            .await
            .map_err(db("deleting a response"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes at most `batch` expired responses (`expires_at <= now_ms`), oldest first, and
    /// returns how many went. A `batch` below 1 deletes nothing.
    pub async fn purge_response_states(&self, now_ms: i64, batch: i64) -> Result<u64> {
        if batch < 1 {
            return Ok(0);
        }
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "DELETE FROM response_states WHERE id IN \
             (SELECT id FROM response_states WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)",
        )
        .bind(now_ms)
        .bind(batch)
        .execute(&self.pool)
        .await
        .map_err(db("purging expired responses"))?;
        Ok(done.rows_affected())
    }
}

/// Starts a task on the current tokio runtime that purges expired responses: at once, then
/// every `every`. Each round deletes `batch` rows at a time until a call deletes fewer (the
/// backlog is gone). Errors are logged and the next round tries again; the task never panics
/// and runs until aborted or the runtime stops.
pub fn spawn_response_purge(
    store: Store,
    every: Duration,
    batch: i64,
) -> tokio::task::JoinHandle<()> {
    let batch = batch.max(1);
    tokio::spawn(async move {
        loop {
            let mut purged: u64 = 0;
            loop {
                match store.purge_response_states(now_ms(), batch).await {
                    Ok(n) => {
                        purged += n;
                        if n < batch as u64 {
                            break;
                        }
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "purging expired responses failed; retrying later");
                        break;
                    }
                }
            }
            if purged > 0 {
                tracing::debug!(purged, "purged expired responses");
            }
            tokio::time::sleep(every).await;
        }
    })
}
