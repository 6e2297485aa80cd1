//! `/admin/orgs/{org}/credits` (balance; grants are the operator's alone: money in) and
//! `/admin/orgs/{org}/usage` (recent usage records; restricted members see their keys' only).

use serde::Deserialize;
use serde_json::json;

use super::auth::{check, org_for, Access, Action, Caller};
use super::{parse_body, query_int, AdminApi, AdminError, AdminResult, Reply};
use crate::store::{now_ms, Audit};

/// The largest single grant: 1e9 USD (a typo guard, and far from i64 overflow).
const MAX_GRANT_MICROS: i64 = 1_000_000_000 * 1_000_000;
const DAY_MS: i64 = 86_400_000;

pub async fn balance(api: &AdminApi, caller: &Caller, org: &str) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::CreditsRead).await?;
    let balance = api.store.balance(&org.id).await?.unwrap_or(0);
    Ok(Reply(
        200,
        json!({ "org_id": org.id, "balance_micros": balance }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Grant {
    amount_micros: i64,
    /// Days until the credits expire (0: never).
    #[serde(default = "one_year")]
    expires_in_days: u32,
    #[serde(default)]
    memo: Option<String>,
}

fn one_year() -> u32 {
    365
}

pub async fn grant(api: &AdminApi, caller: &Caller, org: &str, body: &[u8]) -> AdminResult<Reply> {
    // Checked before the org is looked up: members learn nothing about other orgs this way,
    // since every member is refused whatever the org.
    check(caller, Action::CreditsGrant)?;
    let (org, _) = org_for(api, caller, org, Action::CreditsGrant).await?;
    let body: Grant = parse_body(body)?;
    if body.amount_micros <= 0 || body.amount_micros > MAX_GRANT_MICROS {
        return Err(AdminError::bad_request(format!(
            "'amount_micros' must be between 1 and {MAX_GRANT_MICROS}"
        )));
    }
    let memo = body
        .memo
        .unwrap_or_else(|| format!("{} grant", caller.actor()));
    if memo.chars().count() > 200 {
        return Err(AdminError::bad_request(
            "'memo' may be at most 200 characters",
        ));
    }
    let expires_at = match body.expires_in_days {
        0 => 0,
        d => now_ms() + i64::from(d) * DAY_MS,
    };
    api.store
        .add_credits(&org.id, body.amount_micros, expires_at, &memo)
        .await?;
    // `add_credits` commits on its own: the entry follows it.
    let entry = Audit::new(
        &caller.actor(),
        &org.id,
        Action::CreditsGrant.name(),
        &org.id,
    )
    .with_details(json!({
        "amount_micros": body.amount_micros, "expires_at": expires_at, "memo": memo,
    }));
    api.store.append_audit(&entry).await?;
    let balance = api.store.balance(&org.id).await?.unwrap_or(0);
    Ok(Reply(
        201,
        json!({
            "org_id": org.id, "granted_micros": body.amount_micros,
            "expires_at": expires_at, "balance_micros": balance,
        }),
    ))
}

pub async fn usage(api: &AdminApi, caller: &Caller, org: &str, query: &str) -> AdminResult<Reply> {
    let (org, reach) = org_for(api, caller, org, Action::UsageRead).await?;
    let limit = query_int(query, "limit")?.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(AdminError::bad_request("'limit' must be 1 to 1000"));
    }
    let data = match (reach, caller.member()) {
        (Access::Own, Some(m)) => api.store.member_usage(&org.id, &m.id, limit).await?,
        _ => api.store.usage(Some(&org.id), limit).await?,
    };
    Ok(Reply(200, json!({ "data": data })))
}
