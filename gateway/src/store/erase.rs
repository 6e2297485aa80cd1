//! Deleting an org (issue 10): in one transaction, everything that identifies the org, its
//! members and its keys, and every piece of content, is deleted; what billing and statistics
//! need stays, anonymised under a *tombstone* org (`del_...`, name `(deleted)`):
//!
//! - deleted: members (names, token hashes), API keys (names, prefixes, hashes), BYOK provider
//!   credentials, key spend counters, credit holds, Responses state, stored content, the org
//!   row itself (name, webhook URL, limits, policy);
//! - anonymised: usage rows (org → tombstone, key → `deleted`, client IP gone, never expire),
//!   ledger rows and the running account (moved to the tombstone; grants' free-text memos
//!   cleared), audit entries (erased through the trigger's one allowed update: actor, target
//!   and details replaced, time and action kept).
//!
//! Every key hash is announced (PostgreSQL NOTIFY at commit, this process's caches after), so
//! no replica accepts the org's keys once the deletion committed.

use std::time::Instant;

use serde::Serialize;
use sqlx::Row;

use super::audit::{write_audit, Audit};
use super::{db, new_id, now_ms, DbKind, Result, Store, StoreError};

/// What a deletion did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeletionReport {
    pub org_id: String,
    /// The anonymous org now owning the usage and ledger rows.
    pub tombstone: String,
    pub members: u64,
    pub api_keys: u64,
    pub provider_credentials: u64,
    pub key_spend: u64,
    pub credit_holds: u64,
    pub response_states: u64,
    pub request_content: u64,
    pub usage_rows_anonymised: u64,
    pub ledger_rows_kept: u64,
    pub audit_entries_erased: u64,
    pub elapsed_ms: u64,
}

impl Store {
    /// Deletes the org `org_id` (an id, not a name) as described above; `audit` is written
    /// under the tombstone (its org and target are replaced). NotFound when there is no such
    /// live org.
    pub async fn delete_org(&self, org_id: &str, audit: &Audit) -> Result<DeletionReport> {
        let started = Instant::now();
        let doing = "deleting an org";
        let _turn = self.write_turn().await;
        let mut tx = self.begin_write().await.map_err(db(doing))?;
        let exists = sqlx::query("SELECT id FROM orgs WHERE id = $1 AND deleted_at IS NULL")
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(doing))?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("org '{org_id}'")));
        }
        let tombstone = new_id("del");
        let now = now_ms();
        sqlx::query(
            "INSERT INTO orgs (id, name, retention_mode, retention_days, created_at, deleted_at) \
             VALUES ($1, '(deleted)', 'zero', 0, $2, $2)",
        )
        .bind(&tombstone)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db(doing))?;

        // Every key's hashes, announced before the rows go.
        let key_ids: Vec<String> = sqlx::query("SELECT id FROM api_keys WHERE org_id = $1")
            .bind(org_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(doing))?
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<std::result::Result<_, _>>()
            .map_err(db(doing))?;
        let mut hashes = Vec::new();
        for id in &key_ids {
            hashes.extend(self.announce_in(&mut tx, id).await?);
        }

        let mut report = DeletionReport {
            org_id: org_id.to_string(),
            tombstone: tombstone.clone(),
            ..DeletionReport::default()
        };
        // `$1` the org, `$2` the tombstone.
        let run = |sql: &'static str| {
            sqlx::query(sql)
                .bind(org_id.to_string())
                .bind(tombstone.clone())
        };
        let del = |sql: &'static str| sqlx::query(sql).bind(org_id.to_string());
        // Anonymised, kept.
        report.usage_rows_anonymised = run(
            "UPDATE usage_events SET org_id = $2, key_id = 'deleted', client_ip = NULL, \
               ip_expires_at = NULL, expires_at = NULL WHERE org_id = $1",
        )
        .execute(&mut *tx)
        .await
        .map_err(db(doing))?
        .rows_affected();
        report.ledger_rows_kept = run("UPDATE credit_ledger SET org_id = $2, \
               memo = CASE WHEN kind = 'charge' THEN memo ELSE '' END WHERE org_id = $1")
        .execute(&mut *tx)
        .await
        .map_err(db(doing))?
        .rows_affected();
        run("UPDATE credit_accounts SET org_id = $2 WHERE org_id = $1")
            .execute(&mut *tx)
            .await
            .map_err(db(doing))?;
        report.audit_entries_erased = run(
            "UPDATE audit_log SET org_id = $2, actor = 'erased', target = 'erased', details = '{}' \
             WHERE org_id = $1",
        )
        .execute(&mut *tx)
        .await
        .map_err(db(doing))?
        .rows_affected();

        // Deleted.
        report.key_spend = del(
            "DELETE FROM key_spend WHERE key_id IN (SELECT id FROM api_keys WHERE org_id = $1)",
        )
        .execute(&mut *tx)
        .await
        .map_err(db(doing))?
        .rows_affected();
        report.credit_holds = del("DELETE FROM credit_holds WHERE org_id = $1")
            .execute(&mut *tx)
            .await
            .map_err(db(doing))?
            .rows_affected();
        report.api_keys = del("DELETE FROM api_keys WHERE org_id = $1")
            .execute(&mut *tx)
            .await
            .map_err(db(doing))?
            .rows_affected();
        report.members = del("DELETE FROM members WHERE org_id = $1")
            .execute(&mut *tx)
            .await
            .map_err(db(doing))?
            .rows_affected();
        report.provider_credentials = del("DELETE FROM provider_credentials WHERE org_id = $1")
            .execute(&mut *tx)
            .await
            .map_err(db(doing))?
            .rows_affected();
        report.response_states = del("DELETE FROM response_states WHERE org_id = $1")
            .execute(&mut *tx)
            .await
            .map_err(db(doing))?
            .rows_affected();
        report.request_content = del("DELETE FROM request_content WHERE org_id = $1")
            .execute(&mut *tx)
            .await
            .map_err(db(doing))?
            .rows_affected();
        del("DELETE FROM orgs WHERE id = $1")
            .execute(&mut *tx)
            .await
            .map_err(db(doing))?;
        self.announce_org_in(&mut tx, org_id).await?;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        let mut entry = audit.clone().on(&tombstone);
        entry.org_id = tombstone.clone();
        // The counts only: the deleted org's id is exactly what must not survive.
        let counts = DeletionReport {
            org_id: String::new(),
            ..report.clone()
        };
        write_audit(
            &mut tx,
            &entry.with_details(serde_json::json!({ "report": counts })),
        )
        .await?;
        tx.commit().await.map_err(db(doing))?;
        if self.kind == DbKind::Sqlite {
            // secure_delete zeroed the deleted rows' pages in the WAL; the checkpoint writes
            // them into the file and empties the WAL, whose older frames still held them.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await
                .map_err(db("checkpointing after a deletion"))?;
        }
        drop(_turn);
        for h in hashes {
            let _ = self.key_changes.send(h);
        }
        let _ = self.key_changes.send(format!("org:{org_id}"));
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}
