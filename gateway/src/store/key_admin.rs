//! Changes to API keys made by admins: name, scopes, limits, expiry, disable and enable, revoke,
//! rotation with a grace period, and which member a key belongs to.
//!
//! Each change runs in one transaction with its audit entry and announces the key's hashes
//! through [`Store::announce_in`] (PostgreSQL NOTIFY at commit; this process's caches right
//! after), so no gateway keeps using a stale record.

use serde::Deserialize;
use sqlx::Row;

use super::audit::{write_audit, Audit};
use super::keys::new_secret;
use super::{db, now_ms, ApiKey, KeyScopes, NewKey, Result, SpendPeriod, Store, StoreError};

/// Fields to change on a key; None leaves one as it is. Limits: 0 = none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUpdate {
    pub name: Option<String>,
    pub scopes: Option<KeyScopes>,
    /// ms since the epoch; 0 = never.
    pub expires_at: Option<i64>,
    pub spend_limit_micros: Option<i64>,
    pub spend_period: Option<SpendPeriod>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub concurrency_limit: Option<i64>,
    /// The key's own retention mode (`retain-all`, `metadata-only`, `zero`), or `org` for the
    /// org's; honoured only while the org allows key overrides.
    pub retention_mode: Option<String>,
}

impl KeyUpdate {
    pub fn is_empty(&self) -> bool {
        *self == KeyUpdate::default()
    }
}

/// A value bound into a key change's statement.
enum Bind {
    Int(i64),
    Text(String),
}

