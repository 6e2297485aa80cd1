//! `/admin/orgs/{org}/retention` and `/admin/orgs/{org}/data-policy` (owners): what is kept of
//! the org's requests and for how long, and which providers its requests may go to
//! (docs/retention.md, docs/data-policy.md); `DELETE /admin/orgs/{org}` (owners, the operator):
//! the org's personal data and content deleted, anonymised usage and the ledger kept
//! (docs/deletion.md).

use serde::Deserialize;
use serde_json::json;

use super::auth::{org_for, Action, Caller};
use super::{parse_body, AdminApi, AdminError, AdminResult, Reply};
use crate::retention::{RetentionMode, MAX_IP_RETENTION_DAYS, MAX_RETENTION_DAYS};
use crate::store::{Audit, DataPolicyUpdate, RetentionUpdate};

/// Most regions an org may list.
const MAX_REGIONS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchRetention {
    mode: Option<String>,
    retention_days: Option<i64>,
    ip_retention_days: Option<i64>,
    key_retention_override: Option<bool>,
}

fn in_range(field: &str, v: Option<i64>, max: i64) -> AdminResult<Option<i64>> {
    match v {
        Some(n) if !(0..=max).contains(&n) => Err(AdminError::bad_request(format!(
            "'{field}' must be between 0 and {max} (days)"
        ))),
        other => Ok(other),
    }
}

pub async fn retention(
    api: &AdminApi,
    caller: &Caller,
    org: &str,
    body: &[u8],
) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::OrgPolicy).await?;
    let body: PatchRetention = parse_body(body)?;
    let mode = match body.mode.as_deref() {
        None => None,
        Some(m) => Some(RetentionMode::parse(m).ok_or_else(|| {
            AdminError::bad_request(format!(
                "'mode' must be retain-all, metadata-only or zero (not '{m}')"
            ))
        })?),
    };
    let update = RetentionUpdate {
        mode,
        retention_days: in_range("retention_days", body.retention_days, MAX_RETENTION_DAYS)?,
        ip_retention_days: in_range(
            "ip_retention_days",
            body.ip_retention_days,
            MAX_IP_RETENTION_DAYS,
        )?,
        key_retention_override: body.key_retention_override,
    };
    if update == RetentionUpdate::default() {
        return Err(AdminError::bad_request(
            "nothing to change: give mode, retention_days, ip_retention_days or key_retention_override",
        ));
    }
    let entry =
        Audit::new(&caller.actor(), &org.id, "org.retention", &org.id).with_details(json!({
            "mode": update.mode.map(RetentionMode::as_str),
            "retention_days": update.retention_days,
            "ip_retention_days": update.ip_retention_days,
            "key_retention_override": update.key_retention_override,
        }));
    let org = api
        .store
        .update_org_retention(&org.id, &update, &entry)
        .await?;
    Ok(Reply(200, json!(org)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchDataPolicy {
    require_zdr: Option<bool>,
    deny_training: Option<bool>,
    allowed_regions: Option<Vec<String>>,
}

/// A region name as providers declare it: 1-32 of `a-z`, `0-9`, `-`.
fn valid_region(r: &str) -> bool {
    (1..=32).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub async fn data_policy(
    api: &AdminApi,
    caller: &Caller,
    org: &str,
    body: &[u8],
) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::OrgPolicy).await?;
    let body: PatchDataPolicy = parse_body(body)?;
    if let Some(regions) = &body.allowed_regions {
        if regions.len() > MAX_REGIONS {
            return Err(AdminError::bad_request(format!(
                "'allowed_regions' lists at most {MAX_REGIONS} regions"
            )));
        }
        if let Some(bad) = regions.iter().find(|r| !valid_region(r)) {
            return Err(AdminError::bad_request(format!(
                "'allowed_regions': '{bad}' is not a region name (1-32 of a-z, 0-9, -)"
            )));
        }
    }
    let update = DataPolicyUpdate {
        require_zdr: body.require_zdr,
        deny_training: body.deny_training,
        allowed_regions: body.allowed_regions.map(|mut r| {
            r.sort();
            r.dedup();
            r
        }),
    };
    if update == DataPolicyUpdate::default() {
        return Err(AdminError::bad_request(
            "nothing to change: give require_zdr, deny_training or allowed_regions",
        ));
    }
    let entry =
        Audit::new(&caller.actor(), &org.id, "org.data-policy", &org.id).with_details(json!({
            "require_zdr": update.require_zdr,
            "deny_training": update.deny_training,
            "allowed_regions": update.allowed_regions,
        }));
    let org = api
        .store
        .update_org_data_policy(&org.id, &update, &entry)
        .await?;
    Ok(Reply(200, json!(org)))
}

pub async fn delete(api: &AdminApi, caller: &Caller, org: &str) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::OrgDelete).await?;
    let entry = Audit::new(&caller.actor(), &org.id, Action::OrgDelete.name(), &org.id);
    let report = api.store.delete_org(&org.id, &entry).await?;
    Ok(Reply(200, json!(report)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn region_names() {
        assert!(super::valid_region("eu-west-1"));
        assert!(!super::valid_region("EU"));
        assert!(!super::valid_region(""));
        assert!(!super::valid_region("eu,us"));
    }
}
