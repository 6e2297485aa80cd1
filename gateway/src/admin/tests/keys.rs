//! Key changes through the router (audited, announced to the caches, rotation's grace), and
//! the open operator mode without an admin token.

use serde_json::{json, Value};

use super::{api, call, org_with_members, token, OPERATOR};
use crate::admin::*;
use crate::store::Role;

#[tokio::test]
async fn key_changes_are_audited_announced_and_rotation_keeps_the_old_secret_for_its_grace() {
    let (api, _dir) = api().await;
    let (org, members) = org_with_members(&api, "acme").await;
    let owner = token(&members, Role::Owner);
    let keys = format!("/admin/orgs/{org}/keys");
    let (_, created) = call(
        &api,
        "POST",
        &keys,
        Some(owner),
        json!({
            "name": "k", "scopes": {"models": ["gpt-4o*"], "apis": ["openai-chat"]},
            "spend_limit_micros": 1000, "spend_period": "daily", "tpm_limit": 9
        }),
    )
    .await;
    let id = created["key"]["id"].as_str().unwrap().to_string();
    let old = created["secret"].as_str().unwrap().to_string();
    let mut changes = api.store.key_changes();

    let (s, k) = call(
        &api,
        "PATCH",
        &format!("{keys}/{id}"),
        Some(owner),
        json!({"rpm_limit": 7, "name": "k2"}),
    )
    .await;
    assert_eq!(s, 200, "{k}");
    assert_eq!(
        (
            k["rpm_limit"].as_i64(),
            k["name"].as_str(),
            k["tpm_limit"].as_i64()
        ),
        (Some(7), Some("k2"), Some(9))
    );
    assert_eq!(k["scopes"]["models"], json!(["gpt-4o*"]));
    let hash = crate::keys::keyed_hash(api.secret(), &old);
    assert_eq!(
        changes.try_recv().unwrap(),
        hash,
        "caches hear of the change"
    );

    let (s, k) = call(
        &api,
        "POST",
        &format!("{keys}/{id}/disable"),
        Some(owner),
        Value::Null,
    )
    .await;
    assert!(s == 200 && k["disabled_at"].is_i64());
    let stored = api.store.key(&id).await.unwrap();
    assert!(stored.refusal(&hash, crate::store::now_ms()).is_some());
    let (_, k) = call(
        &api,
        "POST",
        &format!("{keys}/{id}/enable"),
        Some(owner),
        json!({}),
    )
    .await;
    assert!(k["disabled_at"].is_null());

    let (s, r) = call(
        &api,
        "POST",
        &format!("{keys}/{id}/rotate"),
        Some(owner),
        json!({"grace_seconds": 60}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let new = r["secret"].as_str().unwrap();
    assert_ne!(new, old);
    let stored = api.store.key(&id).await.unwrap();
    let now = crate::store::now_ms();
    assert_eq!(stored.key_hash, crate::keys::keyed_hash(api.secret(), new));
    assert_eq!(stored.previous_hash.as_deref(), Some(hash.as_str()));
    assert!(
        stored.refusal(&hash, now).is_none(),
        "old secret valid in grace"
    );
    assert!(
        stored.refusal(&hash, now + 61_000).is_some(),
        "and not after"
    );
    assert!(
        !r.to_string().contains(&old),
        "the old secret is never echoed"
    );

    let (s, _) = call(
        &api,
        "POST",
        &format!("{keys}/{id}/revoke"),
        Some(owner),
        Value::Null,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &api,
        "POST",
        &format!("{keys}/{id}/enable"),
        Some(owner),
        Value::Null,
    )
    .await;
    assert_eq!(s, 409, "revocation is final");

    let (_, page) = call(
        &api,
        "GET",
        &format!("/admin/orgs/{org}/audit?limit=100"),
        Some(owner),
        Value::Null,
    )
    .await;
    let actions: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions[..7],
        [
            "key.revoke",
            "key.rotate",
            "key.enable",
            "key.disable",
            "key.update",
            "key.create",
            "member.add"
        ]
    );
    let owner_actor = format!("member:{}", members[0].2);
    assert!(
        page["data"][0]["actor"] == json!(owner_actor) && page["data"][0]["target"] == json!(id)
    );
    let text = page.to_string();
    assert!(
        !text.contains(&old) && !text.contains(new),
        "no secret in the audit log"
    );
    // Paging: two at a time walks the same entries.
    let (_, first) = call(
        &api,
        "GET",
        &format!("/admin/orgs/{org}/audit?limit=2"),
        Some(OPERATOR),
        Value::Null,
    )
    .await;
    let next = first["next_before"].as_i64().unwrap();
    let (_, second) = call(
        &api,
        "GET",
        &format!("/admin/orgs/{org}/audit?limit=2&before={next}"),
        Some(OPERATOR),
        Value::Null,
    )
    .await;
    assert_eq!(first["data"][1]["action"], "key.rotate");
    assert_eq!(second["data"][0]["action"], "key.enable");
}

#[tokio::test]
async fn without_an_admin_token_operator_calls_are_open_but_members_still_need_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/a.db", dir.path().display()))
        .await
        .unwrap();
    let api = AdminApi::new(store, b"s".to_vec(), None);
    let (s, org) = call(&api, "POST", "/admin/orgs", None, json!({"name": "open"})).await;
    assert_eq!(s, 201);
    let org = org["id"].as_str().unwrap();
    let (_, m) = call(
        &api,
        "POST",
        &format!("/admin/orgs/{org}/members"),
        None,
        json!({"name": "r", "role": "restricted"}),
    )
    .await;
    let t = m["token"].as_str().unwrap();
    assert_eq!(
        call(&api, "POST", "/admin/orgs", Some(t), json!({"name": "x"}))
            .await
            .0,
        403
    );
    assert_eq!(
        call(&api, "GET", "/admin/orgs", Some("tgm-wrong"), Value::Null)
            .await
            .0,
        401
    );
    // The CLI's way in is audited as `cli`.
    let v = api
        .call(
            &Caller::Cli,
            "POST",
            "/admin/orgs",
            "",
            &json!({"name": "by-cli"}),
        )
        .await
        .unwrap();
    let log = api
        .store
        .audit_log(v["id"].as_str(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        (log[0].actor.as_str(), log[0].action.as_str()),
        ("cli", "org.create")
    );
}
