//! The retention purge and the usage export against the store, on SQLite and PostgreSQL: the
//! purge at an injected time deletes exactly the expired usage rows, content and Responses
//! state and nulls exactly the expired client IPs, however small its batches; the export pages
//! through exactly one org's rows, in order, without skipping or repeating rows that share a
//! timestamp, and formats CSV that reads back.

mod common;

use tollgate::retention::export::{format_rows, ExportFormat, Exporter};
use tollgate::store::{ExportQuery, ResponseState, StoredContent, UsageEvent};

const DAY: i64 = 86_400_000;

fn event(org: &str, created_at: i64, expires_in: Option<i64>, ip_in: Option<i64>) -> UsageEvent {
    let mut e = common::usage_event(&tollgate::store::new_id("req"), org, "key", 10);
    e.created_at = created_at;
    e.expires_at = expires_in.map(|d| created_at + d);
    if let Some(d) = ip_in {
        e.client_ip = Some("192.0.2.7".into());
        e.ip_expires_at = Some(created_at + d);
    }
    e
}

fn with_content(mut e: UsageEvent, expires_in: i64) -> UsageEvent {
    e.content = Some(Box::new(StoredContent {
        request_id: e.request_id.clone(),
        org_id: e.org_id.clone(),
        key_id: e.key_id.clone(),
        request_body: "{\"q\":\"a, \\\"b\\\"\\nc\"}".into(),
        response_body: "data: x\n\n".into(),
        truncated: false,
        created_at: e.created_at,
        expires_at: e.created_at + expires_in,
    }));
    e
}

#[tokio::test]
async fn the_purge_removes_exactly_what_expired_in_small_batches() {
    common::on_both(|store| async move {
        let org = store.create_org("p").await.unwrap().id;
        let t0 = 1_700_000_000_000;
        let mut events = Vec::new();
        // 7 rows expiring after 1 day (3 with content), 4 after 30 days (IPs after 1 day),
        // 2 that never expire.
        for i in 0..7 {
            let e = event(&org, t0 + i, Some(DAY), None);
            events.push(if i < 3 { with_content(e, DAY) } else { e });
        }
        for i in 0..4 {
            events.push(event(&org, t0 + 10 + i, Some(30 * DAY), Some(DAY)));
        }
        for i in 0..2 {
            events.push(event(&org, t0 + 20 + i, None, None));
        }
        store.record_usage(&events, &[]).await.unwrap();
        for i in 0..5 {
            store
                .put_response_state(&ResponseState {
                    id: format!("resp_{i}"),
                    org_id: org.clone(),
                    key_id: "key".into(),
                    response: "{}".into(),
                    messages: "[]".into(),
                    created_at: t0,
                    expires_at: t0 + if i < 3 { DAY } else { 10 * DAY },
                })
                .await
                .unwrap();
        }

        // Before anything expired: nothing goes.
        let r = store.purge_expired(t0 + DAY - 100, 2).await.unwrap();
        assert_eq!(r.total(), 0, "{r:?}");
        // A day later: the 7 short rows (and their content), 4 IPs, 3 responses; batch of 2.
        let r = store.purge_expired(t0 + DAY + 100, 2).await.unwrap();
        assert_eq!(
            (
                r.usage_rows,
                r.content_rows,
                r.client_ips,
                r.response_states
            ),
            (7, 3, 4, 3),
            "{r:?}"
        );
        let left = store.usage(Some(&org), 100).await.unwrap();
        assert_eq!(left.len(), 6);
        assert!(
            left.iter().all(|e| e.client_ip.is_none()),
            "expired IPs nulled"
        );
        for e in &events[..3] {
            assert!(store
                .request_content(&e.request_id, &org)
                .await
                .unwrap()
                .is_none());
        }
        // Past 30 days: the 4 go, the 2 that never expire stay; a second pass finds nothing.
        let r = store.purge_expired(t0 + 31 * DAY, 3).await.unwrap();
        assert_eq!((r.usage_rows, r.response_states), (4, 2), "{r:?}");
        assert_eq!(store.usage(Some(&org), 100).await.unwrap().len(), 2);
        assert_eq!(
            store.purge_expired(t0 + 31 * DAY, 3).await.unwrap().total(),
            0
        );
    })
    .await;
}

#[tokio::test]
async fn the_export_pages_through_exactly_one_orgs_rows() {
    common::on_both(|store| async move {
        let org = store.create_org("a").await.unwrap().id;
        let other = store.create_org("b").await.unwrap().id;
        let t0 = 1_700_000_000_000;
        let mut events = Vec::new();
        // Ties on created_at: pagination must order by request id within a millisecond.
        for i in 0..9 {
            let mut e = with_content(event(&org, t0 + i / 3, None, None), DAY);
            e.model = "m,\"x\"\ny".into();
            events.push(e);
        }
        for i in 0..4 {
            events.push(event(&other, t0 + i, None, None));
        }
        store.record_usage(&events, &[]).await.unwrap();
        let q = ExportQuery {
            org_id: org.clone(),
            content: true,
            ..ExportQuery::default()
        };
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.export_page(&q, cursor.as_ref(), 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            cursor = page
                .last()
                .map(|r| (r.event.created_at, r.event.request_id.clone()));
            seen.extend(page);
        }
        let mut expected: Vec<(i64, String)> = events[..9]
            .iter()
            .map(|e| (e.created_at, e.request_id.clone()))
            .collect();
        expected.sort();
        let got: Vec<(i64, String)> = seen
            .iter()
            .map(|r| (r.event.created_at, r.event.request_id.clone()))
            .collect();
        assert_eq!(got, expected, "every row once, in order, only the org's");
        assert!(seen.iter().all(|r| r.content.is_some()));

        // A range: [t0 + 1, t0 + 2) is the middle three.
        let ranged = ExportQuery {
            since: Some(t0 + 1),
            until: Some(t0 + 2),
            ..q.clone()
        };
        assert_eq!(
            store.export_page(&ranged, None, 100).await.unwrap().len(),
            3
        );

        // CSV reads back: header + 9 records, the quoted model intact.
        let csv = String::from_utf8(format_rows(&seen, ExportFormat::Csv, true, true)).unwrap();
        let mut reader = csv_reader(&csv);
        assert_eq!(reader.len(), 10);
        let header = reader.remove(0);
        let model = header.iter().position(|h| h == "model").unwrap();
        assert!(
            reader.iter().all(|r| r[model] == "m,\"x\"\ny"),
            "{reader:?}"
        );

        // The Exporter: the same rows as JSON Lines, then the end.
        let mut ex = Exporter::new(store.clone(), q, ExportFormat::Jsonl);
        let mut text = Vec::new();
        while let Some(chunk) = ex.next_chunk().await.unwrap() {
            text.extend(chunk);
        }
        let lines: Vec<serde_json::Value> = String::from_utf8(text)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 9);
        assert!(lines.iter().all(|l| l["org_id"] == org.as_str()));
    })
    .await;
}

/// A minimal RFC 4180 reader for the test (records split on CRLF outside quotes).
fn csv_reader(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}
