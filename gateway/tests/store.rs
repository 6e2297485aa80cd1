//! The store against real databases: every test runs on SQLite and on PostgreSQL (a fresh
//! database per test, dropped afterwards). PostgreSQL comes from `TOLLGATE_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/test`); without a server the PostgreSQL half is
//! skipped loudly, except under CI (`CI=true`), where that is a failure.

mod common;

use common::{on_both, on_both_urls};
use tollgate::store::{now_ms, ChargeEntry, ResponseState, Store, UsageEvent};

const SECRET: &[u8] = b"store-test-secret";

fn event(request_id: &str, org: &str, cost: i64) -> UsageEvent {
    common::usage_event(request_id, org, "key", cost)
}

fn charge(request_id: &str, org: &str, amount: i64) -> ChargeEntry {
    common::charge_entry(request_id, org, "", amount)
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

#[tokio::test]
async fn usage_records_keep_their_format_and_whether_estimated() {
    on_both(|store| async move {
        let org = store.create_org("o").await.unwrap();
        let mut messages = event("r-msg", &org.id, 10);
        messages.format = "anthropic-messages".into();
        messages.estimated = true;
        messages.created_at = 3;
        let mut responses = event("r-resp", &org.id, 10);
        responses.format = "openai-responses".into();
        responses.created_at = 2;
        let mut embeddings = event("r-emb", &org.id, 10);
        embeddings.format = "openai-embeddings".into();
        embeddings.estimated = true;
        embeddings.created_at = 1;
        store
            .record_usage(&[messages, responses, embeddings], &[])
            .await
            .unwrap();
        let rows = store.usage(Some(&org.id), 10).await.unwrap();
        let got: Vec<(&str, &str, bool)> = rows
            .iter()
            .map(|e| (e.request_id.as_str(), e.format.as_str(), e.estimated))
            .collect();
        assert_eq!(
            got,
            [
                ("r-msg", "anthropic-messages", true),
                ("r-resp", "openai-responses", false),
                ("r-emb", "openai-embeddings", true),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn the_row_by_row_retry_and_the_dead_letter_file_keep_format_and_estimated() {
    on_both(|store| async move {
        let org = store.create_org("o").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("dead.jsonl");
        let writer = tollgate::store::UsageWriter::spawn(
            store.clone(),
            64,
            std::time::Duration::from_secs(5),
            dead.clone(),
        );
        let mut good = event("ok", &org.id, 0);
        good.format = "anthropic-messages".into();
        good.estimated = true;
        // A charge for an org that does not exist fails the batch, so the good row goes
        // through the row-by-row path.
        let mut bad = event("bad", "org_missing", 5);
        bad.format = "openai-responses".into();
        bad.estimated = true;
        writer.record(good, None).await;
        writer
            .record(bad, Some(charge("bad", "org_missing", 5)))
            .await;
        writer.flush().await;
        let rows = store.usage(Some(&org.id), 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].format.as_str(), rows[0].estimated),
            ("anthropic-messages", true)
        );
        let text = std::fs::read_to_string(&dead).expect("dead-letter file written");
        let kept: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(kept["event"]["format"], "openai-responses");
        assert_eq!(kept["event"]["estimated"], true);
    })
    .await;
}

#[test]
fn format_names_are_the_wit_kebab_case_names() {
    use tollgate::plugins::bindings::ApiFormat;
    use tollgate::store::format_name;
    assert_eq!(format_name(ApiFormat::OpenaiChat), "openai-chat");
    assert_eq!(
        format_name(ApiFormat::AnthropicMessages),
        "anthropic-messages"
    );
    assert_eq!(format_name(ApiFormat::OpenaiResponses), "openai-responses");
    assert_eq!(
        format_name(ApiFormat::OpenaiEmbeddings),
        "openai-embeddings"
    );
    assert_eq!(format_name(ApiFormat::Gemini), "gemini");
}

/// Migrations up to and including this version are "the previous schema".
const PREVIOUS_SCHEMA: i64 = 2;

#[tokio::test]
async fn migrating_from_the_previous_schema_keeps_old_usage_rows() {
    on_both_urls(|url| async move {
        sqlx::any::install_default_drivers();
        let dir = if url.starts_with("sqlite:") {
            "sqlite"
        } else {
            "postgres"
        };
        let all = sqlx::migrate::Migrator::new(std::path::Path::new(&format!(
            "{}/migrations/{dir}",
            env!("CARGO_MANIFEST_DIR")
        )))
        .await
        .unwrap();
        assert!(all.iter().any(|m| m.version > PREVIOUS_SCHEMA));
        let mut old = sqlx::migrate::Migrator::new(std::path::Path::new(&format!(
            "{}/migrations/{dir}",
            env!("CARGO_MANIFEST_DIR")
        )))
        .await
        .unwrap();
        old.migrations = old
            .iter()
            .filter(|m| m.version <= PREVIOUS_SCHEMA)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        let pool_url = if dir == "sqlite" {
            format!("{url}?mode=rwc")
        } else {
            url.clone()
        };
        let pool = sqlx::AnyPool::connect(&pool_url).await.unwrap();
        old.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO usage_events (request_id, org_id, key_id, model, provider, input_tokens, \
             output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_micros, \
             latency_ms, status, stream, attempts, client_ip, created_at) \
             VALUES ('old-1', 'org_old', 'key', 'm', 'p', 1, 2, 0, 0, 0, 7, 3, 200, 1, '[]', NULL, 42)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = Store::connect(&url).await.unwrap();
        let rows = store.usage(Some("org_old"), 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        let e = &rows[0];
        assert_eq!(
            (e.request_id.as_str(), e.cost_micros, e.stream, e.created_at),
            ("old-1", 7, true, 42)
        );
        assert_eq!((e.format.as_str(), e.estimated), ("openai-chat", false));
        // And the new table is there.
        assert!(store
            .get_response_state("resp_x", "org_old", 0)
            .await
            .unwrap()
            .is_none());
        store.close().await;
    })
    .await;
}

fn state(id: &str, org: &str, created_at: i64, expires_at: i64) -> ResponseState {
    ResponseState {
        id: id.into(),
        org_id: org.into(),
        key_id: "key_1".into(),
        response: format!(r#"{{"id":"{id}","object":"response","output":[]}}"#),
        messages: r#"[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]"#
            .into(),
        created_at,
        expires_at,
    }
}

#[tokio::test]
async fn response_states_are_read_back_by_their_own_org_only() {
    on_both(|store| async move {
        let s = state("resp_1", "org_a", 1_000, 10_000);
        store.put_response_state(&s).await.unwrap();
        assert_eq!(
            store
                .get_response_state("resp_1", "org_a", 1_000)
                .await
                .unwrap(),
            Some(s.clone())
        );
        assert_eq!(
            store
                .get_response_state("resp_1", "org_b", 1_000)
                .await
                .unwrap(),
            None,
            "another org sees nothing"
        );
        assert_eq!(
            store
                .get_response_state("resp_missing", "org_a", 1_000)
                .await
                .unwrap(),
            None
        );
        // The id is unique: a second put is refused and the first state stays.
        let mut other = state("resp_1", "org_b", 2_000, 20_000);
        other.response = "{}".into();
        assert!(store.put_response_state(&other).await.is_err());
        assert_eq!(
            store
                .get_response_state("resp_1", "org_a", 1_000)
                .await
                .unwrap(),
            Some(s)
        );
    })
    .await;
}

#[tokio::test]
async fn an_expired_response_state_is_gone_before_the_purge_runs() {
    on_both(|store| async move {
        store
            .put_response_state(&state("resp_e", "org_a", 1_000, 5_000))
            .await
            .unwrap();
        let get = |now| {
            let store = store.clone();
            async move {
                store
                    .get_response_state("resp_e", "org_a", now)
                    .await
                    .unwrap()
            }
        };
        assert!(get(4_999).await.is_some());
        assert!(get(5_000).await.is_none(), "expires_at itself is expired");
        assert!(get(9_000).await.is_none());
        // Still in the table (nothing purged), so the owner can still delete it.
        assert!(store
            .delete_response_state("resp_e", "org_a")
            .await
            .unwrap());
    })
    .await;
}

#[tokio::test]
async fn response_states_are_deleted_by_their_own_org_only() {
    on_both(|store| async move {
        store
            .put_response_state(&state("resp_d", "org_a", 1_000, 10_000))
            .await
            .unwrap();
        assert!(
            !store
                .delete_response_state("resp_d", "org_b")
                .await
                .unwrap(),
            "another org cannot delete it"
        );
        assert!(store
            .get_response_state("resp_d", "org_a", 1_000)
            .await
            .unwrap()
            .is_some());
        assert!(store
            .delete_response_state("resp_d", "org_a")
            .await
            .unwrap());
        assert!(store
            .get_response_state("resp_d", "org_a", 1_000)
            .await
            .unwrap()
            .is_none());
        assert!(
            !store
                .delete_response_state("resp_d", "org_a")
                .await
                .unwrap(),
            "deleting twice finds nothing"
        );
    })
    .await;
}

#[tokio::test]
async fn purge_deletes_only_expired_response_states_a_batch_at_a_time() {
    on_both(|store| async move {
        // Five expire at 100..=500, three live until 10_000.
        for i in 1..=5 {
            store
                .put_response_state(&state(&format!("resp_old{i}"), "org_a", 0, i * 100))
                .await
                .unwrap();
        }
        for i in 1..=3 {
            store
                .put_response_state(&state(&format!("resp_live{i}"), "org_a", 0, 10_000))
                .await
                .unwrap();
        }
        assert_eq!(store.purge_response_states(50, 10).await.unwrap(), 0);
        assert_eq!(store.purge_response_states(1_000, 2).await.unwrap(), 2);
        assert_eq!(store.purge_response_states(1_000, 2).await.unwrap(), 2);
        assert_eq!(store.purge_response_states(1_000, 2).await.unwrap(), 1);
        assert_eq!(store.purge_response_states(1_000, 2).await.unwrap(), 0);
        assert_eq!(store.purge_response_states(1_000, 0).await.unwrap(), 0);
        // The expired rows are gone from the table itself (even with an earlier clock)...
        for i in 1..=5 {
            assert!(!store
                .delete_response_state(&format!("resp_old{i}"), "org_a")
                .await
                .unwrap());
        }
        // ...and the live ones all remain.
        for i in 1..=3 {
            assert!(store
                .get_response_state(&format!("resp_live{i}"), "org_a", 1_000)
                .await
                .unwrap()
                .is_some());
        }
    })
    .await;
}

#[tokio::test]
async fn the_purge_task_clears_a_backlog_larger_than_one_batch() {
    on_both(|store| async move {
        let now = now_ms();
        for i in 0..7 {
            store
                .put_response_state(&state(&format!("resp_x{i}"), "org_a", 0, now - 1_000))
                .await
                .unwrap();
        }
        store
            .put_response_state(&state("resp_keep", "org_a", 0, now + 3_600_000))
            .await
            .unwrap();
        // A long interval: only the first round's repeated batches can clear all seven.
        let task = tollgate::store::spawn_response_purge(
            store.clone(),
            std::time::Duration::from_secs(3600),
            3,
        );
        // A clock before expiry still sees a row that is in the table.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mut left = 0;
            for i in 0..7 {
                let id = format!("resp_x{i}");
                if store
                    .get_response_state(&id, "org_a", 0)
                    .await
                    .unwrap()
                    .is_some()
                {
                    left += 1;
                }
            }
            if left == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the purge task left {left} expired rows"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(store
            .get_response_state("resp_keep", "org_a", now)
            .await
            .unwrap()
            .is_some());
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn charges_consume_the_soonest_expiring_grant_so_expiry_never_counts_twice() {
    on_both(|store| async move {
        let org = store.create_org("expiring").await.unwrap();
        let now = now_ms();
        let hour = 3_600_000;
        // 5 USD expiring in an hour, 5 USD never expiring, 2 USD expiring in two hours.
        store
            .add_credits(&org.id, 5_000_000, now + hour, "soon")
            .await
            .unwrap();
        store
            .add_credits(&org.id, 5_000_000, 0, "forever")
            .await
            .unwrap();
        store
            .add_credits(&org.id, 2_000_000, now + 2 * hour, "later")
            .await
            .unwrap();
        store
            .record_usage(
                &[event("spend", &org.id, 6_000_000)],
                &[charge("spend", &org.id, 6_000_000)],
            )
            .await
            .unwrap();
        assert_eq!(store.balance(&org.id).await.unwrap(), Some(6_000_000));
        // The first grant was spent whole (5), the next to expire gave 1: after both expire,
        // only the never-expiring 5 is left. (The old formula, unexpired grants minus all
        // charges, said 5 - 6 = -1: the spent grant subtracted a second time.)
        assert_eq!(
            store.balance_at(&org.id, now + hour + 1).await.unwrap(),
            Some(6_000_000)
        );
        assert_eq!(
            store.balance_at(&org.id, now + 2 * hour + 1).await.unwrap(),
            Some(5_000_000)
        );
        // A charge larger than what is left stops the balance at zero, never below.
        store
            .record_usage(
                &[event("big", &org.id, 9_000_000)],
                &[charge("big", &org.id, 9_000_000)],
            )
            .await
            .unwrap();
        assert_eq!(store.balance(&org.id).await.unwrap(), Some(0));
    })
    .await;
}

#[tokio::test]
async fn migrating_gives_existing_grants_what_is_left_of_them() {
    on_both_urls(|url| async move {
        sqlx::any::install_default_drivers();
        let dir = if url.starts_with("sqlite:") { "sqlite" } else { "postgres" };
        let path = format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR"));
        let mut old = sqlx::migrate::Migrator::new(std::path::Path::new(&path)).await.unwrap();
        old.migrations = old
            .iter()
            .filter(|m| m.version < 5)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        let pool_url = if dir == "sqlite" { format!("{url}?mode=rwc") } else { url.clone() };
        let pool = sqlx::AnyPool::connect(&pool_url).await.unwrap();
        old.run(&pool).await.unwrap();
        let far = now_ms() + 86_400_000;
        for stmt in [
            "INSERT INTO orgs (id, name, created_at) VALUES ('org_m', 'm', 1)".to_string(),
            format!("INSERT INTO credit_ledger (org_id, kind, amount_micros, expires_at, memo, created_at) VALUES ('org_m', 'grant', 3000000, {far}, '', 1)"),
            "INSERT INTO credit_ledger (org_id, kind, amount_micros, expires_at, memo, created_at) VALUES ('org_m', 'grant', 4000000, 0, '', 2)".to_string(),
            "INSERT INTO credit_ledger (org_id, kind, amount_micros, request_id, memo, created_at) VALUES ('org_m', 'charge', 3500000, 'old', '', 3)".to_string(),
            "INSERT INTO credit_accounts (org_id, charged_micros) VALUES ('org_m', 3500000)".to_string(),
        ] {
            sqlx::query(&stmt).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let store = Store::connect(&url).await.unwrap();
        // 3.5 charged: the expiring 3 spent, 0.5 of the never-expiring 4.
        assert_eq!(store.balance("org_m").await.unwrap(), Some(3_500_000));
        assert_eq!(store.balance_at("org_m", far + 1).await.unwrap(), Some(3_500_000));
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn concurrent_reservations_never_hold_more_than_the_balance() {
    on_both(|store| async move {
        use tollgate::store::Reservation;
        let org = store.create_org("burst").await.unwrap();
        store.add_credits(&org.id, 10_000, 0, "ten").await.unwrap();
        let now = now_ms();
        // 100 requests at once, each holding 1,000: exactly 10 fit.
        let tries = (0..100).map(|i| {
            let store = store.clone();
            let org = org.id.clone();
            tokio::spawn(async move { store.reserve(&org, &format!("r{i}"), 1_000, now).await })
        });
        let mut held = Vec::new();
        for (i, t) in tries.enumerate() {
            if t.await.unwrap().unwrap() == Reservation::Held {
                held.push(i);
            }
        }
        assert_eq!(held.len(), 10, "held: {held:?}");
        assert_eq!(store.held(&org.id).await.unwrap(), 10_000);
        assert_eq!(store.balance(&org.id).await.unwrap(), Some(0));
        // A second reservation for a held request changes nothing.
        let again = format!("r{}", held[0]);
        assert_eq!(
            store.reserve(&org.id, &again, 1_000, now).await.unwrap(),
            Reservation::Held
        );
        assert_eq!(store.held(&org.id).await.unwrap(), 10_000);
        // Settling: the usage transaction releases the hold and charges the exact cost.
        for i in &held {
            let id = format!("r{i}");
            store
                .record_usage(&[event(&id, &org.id, 600)], &[charge(&id, &org.id, 600)])
                .await
                .unwrap();
        }
        assert_eq!(store.held(&org.id).await.unwrap(), 0);
        assert_eq!(store.balance(&org.id).await.unwrap(), Some(4_000));
        // Insufficient says what is available; a release without a record, and the stale sweep.
        assert_eq!(
            store.reserve(&org.id, "big", 5_000, now).await.unwrap(),
            Reservation::Insufficient {
                available_micros: 4_000
            }
        );
        assert_eq!(
            store.reserve(&org.id, "a", 3_000, now).await.unwrap(),
            Reservation::Held
        );
        store.release_hold("a").await.unwrap();
        store.release_hold("a").await.unwrap();
        assert_eq!(store.held(&org.id).await.unwrap(), 0);
        assert_eq!(
            store
                .reserve(&org.id, "b", 3_000, now - 1_000_000)
                .await
                .unwrap(),
            Reservation::Held
        );
        assert_eq!(store.release_stale_holds(now - 1).await.unwrap(), 1);
        assert_eq!(store.balance(&org.id).await.unwrap(), Some(4_000));
    })
    .await;
}
