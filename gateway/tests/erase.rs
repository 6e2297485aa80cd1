//! Deleting an org leaves no personal data: after `Store::delete_org`, every column of every
//! table (listed from the database itself, so a table added later is covered) is scanned for
//! each identifying value of the deleted org — and, on SQLite, the raw database file and its
//! WAL too — while its usage and ledger sums survive under the tombstone and another org is
//! untouched. On SQLite and PostgreSQL.

mod common;

use sqlx::Row;
use tollgate::store::{now_ms, Audit, LowBalance, ResponseState, Role, Store, StoredContent};

const SECRET: &[u8] = b"erase-test-secret";

/// Every table's every value as text: (table, column, value).
async fn every_value(pool: &sqlx::AnyPool, postgres: bool) -> Vec<(String, String, String)> {
    let tables: Vec<String> = if postgres {
        sqlx::query("SELECT table_name::text AS t FROM information_schema.tables WHERE table_schema = 'public'")
    } else {
        sqlx::query("SELECT name AS t FROM sqlite_master WHERE type = 'table'")
    }
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("t"))
    // sqlx's own bookkeeping: migration names and checksums (binary), nothing of an org.
    .filter(|t| t != "_sqlx_migrations")
    .collect();
    assert!(tables.iter().any(|t| t == "request_content"), "{tables:?}");
    let mut out = Vec::new();
    for table in tables {
        let columns: Vec<String> = if postgres {
            sqlx::query(
                "SELECT column_name::text AS c FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = $1",
            )
            .bind(&table)
        } else {
            sqlx::query("SELECT name AS c FROM pragma_table_info($1)").bind(&table)
        }
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("c"))
        .collect();
        for column in columns {
            let sql = format!("SELECT CAST(\"{column}\" AS TEXT) AS v FROM \"{table}\"");
            for row in sqlx::query(&sql).fetch_all(pool).await.unwrap() {
                if let Some(v) = row.get::<Option<String>, _>("v") {
                    out.push((table.clone(), column.clone(), v));
                }
            }
        }
    }
    out
}

async fn sum(pool: &sqlx::AnyPool, sql: &str, org: &str) -> i64 {
    sqlx::query(sql)
        .bind(org)
        .fetch_one(pool)
        .await
        .unwrap()
        .get::<i64, _>(0)
}

/// An org with something in every table; returns the values that identify it.
async fn populated_org(store: &Store, name: &str, ip_net: &str) -> (String, Vec<String>) {
    let org = store.create_org(name).await.unwrap();
    let op = |action: &str, target: &str| Audit::new("operator", &org.id, action, target);
    let (member, token) = store
        .add_member(
            &org.id,
            &format!("{name}.owner@example.com"),
            Role::Owner,
            SECRET,
            &op("member.add", ""),
        )
        .await
        .unwrap();
    let (key, plaintext) = store
        .create_key(&org.id, &format!("{name}-laptop"), SECRET, 0)
        .await
        .unwrap();
    store
        .add_credits(&org.id, 5_000_000, 0, &format!("invoice for {name}"))
        .await
        .unwrap();
    let m = common::byok::master(7);
    let sealed = common::byok::put(
        store,
        &m,
        &org.id,
        "openai",
        &format!("sk-{name}-provider-secret"),
    )
    .await;
    let webhook = format!("https://hooks.example.com/{name}");
    store
        .set_low_balance(
            &org.id,
            &LowBalance {
                threshold_micros: 1_000_000,
                webhook: webhook.clone(),
                auto_top_up_micros: 0,
            },
        )
        .await
        .unwrap();
    let marker = format!("MARKER-{name}-content");
    let mut events = Vec::new();
    let mut charges = Vec::new();
    for i in 0..3u8 {
        let rid = tollgate::store::new_id("req"); // random, as the gateway's are
        let mut e = common::usage_event(&rid, &org.id, &key.id, 1000);
        e.client_ip = Some(format!("{ip_net}.{}", 10 + i));
        e.ip_expires_at = Some(now_ms() + 86_400_000);
        e.content = Some(Box::new(StoredContent {
            request_id: rid.clone(),
            org_id: org.id.clone(),
            key_id: key.id.clone(),
            request_body: format!("{{\"content\":\"{marker}\"}}"),
            response_body: format!("data: {marker}\n\n"),
            truncated: false,
            created_at: now_ms(),
            expires_at: now_ms() + 86_400_000,
        }));
        events.push(e);
        charges.push(common::charge_entry(&rid, &org.id, &key.id, 1000));
    }
    store.record_usage(&events, &charges).await.unwrap();
    store
        .put_response_state(&ResponseState {
            id: format!("resp_{name}"),
            org_id: org.id.clone(),
            key_id: key.id.clone(),
            response: format!("{{\"output\":\"{marker}\"}}"),
            messages: format!("[\"{marker}\"]"),
            created_at: now_ms(),
            expires_at: now_ms() + 3_600_000,
        })
        .await
        .unwrap();
    let identifying = vec![
        org.id.clone(),
        name.to_string(),
        member.id.clone(),
        member.name.clone(),
        token[..11].to_string(),
        key.id.clone(),
        key.name.clone(),
        key.prefix.clone(),
        key.key_hash.clone(),
        sealed.ciphertext.clone(),
        webhook,
        format!("{ip_net}.1"),
        marker,
        format!("invoice for {name}"),
        // Last: never stored at all (keys are kept as keyed hashes).
        plaintext[10..].to_string(),
    ];
    (org.id, identifying)
}

