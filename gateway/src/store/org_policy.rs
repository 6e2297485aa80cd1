//! An org's retention (mode, periods, whether keys may choose their own mode) and data policy
//! (zero data retention, no training, regions), changed by owners (issue 10). Each change runs
//! in one transaction with its audit entry and is announced like an org's limits
//! (`tollgate_orgs` NOTIFY on PostgreSQL, this process's caches at once), so every replica
//! applies it to the org's next requests.

use super::audit::{write_audit, Audit};
use super::{db, DbKind, Org, Result, Store, StoreError};

/// Retention fields to change; None leaves one as it is (checked by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionUpdate {
    pub mode: Option<crate::retention::RetentionMode>,
    pub retention_days: Option<i64>,
    pub ip_retention_days: Option<i64>,
    pub key_retention_override: Option<bool>,
}

/// Data-policy fields to change; None leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataPolicyUpdate {
    pub require_zdr: Option<bool>,
    pub deny_training: Option<bool>,
    pub allowed_regions: Option<Vec<String>>,
}

/// A value bound into an org change's statement.
pub(super) enum Value {
    Int(i64),
    Text(String),
}

impl Store {
    pub async fn update_org_retention(
        &self,
        org_id: &str,
        u: &RetentionUpdate,
        audit: &Audit,
    ) -> Result<Org> {
        let mut sets = Vec::new();
        if let Some(m) = u.mode {
            sets.push(("retention_mode", Value::Text(m.as_str().to_string())));
        }
        if let Some(d) = u.retention_days {
            sets.push(("retention_days", Value::Int(d)));
        }
        if let Some(d) = u.ip_retention_days {
            sets.push(("ip_retention_days", Value::Int(d)));
        }
        if let Some(b) = u.key_retention_override {
            sets.push(("key_retention_override", Value::Int(i64::from(b))));
        }
        self.update_org_audited(org_id, sets, audit, "changing an org's retention")
            .await
    }

    pub async fn update_org_data_policy(
        &self,
        org_id: &str,
        u: &DataPolicyUpdate,
        audit: &Audit,
    ) -> Result<Org> {
        let mut sets = Vec::new();
        if let Some(b) = u.require_zdr {
            sets.push(("require_zdr", Value::Int(i64::from(b))));
        }
        if let Some(b) = u.deny_training {
            sets.push(("deny_training", Value::Int(i64::from(b))));
        }
        if let Some(r) = &u.allowed_regions {
            sets.push(("allowed_regions", Value::Text(r.join(","))));
        }
        self.update_org_audited(org_id, sets, audit, "changing an org's data policy")
            .await
    }

    /// Inside an org change's transaction: announces it to other replicas (PostgreSQL NOTIFY
    /// on `tollgate_orgs`, delivered at commit). This process's caches hear of it through
    /// `key_changes` once the caller committed.
    pub(super) async fn announce_org_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        org_id: &str,
    ) -> Result<()> {
        if self.kind == DbKind::Postgres {
            sqlx::query("SELECT pg_notify('tollgate_orgs', $1)")
                .bind(org_id)
                .execute(&mut **tx)
                .await
                .map_err(db("announcing an org change"))?;
        }
        Ok(())
    }

    /// Sets `columns` on a live (not tombstone) org with `audit`, announcing the change.
    pub(super) async fn update_org_audited(
        &self,
        org_id: &str,
        columns: Vec<(&'static str, Value)>,
        audit: &Audit,
        doing: &'static str,
    ) -> Result<Org> {
        if columns.is_empty() {
            return self
                .org(org_id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("org '{org_id}'")));
        }
        let sets: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!("{c} = ${}", i + 2))
            .collect();
        let sql = format!(
            "UPDATE orgs SET {} WHERE id = $1 AND deleted_at IS NULL",
            sets.join(", ")
        );
        let _turn = self.write_turn().await;
        let mut tx = self.begin_write().await.map_err(db(doing))?;
        let mut query = sqlx::query(&sql).bind(org_id);
        for (_, v) in columns {
            query = match v {
                Value::Int(i) => query.bind(i),
                Value::Text(t) => query.bind(t),
            };
        }
        let done = query.execute(&mut *tx).await.map_err(db(doing))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("org '{org_id}'")));
        }
        self.announce_org_in(&mut tx, org_id).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db(doing))?;
        let _ = self.key_changes.send(format!("org:{org_id}"));
        drop(_turn);
        self.org(org_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("org '{org_id}'")))
    }
}
