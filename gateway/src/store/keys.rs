//! API keys as stored: a keyed hash and a visible prefix (the plaintext is shown once, at
//! creation or rotation), scopes, a spend limit over a period, rate limits, disable, revoke and
//! rotation with a grace period for the previous secret.
//!
//! Every change to a key is announced on [`Store::key_changes`] (this process) and, on
//! PostgreSQL, with `pg_notify('tollgate_keys', key_hash)` in the same transaction, so the
//! gateway's key caches on every replica drop the record at once (see `services.rs`).

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::periods::SpendPeriod;
use super::{db, new_id, now_ms, DbKind, Result, Store, StoreError};

/// What a key may be used for. An empty list allows everything of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyScopes {
    /// Model names as clients send them (`*` at the end matches a prefix: `gpt-4o*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Provider names from the config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Client APIs: `openai-chat`, `anthropic-messages`, `openai-responses`, `openai-embeddings`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apis: Vec<String>,
}

impl KeyScopes {
    /// Parses the stored form ('' = no restriction).
    pub fn parse(stored: &str) -> std::result::Result<KeyScopes, String> {
        if stored.trim().is_empty() {
            return Ok(KeyScopes::default());
        }
        serde_json::from_str(stored).map_err(|e| format!("invalid key scopes: {e}"))
    }

    /// The stored form.
    pub fn to_stored(&self) -> String {
        if self.is_unrestricted() {
            String::new()
        } else {
            serde_json::to_string(self).unwrap_or_default()
        }
    }

    pub fn is_unrestricted(&self) -> bool {
        self.models.is_empty() && self.providers.is_empty() && self.apis.is_empty()
    }

    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| pattern_matches(m, model))
    }

    pub fn allows_provider(&self, provider: &str) -> bool {
        self.providers.is_empty() || self.providers.iter().any(|p| p == provider)
    }

    pub fn allows_api(&self, api: &str) -> bool {
        self.apis.is_empty() || self.apis.iter().any(|a| a == api)
    }
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub prefix: String,
    #[serde(skip_serializing)]
    pub key_hash: String,
    pub scopes: KeyScopes,
    pub created_at: i64,
    /// ms since the epoch; 0 = never.
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub disabled_at: Option<i64>,
    /// 0 = no limit.
    pub spend_limit_micros: i64,
    pub spend_period: SpendPeriod,
    pub rpm_limit: i64,
    pub tpm_limit: i64,
    pub concurrency_limit: i64,
    /// After a rotation: the previous secret's hash, valid until `previous_expires_at`.
    #[serde(skip_serializing)]
    pub previous_hash: Option<String>,
    pub previous_expires_at: i64,
    pub updated_at: i64,
    /// The key's own retention mode (None: the org's), honoured when the org allows it.
    pub retention_mode: Option<crate::retention::RetentionMode>,
}

impl ApiKey {
    /// Why the key cannot be used at `now_ms` through the secret hashing to `presented_hash`,
    /// or None when it can.
    pub fn refusal(&self, presented_hash: &str, now_ms: i64) -> Option<&'static str> {
        if self.revoked_at.is_some() {
            return Some("This API key has been revoked.");
        }
        if self.disabled_at.is_some() {
            return Some("This API key is disabled.");
        }
        if self.expires_at != 0 && now_ms >= self.expires_at {
            return Some("This API key has expired.");
        }
        if presented_hash != self.key_hash && now_ms >= self.previous_expires_at {
            return Some("This API key has been rotated; use the new secret.");
        }
        None
    }
}

/// What a new key is created with (limits 0 = none).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    #[serde(default)]
    pub scopes: KeyScopes,
    #[serde(default)]
    pub expires_at: i64,
    #[serde(default)]
    pub spend_limit_micros: i64,
    #[serde(default)]
    pub spend_period: Option<SpendPeriod>,
    #[serde(default)]
    pub rpm_limit: i64,
    #[serde(default)]
    pub tpm_limit: i64,
    #[serde(default)]
    pub concurrency_limit: i64,
}

