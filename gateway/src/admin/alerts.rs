//! `/admin/orgs/{org}/alerts`: the org's low-balance alert (threshold, webhook, auto top-up),
//! read and set by owners and admins. The background sender is `crate::alerts`; the settings
//! live in `store/alerts.rs`. Amounts are USD in the body and micro-USD in the store, converted
//! as the credits commands do (`round(usd × 1e6)`).
//!
//! The webhook URL may carry a token of the receiver's (in its path or query), so the audit
//! entry records its host only.

use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{org_for, Action, Caller};
use super::{parse_body, AdminApi, AdminError, AdminResult, Reply};
use crate::store::{Audit, LowBalance};

/// The longest webhook URL accepted.
pub const MAX_WEBHOOK_CHARS: usize = 2048;
/// The largest amount: 1e9 USD (a typo guard, as for credit grants).
const MAX_USD: f64 = 1e9;

/// `usd` as micro-USD: finite, 0 to 1e9, rounded to the micro-USD.
pub(super) fn usd_to_micros(field: &str, usd: f64) -> AdminResult<i64> {
    if !usd.is_finite() || !(0.0..=MAX_USD).contains(&usd) {
        return Err(AdminError::bad_request(format!(
            "'{field}' must be a number of USD from 0 to {MAX_USD}"
        )));
    }
    Ok((usd * 1e6).round() as i64)
}

/// The host of an http:// or https:// URL of at most [`MAX_WEBHOOK_CHARS`]; the error never
/// repeats the URL (it may hold the receiver's token).
pub(super) fn webhook_host(url: &str) -> AdminResult<String> {
    let bad = || {
        AdminError::bad_request(format!(
            "'webhook' must be an http:// or https:// URL with a host, at most \
             {MAX_WEBHOOK_CHARS} characters"
        ))
    };
    if url.len() > MAX_WEBHOOK_CHARS {
        return Err(bad());
    }
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad());
    }
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(h.to_string()),
        _ => Err(bad()),
    }
}

fn describe(org_id: &str, s: &LowBalance) -> Value {
    let usd = |m: i64| m as f64 / 1e6;
    json!({
        "org_id": org_id,
        "enabled": s.threshold_micros > 0,
        "threshold_usd": usd(s.threshold_micros),
        "threshold_micros": s.threshold_micros,
        "webhook": (!s.webhook.is_empty()).then_some(&s.webhook),
        "auto_top_up_usd": usd(s.auto_top_up_micros),
        "auto_top_up_micros": s.auto_top_up_micros,
    })
}

pub async fn get(api: &AdminApi, caller: &Caller, org: &str) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::AlertsRead).await?;
    let settings = api.store.low_balance(&org.id).await?;
    Ok(Reply(200, describe(&org.id, &settings)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetAlert {
    threshold_usd: f64,
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    auto_top_up_usd: Option<f64>,
}

pub async fn put(api: &AdminApi, caller: &Caller, org: &str, body: &[u8]) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::AlertsWrite).await?;
    let body: SetAlert = parse_body(body)?;
    let threshold = usd_to_micros("threshold_usd", body.threshold_usd)?;
    let top_up = usd_to_micros("auto_top_up_usd", body.auto_top_up_usd.unwrap_or(0.0))?;
    let (settings, host) = if threshold == 0 {
        if body.threshold_usd > 0.0 {
            return Err(AdminError::bad_request(
                "'threshold_usd' must be 0 (no alert) or at least 0.000001",
            ));
        }
        // Cleared: nothing of the old alert is kept.
        let none = LowBalance {
            threshold_micros: 0,
            webhook: String::new(),
            auto_top_up_micros: 0,
        };
        (none, None)
    } else {
        let Some(webhook) = body.webhook.filter(|w| !w.is_empty()) else {
            return Err(AdminError::bad_request(
                "'webhook' is required when 'threshold_usd' is above 0",
            ));
        };
        let host = webhook_host(&webhook)?;
        let set = LowBalance {
            threshold_micros: threshold,
            webhook,
            auto_top_up_micros: top_up,
        };
        (set, Some(host))
    };
    api.store.set_low_balance(&org.id, &settings).await?;
    // `set_low_balance` commits on its own: the entry follows it.
    let entry = Audit::new(
        &caller.actor(),
        &org.id,
        Action::AlertsWrite.name(),
        &org.id,
    )
    .with_details(json!({
        "threshold_micros": settings.threshold_micros,
        "auto_top_up_micros": settings.auto_top_up_micros,
        "webhook_host": host,
        "cleared": settings.threshold_micros == 0,
    }));
    api.store.append_audit(&entry).await?;
    Ok(Reply(200, describe(&org.id, &settings)))
}
