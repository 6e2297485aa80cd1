//! How the management commands change things: through the admin API's router in-process, as
//! the `cli` actor, so the CLI gets the API's validation and writes the same audit entries.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use crate::admin::{AdminApi, Caller};
use crate::config::Config;
use crate::store::Store;

pub struct Admin {
    pub api: AdminApi,
}

impl Admin {
    /// The admin API over `store`, hashing with the gateway's key secret.
    pub fn new(config: &Config, store: &Store) -> Result<Admin> {
        let secret = config.key_secret().context("reading the key secret")?;
        Ok(Admin {
            // No BYOK cache here: gateways see changes within their cache's TTL.
            api: AdminApi::new(store.clone(), secret, None).with_byok(
                config.byok.clone(),
                config.providers.keys().cloned().collect(),
                None,
            ),
        })
    }

    pub fn store(&self) -> &Store {
        &self.api.store
    }

    /// Runs `method path?query` with a JSON body; an API error becomes the command's error.
    pub async fn call(&self, method: &str, path: &str, body: Value) -> Result<Value> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        self.api
            .call(&Caller::Cli, method, path, query, &body)
            .await
            .map_err(|e| anyhow!("{} ({})", e.message, e.status))
    }

    /// The org that key `key_id` belongs to (key commands take a key id alone).
    pub async fn org_of_key(&self, key_id: &str) -> Result<String> {
        Ok(self.store().key(key_id).await?.org_id)
    }
}

/// Formats ms since the epoch as `YYYY-MM-DD HH:MM` UTC (0: "-").
pub fn when(ms: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    crate::util::utc_minute(ms)
}

#[cfg(test)]
mod tests {
    #[test]
    fn when_formats_utc() {
        assert_eq!(super::when(0), "-");
        assert_eq!(super::when(1_779_571_980_000), "2026-05-23 21:33");
    }
}
