//! Unit tests of the admin API: the role matrix against the table in docs/admin-api.md, the
//! route table, and (in `router.rs`, `keys.rs`, `alerts.rs`, `byok.rs`) the router end to end
//! over a real SQLite store.

mod alerts;
mod byok;
mod keys;
mod policy;
mod router;

use serde_json::{json, Value};

use super::auth::{access, Access, Action};
use super::*;
use crate::store::Role;

pub(super) const OPERATOR: &str = "operator-token";

pub(super) async fn api() -> (AdminApi, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!("sqlite://{}/admin.db", dir.path().display()))
        .await
        .expect("store");
    (
        AdminApi::new(store, b"admin-test-secret".to_vec(), Some(OPERATOR.into())),
        dir,
    )
}

pub(super) async fn call(
    api: &AdminApi,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let req = AdminRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: token
            .map(|t| vec![("Authorization".to_string(), format!("Bearer {t}"))])
            .unwrap_or_default(),
        body: if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        },
    };
    let r = api.handle(&req).await;
    let v = serde_json::from_slice(&r.body).expect("JSON answer");
    (r.status, v)
}

/// Parses the roles table of docs/admin-api.md: action -> [owner, admin, developer, restricted].
fn documented_matrix() -> Vec<(String, Vec<String>)> {
    let doc = include_str!("../../../../docs/admin-api.md");
    doc.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let action = cells.first()?.strip_prefix('`')?.strip_suffix('`')?;
            (cells.len() == 5).then(|| {
                (
                    action.to_string(),
                    cells[1..5].iter().map(|c| c.to_string()).collect(),
                )
            })
        })
        .collect()
}

#[test]
fn the_documented_role_table_is_the_enforced_one() {
    let table = documented_matrix();
    assert_eq!(
        table.len(),
        Action::ALL.len(),
        "one row per action: {table:?}"
    );
    for action in Action::ALL {
        let (_, cells) = table
            .iter()
            .find(|(a, _)| a == action.name())
            .unwrap_or_else(|| panic!("{} missing from docs/admin-api.md", action.name()));
        for (role, cell) in Role::ALL.iter().zip(cells) {
            let expected = match access(*role, action) {
                Access::All => "yes",
                Access::Own => "own",
                Access::Denied => "no",
            };
            assert_eq!(cell, expected, "{} for {}", action.name(), role.as_str());
        }
    }
}

#[test]
fn the_matrix_keeps_money_and_owners_away_from_lower_roles() {
    for role in Role::ALL {
        assert_eq!(access(role, Action::CreditsGrant), Access::Denied);
        assert_eq!(access(role, Action::OrgCreate), Access::Denied);
    }
    assert_eq!(
        access(Role::Admin, Action::MemberManageOwners),
        Access::Denied
    );
    assert_eq!(access(Role::Owner, Action::MemberManageOwners), Access::All);
    assert_eq!(access(Role::Developer, Action::KeyRevoke), Access::Own);
    assert_eq!(access(Role::Restricted, Action::KeyCreate), Access::Denied);
    assert_eq!(
        access(Role::Restricted, Action::CreditsRead),
        Access::Denied
    );
}

#[test]
fn routes_match_with_params_and_say_405_for_other_methods() {
    assert_eq!(
        route("POST", "/admin/orgs/acme/keys/key_1/rotate").unwrap(),
        (Handler::KeyRotate, vec!["acme".into(), "key_1".into()])
    );
    assert_eq!(route("GET", "/admin/orgs/").unwrap().0, Handler::OrgsList);
    assert_eq!(route("DELETE", "/admin/orgs").unwrap_err().status, 405);
    assert_eq!(route("GET", "/admin/nothing").unwrap_err().status, 404);
    assert_eq!(route("GET", "/admin/orgs//keys").unwrap_err().status, 404);
}

/// An org with one member of each role: (org id, tokens by role, member ids by role).
pub(super) async fn org_with_members(
    api: &AdminApi,
    name: &str,
) -> (String, Vec<(Role, String, String)>) {
    let (s, org) = call(
        api,
        "POST",
        "/admin/orgs",
        Some(OPERATOR),
        json!({"name": name}),
    )
    .await;
    assert_eq!(s, 201, "{org}");
    let org = org["id"].as_str().unwrap().to_string();
    let mut members = Vec::new();
    for role in Role::ALL {
        let (s, m) = call(
            api,
            "POST",
            &format!("/admin/orgs/{org}/members"),
            Some(OPERATOR),
            json!({"name": format!("{}-{}", name, role.as_str()), "role": role}),
        )
        .await;
        assert_eq!(s, 201, "{m}");
        let token = m["token"].as_str().unwrap().to_string();
        assert!(token.starts_with("tgm-"));
        members.push((role, token, m["member"]["id"].as_str().unwrap().to_string()));
    }
    (org, members)
}

pub(super) fn token(members: &[(Role, String, String)], role: Role) -> &str {
    &members.iter().find(|m| m.0 == role).unwrap().1
}
