//! `/admin/orgs/{org}/byok` over a real SQLite store: who may read and change an org's provider
//! keys and mode, what is validated (as `tollgate byok` does), 503 without a master key, 409 for
//! another master, the key in no answer, error or audit row, and the gateway's BYOK cache
//! dropping the org after each change.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{call, org_with_members, token, OPERATOR};
use crate::admin::*;
use crate::byok::{ByokKeys, ByokMode, ByokSettings, MasterKey};
use crate::store::{new_id, Role};

const PROVIDERS: [&str; 2] = ["anthropic", "openai"];

/// Settings reading the master key from a 0600 file holding `byte` × 32 (the env var named is
/// never set), or from nowhere when `byte` is None.
fn settings(dir: &Path, byte: Option<u8>) -> ByokSettings {
    let master_key_file = byte.map(|b| {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("master-{b}.key"));
        std::fs::write(&path, hex::encode([b; 32])).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    });
    ByokSettings {
        master_key_env: "TOLLGATE_ADMIN_TEST_UNSET_MASTER_KEY".into(),
        master_key_file,
        fee_percent: 0.0,
    }
}

/// The admin API with BYOK set up (master key `[7; 32]`) and a gateway-like cache whose TTL is
/// far longer than any test: what the cache holds changes only by invalidation.
async fn byok_api() -> (AdminApi, Arc<ByokKeys>, tempfile::TempDir) {
    let (api, dir) = super::api().await;
    let settings = settings(dir.path(), Some(7));
    let cache = Arc::new(ByokKeys::with_master(
        api.store.clone(),
        &settings,
        Some(MasterKey::from_bytes(&[7; 32])),
        Duration::from_secs(3600),
    ));
    let providers = PROVIDERS.iter().map(|p| p.to_string()).collect();
    let api = api.with_byok(settings, providers, Some(cache.clone()));
    (api, cache, dir)
}

fn unique_secret() -> String {
    format!("sk-admin-unit-{}", new_id("x"))
}

