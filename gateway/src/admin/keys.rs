//! `/admin/orgs/{org}/keys`: list, create (plaintext shown once), read, change, revoke,
//! disable, enable and rotate (new plaintext once; the old secret works for a grace period).
//! Developers reach only keys that belong to them, restricted members only read theirs.

use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{org_for, Access, Action, Caller};
use super::members::own_only;
use super::orgs::{non_negative, valid_name};
use super::{parse_body, AdminApi, AdminError, AdminResult, Reply};
use crate::store::{now_ms, ApiKey, Audit, KeyScopes, KeyUpdate, NewKey, Org, SpendPeriod};

/// Client API names a key's `scopes.apis` may list.
pub const CLIENT_APIS: [&str; 4] = [
    "openai-chat",
    "anthropic-messages",
    "openai-responses",
    "openai-embeddings",
];

/// The longest grace period a rotation may give the old secret (30 days).
pub const MAX_GRACE_SECONDS: u64 = 30 * 86_400;

fn key_json(key: &ApiKey, member_id: Option<&str>) -> Value {
    let mut v = json!(key);
    v["member_id"] = json!(member_id);
    v
}

fn valid_scopes(scopes: &KeyScopes) -> AdminResult<()> {
    if let Some(bad) = scopes
        .apis
        .iter()
        .find(|a| !CLIENT_APIS.contains(&a.as_str()))
    {
        return Err(AdminError::bad_request(format!(
            "unknown client API '{bad}' in scopes.apis (one of {})",
            CLIENT_APIS.join(", ")
        )));
    }
    let empty = scopes
        .models
        .iter()
        .chain(&scopes.providers)
        .any(|s| s.trim().is_empty());
    if empty {
        return Err(AdminError::bad_request(
            "scopes may not contain empty names",
        ));
    }
    Ok(())
}

fn valid_expiry(expires_at: i64) -> AdminResult<()> {
    if expires_at < 0 || (expires_at != 0 && expires_at <= now_ms()) {
        return Err(AdminError::bad_request(
            "'expires_at' must be 0 (never) or a time in the future (ms since the epoch)",
        ));
    }
    Ok(())
}

/// The org's key `key_ref` with the member it belongs to, if `caller` may reach it for
/// `action` (a key of another org: 404).
async fn reach_key(
    api: &AdminApi,
    caller: &Caller,
    org: &str,
    key_ref: &str,
    action: Action,
) -> AdminResult<(Org, ApiKey, Option<String>)> {
    let (org, reach) = org_for(api, caller, org, action).await?;
    let key = match api.store.key(key_ref).await {
        Ok(k) if k.org_id == org.id => k,
        Ok(_) | Err(crate::store::StoreError::NotFound(_)) => {
            return Err(AdminError::not_found(format!("key '{key_ref}'")))
        }
        Err(e) => return Err(e.into()),
    };
    let member = api.store.key_member(&key.id).await?;
    if reach == Access::Own && member.as_deref() != caller.member().map(|m| m.id.as_str()) {
        return Err(own_only(caller, action));
    }
    Ok((org, key, member))
}

/// Refuses changes to a revoked key (409: revocation is final).
fn not_revoked(key: &ApiKey) -> AdminResult<()> {
    match key.revoked_at {
        Some(_) => Err(AdminError::conflict(format!(
            "key '{}' is revoked; revocation is final",
            key.id
        ))),
        None => Ok(()),
    }
}