impl Store {
    /// Runs `sql` (`$1` = now, `$2` = key id, then `binds` from `$3`) on an unrevoked key, with
    /// `audit`, and announces the key's hashes from before and after the change (a rotation
    /// replaces the previous hash, whose cached record must go too).
    async fn change_key_audited(
        &self,
        key_id: &str,
        sql: &str,
        binds: Vec<Bind>,
        audit: &Audit,
        doing: &'static str,
    ) -> Result<ApiKey> {
        let now = now_ms();
        let _turn = self.write_turn().await;
        let mut tx = self.begin_write().await.map_err(db(doing))?;
        let mut hashes = self.announce_in(&mut tx, key_id).await?;
        let mut query = sqlx::query(sql).bind(now).bind(key_id);
        for b in binds {
            query = match b {
                Bind::Int(i) => query.bind(i),
                Bind::Text(s) => query.bind(s),
            };
        }
        let done = query.execute(&mut *tx).await.map_err(db(doing))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("active key '{key_id}'")));
        }
        hashes.extend(self.announce_in(&mut tx, key_id).await?);
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db(doing))?;
        for h in hashes {
            let _ = self.key_changes.send(h);
        }
        drop(_turn);
        self.key(key_id).await
    }

    /// Changes the fields set in `update`.
    pub async fn update_key(
        &self,
        key_id: &str,
        update: &KeyUpdate,
        audit: &Audit,
    ) -> Result<ApiKey> {
        let mut sets = vec!["updated_at = $1".to_string()];
        let mut binds = Vec::new();
        let mut set = |column: &str, value: Bind| {
            binds.push(value);
            sets.push(format!("{column} = ${}", binds.len() + 2));
        };
        if let Some(name) = &update.name {
            set("name", Bind::Text(name.clone()));
        }
        if let Some(scopes) = &update.scopes {
            set("scopes", Bind::Text(scopes.to_stored()));
        }
        if let Some(v) = update.expires_at {
            set("expires_at", Bind::Int(v.max(0)));
        }
        if let Some(v) = update.spend_limit_micros {
            set("spend_limit_micros", Bind::Int(v.max(0)));
        }
        if let Some(p) = update.spend_period {
            set("spend_period", Bind::Text(p.as_str().to_string()));
        }
        if let Some(v) = update.rpm_limit {
            set("rpm_limit", Bind::Int(v.max(0)));
        }
        if let Some(v) = update.tpm_limit {
            set("tpm_limit", Bind::Int(v.max(0)));
        }
        if let Some(v) = update.concurrency_limit {
            set("concurrency_limit", Bind::Int(v.max(0)));
        }
        match update.retention_mode.as_deref() {
            None => {}
            Some("org") => sets.push("retention_mode = NULL".to_string()),
            // Checked by the caller (the admin API); a value this build cannot read would
            // fall back to the org's mode (`key_from`).
            Some(mode) => {
                binds.push(Bind::Text(mode.to_string()));
                sets.push(format!("retention_mode = ${}", binds.len() + 2));
            }
        }
        let sql = format!(
            "UPDATE api_keys SET {} WHERE id = $2 AND revoked_at IS NULL",
            sets.join(", ")
        );
        self.change_key_audited(key_id, &sql, binds, audit, "updating a key")
            .await
    }

    /// Disables (`true`) or enables a key; a disabled key is refused until enabled again.
    pub async fn set_key_disabled(
        &self,
        key_id: &str,
        disabled: bool,
        audit: &Audit,
    ) -> Result<ApiKey> {
        let sql = if disabled {
            "UPDATE api_keys SET disabled_at = COALESCE(disabled_at, $1), updated_at = $1 \
             WHERE id = $2 AND revoked_at IS NULL"
        } else {
            "UPDATE api_keys SET disabled_at = NULL, updated_at = $1 \
             WHERE id = $2 AND revoked_at IS NULL"
        };
        self.change_key_audited(key_id, sql, Vec::new(), audit, "disabling a key")
            .await
    }

    /// Revokes a key for good.
    pub async fn revoke_key_audited(&self, key_id: &str, audit: &Audit) -> Result<ApiKey> {
        self.change_key_audited(
            key_id,
            "UPDATE api_keys SET revoked_at = $1, updated_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            Vec::new(),
            audit,
            "revoking a key",
        )
        .await
    }

    /// Gives a key a new secret (returned, not stored); the old one keeps working for
    /// `grace_ms`, then is refused. A secret from an earlier rotation stops at once.
    pub async fn rotate_key(
        &self,
        key_id: &str,
        grace_ms: i64,
        secret: &[u8],
        audit: &Audit,
    ) -> Result<(ApiKey, String)> {
        let plaintext = new_secret();
        let hash = crate::keys::keyed_hash(secret, &plaintext);
        let key = self
            .change_key_audited(
                key_id,
                "UPDATE api_keys SET previous_hash = key_hash, previous_expires_at = $1 + $3, \
                   key_hash = $4, prefix = $5, updated_at = $1 \
                 WHERE id = $2 AND revoked_at IS NULL",
                vec![
                    Bind::Int(grace_ms.max(0)),
                    Bind::Text(hash),
                    Bind::Text(plaintext[..10].to_string()),
                ],
                audit,
                "rotating a key",
            )
            .await?;
        Ok((key, plaintext))
    }

    /// Creates a key belonging to `member_id` (None: the org's). The key is inserted by
    /// [`Store::create_key_with`]; its owner and the audit entry follow in one transaction
    /// right after.
    pub async fn create_key_audited(
        &self,
        org_id: &str,
        new: &NewKey,
        member_id: Option<&str>,
        secret: &[u8],
        audit: &Audit,
    ) -> Result<(ApiKey, String)> {
        let (key, plaintext) = self.create_key_with(org_id, new, secret).await?;
        let _turn = self.write_turn().await;
        let mut tx = self.begin_write().await.map_err(db("creating a key"))?;
        if let Some(member) = member_id {
            sqlx::query("UPDATE api_keys SET member_id = $1 WHERE id = $2")
                .bind(member)
                .bind(&key.id)
                .execute(&mut *tx)
                .await
                .map_err(db("creating a key"))?;
        }
        write_audit(&mut tx, &audit.clone().on(&key.id)).await?;
        tx.commit().await.map_err(db("creating a key"))?;
        Ok((key, plaintext))
    }

    /// The member a key belongs to (None: the org's own key).
    pub async fn key_member(&self, key_id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT member_id FROM api_keys WHERE id = $1")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a key's member"))?;
        match row {
            Some(r) => r.try_get("member_id").map_err(db("reading a key's member")),
            None => Err(StoreError::NotFound(format!("key '{key_id}'"))),
        }
    }

    /// Ids of the keys of `org_id` that belong to each member: (key id, member id or None).
    pub async fn key_members(&self, org_id: &str) -> Result<Vec<(String, Option<String>)>> {
        let rows = sqlx::query("SELECT id, member_id FROM api_keys WHERE org_id = $1")
            .bind(org_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading keys' members"))?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("member_id")?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(db("reading keys' members"))
    }

    /// The most recent usage records, newest first, of the keys belonging to `member_id`. The
    /// record reads go through [`Store::usage_event`] one by one: this serves an admin page of
    /// at most a few hundred rows, and keeps the record's columns defined in one place.
    pub async fn member_usage(
        &self,
        org_id: &str,
        member_id: &str,
        limit: i64,
    ) -> Result<Vec<super::UsageEvent>> {
        self.usage_for_member(org_id, member_id, limit).await
    }
}
