//! BYOK against real databases (SQLite and PostgreSQL): sealing and opening provider keys,
//! what fails to open (wrong master, altered or moved ciphertext), the store, master-key rotation
//! (all rows or none, resumable), and the must-show: a stored provider key appears in no column
//! of any table, nor in the SQLite file or its WAL. The cache and the CLI: `byok_cache_cli.rs`.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{on_both, on_both_urls};
use sqlx::Row;
use tollgate::byok::{new_credential_id, ByokError, ByokKeys, ByokMode, Sealed};
use tollgate::store::{Store, StoreError};

use common::byok::{master, put, raw_pool, settings};

#[test]
fn seal_open_and_what_does_not_open() {
    let (a, b) = (master(1), master(2));
    let sealed = a.seal("org_1", "openai", "pk_1", "sk-round-trip").unwrap();
    assert_eq!(
        a.open("org_1", "openai", &sealed).unwrap().expose(),
        "sk-round-trip"
    );
    assert!(!sealed.ciphertext.contains("sk-round-trip"));

    // Another master: reported as such, not as corruption.
    assert!(matches!(
        b.open("org_1", "openai", &sealed),
        Err(ByokError::WrongMaster { .. })
    ));
    // A master that lies about its id still cannot open it.
    let forged = Sealed {
        master_key_id: b.id().to_string(),
        ..sealed.clone()
    };
    assert!(matches!(
        b.open("org_1", "openai", &forged),
        Err(ByokError::Open)
    ));

    // One flipped bit anywhere in the ciphertext or the nonce.
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut ct = b64.decode(&sealed.ciphertext).unwrap();
    for i in [0, ct.len() / 2, ct.len() - 1] {
        ct[i] ^= 1;
        let bad = Sealed {
            ciphertext: b64.encode(&ct),
            ..sealed.clone()
        };
        assert!(
            matches!(a.open("org_1", "openai", &bad), Err(ByokError::Open)),
            "byte {i}"
        );
        ct[i] ^= 1;
    }
    let mut nonce = b64.decode(&sealed.nonce).unwrap();
    nonce[0] ^= 0x80;
    let bad = Sealed {
        nonce: b64.encode(&nonce),
        ..sealed.clone()
    };
    assert!(matches!(
        a.open("org_1", "openai", &bad),
        Err(ByokError::Open)
    ));

    // Moved: to another org, another provider, another row id.
    assert!(matches!(
        a.open("org_2", "openai", &sealed),
        Err(ByokError::Open)
    ));
    assert!(matches!(
        a.open("org_1", "anthropic", &sealed),
        Err(ByokError::Open)
    ));
    let moved = Sealed {
        credential_id: "pk_2".into(),
        ..sealed.clone()
    };
    assert!(matches!(
        a.open("org_1", "openai", &moved),
        Err(ByokError::Open)
    ));
}

#[tokio::test]
async fn store_keeps_sealed_keys_and_modes() {
    on_both(|store: Store| async move {
        let m = master(1);
        let org = store.create_org("acme").await.unwrap();
        assert_eq!(store.byok_mode(&org.id).await.unwrap(), ByokMode::Prefer);
        assert!(store
            .sealed_provider_key(&org.id, "openai")
            .await
            .unwrap()
            .is_none());

        let first = put(&store, &m, &org.id, "openai", "sk-first").await;
        let got = store
            .sealed_provider_key(&org.id, "openai")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, first);
        assert_eq!(
            m.open(&org.id, "openai", &got).unwrap().expose(),
            "sk-first"
        );

        // Replacing keeps one row per (org, provider), with the new row id it was sealed for.
        let second = put(&store, &m, &org.id, "openai", "sk-second").await;
        put(&store, &m, &org.id, "anthropic", "sk-ant").await;
        let listed = store.provider_keys(&org.id).await.unwrap();
        let providers: Vec<&str> = listed.iter().map(|k| k.provider.as_str()).collect();
        assert_eq!(providers, ["anthropic", "openai"]);
        assert_eq!(listed[1].id, second.credential_id);
        assert_eq!(listed[1].master_key_id, m.id());
        let shown = format!("{listed:?}{}", serde_json::to_string(&listed).unwrap());
        assert!(!shown.contains("sk-") && !shown.contains(&second.ciphertext));
        let got = store
            .sealed_provider_key(&org.id, "openai")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            m.open(&org.id, "openai", &got).unwrap().expose(),
            "sk-second"
        );
        assert_eq!(
            store.byok_master_ids().await.unwrap(),
            vec![(m.id().to_string(), 2)]
        );

        store.set_byok_mode(&org.id, ByokMode::Only).await.unwrap();
        assert_eq!(store.byok_mode(&org.id).await.unwrap(), ByokMode::Only);
        assert!(matches!(
            store.set_byok_mode("org_nope", ByokMode::Only).await,
            Err(StoreError::NotFound(_))
        ));
        let state = store.byok_state(&org.id).await.unwrap().unwrap();
        assert_eq!((state.mode, state.keys.len()), (ByokMode::Only, 2));

        store
            .delete_provider_key(&org.id, "anthropic")
            .await
            .unwrap();
        assert!(matches!(
            store.delete_provider_key(&org.id, "anthropic").await,
            Err(StoreError::NotFound(_))
        ));
        let other = m
            .seal("org_nope", "openai", &new_credential_id(), "sk-x")
            .unwrap();
        assert!(store
            .put_provider_key("org_nope", "openai", "", &other)
            .await
            .is_err());
    })
    .await;
}