#[tokio::test]
async fn deleting_an_org_leaves_no_personal_data_and_keeps_the_books() {
    common::on_both_urls(|url| async move {
        let postgres = url.starts_with("postgres");
        let store = Store::connect(&url).await.unwrap();
        let raw = common::byok::raw_pool(&url).await;
        let (gone, identifying) = populated_org(&store, "zorgon", "203.0.113").await;
        let (kept, kept_values) = populated_org(&store, "keptco", "198.51.100").await;
        let usage_sql = "SELECT CAST(COALESCE(SUM(cost_micros + input_tokens + output_tokens), 0) AS BIGINT) FROM usage_events WHERE org_id = $1";
        let ledger_sql = "SELECT CAST(COALESCE(SUM(amount_micros), 0) AS BIGINT) FROM credit_ledger WHERE org_id = $1";
        let usage_before = sum(&raw, usage_sql, &gone).await;
        let ledger_before = sum(&raw, ledger_sql, &gone).await;
        assert!(usage_before > 0 && ledger_before > 0);

        let report = store
            .delete_org(&gone, &Audit::new("operator", &gone, "org.delete", &gone))
            .await
            .unwrap();
        assert!(report.tombstone.starts_with("del_"), "{report:?}");
        assert_eq!((report.members, report.api_keys, report.provider_credentials), (1, 1, 1));
        assert_eq!((report.request_content, report.response_states), (3, 1));
        assert_eq!(report.usage_rows_anonymised, 3);
        assert!(report.audit_entries_erased >= 1);

        // Nothing that identifies the deleted org is left, in any column of any table.
        let values = every_value(&raw, postgres).await;
        for needle in &identifying {
            let found: Vec<_> = values.iter().filter(|(_, _, v)| v.contains(needle.as_str())).collect();
            assert!(found.is_empty(), "'{needle}' survived the deletion in {found:?}");
        }
        // The other org is intact.
        for needle in &kept_values[..kept_values.len() - 1] {
            assert!(values.iter().any(|(_, _, v)| v.contains(needle.as_str())), "'{needle}' of the other org lost");
        }
        // The books: the same usage and ledger sums, under the tombstone.
        assert_eq!(sum(&raw, usage_sql, &report.tombstone).await, usage_before);
        assert_eq!(sum(&raw, ledger_sql, &report.tombstone).await, ledger_before);
        assert!(store.org(&gone).await.unwrap().is_none());
        assert!(store.delete_org(&gone, &Audit::new("operator", &gone, "org.delete", &gone)).await.is_err());
        assert!(store.balance(&kept).await.unwrap().unwrap() > 0);

        // The audit log is still append-only: only the erasing update is allowed.
        assert!(sqlx::query("UPDATE audit_log SET actor = 'x' WHERE org_id = $1")
            .bind(&kept)
            .execute(&raw)
            .await
            .is_err());
        assert!(sqlx::query("DELETE FROM audit_log").execute(&raw).await.is_err());

        if !postgres {
            // secure_delete + the checkpoint: gone from the file and the WAL, not only the tables.
            let path = url.trim_start_matches("sqlite://");
            let mut bytes = std::fs::read(path).unwrap();
            bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
            for needle in &identifying {
                let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
                assert!(!found, "'{needle}' is still in the SQLite files");
            }
        }
        raw.close().await;
        store.close().await;
    })
    .await;
}
