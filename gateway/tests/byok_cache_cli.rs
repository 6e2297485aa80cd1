//! BYOK operations against real databases (SQLite and PostgreSQL): the request-path cache of
//! decrypted keys (modes, TTL, faults, a missing or wrong master key), a gateway following a
//! master-key file through a rotation, and the `tollgate byok` CLI end to end. The crypto, the
//! store, rotation and the must-show scan are in `byok.rs`.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{on_both, on_both_urls};
use tollgate::byok::{ByokError, ByokKeys, ByokMode, ByokSettings};
use tollgate::store::Store;

use common::byok::{master, put, raw_pool, settings};

#[tokio::test]
async fn the_cache_serves_keys_modes_and_faults() {
    on_both_urls(|url| async move {
        let store = Store::connect(&url).await.unwrap();
        let m = master(1);
        let (acme, other, bare) = (
            store.create_org("acme").await.unwrap(),
            store.create_org("other").await.unwrap(),
            store.create_org("bare").await.unwrap(),
        );
        let sealed = put(&store, &m, &acme.id, "openai", "sk-acme").await;
        put(&store, &m, &other.id, "openai", "sk-other").await;
        store
            .set_byok_mode(&acme.id, ByokMode::Fallback)
            .await
            .unwrap();
        let keys = ByokKeys::with_master(
            store.clone(),
            &settings(),
            Some(master(1)),
            Duration::from_millis(300),
        );
        assert_eq!(keys.check().await.unwrap(), 2);

        let got = keys.prefetch(&acme.id).await.unwrap();
        assert_eq!(got.secret("openai").unwrap().expose(), "sk-acme");
        assert_eq!(keys.secret(&acme.id, "openai").unwrap().expose(), "sk-acme");
        assert!(keys.secret(&acme.id, "anthropic").is_none());
        assert_eq!(keys.mode(&acme.id), ByokMode::Fallback);
        assert!(!format!("{got:?}").contains("sk-acme"));
        // An org without keys (or no org at all) is cached as none.
        keys.prefetch(&bare.id).await.unwrap();
        keys.prefetch("org_missing").await.unwrap();
        assert!(keys.secret(&bare.id, "openai").is_none());
        assert_eq!(keys.mode(&bare.id), ByokMode::Prefer);

        // Within the TTL the cache answers; invalidate or expiry reload.
        store.set_byok_mode(&acme.id, ByokMode::Only).await.unwrap();
        keys.prefetch(&acme.id).await.unwrap();
        assert_eq!(keys.mode(&acme.id), ByokMode::Fallback);
        keys.invalidate(&acme.id);
        keys.prefetch(&acme.id).await.unwrap();
        assert_eq!(keys.mode(&acme.id), ByokMode::Only);
        put(&store, &m, &bare.id, "openai", "sk-bare").await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            keys.secret(&bare.id, "openai").is_none(),
            "expired entries are gone"
        );
        keys.prefetch(&bare.id).await.unwrap();
        assert_eq!(keys.secret(&bare.id, "openai").unwrap().expose(), "sk-bare");

        // A ciphertext copied into another org's row does not open there: a fault, and the
        // org still has a key (an `only` org is refused, not served on the gateway's key).
        let pool = raw_pool(&url).await;
        sqlx::query(
            "UPDATE provider_credentials SET ciphertext = $1, nonce = $2 WHERE org_id = $3",
        )
        .bind(&sealed.ciphertext)
        .bind(&sealed.nonce)
        .bind(&other.id)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let moved = keys.prefetch(&other.id).await.unwrap();
        assert!(moved.secret("openai").is_none());
        assert!(moved.has_key("openai"));
        assert!(moved.fault("openai").unwrap().contains("does not open"));

        // No master key: non-BYOK orgs are served; the keys are faults; the check says why.
        let none = ByokKeys::with_master(store.clone(), &settings(), None, Duration::from_secs(2));
        let err = none.check().await.unwrap_err().to_string();
        assert!(err.contains("no BYOK master key") && err.contains("TOLLGATE_TEST_BYOK_UNSET"));
        assert!(none
            .prefetch(&acme.id)
            .await
            .unwrap()
            .fault("openai")
            .is_some());
        assert!(none
            .prefetch("org_missing")
            .await
            .unwrap()
            .secret("openai")
            .is_none());
        let wrong = ByokKeys::with_master(
            store.clone(),
            &settings(),
            Some(master(9)),
            Duration::from_secs(2),
        );
        assert!(matches!(
            wrong.check().await,
            Err(ByokError::WrongMaster { .. })
        ));
        store.close().await;
    })
    .await;
}

