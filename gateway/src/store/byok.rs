//! BYOK rows: an org's provider keys as sealed by `crate::byok` (ciphertext, nonce, the master
//! key's id — never the key, nor any part or hash of it), the org's BYOK mode, and master-key
//! rotation, which re-seals every row in one transaction.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{db, now_ms, Result, Store, StoreError};
use crate::byok::{ByokError, ByokMode, MasterKey, Sealed};

/// A stored provider key without its secret: what listing shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderKey {
    pub id: String,
    pub org_id: String,
    pub provider: String,
    pub label: String,
    /// The master key it is sealed under (first 16 hex digits of the master's SHA-256).
    pub master_key_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What the request path needs of one org: its mode and its sealed keys by provider.
#[derive(Debug, Clone)]
pub struct ByokState {
    pub mode: ByokMode,
    pub keys: Vec<(String, Sealed)>,
}

/// What a master-key rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rotation {
    /// Rows re-sealed from the old master to the new one.
    pub resealed: usize,
    /// Rows already under the new master (a re-run after an interrupted rotation).
    pub skipped: usize,
}

fn sealed_from(row: &AnyRow) -> std::result::Result<Sealed, sqlx::Error> {
    Ok(Sealed {
        credential_id: row.try_get("id")?,
        ciphertext: row.try_get("ciphertext")?,
        nonce: row.try_get("nonce")?,
        master_key_id: row.try_get("master_key_id")?,
    })
}

