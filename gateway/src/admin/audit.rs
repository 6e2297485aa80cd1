//! `GET /admin/orgs/{org}/audit`: the org's audit log, newest first, a page at a time
//! (`limit`, and `before` = the `next_before` of the previous page).

use serde_json::json;

use super::auth::{org_for, Action, Caller};
use super::{query_int, AdminApi, AdminError, AdminResult, Reply};

pub async fn list(api: &AdminApi, caller: &Caller, org: &str, query: &str) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::AuditRead).await?;
    let limit = query_int(query, "limit")?.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AdminError::bad_request("'limit' must be 1 to 500"));
    }
    let before = query_int(query, "before")?;
    let data = api.store.audit_log(Some(&org.id), before, limit).await?;
    // A full page may have more behind it.
    let next = (data.len() as i64 == limit)
        .then(|| data.last().map(|r| r.id))
        .flatten();
    Ok(Reply(200, json!({ "data": data, "next_before": next })))
}