#[tokio::test]
async fn rotation_reseals_every_row_and_can_be_rerun() {
    on_both(|store: Store| async move {
        let (old, new) = (master(1), master(2));
        let mut rows = Vec::new();
        for i in 0..3 {
            let org = store.create_org(&format!("org{i}")).await.unwrap();
            for p in ["openai", "anthropic"] {
                let secret = format!("sk-{p}-{i}");
                put(&store, &old, &org.id, p, &secret).await;
                rows.push((org.id.clone(), p, secret));
            }
        }
        let done = store.rotate_provider_keys(&old, &new).await.unwrap();
        assert_eq!((done.resealed, done.skipped), (6, 0));
        for (org, p, secret) in &rows {
            let sealed = store.sealed_provider_key(org, p).await.unwrap().unwrap();
            assert_eq!(sealed.master_key_id, new.id());
            assert_eq!(new.open(org, p, &sealed).unwrap().expose(), secret);
            assert!(old.open(org, p, &sealed).is_err());
            // Even an old master told the new id cannot open it.
            let forged = Sealed {
                master_key_id: old.id().to_string(),
                ..sealed
            };
            assert!(matches!(old.open(org, p, &forged), Err(ByokError::Open)));
        }
        // A re-run (as after a crash) skips what is done.
        let again = store.rotate_provider_keys(&old, &new).await.unwrap();
        assert_eq!((again.resealed, again.skipped), (0, 6));
        assert_eq!(
            store.byok_master_ids().await.unwrap(),
            vec![(new.id().to_string(), 6)]
        );
    })
    .await;
}

#[tokio::test]
async fn a_failed_rotation_changes_nothing() {
    on_both_urls(|url| async move {
        let store = Store::connect(&url).await.unwrap();
        let (old, new) = (master(1), master(2));
        let mut rows = Vec::new();
        for i in 0..5 {
            let org = store.create_org(&format!("org{i}")).await.unwrap();
            put(&store, &old, &org.id, "openai", &format!("sk-{i}")).await;
            rows.push((org.id.clone(), format!("sk-{i}")));
        }
        // Rows are rotated in (org, provider) order: alter the middle one, so the rotation
        // has re-sealed two rows in its transaction when it fails.
        rows.sort();
        let (bad_org, _) = rows.remove(2);
        let pool = raw_pool(&url).await;
        let sealed = store
            .sealed_provider_key(&bad_org, "openai")
            .await
            .unwrap()
            .unwrap();
        let mut ct = base64::engine::general_purpose::STANDARD
            .decode(&sealed.ciphertext)
            .unwrap();
        ct[0] ^= 1;
        sqlx::query("UPDATE provider_credentials SET ciphertext = $1 WHERE org_id = $2")
            .bind(base64::engine::general_purpose::STANDARD.encode(&ct))
            .bind(&bad_org)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;

        let err = store.rotate_provider_keys(&old, &new).await.unwrap_err();
        assert!(matches!(err, ByokError::Open), "{err}");
        for (org, secret) in &rows {
            let sealed = store
                .sealed_provider_key(org, "openai")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(sealed.master_key_id, old.id(), "rolled back");
            assert_eq!(old.open(org, "openai", &sealed).unwrap().expose(), secret);
        }
        assert_eq!(
            store.byok_master_ids().await.unwrap(),
            vec![(old.id().to_string(), 5)]
        );

        // A row under a third master also stops the rotation before anything changes.
        store.delete_provider_key(&bad_org, "openai").await.unwrap();
        put(&store, &master(3), &bad_org, "openai", "sk-third").await;
        let err = store.rotate_provider_keys(&old, &new).await.unwrap_err();
        assert!(matches!(err, ByokError::WrongMaster { .. }), "{err}");
        assert_eq!(
            store
                .byok_master_ids()
                .await
                .unwrap()
                .iter()
                .find(|(id, _)| id == old.id()),
            Some(&(old.id().to_string(), 4))
        );
        store.close().await;
    })
    .await;
}

