//! `/admin/orgs/{org}/byok`: an org's own provider keys (BYOK) and its BYOK mode, for owners
//! and admins. It validates what `tollgate byok` does (`crate::byok::cli`): the provider must be
//! one of the config's, the key must fit an HTTP header, it is sealed under the master key from
//! the config's `[byok]` settings (503 when none is loaded), and never under a master other than
//! the one the stored rows use (409).
//!
//! The provider key is in the request body and nowhere else: responses, errors, audit entries
//! and log lines carry its row's metadata only (id, provider, label, master key id). Its body is
//! therefore parsed here by hand, with messages that never quote a value. After a change this
//! process's BYOK cache drops the org; other processes see it within the cache's TTL (2 s).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::auth::{org_for, Action, Caller};
use super::{parse_body, AdminApi, AdminError, AdminResult, Reply};
use crate::byok::{check_secret, new_credential_id, ByokError, ByokKeys, ByokMode, MasterKey};
use crate::config::ByokSettings;
use crate::store::{Audit, Org};

/// The longest label (a note for people, not secret).
const MAX_LABEL_CHARS: usize = 200;

/// What the BYOK routes need from the process's configuration (see `AdminApi::with_byok`).
#[derive(Clone, Default)]
pub struct ByokSetup {
    /// Where the master key is loaded from (None: BYOK is not set up in this process).
    pub settings: Option<ByokSettings>,
    /// The provider names of the config: an org may store a key for these only.
    pub providers: Vec<String>,
    /// The gateway's cache of decrypted keys, dropped for an org after each change.
    pub cache: Option<Arc<ByokKeys>>,
}

fn unavailable(message: impl Into<String>) -> AdminError {
    AdminError::new(503, "service_unavailable_error", message)
}

impl AdminApi {
    /// Drops the org from this process's BYOK cache, if it has one.
    fn byok_changed(&self, org_id: &str) {
        if let Some(cache) = &self.byok.cache {
            cache.invalidate(org_id);
        }
    }

    /// The loaded master key, or 503 saying how to provide one.
    fn master_key(&self) -> AdminResult<MasterKey> {
        let Some(settings) = &self.byok.settings else {
            return Err(unavailable(
                "BYOK is not set up in this process: no [byok] settings were given to the \
                 admin API",
            ));
        };
        match MasterKey::load(settings) {
            Ok(Some(master)) => Ok(master),
            Ok(None) => Err(unavailable(format!(
                "no BYOK master key is loaded, so provider keys cannot be stored: set {} (32 \
                 bytes as base64 or 64 hex digits) or byok.master_key_file in the config, then \
                 restart the gateway",
                settings.master_key_env
            ))),
            // These errors name the source (env var or file), never the key.
            Err(e) => {
                tracing::error!(error = %e, "admin API: loading the BYOK master key");
                Err(unavailable(format!("the BYOK master key is unusable: {e}")))
            }
        }
    }
}

async fn describe(api: &AdminApi, org: &Org) -> AdminResult<Value> {
    let mode = api.store.byok_mode(&org.id).await?;
    let keys = api.store.provider_keys(&org.id).await?;
    Ok(json!({ "org_id": org.id, "mode": mode, "data": keys }))
}

pub async fn get(api: &AdminApi, caller: &Caller, org: &str) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::ByokRead).await?;
    Ok(Reply(200, describe(api, &org).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetMode {
    mode: String,
}

pub async fn set_mode(
    api: &AdminApi,
    caller: &Caller,
    org: &str,
    body: &[u8],
) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::ByokWrite).await?;
    let body: SetMode = parse_body(body)?;
    // Not quoted back: a key pasted into the wrong field must not come back in the answer.
    let mode = ByokMode::parse(&body.mode)
        .ok_or_else(|| AdminError::bad_request("'mode' must be prefer, fallback or only"))?;
    api.store.set_byok_mode(&org.id, mode).await?;
    api.byok_changed(&org.id);
    let entry = Audit::new(&caller.actor(), &org.id, Action::ByokWrite.name(), &org.id)
        .with_details(json!({ "change": "mode", "mode": mode }));
    api.store.append_audit(&entry).await?;
    Ok(Reply(200, describe(api, &org).await?))
}

