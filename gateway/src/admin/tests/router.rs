//! The router over a real SQLite store: authentication, org isolation, each role's allowed and
//! refused actions, body validation and the size cap.

use serde_json::{json, Value};

use super::{api, call, org_with_members, token, OPERATOR};
use crate::admin::*;
use crate::store::Role;

#[tokio::test]
async fn authentication_and_org_isolation() {
    let (api, _dir) = api().await;
    let (org, members) = org_with_members(&api, "acme").await;
    let (other, _) = org_with_members(&api, "other").await;
    // No token, a wrong operator token, an unknown member token: 401.
    assert_eq!(
        call(&api, "GET", "/admin/orgs", None, Value::Null).await.0,
        401
    );
    assert_eq!(
        call(&api, "GET", "/admin/orgs", Some("nope"), Value::Null)
            .await
            .0,
        401
    );
    let (s, e) = call(&api, "GET", "/admin/orgs", Some("tgm-00"), Value::Null).await;
    assert_eq!(
        (s, e["error"]["type"].as_str()),
        (401, Some("authentication_error"))
    );
    // The document is public.
    let (s, doc) = call(&api, "GET", "/admin/openapi.json", None, Value::Null).await;
    assert_eq!((s, doc["openapi"].as_str()), (200, Some("3.1.0")));
    // A member sees its own org only; another org is "not found", by id and by name.
    let owner = token(&members, Role::Owner);
    let (_, list) = call(&api, "GET", "/admin/orgs", Some(owner), Value::Null).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["id"], json!(org));
    for r in [other.as_str(), "other", "no-such-org"] {
        let (s, e) = call(
            &api,
            "GET",
            &format!("/admin/orgs/{r}/keys"),
            Some(owner),
            Value::Null,
        )
        .await;
        assert_eq!(s, 404, "{e}");
    }
    let (_, me) = call(
        &api,
        "GET",
        "/admin/me",
        Some(token(&members, Role::Developer)),
        Value::Null,
    )
    .await;
    assert_eq!(me["role"], "developer");
    // Nothing secret is stored: the member table holds hashes, never tokens.
    for (_, t, id) in &members {
        let m = api.store.member(id).await.unwrap();
        assert!(t.starts_with(&m.token_prefix));
        let hash = crate::keys::keyed_hash(api.secret(), t);
        assert_eq!(
            api.store
                .member_by_token_hash(&hash)
                .await
                .unwrap()
                .unwrap()
                .id,
            *id
        );
    }
}

