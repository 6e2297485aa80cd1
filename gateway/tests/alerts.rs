//! Low-balance alerts against real databases and a real HTTP receiver on loopback: one signed
//! webhook per crossing below the threshold, none while it stays below, re-armed above; a
//! receiver that refuses gets it again next round.

mod common;

use std::sync::{Arc, Mutex};

use common::on_both;
use pingora_core::connectors::http::Connector;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate::alerts::check_all;
use tollgate::store::{LowBalance, Store};

const SECRET: &[u8] = b"alerts-test-secret";

/// A loopback receiver answering `status` to every request; what it received (header, body).
async fn receiver(status: u16) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/balance", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the header, then the body by its content-length.
            let (head, body) = loop {
                let n = conn.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break (head.to_string(), body.to_string());
                    }
                }
            };
            seen.lock().unwrap().push((head, body));
            let _ = conn
                .write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    (url, got)
}

#[tokio::test]
async fn one_signed_webhook_per_crossing() {
    on_both(|store: Store| async move {
        let (url, got) = receiver(200).await;
        let connector = Connector::new(None);
        let org = store.create_org("acme").await.unwrap();
        store.add_credits(&org.id, 5_000, 0, "t").await.unwrap();
        store
            .set_low_balance(
                &org.id,
                &LowBalance {
                    threshold_micros: 10_000,
                    webhook: url.clone(),
                    auto_top_up_micros: 20_000,
                },
            )
            .await
            .unwrap();
        check_all(&store, &connector, SECRET).await.unwrap();
        check_all(&store, &connector, SECRET).await.unwrap();
        {
            let got = got.lock().unwrap();
            assert_eq!(got.len(), 1, "one alert while below: {got:?}");
            let (head, body) = &got[0];
            assert!(head.starts_with("POST /hooks/balance HTTP/1.1"), "{head}");
            let sig = tollgate::keys::keyed_hash(SECRET, body);
            assert!(
                head.contains(&format!("x-tollgate-signature: sha256={sig}")),
                "{head}"
            );
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["type"], "balance.low");
            assert_eq!(v["org_id"], org.id.as_str());
            assert_eq!(v["balance_usd"], 0.005);
            assert_eq!(v["auto_top_up_usd"], 0.02);
        }
        // Topped up above the threshold: re-armed, nothing sent.
        store
            .add_credits(&org.id, 20_000, 0, "top-up")
            .await
            .unwrap();
        check_all(&store, &connector, SECRET).await.unwrap();
        assert_eq!(got.lock().unwrap().len(), 1);
        // Spent below again: a second alert.
        store
            .record_usage(
                &[],
                &[tollgate::store::ChargeEntry {
                    org_id: org.id.clone(),
                    key_id: String::new(),
                    request_id: "r1".into(),
                    amount_micros: 20_000,
                    memo: "t".into(),
                }],
            )
            .await
            .unwrap();
        check_all(&store, &connector, SECRET).await.unwrap();
        assert_eq!(got.lock().unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_refused_webhook_is_retried_next_round() {
    on_both(|store: Store| async move {
        let (url, got) = receiver(503).await;
        let connector = Connector::new(None);
        let org = store.create_org("acme").await.unwrap();
        let settings = LowBalance {
            threshold_micros: 1,
            webhook: url,
            auto_top_up_micros: 0,
        };
        store.set_low_balance(&org.id, &settings).await.unwrap();
        assert_eq!(store.low_balance(&org.id).await.unwrap(), settings);
        check_all(&store, &connector, SECRET).await.unwrap();
        check_all(&store, &connector, SECRET).await.unwrap();
        assert_eq!(got.lock().unwrap().len(), 2, "refused: sent again");
        // An unreachable receiver fails the delivery within its bound, not the round.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = format!("http://{}/x", closed.local_addr().unwrap());
        drop(closed);
        store
            .set_low_balance(
                &org.id,
                &LowBalance {
                    webhook: dead,
                    ..settings
                },
            )
            .await
            .unwrap();
        check_all(&store, &connector, SECRET).await.unwrap();
    })
    .await;
}
