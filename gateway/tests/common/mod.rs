//! Shared by the integration tests: run a test on a fresh SQLite file and on a fresh
//! PostgreSQL database (dropped afterwards). PostgreSQL comes from `TOLLGATE_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/test`); without a server the PostgreSQL half is
//! skipped loudly, except under CI (`CI=true`), where that is a failure.
#![allow(dead_code)]

pub mod byok;

use std::future::Future;

use sqlx::Connection;
use tollgate::store::Store;

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