/// Runs the CLI with `config`, the master key in `master_env`, and `stdin`.
fn cli(config: &std::path::Path, master: &str, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("TOLLGATE_TEST_BYOK_CLI_MASTER", master)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn the_cli_stores_lists_and_rotates_without_showing_the_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{0}\"\n[database]\nurl = \"sqlite://{1}\"\n\
             [byok]\nmaster_key_env = \"TOLLGATE_TEST_BYOK_CLI_MASTER\"\n",
            dir.path().display(),
            db.display()
        ),
    )
    .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let old = b64.encode([1u8; 32]);
    let new_hex = hex::encode([2u8; 32]);
    let secret = "sk-cli-3f9a0c";

    let (ok, org) = cli(&config, &old, &["orgs", "create", "acme"], "");
    assert!(ok, "{org}");
    let org = org.trim().to_string();
    let (ok, out) = cli(
        &config,
        "",
        &["byok", "set", "--org", "acme", "--provider", "openai"],
        secret,
    );
    assert!(!ok && out.contains("no BYOK master key"), "{out}");
    let (ok, out) = cli(
        &config,
        &old,
        &["byok", "set", "--org", "acme", "--provider", "nope"],
        secret,
    );
    assert!(!ok && out.contains("unknown provider"), "{out}");
    let args = [
        "byok",
        "set",
        "--org",
        "acme",
        "--provider",
        "openai",
        "--label",
        "prod",
    ];
    let (ok, out) = cli(&config, &old, &args, &format!("{secret}\n"));
    assert!(ok && !out.contains(secret), "{out}");
    let (ok, out) = cli(
        &config,
        &old,
        &["byok", "mode", "--org", "acme", "only"],
        "",
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(&config, &old, &["byok", "list", "--org", "acme"], "");
    assert!(
        ok && out.contains("mode: only") && out.contains("prod"),
        "{out}"
    );
    assert!(
        out.contains(master(1).id()) && !out.contains(secret),
        "{out}"
    );

    // The new master key file must be private.
    let new_file = dir.path().join("new.key");
    std::fs::write(&new_file, format!("{new_hex}\n")).unwrap();
    std::fs::set_permissions(&new_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let rotate = [
        "byok",
        "rotate-master",
        "--new-key-file",
        new_file.to_str().unwrap(),
    ];
    let (ok, out) = cli(&config, &old, &rotate, "");
    assert!(!ok && out.contains("chmod 600"), "{out}");
    std::fs::set_permissions(&new_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, out) = cli(&config, &old, &rotate, "");
    assert!(
        ok && out.contains("re-encrypted 1") && out.contains("replace the master key"),
        "{out}"
    );
    // Under the old master nothing more can be added; under the new one it can.
    let (ok, out) = cli(
        &config,
        &old,
        &["byok", "set", "--org", "acme", "--provider", "anthropic"],
        "sk-a",
    );
    assert!(!ok && out.contains("sealed under master key"), "{out}");
    let (ok, out) = cli(
        &config,
        &new_hex,
        &["byok", "set", "--org", "acme", "--provider", "anthropic"],
        "sk-a",
    );
    assert!(ok, "{out}");

    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let sealed = store
        .sealed_provider_key(&org, "openai")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        master(2).open(&org, "openai", &sealed).unwrap().expose(),
        secret
    );
    store.close().await;
    let (ok, out) = cli(
        &config,
        &new_hex,
        &["byok", "remove", "--org", "acme", "--provider", "openai"],
        "",
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(
        &config,
        &new_hex,
        &["byok", "remove", "--org", "acme", "--provider", "openai"],
        "",
    );
    assert!(!ok && out.contains("not found"), "{out}");
}

#[tokio::test]
async fn a_gateway_reading_the_master_key_file_follows_a_rotation() {
    use std::os::unix::fs::PermissionsExt;
    on_both(|store: Store| async move {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("master.key");
        let write = |bytes: [u8; 32]| {
            std::fs::write(&file, hex::encode(bytes)).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        write([1; 32]);
        let settings = ByokSettings {
            master_key_file: Some(file.clone()),
            ..settings()
        };
        let keys = ByokKeys::new(store.clone(), &settings).unwrap();
        assert_eq!(keys.master_key_id().as_deref(), Some(master(1).id()));
        let org = store.create_org("acme").await.unwrap();
        put(&store, &master(1), &org.id, "openai", "sk-file").await;
        assert!(keys
            .prefetch(&org.id)
            .await
            .unwrap()
            .secret("openai")
            .is_some());

        store
            .rotate_provider_keys(&master(1), &master(2))
            .await
            .unwrap();
        write([2; 32]);
        keys.invalidate(&org.id);
        let after = keys.prefetch(&org.id).await.unwrap();
        assert_eq!(after.secret("openai").unwrap().expose(), "sk-file");
        assert_eq!(keys.master_key_id().as_deref(), Some(master(2).id()));
        keys.check().await.unwrap();

        // A file others may read is refused with a clear error.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = ByokKeys::new(store.clone(), &settings)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("readable by group or others"), "{err}");
    })
    .await;
}