pub(super) fn key_from(row: &AnyRow) -> std::result::Result<ApiKey, sqlx::Error> {
    let scopes: String = row.try_get("scopes")?;
    let period: String = row.try_get("spend_period")?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        key_hash: row.try_get("key_hash")?,
        // A stored value this build cannot read allows nothing rather than everything.
        scopes: KeyScopes::parse(&scopes).unwrap_or_else(|_| KeyScopes {
            apis: vec!["-".into()],
            ..KeyScopes::default()
        }),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        disabled_at: row.try_get("disabled_at")?,
        spend_limit_micros: row.try_get("spend_limit_micros")?,
        spend_period: SpendPeriod::parse(&period).unwrap_or(SpendPeriod::Total),
        rpm_limit: row.try_get("rpm_limit")?,
        tpm_limit: row.try_get("tpm_limit")?,
        concurrency_limit: row.try_get("concurrency_limit")?,
        previous_hash: row.try_get("previous_hash")?,
        previous_expires_at: row.try_get("previous_expires_at")?,
        updated_at: row.try_get("updated_at")?,
        // An unreadable stored mode falls back to the org's rather than failing the key.
        retention_mode: row
            .try_get::<Option<String>, _>("retention_mode")?
            .as_deref()
            .and_then(crate::retention::RetentionMode::parse),
    })
}

/// A new secret: `tg-` and 48 hex digits.
pub(super) fn new_secret() -> String {
    let mut raw = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut raw);
    format!("tg-{}", hex::encode(raw))
}

