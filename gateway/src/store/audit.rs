//! The audit log of admin actions: who (`operator`, `cli`, `member:mem_…`), what (`key.revoke`),
//! on which org and target, when, and details that never include a secret.
//!
//! Append-only: this file has the only statements touching `audit_log`, and they are INSERTs
//! and SELECTs; both databases also carry triggers that refuse UPDATE and DELETE
//! (migration 0009). Changes made in a transaction write their entry in that same transaction
//! ([`write_audit`]); [`Store::append_audit`] is for changes made through a store function
//! that commits on its own (key creation, credit grants), written right after it.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{db, now_ms, Result, Store};

/// An entry to write: made by the admin layer, stamped with the time when written.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    pub actor: String,
    /// '' for actions outside any org.
    pub org_id: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
}

impl Audit {
    pub fn new(actor: &str, org_id: &str, action: &str, target: &str) -> Audit {
        Audit {
            actor: actor.to_string(),
            org_id: org_id.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Audit {
        self.details = details;
        self
    }

    /// The same entry naming another target (known only once the change made it).
    pub fn on(mut self, target: &str) -> Audit {
        self.target = target.to_string();
        self
    }
}

/// An entry as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub org_id: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
}

fn record_from(row: &AnyRow) -> std::result::Result<AuditRecord, sqlx::Error> {
    let details: String = row.try_get("details")?;
    Ok(AuditRecord {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        org_id: row.try_get("org_id")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        // Written by this file as JSON; kept readable even if someone wrote text by hand.
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
    })
}

/// Writes `entry` inside the caller's transaction, so it commits (or not) with the change.
pub(crate) async fn write_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entry: &Audit,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, org_id, action, target, details) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now_ms())
    .bind(&entry.actor)
    .bind(&entry.org_id)
    .bind(&entry.action)
    .bind(&entry.target)
    .bind(entry.details.to_string())
    .execute(&mut **tx)
    .await
    .map_err(db("writing the audit log"))?;
    Ok(())
}

impl Store {
    /// Writes one entry on its own (for changes committed by a function without a
    /// transaction parameter: the entry follows the change).
    pub async fn append_audit(&self, entry: &Audit) -> Result<()> {
        let _turn = self.write_turn().await;
        let mut tx = self
            .begin_write()
            .await
            .map_err(db("writing the audit log"))?;
        write_audit(&mut tx, entry).await?;
        tx.commit().await.map_err(db("writing the audit log"))
    }

    /// Entries newest first: of one org (or all with None), with ids below `before` (paging),
    /// at most `limit`.
    pub async fn audit_log(
        &self,
        org_id: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        let before = before.unwrap_or(i64::MAX);
        let rows = match org_id {
            Some(org) => sqlx::query(
                "SELECT * FROM audit_log WHERE org_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(org)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await,
            None => {
                sqlx::query("SELECT * FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2")
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(db("reading the audit log"))?;
        rows.iter()
            .map(record_from)
            .collect::<std::result::Result<_, _>>()
            .map_err(db("reading the audit log"))
    }
}