#[tokio::test]
async fn owners_and_admins_manage_provider_keys_others_are_refused() {
    let (api, _cache, _dir) = byok_api().await;
    let (org, members) = org_with_members(&api, "acme").await;
    let base = format!("/admin/orgs/{org}/byok");
    let secret = unique_secret();
    let requests = [
        ("GET", base.clone(), Value::Null, "byok.read"),
        ("PUT", base.clone(), json!({"mode": "only"}), "byok.write"),
        (
            "PUT",
            format!("{base}/openai"),
            json!({"key": secret, "label": "team"}),
            "byok.write",
        ),
        (
            "DELETE",
            format!("{base}/openai"),
            Value::Null,
            "byok.write",
        ),
    ];
    for role in [Role::Developer, Role::Restricted] {
        for (method, path, body, action) in &requests {
            let (s, e) = call(
                &api,
                method,
                path,
                Some(token(&members, role)),
                body.clone(),
            )
            .await;
            assert_eq!(s, 403, "{role:?} {method} {path}: {e}");
            let msg = e["error"]["message"].as_str().unwrap();
            assert!(msg.contains(action) && !msg.contains(&secret), "{msg}");
        }
    }
    assert!(api.store.provider_keys(&org).await.unwrap().is_empty());
    for t in [
        token(&members, Role::Owner),
        token(&members, Role::Admin),
        OPERATOR,
    ] {
        for (method, path, body, _) in &requests {
            let (s, answer) = call(&api, method, path, Some(t), body.clone()).await;
            assert_eq!(s, 200, "{method} {path}: {answer}");
            assert!(!answer.to_string().contains(&secret), "{answer}");
        }
    }
    // Another org does not exist for a member.
    let (other, _) = org_with_members(&api, "other").await;
    let owner = token(&members, Role::Owner);
    let (s, _) = call(
        &api,
        "GET",
        &format!("/admin/orgs/{other}/byok"),
        Some(owner),
        Value::Null,
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_stored_key_is_sealed_listed_without_the_key_and_audited_without_it() {
    let (api, cache, _dir) = byok_api().await;
    let (org, members) = org_with_members(&api, "acme").await;
    let owner = token(&members, Role::Owner);
    let secret = unique_secret();
    let (s, stored) = call(
        &api,
        "PUT",
        &format!("/admin/orgs/{org}/byok/openai"),
        Some(owner),
        json!({"key": secret, "label": "acme prod"}),
    )
    .await;
    assert_eq!(s, 200, "{stored}");
    assert_eq!(
        (&stored["provider"], &stored["label"], &stored["org_id"]),
        (&json!("openai"), &json!("acme prod"), &json!(org))
    );
    assert_eq!(
        stored["master_key_id"],
        json!(MasterKey::from_bytes(&[7; 32]).id())
    );
    assert!(!stored.to_string().contains(&secret));
    // Sealed for this row under the master key: the gateway's cache opens it.
    let opened = cache.prefetch(&org).await.unwrap();
    assert_eq!(opened.secret("openai").unwrap().expose(), secret);
    // Listed with the mode, never the key.
    let (s, listed) = call(
        &api,
        "GET",
        &format!("/admin/orgs/{org}/byok"),
        Some(owner),
        Value::Null,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(listed["mode"], "prefer");
    assert_eq!(listed["data"][0]["id"], stored["id"]);
    assert!(!listed.to_string().contains(&secret));
    // The CLI's way in, audited as `cli`.
    api.call(
        &Caller::Cli,
        "PUT",
        &format!("/admin/orgs/{org}/byok/anthropic"),
        "",
        &json!({"key": secret}),
    )
    .await
    .unwrap();
    api.call(
        &Caller::Cli,
        "DELETE",
        &format!("/admin/orgs/{org}/byok/anthropic"),
        "",
        &Value::Null,
    )
    .await
    .unwrap();
    let log = api.store.audit_log(Some(&org), None, 3).await.unwrap();
    let got: Vec<(&str, &str, &Value)> = log
        .iter()
        .map(|r| (r.actor.as_str(), r.action.as_str(), &r.details["change"]))
        .collect();
    assert_eq!(got[0], ("cli", "byok.write", &json!("key.remove")));
    assert_eq!(got[1], ("cli", "byok.write", &json!("key.set")));
    assert_eq!(got[2].1, "byok.write");
    assert_eq!(log[2].details["credential_id"], stored["id"]);
    let everything = api.store.audit_log(None, None, 1000).await.unwrap();
    for r in &everything {
        let row = format!("{} {} {} {}", r.actor, r.action, r.target, r.details);
        assert!(!row.contains(&secret), "audit row with the key: {row}");
    }
}

#[tokio::test]
async fn bodies_providers_and_modes_are_validated_without_quoting_the_key() {
    let (api, _cache, _dir) = byok_api().await;
    let (org, _) = org_with_members(&api, "acme").await;
    let secret = unique_secret();
    let put = format!("/admin/orgs/{org}/byok/openai");
    let cases = [
        (
            format!("/admin/orgs/{org}/byok/nope"),
            json!({"key": secret}),
            "unknown provider 'nope'",
        ),
        (put.clone(), json!({"key": ""}), "empty"),
        (
            put.clone(),
            json!({"key": format!("{secret} x")}),
            "printable",
        ),
        (put.clone(), json!({"key": "x".repeat(4097)}), "4096"),
        (put.clone(), json!({"key": 5}), "'key' must be a string"),
        (put.clone(), json!({"label": "x"}), "'key' is required"),
        (put.clone(), Value::Null, "'key' is required"),
        (put.clone(), json!([secret]), "JSON object"),
        (
            put.clone(),
            json!({"key": secret, "label": "x".repeat(201)}),
            "'label'",
        ),
        (
            put.clone(),
            json!({"key": secret, "label": "a\nb"}),
            "'label'",
        ),
        (
            put.clone(),
            json!({"key": secret, "note": secret}),
            "unknown field",
        ),
        (
            format!("/admin/orgs/{org}/byok"),
            json!({"mode": secret}),
            "prefer, fallback or only",
        ),
        (
            format!("/admin/orgs/{org}/byok"),
            json!({"mode": "only", "key": secret}),
            "unknown field",
        ),
    ];
    for (path, body, needle) in cases {
        let (s, e) = call(&api, "PUT", &path, Some(OPERATOR), body.clone()).await;
        assert_eq!(s, 400, "{path}: {e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{path}: {msg}");
        assert!(!e.to_string().contains(&secret), "{e}");
    }
    // Malformed JSON around a key: the parser's message does not quote it.
    let req = AdminRequest {
        method: "PUT".into(),
        path: put.clone(),
        headers: vec![("authorization".into(), format!("Bearer {OPERATOR}"))],
        body: format!("{{\"key\": \"{secret}\", ").into_bytes().into(),
        ..Default::default()
    };
    let r = api.handle(&req).await;
    assert_eq!(r.status, 400);
    assert!(!String::from_utf8_lossy(&r.body).contains(&secret));
    assert!(api.store.provider_keys(&org).await.unwrap().is_empty());
    // Removing a key the org does not have: 404.
    let (s, _) = call(&api, "DELETE", &put, Some(OPERATOR), Value::Null).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn without_a_master_key_storing_answers_503_and_another_master_409() {
    let (api, _cache, dir) = byok_api().await;
    let (org, _) = org_with_members(&api, "acme").await;
    let secret = unique_secret();
    let put = format!("/admin/orgs/{org}/byok/openai");
    let body = json!({"key": secret});
    let providers: Vec<String> = PROVIDERS.iter().map(|p| p.to_string()).collect();
    // No master key anywhere, and no BYOK setup at all.
    let none = api
        .clone()
        .with_byok(settings(dir.path(), None), providers.clone(), None);
    let (s, e) = call(&none, "PUT", &put, Some(OPERATOR), body.clone()).await;
    assert_eq!(s, 503, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("TOLLGATE_ADMIN_TEST_UNSET_MASTER_KEY") && msg.contains("master key"));
    assert!(!e.to_string().contains(&secret));
    let store = api.store.clone();
    let bare = AdminApi::new(store, b"admin-test-secret".to_vec(), Some(OPERATOR.into()));
    assert_eq!(
        call(&bare, "PUT", &put, Some(OPERATOR), body.clone())
            .await
            .0,
        400,
        "without a provider list every provider is unknown"
    );
    // Reading, removing and the mode need no master key.
    let (s, _) = call(
        &none,
        "PUT",
        &format!("/admin/orgs/{org}/byok"),
        Some(OPERATOR),
        json!({"mode": "fallback"}),
    )
    .await;
    assert_eq!(s, 200);
    // A key stored under master 7; a gateway holding master 8 may not seal under it.
    assert_eq!(
        call(&api, "PUT", &put, Some(OPERATOR), body.clone())
            .await
            .0,
        200
    );
    let other = api
        .clone()
        .with_byok(settings(dir.path(), Some(8)), providers, None);
    let (s, e) = call(
        &other,
        "PUT",
        &format!("/admin/orgs/{org}/byok/anthropic"),
        Some(OPERATOR),
        body,
    )
    .await;
    assert_eq!(s, 409, "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sealed under master key"));
    assert_eq!(api.store.provider_keys(&org).await.unwrap().len(), 1);
}

#[tokio::test]
async fn each_change_drops_the_org_from_the_gateways_cache() {
    let (api, cache, _dir) = byok_api().await;
    let (org, members) = org_with_members(&api, "acme").await;
    let admin = token(&members, Role::Admin);
    let secret = unique_secret();
    // Cached as "no keys": with a one-hour TTL only invalidation can change that.
    assert!(!cache.prefetch(&org).await.unwrap().has_key("openai"));
    let (s, _) = call(
        &api,
        "PUT",
        &format!("/admin/orgs/{org}/byok/openai"),
        Some(admin),
        json!({"key": secret}),
    )
    .await;
    assert_eq!(s, 200);
    let keys = cache.prefetch(&org).await.unwrap();
    assert_eq!(keys.secret("openai").unwrap().expose(), secret);
    assert_eq!(keys.mode(), ByokMode::Prefer);
    let (s, _) = call(
        &api,
        "PUT",
        &format!("/admin/orgs/{org}/byok"),
        Some(admin),
        json!({"mode": "only"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(cache.prefetch(&org).await.unwrap().mode(), ByokMode::Only);
    let (s, _) = call(
        &api,
        "DELETE",
        &format!("/admin/orgs/{org}/byok/openai"),
        Some(admin),
        Value::Null,
    )
    .await;
    assert_eq!(s, 200);
    assert!(!cache.prefetch(&org).await.unwrap().has_key("openai"));
}
