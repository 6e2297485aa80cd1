//! The admin side of the store on SQLite and PostgreSQL: members and their tokens, the last
//! owner, key changes with their audit entries (rotation with grace), org limits, and the audit
//! log refusing UPDATE and DELETE in the database itself.

mod common;

use common::on_both;
use tollgate::keys::keyed_hash;
use tollgate::store::{now_ms, Audit, KeyUpdate, NewKey, OrgLimits, OwnerGuard, Role};

const SECRET: &[u8] = b"admin-store-secret";

fn audit(action: &str, target: &str) -> Audit {
    Audit::new("test", "", action, target)
}

#[tokio::test]
async fn members_tokens_and_the_last_owner() {
    on_both(|store| async move {
        let org = store.create_org("acme").await.unwrap();
        let a = Audit::new("test", &org.id, "member.add", "");
        let (owner, token) = store
            .add_member(&org.id, "ann", Role::Owner, SECRET, &a)
            .await
            .unwrap();
        let found = store
            .member_by_token_hash(&keyed_hash(SECRET, &token))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.id.as_str(), found.role),
            (owner.id.as_str(), Role::Owner)
        );
        // Names are unique in an org.
        assert!(store
            .add_member(&org.id, "ann", Role::Admin, SECRET, &a)
            .await
            .is_err());
        assert_eq!(
            store
                .set_member_role(&owner.id, Role::Admin, &a)
                .await
                .unwrap(),
            OwnerGuard::LastOwner
        );
        assert_eq!(
            store.remove_member(&owner.id, &a).await.unwrap(),
            OwnerGuard::LastOwner
        );
        let (bob, _) = store
            .add_member(&org.id, "bob", Role::Owner, SECRET, &a)
            .await
            .unwrap();
        let (_, renewed) = store.new_member_token(&owner.id, SECRET, &a).await.unwrap();
        assert!(store
            .member_by_token_hash(&keyed_hash(SECRET, &token))
            .await
            .unwrap()
            .is_none());
        assert!(store
            .member_by_token_hash(&keyed_hash(SECRET, &renewed))
            .await
            .unwrap()
            .is_some());
        assert!(matches!(
            store.set_member_role(&owner.id, Role::Developer, &a).await.unwrap(),
            OwnerGuard::Done(m) if m.role == Role::Developer
        ));
        // bob's key becomes the org's when bob goes (after ann is owner again).
        store
            .set_member_role(&owner.id, Role::Owner, &a)
            .await
            .unwrap();
        let (key, _) = store
            .create_key_audited(&org.id, &NewKey::default(), Some(&bob.id), SECRET, &a)
            .await
            .unwrap();
        assert_eq!(
            store.key_member(&key.id).await.unwrap().as_deref(),
            Some(bob.id.as_str())
        );
        assert_eq!(
            store.remove_member(&bob.id, &a).await.unwrap(),
            OwnerGuard::Done(())
        );
        assert_eq!(store.key_member(&key.id).await.unwrap(), None);
        // No token or hash in the audit log.
        let log = store.audit_log(Some(&org.id), None, 100).await.unwrap();
        assert_eq!(log.len(), 7, "{log:?}");
        let text = format!("{log:?}");
        assert!(!text.contains(&token) && !text.contains(&keyed_hash(SECRET, &renewed)));
    })
    .await;
}

#[tokio::test]
async fn key_changes_rotation_and_org_limits() {
    on_both(|store| async move {
        let org = store.create_org("acme").await.unwrap();
        let (key, old) = store
            .create_key_audited(
                &org.id,
                &NewKey::default(),
                None,
                SECRET,
                &audit("key.create", ""),
            )
            .await
            .unwrap();
        let mut changes = store.key_changes();
        let update = KeyUpdate {
            rpm_limit: Some(5),
            spend_limit_micros: Some(10),
            ..KeyUpdate::default()
        };
        let k = store
            .update_key(&key.id, &update, &audit("key.update", &key.id))
            .await
            .unwrap();
        assert_eq!((k.rpm_limit, k.spend_limit_micros, k.tpm_limit), (5, 10, 0));
        assert_eq!(changes.recv().await.unwrap(), key.key_hash);

        let (k, first) = store
            .rotate_key(&key.id, 60_000, SECRET, &audit("key.rotate", &key.id))
            .await
            .unwrap();
        let old_hash = keyed_hash(SECRET, &old);
        let now = now_ms();
        assert!(k.refusal(&old_hash, now).is_none());
        assert!(k.refusal(&old_hash, now + 61_000).is_some());
        assert_eq!(
            store.key_by_hash(&old_hash).await.unwrap().unwrap().id,
            key.id
        );
        // A second rotation ends the first rotation's old secret at once.
        let (_, second) = store
            .rotate_key(&key.id, 0, SECRET, &audit("key.rotate", &key.id))
            .await
            .unwrap();
        assert!(store.key_by_hash(&old_hash).await.unwrap().is_none());
        let k = store.key(&key.id).await.unwrap();
        assert!(k.refusal(&keyed_hash(SECRET, &first), now_ms()).is_some());
        assert!(k.refusal(&keyed_hash(SECRET, &second), now_ms()).is_none());

        store
            .set_key_disabled(&key.id, true, &audit("key.disable", &key.id))
            .await
            .unwrap();
        store
            .revoke_key_audited(&key.id, &audit("key.revoke", &key.id))
            .await
            .unwrap();
        // Revoked: no further change.
        assert!(store
            .set_key_disabled(&key.id, false, &audit("key.enable", &key.id))
            .await
            .is_err());

        let limits = OrgLimits {
            tpm_limit: Some(1000),
            ..OrgLimits::default()
        };
        let o = store
            .update_org_limits(&org.id, &limits, &audit("org.limits", &org.id))
            .await
            .unwrap();
        assert_eq!((o.rpm_limit, o.tpm_limit), (0, 1000));
        let actions: Vec<String> = store
            .audit_log(None, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.action)
            .collect();
        assert_eq!(
            actions,
            [
                "org.limits",
                "key.revoke",
                "key.disable",
                "key.rotate",
                "key.rotate",
                "key.update",
                "key.create"
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn the_audit_log_refuses_update_and_delete() {
    common::on_both_urls(|url| async move {
        let store = tollgate::store::Store::connect(&url).await.unwrap();
        store.append_audit(&audit("org.create", "x")).await.unwrap();
        store.close().await;
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        for sql in [
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
        ] {
            let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log WHERE actor = 'test'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(n, 1);
        pool.close().await;
    })
    .await;
}
