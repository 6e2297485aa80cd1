//! API keys with limits against real databases (SQLite and PostgreSQL): the stored model
//! (scopes, limits), refusals, the spend counters moved by charges, and the spend limit held
//! atomically with the org's balance under concurrency.

mod common;

use common::{charge_entry as charge, on_both, usage_event as event};
use tollgate::store::{now_ms, KeyLimit, KeyScopes, NewKey, Reservation, SpendPeriod, Store};

const SECRET: &[u8] = b"keys-test-secret";
const DAY: i64 = 86_400_000;

#[tokio::test]
async fn keys_store_scopes_and_limits_and_refuse_when_revoked() {
    on_both(|store: Store| async move {
        let org = store.create_org("acme").await.unwrap();
        let new = NewKey {
            name: "ci".into(),
            scopes: KeyScopes {
                models: vec!["gpt-4o*".into()],
                providers: vec!["openai".into()],
                apis: vec!["openai-chat".into()],
            },
            spend_limit_micros: 5_000_000,
            spend_period: Some(SpendPeriod::Weekly),
            rpm_limit: 60,
            tpm_limit: 10_000,
            concurrency_limit: 4,
            expires_at: 0,
        };
        let (key, plaintext) = store.create_key_with(&org.id, &new, SECRET).await.unwrap();
        let hash = tollgate::keys::keyed_hash(SECRET, &plaintext);
        let found = store.key_by_hash(&hash).await.unwrap().unwrap();
        assert_eq!(found.id, key.id);
        assert_eq!(found.scopes, new.scopes);
        assert_eq!(found.spend_period, SpendPeriod::Weekly);
        assert_eq!(
            (found.rpm_limit, found.tpm_limit, found.concurrency_limit),
            (60, 10_000, 4)
        );
        assert_eq!(found.refusal(&hash, now_ms()), None);
        // The plaintext is nowhere in the record (Debug and JSON forms).
        assert!(!format!("{found:?}").contains(&plaintext));
        assert!(!serde_json::to_string(&found).unwrap().contains(&hash));

        let mut changes = store.key_changes();
        store.revoke_key(&key.id).await.unwrap();
        // The change is announced in this process with the key's hash.
        assert_eq!(changes.try_recv().unwrap(), hash);
        let revoked = store.key_by_hash(&hash).await.unwrap().unwrap();
        assert_eq!(
            revoked.refusal(&hash, now_ms()),
            Some("This API key has been revoked.")
        );
        assert!(store.revoke_key(&key.id).await.is_err());

        // Expiry is judged at the time given.
        let (soon, p2) = store
            .create_key(&org.id, "soon", SECRET, now_ms() + 1_000)
            .await
            .unwrap();
        let h2 = tollgate::keys::keyed_hash(SECRET, &p2);
        assert_eq!(soon.refusal(&h2, now_ms()), None);
        assert_eq!(
            soon.refusal(&h2, now_ms() + 2_000),
            Some("This API key has expired.")
        );
    })
    .await;
}

#[tokio::test]
async fn charges_move_the_key_spend_counters() {
    on_both(|store: Store| async move {
        let org = store.create_org("acme").await.unwrap();
        store.add_credits(&org.id, 1_000_000, 0, "t").await.unwrap();
        let (key, _) = store.create_key(&org.id, "k", SECRET, 0).await.unwrap();
        let (other, _) = store.create_key(&org.id, "other", SECRET, 0).await.unwrap();
        store
            .record_usage(
                &[
                    event("r1", &org.id, &key.id, 300),
                    event("r2", &org.id, &key.id, 200),
                    event("r3", &org.id, &other.id, 50),
                ],
                &[
                    charge("r1", &org.id, &key.id, 300),
                    charge("r2", &org.id, &key.id, 200),
                    charge("r3", &org.id, &other.id, 50),
                ],
            )
            .await
            .unwrap();
        // Recorded twice: counted once (the charge is recorded exactly once).
        store
            .record_usage(
                &[event("r1", &org.id, &key.id, 300)],
                &[charge("r1", &org.id, &key.id, 300)],
            )
            .await
            .unwrap();
        let now = now_ms();
        for period in [
            SpendPeriod::Daily,
            SpendPeriod::Weekly,
            SpendPeriod::Monthly,
            SpendPeriod::Total,
        ] {
            assert_eq!(store.key_spent(&key.id, period, now).await.unwrap(), 500);
            assert_eq!(store.key_spent(&other.id, period, now).await.unwrap(), 50);
        }
        // Tomorrow's day (and, 40 days on, month and week) start from zero; the total does not.
        assert_eq!(
            store
                .key_spent(&key.id, SpendPeriod::Daily, now + DAY)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .key_spent(&key.id, SpendPeriod::Monthly, now + 40 * DAY)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .key_spent(&key.id, SpendPeriod::Total, now + 40 * DAY)
                .await
                .unwrap(),
            500
        );
    })
    .await;
}

#[tokio::test]
async fn a_key_spend_limit_holds_under_a_burst() {
    on_both(|store: Store| async move {
        let org = store.create_org("acme").await.unwrap();
        // The org could pay for 100 requests; the key's daily limit covers 10.
        store.add_credits(&org.id, 100_000, 0, "t").await.unwrap();
        let (key, _) = store.create_key(&org.id, "k", SECRET, 0).await.unwrap();
        let limit = KeyLimit {
            key_id: key.id.clone(),
            limit_micros: 10_000,
            period: SpendPeriod::Daily,
        };
        let now = now_ms();
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let store = store.clone();
                let org = org.id.clone();
                let limit = limit.clone();
                tokio::spawn(async move {
                    store
                        .reserve_for(&org, Some(&limit), &format!("r{i}"), 1_000, now)
                        .await
                })
            })
            .collect();
        let mut held = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap().unwrap() {
                Reservation::Held => held.push(i),
                Reservation::KeyLimit { remaining_micros } => assert!(remaining_micros < 1_000),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(held.len(), 10, "held: {held:?}");
        // Another key of the org is not limited by this one's limit.
        assert_eq!(
            store
                .reserve_for(&org.id, None, "free", 1_000, now)
                .await
                .unwrap(),
            Reservation::Held
        );
        store.release_hold("free").await.unwrap();
        // Five settle at 500: 2,500 spent + 5,000 still held leaves 2,500 of the limit.
        for i in &held[..5] {
            let id = format!("r{i}");
            store
                .record_usage(
                    &[event(&id, &org.id, &key.id, 500)],
                    &[charge(&id, &org.id, &key.id, 500)],
                )
                .await
                .unwrap();
        }
        assert_eq!(
            store
                .reserve_for(&org.id, Some(&limit), "x", 3_000, now)
                .await
                .unwrap(),
            Reservation::KeyLimit {
                remaining_micros: 2_500
            }
        );
        assert_eq!(
            store
                .reserve_for(&org.id, Some(&limit), "y", 2_500, now)
                .await
                .unwrap(),
            Reservation::Held
        );
        // Released holds give their share back.
        for i in &held[5..] {
            store.release_hold(&format!("r{i}")).await.unwrap();
        }
        store.release_hold("y").await.unwrap();
        assert_eq!(
            store
                .reserve_for(&org.id, Some(&limit), "z", 7_500, now)
                .await
                .unwrap(),
            Reservation::Held
        );
        // Tomorrow the daily limit starts again (what is held still counts).
        store.release_hold("z").await.unwrap();
        assert_eq!(
            store
                .reserve_for(&org.id, Some(&limit), "t", 10_000, now + DAY)
                .await
                .unwrap(),
            Reservation::Held
        );
    })
    .await;
}