fn key_from(row: &AnyRow) -> std::result::Result<ProviderKey, sqlx::Error> {
    Ok(ProviderKey {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        provider: row.try_get("provider")?,
        label: row.try_get("label")?,
        master_key_id: row.try_get("master_key_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn mode_from(stored: &str) -> std::result::Result<ByokMode, sqlx::Error> {
    // The column's CHECK allows only the three names; anything else is a decode error rather
    // than a silent default.
    ByokMode::parse(stored)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown byok_mode '{stored}'").into()))
}

impl Store {
    /// Stores the org's key for `provider` (replacing any previous one), sealed for the row
    /// `sealed.credential_id`. `org_id` must be the org's id, as sealed.
    pub async fn put_provider_key(
        &self,
        org_id: &str,
        provider: &str,
        label: &str,
        sealed: &Sealed,
    ) -> Result<ProviderKey> {
        if self.org(org_id).await?.is_none() {
            return Err(StoreError::NotFound(format!("org '{org_id}'")));
        }
        let now = now_ms();
        let _turn = self.write_turn().await;
        // A replacement takes the new row id too: the ciphertext is bound to it.
        let row = sqlx::query(
            "INSERT INTO provider_credentials (id, org_id, provider, label, ciphertext, nonce, \
               master_key_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (org_id, provider) DO UPDATE SET id = excluded.id, \
               label = excluded.label, ciphertext = excluded.ciphertext, nonce = excluded.nonce, \
               master_key_id = excluded.master_key_id, updated_at = excluded.updated_at \
             RETURNING id, org_id, provider, label, master_key_id, created_at, updated_at",
        )
        .bind(&sealed.credential_id)
        .bind(org_id)
        .bind(provider)
        .bind(label)
        .bind(&sealed.ciphertext)
        .bind(&sealed.nonce)
        .bind(&sealed.master_key_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db("storing a provider key"))?;
        key_from(&row).map_err(db("reading a provider key"))
    }

    /// The org's stored provider keys, without their secrets.
    pub async fn provider_keys(&self, org_id: &str) -> Result<Vec<ProviderKey>> {
        let rows = sqlx::query(
            "SELECT id, org_id, provider, label, master_key_id, created_at, updated_at \
             FROM provider_credentials WHERE org_id = $1 ORDER BY provider",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing provider keys"))?;
        rows.iter()
            .map(key_from)
            .collect::<std::result::Result<_, _>>()
            .map_err(db("reading provider keys"))
    }

    /// Deletes the org's key for `provider` (NotFound when it has none).
    pub async fn delete_provider_key(&self, org_id: &str, provider: &str) -> Result<()> {
        let _turn = self.write_turn().await;
        let done =
            sqlx::query("DELETE FROM provider_credentials WHERE org_id = $1 AND provider = $2")
                .bind(org_id)
                .bind(provider)
                .execute(&self.pool)
                .await
                .map_err(db("deleting a provider key"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "provider key for '{provider}' of org '{org_id}'"
            )));
        }
        Ok(())
    }

    /// The org's sealed key for `provider`, if it stored one.
    pub async fn sealed_provider_key(
        &self,
        org_id: &str,
        provider: &str,
    ) -> Result<Option<Sealed>> {
        let row = sqlx::query(
            "SELECT id, ciphertext, nonce, master_key_id FROM provider_credentials \
             WHERE org_id = $1 AND provider = $2",
        )
        .bind(org_id)
        .bind(provider)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a provider key"))?;
        row.as_ref()
            .map(sealed_from)
            .transpose()
            .map_err(db("reading a provider key"))
    }

    pub async fn set_byok_mode(&self, org_id: &str, mode: ByokMode) -> Result<()> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("UPDATE orgs SET byok_mode = $1 WHERE id = $2")
            .bind(mode.as_str())
            .bind(org_id)
            .execute(&self.pool)
            .await
            .map_err(db("setting a BYOK mode"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("org '{org_id}'")));
        }
        Ok(())
    }

    pub async fn byok_mode(&self, org_id: &str) -> Result<ByokMode> {
        let row = sqlx::query("SELECT byok_mode FROM orgs WHERE id = $1")
            .bind(org_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a BYOK mode"))?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("org '{org_id}'")));
        };
        let stored: String = row
            .try_get("byok_mode")
            .map_err(db("reading a BYOK mode"))?;
        mode_from(&stored).map_err(db("reading a BYOK mode"))
    }

    /// The org's mode and sealed keys in one query (None: no such org), for the request-path
    /// cache.
    pub async fn byok_state(&self, org_id: &str) -> Result<Option<ByokState>> {
        let rows = sqlx::query(
            "SELECT o.byok_mode, p.provider, p.id, p.ciphertext, p.nonce, p.master_key_id \
             FROM orgs o LEFT JOIN provider_credentials p ON p.org_id = o.id WHERE o.id = $1",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading an org's provider keys"))?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let read = db("reading an org's provider keys");
        let stored: String = match first.try_get("byok_mode") {
            Ok(s) => s,
            Err(e) => return Err(read(e)),
        };
        let mode = mode_from(&stored).map_err(db("reading a BYOK mode"))?;
        let mut keys = Vec::new();
        for row in &rows {
            let provider: Option<String> = row
                .try_get("provider")
                .map_err(db("reading an org's provider keys"))?;
            if let Some(provider) = provider {
                let sealed = sealed_from(row).map_err(db("reading an org's provider keys"))?;
                keys.push((provider, sealed));
            }
        }
        Ok(Some(ByokState { mode, keys }))
    }

    /// How many provider keys are sealed under each master key id.
    pub async fn byok_master_ids(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT master_key_id, CAST(COUNT(*) AS BIGINT) AS n FROM provider_credentials \
             GROUP BY master_key_id ORDER BY master_key_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("counting provider keys"))?;
        rows.iter()
            .map(|r| Ok((r.try_get("master_key_id")?, r.try_get("n")?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(db("counting provider keys"))
    }

    /// Re-seals every provider key from `old` to `new` in one transaction: all rows or none.
    /// Rows already under `new` are skipped, so a re-run after an interrupted rotation is safe;
    /// a row under any other master, or one that does not open, aborts the whole rotation.
    pub async fn rotate_provider_keys(
        &self,
        old: &MasterKey,
        new: &MasterKey,
    ) -> std::result::Result<Rotation, ByokError> {
        let _turn = self.write_turn().await;
        let mut tx = self
            .begin_write()
            .await
            .map_err(db("starting a master-key rotation"))?;
        // Write first: SQLite takes its write lock now (waiting in its busy handler) rather
        // than failing to upgrade a read snapshot later; PostgreSQL locks the rows to re-seal.
        sqlx::query(
            "UPDATE provider_credentials SET updated_at = updated_at WHERE master_key_id = $1",
        )
        .bind(old.id())
        .execute(&mut *tx)
        .await
        .map_err(db("locking provider keys"))?;
        let rows = sqlx::query(
            "SELECT id, org_id, provider, ciphertext, nonce, master_key_id \
             FROM provider_credentials ORDER BY org_id, provider",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db("reading provider keys to rotate"))?;
        let mut done = Rotation::default();
        let now = now_ms();
        for row in &rows {
            let sealed = sealed_from(row).map_err(db("reading provider keys to rotate"))?;
            if sealed.master_key_id == new.id() {
                done.skipped += 1;
                continue;
            }
            let org_id: String = row
                .try_get("org_id")
                .map_err(db("reading a provider key"))?;
            let provider: String = row
                .try_get("provider")
                .map_err(db("reading a provider key"))?;
            // Dropping `tx` on an error rolls every row back.
            let secret = old.open(&org_id, &provider, &sealed)?;
            let resealed = new.seal(&org_id, &provider, &sealed.credential_id, secret.expose())?;
            sqlx::query(
                "UPDATE provider_credentials SET ciphertext = $1, nonce = $2, master_key_id = $3, \
                 updated_at = $4 WHERE id = $5 AND master_key_id = $6",
            )
            .bind(&resealed.ciphertext)
            .bind(&resealed.nonce)
            .bind(&resealed.master_key_id)
            .bind(now)
            .bind(&sealed.credential_id)
            .bind(old.id())
            .execute(&mut *tx)
            .await
            .map_err(db("re-sealing a provider key"))?;
            done.resealed += 1;
        }
        tx.commit()
            .await
            .map_err(db("committing a master-key rotation"))?;
        Ok(done)
    }
}
