//! `/admin/orgs/{org}/alerts` over a real SQLite store: who may read and set the low-balance
//! alert, body validation, USD to micro-USD conversion, clearing, and an audit entry that keeps
//! the webhook's host only.

use serde_json::{json, Value};

use super::{api, call, org_with_members, token, OPERATOR};
use crate::admin::*;
use crate::store::{LowBalance, Role};

const HOOK: &str = "https://hooks.example.com/tollgate?token=hook-secret-123";

#[tokio::test]
async fn owners_and_admins_read_and_set_the_alert_others_are_refused() {
    let (api, _dir) = api().await;
    let (org, members) = org_with_members(&api, "acme").await;
    let path = format!("/admin/orgs/{org}/alerts");
    let body = json!({"threshold_usd": 5.0, "webhook": HOOK, "auto_top_up_usd": 20.0});
    for role in [Role::Developer, Role::Restricted] {
        let t = Some(token(&members, role));
        for (method, action, b) in [
            ("GET", "alerts.read", Value::Null),
            ("PUT", "alerts.write", body.clone()),
        ] {
            let (s, e) = call(&api, method, &path, t, b).await;
            assert_eq!(s, 403, "{role:?} {method}: {e}");
            let msg = e["error"]["message"].as_str().unwrap();
            assert!(msg.contains(role.as_str()) && msg.contains(action), "{msg}");
        }
    }
    for t in [
        token(&members, Role::Owner),
        token(&members, Role::Admin),
        OPERATOR,
    ] {
        let (s, a) = call(&api, "PUT", &path, Some(t), body.clone()).await;
        assert_eq!(s, 200, "{a}");
        let (s, got) = call(&api, "GET", &path, Some(t), Value::Null).await;
        assert_eq!((s, &got), (200, &a));
        assert_eq!(got["enabled"], true);
        assert_eq!(got["threshold_micros"], 5_000_000);
        assert_eq!(got["auto_top_up_micros"], 20_000_000);
        assert_eq!(got["threshold_usd"], 5.0);
        assert_eq!(got["webhook"], HOOK);
    }
    // Stored as the sender reads it.
    assert_eq!(
        api.store.low_balance(&org).await.unwrap(),
        LowBalance {
            threshold_micros: 5_000_000,
            webhook: HOOK.into(),
            auto_top_up_micros: 20_000_000,
        }
    );
    // Another org is "not found" for a member, whatever its role.
    let (other, _) = org_with_members(&api, "other").await;
    let owner = token(&members, Role::Owner);
    let (s, _) = call(
        &api,
        "GET",
        &format!("/admin/orgs/{other}/alerts"),
        Some(owner),
        Value::Null,
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn amounts_round_like_credits_and_zero_clears_the_alert() {
    let (api, _dir) = api().await;
    let (org, _) = org_with_members(&api, "acme").await;
    let path = format!("/admin/orgs/{org}/alerts");
    // Nothing set yet.
    let (_, a) = call(&api, "GET", &path, Some(OPERATOR), Value::Null).await;
    assert_eq!(
        (&a["enabled"], &a["threshold_micros"], &a["webhook"]),
        (&json!(false), &json!(0), &Value::Null)
    );
    let (s, a) = call(
        &api,
        "PUT",
        &path,
        Some(OPERATOR),
        json!({"threshold_usd": 0.1234567, "webhook": "http://127.0.0.1:9/h"}),
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        (&a["threshold_micros"], &a["auto_top_up_micros"]),
        (&json!(123_457), &json!(0))
    );
    let (s, a) = call(
        &api,
        "PUT",
        &path,
        Some(OPERATOR),
        json!({"threshold_usd": 0}),
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        (&a["enabled"], &a["webhook"]),
        (&json!(false), &Value::Null)
    );
    let stored = api.store.low_balance(&org).await.unwrap();
    assert_eq!((stored.threshold_micros, stored.webhook.as_str()), (0, ""));
}

#[tokio::test]
async fn bodies_are_validated_without_quoting_the_webhook() {
    let (api, _dir) = api().await;
    let (org, _) = org_with_members(&api, "acme").await;
    let path = format!("/admin/orgs/{org}/alerts");
    let long = format!("https://h.example/{}", "a".repeat(2048));
    for (body, needle) in [
        (
            json!({"threshold_usd": -1, "webhook": HOOK}),
            "threshold_usd",
        ),
        (
            json!({"threshold_usd": 1e10, "webhook": HOOK}),
            "threshold_usd",
        ),
        (
            json!({"threshold_usd": 1e-9, "webhook": HOOK}),
            "threshold_usd",
        ),
        (
            json!({"threshold_usd": 1, "webhook": HOOK, "auto_top_up_usd": -0.5}),
            "auto_top_up_usd",
        ),
        (json!({"threshold_usd": 1}), "webhook"),
        (json!({"threshold_usd": 1, "webhook": ""}), "webhook"),
        (
            json!({"threshold_usd": 1, "webhook": "ftp://h.example/x?token=hook-secret-123"}),
            "webhook",
        ),
        (
            json!({"threshold_usd": 1, "webhook": "https://?token=hook-secret-123"}),
            "webhook",
        ),
        (
            json!({"threshold_usd": 1, "webhook": "hooks.example.com/x?token=hook-secret-123"}),
            "webhook",
        ),
        (json!({"threshold_usd": 1, "webhook": long}), "webhook"),
        (json!({"threshold_usd": "5", "webhook": HOOK}), "invalid"),
        (json!({"webhook": HOOK}), "threshold_usd"),
        (json!({"threshold_usd": 1, "webhook": HOOK, "x": 1}), "x"),
    ] {
        let (s, e) = call(&api, "PUT", &path, Some(OPERATOR), body.clone()).await;
        assert_eq!(s, 400, "{body}: {e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
        assert!(!msg.contains("hook-secret-123"), "{msg}");
    }
    assert_eq!(
        api.store.low_balance(&org).await.unwrap().threshold_micros,
        0
    );
    let (s, _) = call(&api, "POST", &path, Some(OPERATOR), json!({})).await;
    assert_eq!(s, 405);
}

#[tokio::test]
async fn changes_are_audited_with_the_webhook_host_only() {
    let (api, _dir) = api().await;
    let (org, members) = org_with_members(&api, "acme").await;
    let path = format!("/admin/orgs/{org}/alerts");
    let owner = token(&members, Role::Owner);
    let (s, _) = call(
        &api,
        "PUT",
        &path,
        Some(owner),
        json!({"threshold_usd": 2.5, "webhook": HOOK, "auto_top_up_usd": 10}),
    )
    .await;
    assert_eq!(s, 200);
    // The CLI's way in, audited as `cli`.
    api.call(&Caller::Cli, "PUT", &path, "", &json!({"threshold_usd": 0}))
        .await
        .unwrap();
    let log = api.store.audit_log(Some(&org), None, 2).await.unwrap();
    let owner_id = &members.iter().find(|m| m.0 == Role::Owner).unwrap().2;
    assert_eq!(
        (log[1].actor.as_str(), log[1].action.as_str()),
        (format!("member:{owner_id}").as_str(), "alerts.write")
    );
    assert_eq!(
        log[1].details,
        json!({"threshold_micros": 2_500_000, "auto_top_up_micros": 10_000_000,
               "webhook_host": "hooks.example.com", "cleared": false})
    );
    assert_eq!(
        (log[0].actor.as_str(), &log[0].details["cleared"]),
        ("cli", &json!(true))
    );
    for r in &log {
        assert!(!r.details.to_string().contains("hook-secret-123"));
        assert_eq!(r.target, org);
    }
}