/// The body of `PUT …/byok/{provider}`: the key (in a zeroized buffer) and the label.
fn key_body(body: &[u8]) -> AdminResult<(Zeroizing<String>, String)> {
    let shape = "the body must be a JSON object {\"key\": \"...\", \"label\": \"...\"}";
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|_| AdminError::bad_request(shape))?
    };
    let Value::Object(mut map) = value else {
        return Err(AdminError::bad_request(shape));
    };
    let key = match map.remove("key") {
        Some(Value::String(k)) => Zeroizing::new(k),
        Some(_) => return Err(AdminError::bad_request("'key' must be a string")),
        None => return Err(AdminError::bad_request("'key' is required")),
    };
    let label = match map.remove("label") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(l)) => l,
        Some(_) => return Err(AdminError::bad_request("'label' must be a string")),
    };
    if !map.is_empty() {
        // Not named: whatever was sent is not repeated.
        return Err(AdminError::bad_request(
            "unknown field in the body: only 'key' and 'label' are accepted",
        ));
    }
    if label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(AdminError::bad_request(format!(
            "'label' must be at most {MAX_LABEL_CHARS} characters without control characters"
        )));
    }
    Ok((key, label))
}

pub async fn put_key(
    api: &AdminApi,
    caller: &Caller,
    org: &str,
    provider: &str,
    body: &[u8],
) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::ByokWrite).await?;
    if !api.byok.providers.iter().any(|p| p == provider) {
        return Err(AdminError::bad_request(format!(
            "unknown provider '{provider}' (the config has: {})",
            api.byok.providers.join(", ")
        )));
    }
    let (secret, label) = key_body(body)?;
    check_secret(&secret).map_err(|e| AdminError::bad_request(e.to_string()))?;
    let master = api.master_key()?;
    // One master for every row, as `tollgate byok set` insists: a key sealed under another
    // master than the rest would be unreadable by a gateway holding the other one.
    for (id, n) in api.store.byok_master_ids().await? {
        if id != master.id() {
            return Err(AdminError::conflict(format!(
                "{n} provider key(s) are sealed under master key {id}, but the loaded master key \
                 is {}: load that master key, or rotate to this one first",
                master.id()
            )));
        }
    }
    let credential_id = new_credential_id();
    let sealed = master
        .seal(&org.id, provider, &credential_id, &secret)
        .map_err(|e| match e {
            ByokError::BadSecret(_) => AdminError::bad_request(e.to_string()),
            other => {
                tracing::error!(error = %other, "admin API: sealing a provider key");
                AdminError::new(500, "server_error", "sealing the provider key failed")
            }
        })?;
    drop(secret);
    let stored = api
        .store
        .put_provider_key(&org.id, provider, &label, &sealed)
        .await?;
    api.byok_changed(&org.id);
    // `put_provider_key` commits on its own: the entry follows it.
    let entry = Audit::new(&caller.actor(), &org.id, Action::ByokWrite.name(), &org.id)
        .with_details(json!({
            "change": "key.set", "provider": provider, "label": stored.label,
            "credential_id": stored.id, "master_key_id": stored.master_key_id,
        }));
    api.store.append_audit(&entry).await?;
    Ok(Reply(200, json!(stored)))
}

pub async fn delete_key(
    api: &AdminApi,
    caller: &Caller,
    org: &str,
    provider: &str,
) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::ByokWrite).await?;
    api.store.delete_provider_key(&org.id, provider).await?;
    api.byok_changed(&org.id);
    let entry = Audit::new(&caller.actor(), &org.id, Action::ByokWrite.name(), &org.id)
        .with_details(json!({ "change": "key.remove", "provider": provider }));
    api.store.append_audit(&entry).await?;
    Ok(Reply(200, json!({ "org_id": org.id, "removed": provider })))
}