/// Every column of every table, as text (`quote()` on SQLite, so blobs come out as hex).
async fn every_value(pool: &sqlx::AnyPool, sqlite: bool) -> (usize, Vec<String>) {
    let columns_sql = if sqlite {
        "SELECT m.name AS t, p.name AS c FROM sqlite_master m \
         JOIN pragma_table_info(m.name) p WHERE m.type = 'table'"
    } else {
        "SELECT CAST(table_name AS TEXT) AS t, CAST(column_name AS TEXT) AS c \
         FROM information_schema.columns WHERE table_schema = 'public'"
    };
    let columns = sqlx::query(columns_sql).fetch_all(pool).await.unwrap();
    let mut values = Vec::new();
    for col in &columns {
        let (t, c): (String, String) = (col.get("t"), col.get("c"));
        let expr = if sqlite {
            format!("quote(\"{c}\")")
        } else {
            format!("CAST(\"{c}\" AS TEXT)")
        };
        let rows = sqlx::query(&format!("SELECT {expr} AS v FROM \"{t}\""))
            .fetch_all(pool)
            .await
            .unwrap();
        values.extend(rows.iter().filter_map(|r| r.get::<Option<String>, _>("v")));
    }
    (columns.len(), values)
}

#[tokio::test]
async fn the_provider_key_is_in_no_column_of_any_table_nor_in_the_files() {
    on_both_urls(|url| async move {
        let sqlite = url.starts_with("sqlite:");
        let store = Store::connect(&url).await.unwrap();
        let m = master(1);
        let org = store.create_org("acme").await.unwrap();
        let secret = format!("sk-proj-{}", tollgate::store::new_id("marker"));
        let sealed = put(&store, &m, &org.id, "openai", &secret).await;
        store.set_byok_mode(&org.id, ByokMode::Only).await.unwrap();
        let keys = ByokKeys::with_master(
            store.clone(),
            &settings(),
            Some(master(1)),
            Duration::from_secs(2),
        );
        assert_eq!(
            keys.prefetch(&org.id)
                .await
                .unwrap()
                .secret("openai")
                .unwrap()
                .expose(),
            secret
        );

        let b64 = base64::engine::general_purpose::STANDARD.encode(secret.as_bytes());
        let forms = [
            secret.clone(),
            b64.trim_end_matches('=').to_string(),
            hex::encode(secret.as_bytes()),
            hex::encode_upper(secret.as_bytes()),
        ];
        let pool = raw_pool(&url).await;
        let (columns, values) = every_value(&pool, sqlite).await;
        pool.close().await;
        // The scan did read the row: its ciphertext is among the values.
        assert!(columns > 40, "only {columns} columns read");
        assert!(values.iter().any(|v| v.contains(&sealed.ciphertext)));
        for v in &values {
            for f in &forms {
                assert!(
                    !v.contains(f.as_str()),
                    "the provider key is stored in plain: {v}"
                );
            }
        }
        if sqlite {
            let path = url.trim_start_matches("sqlite://").to_string();
            let grep = |when: &str| {
                for suffix in ["", "-wal", "-journal"] {
                    let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) else {
                        continue;
                    };
                    for f in &forms {
                        assert!(
                            !bytes.windows(f.len()).any(|w| w == f.as_bytes()),
                            "the provider key is in {path}{suffix} ({when})"
                        );
                    }
                }
            };
            assert!(std::fs::metadata(format!("{path}-wal")).is_ok_and(|m| m.len() > 0));
            grep("open");
            store.close().await;
            grep("closed");
        } else {
            store.close().await;
        }
    })
    .await;
}
