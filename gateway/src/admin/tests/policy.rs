//! Org retention and data policy through the router: owners only, ranges checked, the org's
//! record and its keys' retention override applied, every change announced to the caches.

use serde_json::json;

use super::{api, call, org_with_members, token};
use crate::store::Role;

#[tokio::test]
async fn retention_and_data_policy_are_owners_ranged_and_announced() {
    let (api, _dir) = api().await;
    let (org, members) = org_with_members(&api, "acme").await;
    let owner = token(&members, Role::Owner);
    let admin = token(&members, Role::Admin);
    let path = format!("/admin/orgs/{org}/retention");
    let mut changes = api.store.key_changes();

    let (s, body) = call(&api, "PATCH", &path, Some(admin), json!({"mode": "zero"})).await;
    assert_eq!(s, 403, "{body}");
    for bad in [
        json!({"mode": "everything"}),
        json!({"retention_days": 91}),
        json!({"retention_days": -1}),
        json!({"ip_retention_days": 31}),
        json!({}),
        json!({"days": 3}),
    ] {
        let (s, body) = call(&api, "PATCH", &path, Some(owner), bad.clone()).await;
        assert_eq!(s, 400, "{bad} -> {body}");
    }
    let (s, o) = call(
        &api,
        "PATCH",
        &path,
        Some(owner),
        json!({"mode": "retain-all", "retention_days": 7, "ip_retention_days": 1}),
    )
    .await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(
        (
            o["retention_mode"].as_str(),
            o["retention_days"].as_i64(),
            o["ip_retention_days"].as_i64()
        ),
        (Some("retain-all"), Some(7), Some(1))
    );
    assert_eq!(changes.try_recv().unwrap(), format!("org:{org}"));

    // A key's own mode only once the org allows it.
    let keys = format!("/admin/orgs/{org}/keys");
    let (_, created) = call(&api, "POST", &keys, Some(owner), json!({"name": "k"})).await;
    let key = format!("{keys}/{}", created["key"]["id"].as_str().unwrap());
    let (s, body) = call(
        &api,
        "PATCH",
        &key,
        Some(owner),
        json!({"retention_mode": "zero"}),
    )
    .await;
    assert_eq!(s, 409, "{body}");
    assert!(body.to_string().contains("override"));
    let (s, body) = call(
        &api,
        "PATCH",
        &key,
        Some(owner),
        json!({"retention_mode": "all"}),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let (s, _) = call(
        &api,
        "PATCH",
        &path,
        Some(owner),
        json!({"key_retention_override": true}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, k) = call(
        &api,
        "PATCH",
        &key,
        Some(owner),
        json!({"retention_mode": "zero"}),
    )
    .await;
    assert_eq!(
        (s, k["retention_mode"].as_str()),
        (200, Some("zero")),
        "{k}"
    );
    let (s, k) = call(
        &api,
        "PATCH",
        &key,
        Some(owner),
        json!({"retention_mode": "org"}),
    )
    .await;
    assert_eq!((s, k["retention_mode"].as_str()), (200, None), "{k}");

    let policy = format!("/admin/orgs/{org}/data-policy");
    for bad in [
        json!({"allowed_regions": ["EU"]}),
        json!({"allowed_regions": ["eu,us"]}),
        json!({"require_zdr": "yes"}),
    ] {
        let (s, body) = call(&api, "PATCH", &policy, Some(owner), bad.clone()).await;
        assert_eq!(s, 400, "{bad} -> {body}");
    }
    let (s, o) = call(
        &api,
        "PATCH",
        &policy,
        Some(owner),
        json!({"require_zdr": true, "allowed_regions": ["us", "eu", "eu"]}),
    )
    .await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(
        o["data_policy"],
        json!({"require_zdr": true, "deny_training": false, "allowed_regions": ["eu", "us"]})
    );
    let stored = api.store.org(&org).await.unwrap().unwrap();
    assert!(stored.data_policy.require_zdr && stored.key_retention_override);
    let (s, o) = call(
        &api,
        "PATCH",
        &policy,
        Some(owner),
        json!({"allowed_regions": []}),
    )
    .await;
    assert_eq!(
        (s, o["data_policy"]["allowed_regions"].clone()),
        (200, json!([]))
    );
}
