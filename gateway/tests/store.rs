//! The store against real databases: every test runs on SQLite and on PostgreSQL (a fresh
//! database per test, dropped afterwards). PostgreSQL comes from `TOLLGATE_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/test`); without a server the PostgreSQL half is
//! skipped loudly, except under CI (`CI=true`), where that is a failure.

use std::future::Future;

use sqlx::Connection;
use tollgate::store::{now_ms, ChargeEntry, Store, UsageEvent};

const SECRET: &[u8] = b"store-test-secret";

fn pg_admin_url() -> Option<String> {
    let url = std::env::var("TOLLGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    (url != "skip").then_some(url)
}

async fn pg_admin(url: &str) -> Option<sqlx::PgConnection> {
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
async fn on_both<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::connect(&format!("sqlite://{}/t.db", dir.path().display()))
        .await
        .unwrap();
    test(sqlite.clone()).await;
    sqlite.close().await;

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
    let pg = Store::connect(&url).await.unwrap();
    test(pg.clone()).await;
    pg.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

fn event(request_id: &str, org: &str, cost: i64) -> UsageEvent {
    UsageEvent {
        request_id: request_id.into(),
        org_id: org.into(),
        key_id: "key".into(),
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
        client_ip: None,
        created_at: now_ms(),
    }
}

fn charge(request_id: &str, org: &str, amount: i64) -> ChargeEntry {
    ChargeEntry {
        org_id: org.into(),
        request_id: request_id.into(),
        amount_micros: amount,
        memo: "test".into(),
    }
}

#[tokio::test]
async fn keys_are_stored_only_as_keyed_hash_and_prefix() {
    on_both(|store| async move {
        let org = store.create_org("acme").await.unwrap();
        let (key, plaintext) = store.create_key(&org.id, "ci", SECRET, 0).await.unwrap();
        assert!(plaintext.starts_with("tg-") && plaintext.len() > 40);
        assert_eq!(key.prefix, &plaintext[..10]);
        let found = store
            .key_by_hash(&tollgate::keys::keyed_hash(SECRET, &plaintext))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, key.id);
        assert!(store.key_by_hash("nope").await.unwrap().is_none());
        // No column of the key row holds the plaintext (or its unkeyed remainder).
        let all = format!("{:?}", store.keys(None).await.unwrap());
        assert!(!all.contains(&plaintext[10..]), "plaintext stored: {all}");
        store.revoke_key(&key.id).await.unwrap();
        assert!(store
            .key_by_hash(&found.key_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some());
        assert!(
            store.revoke_key(&key.id).await.is_err(),
            "revoking twice is an error"
        );
        assert_eq!(store.find_org("acme").await.unwrap().id, org.id);
    })
    .await;
}

#[tokio::test]
async fn balance_counts_unexpired_grants_minus_charges() {
    on_both(|store| async move {
        let org = store.create_org("o").await.unwrap();
        assert_eq!(store.balance(&org.id).await.unwrap(), Some(0));
        assert_eq!(store.balance("org_unknown").await.unwrap(), None);
        store
            .add_credits(&org.id, 5_000_000, 0, "grant")
            .await
            .unwrap();
        store
            .add_credits(&org.id, 1_000_000, now_ms() - 1, "expired")
            .await
            .unwrap();
        store
            .add_credits(&org.id, 2_000_000, now_ms() + 86_400_000, "year")
            .await
            .unwrap();
        assert_eq!(store.balance(&org.id).await.unwrap(), Some(7_000_000));
        store
            .record_usage(
                &[event("r1", &org.id, 1500)],
                &[charge("r1", &org.id, 1500)],
            )
            .await
            .unwrap();
        assert_eq!(store.balance(&org.id).await.unwrap(), Some(6_998_500));
    })
    .await;
}

#[tokio::test]
async fn usage_and_charges_are_recorded_exactly_once() {
    on_both(|store| async move {
        let org = store.create_org("o").await.unwrap();
        store.add_credits(&org.id, 1_000_000, 0, "g").await.unwrap();
        let batch = [event("dup", &org.id, 700)];
        let charges = [charge("dup", &org.id, 700)];
        store.record_usage(&batch, &charges).await.unwrap();
        store.record_usage(&batch, &charges).await.unwrap();
        assert_eq!(store.usage(Some(&org.id), 10).await.unwrap().len(), 1);
        assert_eq!(store.charges_for_request("dup").await.unwrap(), 1);
        assert_eq!(store.balance(&org.id).await.unwrap(), Some(999_300));
    })
    .await;
}

#[tokio::test]
async fn concurrent_usage_writes_keep_the_balance_exact() {
    on_both(|store| async move {
        let org = store.create_org("busy").await.unwrap();
        store
            .add_credits(&org.id, 10_000_000, 0, "g")
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let writer = tollgate::store::UsageWriter::spawn(
            store.clone(),
            16,
            std::time::Duration::from_millis(20),
            dir.path().join("dead.jsonl"),
        );
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let writer = writer.clone();
                let org = org.id.clone();
                tokio::spawn(async move {
                    let id = format!("req-{i}");
                    writer
                        .record(event(&id, &org, 100 + i), Some(charge(&id, &org, 100 + i)))
                        .await;
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        writer.flush().await;
        let charged: i64 = (0..200).map(|i| 100 + i).sum();
        assert_eq!(store.usage(Some(&org.id), 1000).await.unwrap().len(), 200);
        assert_eq!(
            store.balance(&org.id).await.unwrap(),
            Some(10_000_000 - charged)
        );
    })
    .await;
}

#[tokio::test]
async fn one_bad_row_does_not_lose_the_rest_of_its_batch() {
    on_both(|store| async move {
        let org = store.create_org("good").await.unwrap();
        store.add_credits(&org.id, 1_000_000, 0, "g").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("dead.jsonl");
        // A long flush interval: all three records land in one batch.
        let writer = tollgate::store::UsageWriter::spawn(
            store.clone(),
            64,
            std::time::Duration::from_secs(5),
            dead.clone(),
        );
        writer
            .record(
                event("ok-1", &org.id, 100),
                Some(charge("ok-1", &org.id, 100)),
            )
            .await;
        // An org that does not exist: its charge violates the ledger's foreign key.
        writer
            .record(
                event("bad-1", "org_missing", 50),
                Some(charge("bad-1", "org_missing", 50)),
            )
            .await;
        writer
            .record(
                event("ok-2", &org.id, 200),
                Some(charge("ok-2", &org.id, 200)),
            )
            .await;
        writer.flush().await;
        let rows = store.usage(Some(&org.id), 10).await.unwrap();
        assert_eq!(rows.len(), 2, "the good rows were lost with the bad one");
        assert_eq!(store.balance(&org.id).await.unwrap(), Some(1_000_000 - 300));
        let text = std::fs::read_to_string(&dead).expect("dead-letter file written");
        let kept: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(kept.len(), 1, "{text}");
        assert_eq!(kept[0]["event"]["request_id"], "bad-1");
        assert_eq!(kept[0]["charges"][0]["amount_micros"], 50);
    })
    .await;
}