#[tokio::test]
async fn each_role_is_allowed_and_refused_what_the_matrix_says() {
    let (api, _dir) = api().await;
    let (org, members) = org_with_members(&api, "acme").await;
    let keys = format!("/admin/orgs/{org}/keys");
    let owner = token(&members, Role::Owner);
    let admin = token(&members, Role::Admin);
    let dev = token(&members, Role::Developer);
    let restricted = token(&members, Role::Restricted);

    // Owner: changes the org's limits; admin may not (403 naming role and action).
    let limits = json!({"rpm_limit": 60});
    let (s, o) = call(
        &api,
        "PATCH",
        &format!("/admin/orgs/{org}"),
        Some(owner),
        limits.clone(),
    )
    .await;
    assert_eq!((s, o["rpm_limit"].as_i64()), (200, Some(60)));
    let (s, e) = call(
        &api,
        "PATCH",
        &format!("/admin/orgs/{org}"),
        Some(admin),
        limits,
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(e["error"]["type"], "permission_error");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("admin") && msg.contains("org.limits"), "{msg}");

    // Admin: adds a developer, may not add an owner.
    let path = format!("/admin/orgs/{org}/members");
    let (s, _) = call(
        &api,
        "POST",
        &path,
        Some(admin),
        json!({"name": "d2", "role": "developer"}),
    )
    .await;
    assert_eq!(s, 201);
    let (s, e) = call(
        &api,
        "POST",
        &path,
        Some(admin),
        json!({"name": "o2", "role": "owner"}),
    )
    .await;
    assert_eq!(s, 403, "{e}");

    // Developer: creates its own key and revokes it; cannot see or touch the org's key.
    let (s, org_key) = call(&api, "POST", &keys, Some(admin), json!({"name": "org-key"})).await;
    assert_eq!(s, 201);
    let org_key_id = org_key["key"]["id"].as_str().unwrap().to_string();
    let (s, mine) = call(
        &api,
        "POST",
        &keys,
        Some(dev),
        json!({"name": "mine", "rpm_limit": 5}),
    )
    .await;
    assert_eq!(s, 201, "{mine}");
    let mine_id = mine["key"]["id"].as_str().unwrap().to_string();
    assert_eq!(mine["key"]["member_id"], json!(members[2].2));
    assert!(mine["secret"].as_str().unwrap().starts_with("tg-"));
    let (_, listed) = call(&api, "GET", &keys, Some(dev), Value::Null).await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    assert_eq!(ids, vec![mine_id.as_str()]);
    let (s, e) = call(
        &api,
        "POST",
        &format!("{keys}/{org_key_id}/revoke"),
        Some(dev),
        Value::Null,
    )
    .await;
    assert_eq!(s, 403, "{e}");
    let (s, _) = call(
        &api,
        "POST",
        &format!("{keys}/{mine_id}/revoke"),
        Some(dev),
        Value::Null,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &api,
        "GET",
        &format!("/admin/orgs/{org}/audit"),
        Some(dev),
        Value::Null,
    )
    .await;
    assert_eq!(s, 403);

    // Restricted: reads usage (its own), may not create keys nor read the balance.
    let (s, _) = call(
        &api,
        "GET",
        &format!("/admin/orgs/{org}/usage"),
        Some(restricted),
        Value::Null,
    )
    .await;
    assert_eq!(s, 200);
    let (s, e) = call(&api, "POST", &keys, Some(restricted), json!({})).await;
    assert_eq!(s, 403);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("restricted"));
    let (s, _) = call(
        &api,
        "GET",
        &format!("/admin/orgs/{org}/credits"),
        Some(restricted),
        Value::Null,
    )
    .await;
    assert_eq!(s, 403);

    // Credits: the operator grants, an owner may not.
    let grant = json!({"amount_micros": 5_000_000});
    let credits = format!("/admin/orgs/{org}/credits");
    assert_eq!(
        call(&api, "POST", &credits, Some(owner), grant.clone())
            .await
            .0,
        403
    );
    let (s, g) = call(&api, "POST", &credits, Some(OPERATOR), grant).await;
    assert_eq!((s, g["balance_micros"].as_i64()), (201, Some(5_000_000)));

    // The org's last owner stays.
    let owner_id = &members[0].2;
    let (s, _) = call(
        &api,
        "DELETE",
        &format!("/admin/orgs/{org}/members/{owner_id}"),
        Some(owner),
        Value::Null,
    )
    .await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn bodies_are_validated_and_capped() {
    let (api, _dir) = api().await;
    let (org, _) = org_with_members(&api, "acme").await;
    let keys = format!("/admin/orgs/{org}/keys");
    let (s, e) = call(
        &api,
        "POST",
        &keys,
        Some(OPERATOR),
        json!({"name": "x", "rmp_limit": 1}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rmp_limit"),
        "{e}"
    );
    let (s, e) = call(
        &api,
        "POST",
        &keys,
        Some(OPERATOR),
        json!({"spend_period": "hourly"}),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = call(
        &api,
        "POST",
        &keys,
        Some(OPERATOR),
        json!({"scopes": {"apis": ["gemini-x"]}}),
    )
    .await;
    assert!(s == 400 && e["error"]["message"].as_str().unwrap().contains("gemini-x"));
    let (s, _) = call(
        &api,
        "POST",
        &keys,
        Some(OPERATOR),
        json!({"rpm_limit": -1}),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = call(
        &api,
        "POST",
        &keys,
        Some(OPERATOR),
        json!({"expires_at": 5}),
    )
    .await;
    assert_eq!(s, 400);
    let big = AdminRequest {
        method: "POST".into(),
        path: keys.clone(),
        headers: vec![("authorization".into(), format!("Bearer {OPERATOR}"))],
        body: Bytes::from(vec![b' '; MAX_BODY_BYTES + 1]),
        ..AdminRequest::default()
    };
    assert_eq!(api.handle(&big).await.status, 413);
    let (s, e) = call(
        &api,
        "POST",
        "/admin/orgs",
        Some(OPERATOR),
        json!({"name": ""}),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let (s, _) = call(
        &api,
        "GET",
        &format!("/admin/orgs/{org}/audit?limit=x"),
        Some(OPERATOR),
        Value::Null,
    )
    .await;
    assert_eq!(s, 400);
}
