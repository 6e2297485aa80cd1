//! Who is calling the admin API and what each role may do.
//!
//! Callers: the operator (the configured `admin_token`; with none configured, anyone who can
//! reach the loopback admin listener), the CLI (in-process, operator rights, audited as `cli`),
//! and members (`tgm-…` tokens), who act only inside their own org. The role matrix is
//! [`access`]; docs/admin-api.md has the same table, and the tests walk it.

use serde_json::{json, Value};

use super::{AdminApi, AdminError, AdminResult};
use crate::store::{Member, Org, Role};

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Operator,
    Cli,
    Member(Member),
}

impl Caller {
    /// The audit log's `actor`.
    pub fn actor(&self) -> String {
        match self {
            Caller::Operator => "operator".into(),
            Caller::Cli => "cli".into(),
            Caller::Member(m) => format!("member:{}", m.id),
        }
    }

    pub fn member(&self) -> Option<&Member> {
        match self {
            Caller::Member(m) => Some(m),
            _ => None,
        }
    }
}

/// Everything the admin API lets someone do; the name is what refusals and the docs say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    OrgList,
    OrgCreate,
    OrgRead,
    OrgLimits,
    /// The org's retention (mode, periods, key overrides) and data policy (issue 10).
    OrgPolicy,
    /// Deleting the org: its personal data and content go, anonymised usage and the ledger stay.
    OrgDelete,
    MemberList,
    MemberAdd,
    MemberRole,
    MemberRemove,
    MemberToken,
    /// Adding, changing or removing an owner, or making someone owner.
    MemberManageOwners,
    KeyList,
    KeyRead,
    KeyCreate,
    KeyUpdate,
    KeyRevoke,
    KeyDisable,
    KeyEnable,
    KeyRotate,
    CreditsRead,
    CreditsGrant,
    UsageRead,
    AuditRead,
    /// Reading the org's low-balance alert.
    AlertsRead,
    /// Setting or clearing the org's low-balance alert.
    AlertsWrite,
    /// Reading the org's BYOK mode and its provider keys' metadata (never a key).
    ByokRead,
    /// Storing or removing the org's provider keys, setting its BYOK mode.
    ByokWrite,
}

impl Action {
    pub const ALL: [Action; 28] = [
        Action::OrgList,
        Action::OrgCreate,
        Action::OrgRead,
        Action::OrgLimits,
        Action::OrgPolicy,
        Action::OrgDelete,
        Action::MemberList,
        Action::MemberAdd,
        Action::MemberRole,
        Action::MemberRemove,
        Action::MemberToken,
        Action::MemberManageOwners,
        Action::KeyList,
        Action::KeyRead,
        Action::KeyCreate,
        Action::KeyUpdate,
        Action::KeyRevoke,
        Action::KeyDisable,
        Action::KeyEnable,
        Action::KeyRotate,
        Action::CreditsRead,
        Action::CreditsGrant,
        Action::UsageRead,
        Action::AuditRead,
        Action::AlertsRead,
        Action::AlertsWrite,
        Action::ByokRead,
        Action::ByokWrite,
    ];

    /// The name used in refusals, the docs and (for changes) the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Action::OrgList => "org.list",
            Action::OrgCreate => "org.create",
            Action::OrgRead => "org.read",
            Action::OrgLimits => "org.limits",
            Action::OrgPolicy => "org.policy",
            Action::OrgDelete => "org.delete",
            Action::MemberList => "member.list",
            Action::MemberAdd => "member.add",
            Action::MemberRole => "member.role",
            Action::MemberRemove => "member.remove",
            Action::MemberToken => "member.token",
            Action::MemberManageOwners => "member.manage-owners",
            Action::KeyList => "key.list",
            Action::KeyRead => "key.read",
            Action::KeyCreate => "key.create",
            Action::KeyUpdate => "key.update",
            Action::KeyRevoke => "key.revoke",
            Action::KeyDisable => "key.disable",
            Action::KeyEnable => "key.enable",
            Action::KeyRotate => "key.rotate",
            Action::CreditsRead => "credits.read",
            Action::CreditsGrant => "credits.grant",
            Action::UsageRead => "usage.read",
            Action::AuditRead => "audit.read",
            Action::AlertsRead => "alerts.read",
            Action::AlertsWrite => "alerts.write",
            Action::ByokRead => "byok.read",
            Action::ByokWrite => "byok.write",
        }
    }
}