pub async fn list(api: &AdminApi, caller: &Caller, org: &str) -> AdminResult<Reply> {
    let (org, reach) = org_for(api, caller, org, Action::KeyList).await?;
    let owners: std::collections::HashMap<String, Option<String>> =
        api.store.key_members(&org.id).await?.into_iter().collect();
    let me = caller.member().map(|m| m.id.clone());
    let data: Vec<Value> = api
        .store
        .keys(Some(&org.id))
        .await?
        .iter()
        .filter_map(|k| {
            let member = owners.get(&k.id).cloned().flatten();
            let visible = reach == Access::All || (member.is_some() && member == me);
            visible.then(|| key_json(k, member.as_deref()))
        })
        .collect();
    Ok(Reply(200, json!({ "data": data })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    #[serde(default = "default_name")]
    name: String,
    #[serde(default)]
    scopes: KeyScopes,
    #[serde(default)]
    expires_at: i64,
    #[serde(default)]
    spend_limit_micros: i64,
    spend_period: Option<SpendPeriod>,
    #[serde(default)]
    rpm_limit: i64,
    #[serde(default)]
    tpm_limit: i64,
    #[serde(default)]
    concurrency_limit: i64,
    /// The member the key belongs to (developers: themselves, the default for them).
    member_id: Option<String>,
}

fn default_name() -> String {
    "default".into()
}

pub async fn create(api: &AdminApi, caller: &Caller, org: &str, body: &[u8]) -> AdminResult<Reply> {
    let (org, reach) = org_for(api, caller, org, Action::KeyCreate).await?;
    let body: CreateKey = parse_body(body)?;
    valid_name("'name'", &body.name)?;
    valid_scopes(&body.scopes)?;
    valid_expiry(body.expires_at)?;
    for (field, v) in [
        ("spend_limit_micros", body.spend_limit_micros),
        ("rpm_limit", body.rpm_limit),
        ("tpm_limit", body.tpm_limit),
        ("concurrency_limit", body.concurrency_limit),
    ] {
        non_negative(field, Some(v))?;
    }
    let me = caller.member().map(|m| m.id.clone());
    let member_id = match (reach, body.member_id) {
        (Access::Own, Some(other)) if Some(&other) != me.as_ref() => {
            return Err(own_only(caller, Action::KeyCreate))
        }
        (Access::Own, _) => me,
        (_, Some(m)) => {
            let known = api.store.members(&org.id).await?.iter().any(|x| x.id == m);
            if !known {
                return Err(AdminError::bad_request(format!(
                    "'member_id': no member '{m}' in this org"
                )));
            }
            Some(m)
        }
        (_, None) => None,
    };
    let new = NewKey {
        name: body.name,
        scopes: body.scopes,
        expires_at: body.expires_at,
        spend_limit_micros: body.spend_limit_micros,
        spend_period: body.spend_period,
        rpm_limit: body.rpm_limit,
        tpm_limit: body.tpm_limit,
        concurrency_limit: body.concurrency_limit,
    };
    let entry =
        Audit::new(&caller.actor(), &org.id, Action::KeyCreate.name(), "").with_details(json!({
            "name": new.name, "member_id": member_id, "scopes": new.scopes,
            "expires_at": new.expires_at, "spend_limit_micros": new.spend_limit_micros,
            "spend_period": new.spend_period, "rpm_limit": new.rpm_limit,
            "tpm_limit": new.tpm_limit, "concurrency_limit": new.concurrency_limit,
        }));
    let (key, plaintext) = api
        .store
        .create_key_audited(&org.id, &new, member_id.as_deref(), api.secret(), &entry)
        .await?;
    Ok(Reply(
        201,
        json!({ "key": key_json(&key, member_id.as_deref()), "secret": plaintext }),
    ))
}

pub async fn get(api: &AdminApi, caller: &Caller, org: &str, key: &str) -> AdminResult<Reply> {
    let (_, key, member) = reach_key(api, caller, org, key, Action::KeyRead).await?;
    let mut v = key_json(&key, member.as_deref());
    v["spent_micros"] = json!(
        api.store
            .key_spent(&key.id, key.spend_period, now_ms())
            .await?
    );
    Ok(Reply(200, v))
}

pub async fn patch(
    api: &AdminApi,
    caller: &Caller,
    org: &str,
    key: &str,
    body: &[u8],
) -> AdminResult<Reply> {
    let (org, key, member) = reach_key(api, caller, org, key, Action::KeyUpdate).await?;
    not_revoked(&key)?;
    let update: KeyUpdate = parse_body(body)?;
    if update.is_empty() {
        return Err(AdminError::bad_request("nothing to change"));
    }
    if let Some(name) = &update.name {
        valid_name("'name'", name)?;
    }
    if let Some(scopes) = &update.scopes {
        valid_scopes(scopes)?;
    }
    if let Some(e) = update.expires_at {
        valid_expiry(e)?;
    }
    non_negative("spend_limit_micros", update.spend_limit_micros)?;
    non_negative("rpm_limit", update.rpm_limit)?;
    non_negative("tpm_limit", update.tpm_limit)?;
    non_negative("concurrency_limit", update.concurrency_limit)?;
    if let Some(mode) = update.retention_mode.as_deref() {
        if mode != "org" {
            if crate::retention::RetentionMode::parse(mode).is_none() {
                return Err(AdminError::bad_request(format!(
                    "'retention_mode' must be retain-all, metadata-only, zero or org (not '{mode}')"
                )));
            }
            if !org.key_retention_override {
                return Err(AdminError::conflict(
                    "this org does not let keys override its retention mode: an owner sets \
                     key_retention_override first (PATCH /admin/orgs/{org}/retention)",
                ));
            }
        }
    }
    let entry = Audit::new(&caller.actor(), &org.id, Action::KeyUpdate.name(), &key.id)
        .with_details(json!({
            "name": update.name, "scopes": update.scopes, "expires_at": update.expires_at,
            "spend_limit_micros": update.spend_limit_micros, "spend_period": update.spend_period,
            "rpm_limit": update.rpm_limit, "tpm_limit": update.tpm_limit,
            "concurrency_limit": update.concurrency_limit, "retention_mode": update.retention_mode,
        }));
    let key = api.store.update_key(&key.id, &update, &entry).await?;
    Ok(Reply(200, key_json(&key, member.as_deref())))
}

/// A body that must be empty (or `{}`): unknown fields are still named.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

pub async fn revoke(
    api: &AdminApi,
    caller: &Caller,
    org: &str,
    key: &str,
    body: &[u8],
) -> AdminResult<Reply> {
    let (org, key, member) = reach_key(api, caller, org, key, Action::KeyRevoke).await?;
    let NoFields {} = parse_body(body)?;
    not_revoked(&key)?;
    let entry = Audit::new(&caller.actor(), &org.id, Action::KeyRevoke.name(), &key.id)
        .with_details(json!({ "name": key.name, "prefix": key.prefix }));
    let key = api.store.revoke_key_audited(&key.id, &entry).await?;
    Ok(Reply(200, key_json(&key, member.as_deref())))
}

/// Disable (`disable` = true) or enable.
pub async fn disable(
    api: &AdminApi,
    caller: &Caller,
    org: &str,
    key: &str,
    disable: bool,
    body: &[u8],
) -> AdminResult<Reply> {
    let action = if disable {
        Action::KeyDisable
    } else {
        Action::KeyEnable
    };
    let (org, key, member) = reach_key(api, caller, org, key, action).await?;
    let NoFields {} = parse_body(body)?;
    not_revoked(&key)?;
    let entry = Audit::new(&caller.actor(), &org.id, action.name(), &key.id)
        .with_details(json!({ "name": key.name, "prefix": key.prefix }));
    let key = api.store.set_key_disabled(&key.id, disable, &entry).await?;
    Ok(Reply(200, key_json(&key, member.as_deref())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// How long the old secret keeps working (0: stops at once).
    #[serde(default)]
    grace_seconds: u64,
}

pub async fn rotate(
    api: &AdminApi,
    caller: &Caller,
    org: &str,
    key: &str,
    body: &[u8],
) -> AdminResult<Reply> {
    let (org, key, member) = reach_key(api, caller, org, key, Action::KeyRotate).await?;
    let body: Rotate = parse_body(body)?;
    if body.grace_seconds > MAX_GRACE_SECONDS {
        return Err(AdminError::bad_request(format!(
            "'grace_seconds' may be at most {MAX_GRACE_SECONDS} (30 days)"
        )));
    }
    not_revoked(&key)?;
    let entry = Audit::new(&caller.actor(), &org.id, Action::KeyRotate.name(), &key.id)
        .with_details(json!({ "grace_seconds": body.grace_seconds, "old_prefix": key.prefix }));
    let grace_ms = body.grace_seconds as i64 * 1000;
    let (key, plaintext) = api
        .store
        .rotate_key(&key.id, grace_ms, api.secret(), &entry)
        .await?;
    Ok(Reply(
        200,
        json!({ "key": key_json(&key, member.as_deref()), "secret": plaintext }),
    ))
}