impl Store {
    /// Creates a key and returns it with its plaintext, which is not stored anywhere.
    pub async fn create_key_with(
        &self,
        org_id: &str,
        new: &NewKey,
        secret: &[u8],
    ) -> Result<(ApiKey, String)> {
        let org = self.find_org(org_id).await?;
        let plaintext = new_secret();
        let now = now_ms();
        let key = ApiKey {
            id: new_id("key"),
            org_id: org.id,
            name: new.name.clone(),
            prefix: plaintext[..10].to_string(),
            key_hash: crate::keys::keyed_hash(secret, &plaintext),
            scopes: new.scopes.clone(),
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
            disabled_at: None,
            spend_limit_micros: new.spend_limit_micros.max(0),
            spend_period: new.spend_period.unwrap_or(SpendPeriod::Total),
            rpm_limit: new.rpm_limit.max(0),
            tpm_limit: new.tpm_limit.max(0),
            concurrency_limit: new.concurrency_limit.max(0),
            previous_hash: None,
            previous_expires_at: 0,
            updated_at: now,
            retention_mode: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, org_id, name, prefix, key_hash, scopes, created_at, expires_at, \
               spend_limit_micros, spend_period, rpm_limit, tpm_limit, concurrency_limit, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&key.id)
        .bind(&key.org_id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_hash)
        .bind(key.scopes.to_stored())
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.spend_limit_micros)
        .bind(key.spend_period.as_str())
        .bind(key.rpm_limit)
        .bind(key.tpm_limit)
        .bind(key.concurrency_limit)
        .bind(key.updated_at)
        .execute(&self.pool)
        .await
        .map_err(db("creating a key"))?;
        Ok((key, plaintext))
    }

    /// Creates an unrestricted key (the CLI's and tests' short form).
    pub async fn create_key(
        &self,
        org_id: &str,
        name: &str,
        secret: &[u8],
        expires_at: i64,
    ) -> Result<(ApiKey, String)> {
        let new = NewKey {
            name: name.to_string(),
            expires_at,
            ..NewKey::default()
        };
        self.create_key_with(org_id, &new, secret).await
    }

    pub async fn revoke_key(&self, key_id: &str) -> Result<()> {
        let now = now_ms();
        self.change_key(
            key_id,
            "UPDATE api_keys SET revoked_at = $1, updated_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            now,
            "revoking a key",
        )
        .await
    }

    /// Runs one `UPDATE` of a key (`$1` = now, `$2` = key id) and announces the change.
    pub(crate) async fn change_key(
        &self,
        key_id: &str,
        sql: &str,
        now: i64,
        doing: &'static str,
    ) -> Result<()> {
        let mut tx = self.begin_write().await.map_err(db(doing))?;
        let done = sqlx::query(sql)
            .bind(now)
            .bind(key_id)
            .execute(&mut *tx)
            .await
            .map_err(db(doing))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("active key '{key_id}'")));
        }
        let hashes = self.announce_in(&mut tx, key_id).await?;
        tx.commit().await.map_err(db(doing))?;
        for h in hashes {
            let _ = self.key_changes.send(h);
        }
        Ok(())
    }

    /// Inside a key change's transaction: the key's hashes (current and previous), announced
    /// to other replicas with `pg_notify` (delivered at commit) and returned for this process.
    pub(crate) async fn announce_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        key_id: &str,
    ) -> Result<Vec<String>> {
        let row = sqlx::query("SELECT key_hash, previous_hash FROM api_keys WHERE id = $1")
            .bind(key_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db("reading a key's hashes"))?;
        let Some(row) = row else {
            return Ok(Vec::new());
        };
        let mut hashes: Vec<String> = vec![row.try_get("key_hash").map_err(db("reading a key"))?];
        if let Some(prev) = row
            .try_get::<Option<String>, _>("previous_hash")
            .map_err(db("reading a key"))?
        {
            hashes.push(prev);
        }
        if self.kind == DbKind::Postgres {
            for h in &hashes {
                sqlx::query("SELECT pg_notify('tollgate_keys', $1)")
                    .bind(h)
                    .execute(&mut **tx)
                    .await
                    .map_err(db("announcing a key change"))?;
            }
        }
        Ok(hashes)
    }

    /// The key whose current secret, or previous secret within its grace period, hashes to
    /// `key_hash` (the caller checks [`ApiKey::refusal`]).
    pub async fn key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = $1 OR previous_hash = $1")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("looking up a key"))?;
        row.as_ref()
            .map(key_from)
            .transpose()
            .map_err(db("reading a key"))
    }

    pub async fn key(&self, key_id: &str) -> Result<ApiKey> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a key"))?;
        match row {
            Some(r) => key_from(&r).map_err(db("reading a key")),
            None => Err(StoreError::NotFound(format!("key '{key_id}'"))),
        }
    }

    pub async fn keys(&self, org_id: Option<&str>) -> Result<Vec<ApiKey>> {
        let rows = match org_id {
            Some(org) => {
                sqlx::query("SELECT * FROM api_keys WHERE org_id = $1 ORDER BY created_at")
                    .bind(org)
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM api_keys ORDER BY created_at")
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(db("listing keys"))?;
        rows.iter()
            .map(key_from)
            .collect::<std::result::Result<_, _>>()
            .map_err(db("reading keys"))
    }

    /// What the key spent in the period containing `now_ms` (settled charges only).
    pub async fn key_spent(&self, key_id: &str, period: SpendPeriod, now_ms: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE((SELECT spent_micros FROM key_spend WHERE key_id = $1 \
               AND period = $2 AND period_start = $3), 0) AS BIGINT) AS spent",
        )
        .bind(key_id)
        .bind(period.counter())
        .bind(period.start(now_ms))
        .fetch_one(&self.pool)
        .await
        .map_err(db("reading a key's spend"))?;
        row.try_get("spent").map_err(db("reading a key's spend"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_match() {
        assert!(KeyScopes::parse("").unwrap().is_unrestricted());
        let s = KeyScopes {
            models: vec!["gpt-4o*".into(), "claude-x".into()],
            providers: vec![],
            apis: vec!["openai-chat".into()],
        };
        let back = KeyScopes::parse(&s.to_stored()).unwrap();
        assert_eq!(back, s);
        assert!(s.allows_model("gpt-4o-mini") && s.allows_model("claude-x"));
        assert!(!s.allows_model("claude-xy") && !s.allows_model("gpt-4"));
        assert!(s.allows_provider("any"));
        assert!(s.allows_api("openai-chat") && !s.allows_api("anthropic-messages"));
        assert!(KeyScopes::parse("{\"modles\":[]}").is_err());
    }
}
