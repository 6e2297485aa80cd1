//! `/admin/orgs/{org}/members`: list, add (the token is shown once), change a role, remove,
//! and issue a new token. Only owners touch owners; an org keeps at least one owner.

use serde::Deserialize;
use serde_json::json;

use super::auth::{check, org_for, Access, Action, Caller};
use super::orgs::valid_name;
use super::{parse_body, AdminApi, AdminError, AdminResult, Reply};
use crate::store::{Audit, Member, Org, OwnerGuard, Role};

/// The org's member with this id, else with this name (404 otherwise, also for another org's
/// member).
async fn find(api: &AdminApi, org: &Org, member_ref: &str) -> AdminResult<Member> {
    let members = api.store.members(&org.id).await?;
    let by_id = members.iter().position(|m| m.id == member_ref);
    let at = by_id.or_else(|| members.iter().position(|m| m.name == member_ref));
    match at {
        Some(i) => Ok(members[i].clone()),
        None => Err(AdminError::not_found(format!("member '{member_ref}'"))),
    }
}

fn last_owner() -> AdminError {
    AdminError::conflict(
        "the org's last owner cannot be removed or demoted; make another owner first",
    )
}

pub async fn list(api: &AdminApi, caller: &Caller, org: &str) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::MemberList).await?;
    Ok(Reply(
        200,
        json!({ "data": api.store.members(&org.id).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    name: String,
    role: Role,
}

pub async fn add(api: &AdminApi, caller: &Caller, org: &str, body: &[u8]) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::MemberAdd).await?;
    let body: AddMember = parse_body(body)?;
    valid_name("'name'", &body.name)?;
    if body.role == Role::Owner {
        check(caller, Action::MemberManageOwners)?;
    }
    let entry = Audit::new(&caller.actor(), &org.id, Action::MemberAdd.name(), "")
        // No name: the audit log outlives members, and a removed member's name must go with
        // it (entries name members by id).
        .with_details(json!({ "role": body.role }));
    let (member, token) = api
        .store
        .add_member(&org.id, &body.name, body.role, api.secret(), &entry)
        .await?;
    Ok(Reply(201, json!({ "member": member, "token": token })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchMember {
    role: Role,
}

pub async fn patch(
    api: &AdminApi,
    caller: &Caller,
    org: &str,
    member: &str,
    body: &[u8],
) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::MemberRole).await?;
    let target = find(api, &org, member).await?;
    let body: PatchMember = parse_body(body)?;
    if target.role == Role::Owner || body.role == Role::Owner {
        check(caller, Action::MemberManageOwners)?;
    }
    let entry = Audit::new(
        &caller.actor(),
        &org.id,
        Action::MemberRole.name(),
        &target.id,
    )
    .with_details(json!({ "from": target.role, "to": body.role }));
    match api
        .store
        .set_member_role(&target.id, body.role, &entry)
        .await?
    {
        OwnerGuard::Done(m) => Ok(Reply(200, json!(m))),
        OwnerGuard::LastOwner => Err(last_owner()),
    }
}

pub async fn remove(
    api: &AdminApi,
    caller: &Caller,
    org: &str,
    member: &str,
) -> AdminResult<Reply> {
    let (org, _) = org_for(api, caller, org, Action::MemberRemove).await?;
    let target = find(api, &org, member).await?;
    if target.role == Role::Owner {
        check(caller, Action::MemberManageOwners)?;
    }
    let entry = Audit::new(
        &caller.actor(),
        &org.id,
        Action::MemberRemove.name(),
        &target.id,
    )
    .with_details(json!({ "role": target.role }));
    match api.store.remove_member(&target.id, &entry).await? {
        OwnerGuard::Done(()) => Ok(Reply(200, json!({ "removed": target.id }))),
        OwnerGuard::LastOwner => Err(last_owner()),
    }
}

pub async fn token(api: &AdminApi, caller: &Caller, org: &str, member: &str) -> AdminResult<Reply> {
    let (org, reach) = org_for(api, caller, org, Action::MemberToken).await?;
    let target = find(api, &org, member).await?;
    let is_self = caller.member().is_some_and(|m| m.id == target.id);
    if reach == Access::Own && !is_self {
        return Err(own_only(caller, Action::MemberToken));
    }
    if target.role == Role::Owner && !is_self {
        check(caller, Action::MemberManageOwners)?;
    }
    let entry = Audit::new(
        &caller.actor(),
        &org.id,
        Action::MemberToken.name(),
        &target.id,
    )
    .with_details(json!({}));
    let (member, token) = api
        .store
        .new_member_token(&target.id, api.secret(), &entry)
        .await?;
    Ok(Reply(200, json!({ "member": member, "token": token })))
}

/// 403 for a member whose role reaches only its own things, acting on someone else's.
pub(super) fn own_only(caller: &Caller, action: Action) -> AdminError {
    let role = caller
        .member()
        .map(|m| m.role.as_str())
        .unwrap_or("operator");
    AdminError::new(
        403,
        "permission_error",
        format!(
            "role '{role}' may perform '{}' only on its own",
            action.name()
        ),
    )
}
