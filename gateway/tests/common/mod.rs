//! Shared by the integration tests: run a test on a fresh SQLite file and on a fresh
//! PostgreSQL database (dropped afterwards). PostgreSQL comes from `TOLLGATE_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/test`); without a server the PostgreSQL half is
//! skipped loudly, except under CI (`CI=true`), where that is a failure.
#![allow(dead_code)]

pub mod byok;

use std::future::Future;

use sqlx::Connection;
use tollgate::store::{now_ms, ChargeEntry, Store, UsageEvent};

pub fn pg_admin_url() -> Option<String> {
    let url = std::env::var("TOLLGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    (url != "skip").then_some(url)
}

pub async fn pg_admin(url: &str) -> Option<sqlx::PgConnection> {
    match sqlx::PgConnection::connect(url).await {
        Ok(c) => Some(c),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL unreachable at {url} under CI: {e}"
            );
            None
        }
    }
}

/// Runs `test` on a fresh SQLite file and on a fresh PostgreSQL database.
pub async fn on_both<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    on_both_urls(|url| {
        let test = &test;
        async move {
            let store = Store::connect(&url).await.unwrap();
            test(store.clone()).await;
            store.close().await;
        }
    })
    .await;
}

/// Runs `test` with the URL of a fresh, empty SQLite file and of a fresh, empty PostgreSQL
/// database (nothing migrated yet); the test closes whatever it opens.
pub async fn on_both_urls<F, Fut>(test: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    test(format!("sqlite://{}/t.db", dir.path().display())).await;

    let admin_url = pg_admin_url();
    let admin = match &admin_url {
        Some(url) => pg_admin(url).await,
        None => None,
    };
    let (Some(admin_url), Some(mut admin)) = (admin_url, admin) else {
        eprintln!("#### SKIPPED the PostgreSQL half of this test: no PostgreSQL server ####");
        return;
    };
    let name = format!("tollgate_store_{}", &tollgate::store::new_id("t")[2..14]);
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    test(url).await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// A usage event of 10 input and 5 output tokens costing `cost`, made with `key`.
pub fn usage_event(request_id: &str, org: &str, key: &str, cost: i64) -> UsageEvent {
    UsageEvent {
        request_id: request_id.into(),
        org_id: org.into(),
        key_id: key.into(),
        model: "m".into(),
        provider: "p".into(),
        input_tokens: 10,
        output_tokens: 5,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        cost_micros: cost,
        latency_ms: 3,
        status: 200,
        stream: true,
        attempts: "[]".into(),
        route: None,
        client_ip: None,
        created_at: now_ms(),
        format: "openai-chat".into(),
        estimated: false,
        expires_at: None,
        ip_expires_at: None,
        stored: true,
        content: None,
    }
}

/// The charge of a request (made with `key`, '' for none).
pub fn charge_entry(request_id: &str, org: &str, key: &str, amount: i64) -> ChargeEntry {
    ChargeEntry {
        org_id: org.into(),
        key_id: key.into(),
        request_id: request_id.into(),
        amount_micros: amount,
        memo: "test".into(),
    }
}