/// How much of an org an action reaches for a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything in the org.
    All,
    /// Only what is the member's own: its keys, their usage, its own token.
    Own,
    Denied,
}

/// The role matrix (docs/admin-api.md): owner — everything in its org; admin — everything but
/// owners and the org's limits; developer — creates and manages its own keys, reads the org's
/// usage and balance; restricted — reads its own keys and their usage. Creating orgs and
/// granting credits (money in) are the operator's alone. Low-balance alerts and BYOK provider
/// keys are owners' and admins' (developers and restricted members fall to `Denied` below).
pub fn access(role: Role, action: Action) -> Access {
    use Access::{All, Denied, Own};
    use Action as A;
    match (role, action) {
        (_, A::OrgCreate | A::CreditsGrant) => Denied,
        (_, A::OrgList | A::OrgRead) => All,
        (Role::Owner, _) => All,
        (Role::Admin, A::OrgLimits | A::OrgPolicy | A::OrgDelete | A::MemberManageOwners) => Denied,
        (Role::Admin, _) => All,
        (
            Role::Developer,
            A::KeyList
            | A::KeyRead
            | A::KeyCreate
            | A::KeyUpdate
            | A::KeyRevoke
            | A::KeyDisable
            | A::KeyEnable
            | A::KeyRotate
            | A::MemberToken,
        ) => Own,
        (Role::Developer, A::CreditsRead | A::UsageRead) => All,
        (Role::Developer, _) => Denied,
        (Role::Restricted, A::KeyList | A::KeyRead | A::UsageRead | A::MemberToken) => Own,
        (Role::Restricted, _) => Denied,
    }
}

/// The caller's reach for `action`, or 403 naming the role and the action.
pub fn check(caller: &Caller, action: Action) -> AdminResult<Access> {
    let Caller::Member(m) = caller else {
        return Ok(Access::All);
    };
    match access(m.role, action) {
        Access::Denied => Err(AdminError::new(
            403,
            "permission_error",
            format!(
                "role '{}' may not perform '{}'",
                m.role.as_str(),
                action.name()
            ),
        )),
        reach => Ok(reach),
    }
}

/// The org named by `org_ref` (id or name) if the caller may see it: a member asking for
/// another org gets the same 404 as for one that does not exist. Then checks `action`.
pub async fn org_for(
    api: &AdminApi,
    caller: &Caller,
    org_ref: &str,
    action: Action,
) -> AdminResult<(Org, Access)> {
    let not_found = || AdminError::not_found(format!("org '{org_ref}'"));
    let org = match api.store.find_org(org_ref).await {
        Ok(o) => o,
        Err(crate::store::StoreError::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    if let Caller::Member(m) = caller {
        if m.org_id != org.id {
            return Err(not_found());
        }
    }
    let reach = check(caller, action)?;
    Ok((org, reach))
}

/// Who the bearer token in `authorization` belongs to.
pub async fn authenticate(api: &AdminApi, authorization: Option<&str>) -> AdminResult<Caller> {
    let token = authorization.and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(str::trim)
    });
    if let Some(t) = token.filter(|t| t.starts_with("tgm-")) {
        let hash = crate::keys::keyed_hash(api.secret(), t);
        return match api.store.member_by_token_hash(&hash).await? {
            Some(m) => Ok(Caller::Member(m)),
            None => Err(AdminError::unauthenticated("invalid member token")),
        };
    }
    match (&api.admin_token, token) {
        // No admin token configured: operator calls are open (loopback listener by default).
        (None, _) => Ok(Caller::Operator),
        (Some(expected), Some(t)) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => {
            Ok(Caller::Operator)
        }
        (Some(_), Some(_)) => Err(AdminError::unauthenticated("invalid admin token")),
        (Some(_), None) => Err(AdminError::unauthenticated(
            "admin token or member token required (Authorization: Bearer ...)",
        )),
    }
}

/// `GET /admin/me`.
pub fn describe(caller: &Caller) -> Value {
    match caller {
        Caller::Member(m) => json!({
            "actor": caller.actor(), "role": m.role, "org_id": m.org_id, "member": m,
        }),
        _ => json!({"actor": caller.actor(), "role": "operator", "org_id": null}),
    }
}

/// Compares without an early exit, so response timing does not reveal how much of a guessed
/// token was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
