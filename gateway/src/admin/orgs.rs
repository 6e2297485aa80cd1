//! `/admin/orgs`: list, create (operator), read, and change an org's rate limits (owner).

use serde::Deserialize;
use serde_json::json;

use super::auth::{check, org_for, Action, Caller};
use super::{parse_body, AdminApi, AdminError, AdminResult, Reply};
use crate::store::{Audit, OrgLimits};

/// A name for an org, member or key: 1 to 100 characters, no control characters.
pub(super) fn valid_name(what: &str, name: &str) -> AdminResult<()> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AdminError::bad_request(format!(
            "{what} must be 1 to 100 characters without control characters"
        )));
    }
    Ok(())
}

/// A limit from a body: 0 (none) or more.
pub(super) fn non_negative(field: &str, v: Option<i64>) -> AdminResult<Option<i64>> {
    match v {
        Some(n) if n < 0 => Err(AdminError::bad_request(format!(
            "'{field}' must be 0 (no limit) or more"
        ))),
        other => Ok(other),
    }
}

pub async fn list(api: &AdminApi, caller: &Caller) -> AdminResult<Reply> {
    check(caller, Action::OrgList)?;
    let orgs = match caller.member() {
        // A member sees its own org only.
        Some(m) => api.store.org(&m.org_id).await?.into_iter().collect(),
        None => api.store.orgs().await?,
    };
    Ok(Reply(200, json!({ "data": orgs })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrg {
    name: String,
}

pub async fn create(api: &AdminApi, caller: &Caller, body: &[u8]) -> AdminResult<Reply> {
    check(caller, Action::OrgCreate)?;
    let body: CreateOrg = parse_body(body)?;
    valid_name("'name'", &body.name)?;
    let org = api.store.create_org(&body.name).await?;
    // `create_org` commits on its own: the entry follows it.
    let entry = Audit::new(&caller.actor(), &org.id, Action::OrgCreate.name(), &org.id)
        .with_details(json!({ "name": org.name }));
    api.store.append_audit(&entry).await?;
    Ok(Reply(201, json!(org)))
}

pub async fn get(api: &AdminApi, caller: &Caller, org: &str) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::OrgRead).await?;
    Ok(Reply(200, json!(org)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchOrg {
    rpm_limit: Option<i64>,
    tpm_limit: Option<i64>,
    concurrency_limit: Option<i64>,
}

pub async fn patch(api: &AdminApi, caller: &Caller, org: &str, body: &[u8]) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::OrgLimits).await?;
    let body: PatchOrg = parse_body(body)?;
    let limits = OrgLimits {
        rpm_limit: non_negative("rpm_limit", body.rpm_limit)?,
        tpm_limit: non_negative("tpm_limit", body.tpm_limit)?,
        concurrency_limit: non_negative("concurrency_limit", body.concurrency_limit)?,
    };
    if limits == OrgLimits::default() {
        return Err(AdminError::bad_request(
            "nothing to change: give rpm_limit, tpm_limit or concurrency_limit",
        ));
    }
    let entry = Audit::new(&caller.actor(), &org.id, Action::OrgLimits.name(), &org.id)
        .with_details(json!({
            "rpm_limit": limits.rpm_limit,
            "tpm_limit": limits.tpm_limit,
            "concurrency_limit": limits.concurrency_limit,
        }));
    let org = api
        .store
        .update_org_limits(&org.id, &limits, &entry)
        .await?;
    Ok(Reply(200, json!(org)))
}
