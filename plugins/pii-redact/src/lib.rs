//! PII redaction before storage: a logging plugin written as a third-party author would, with
//! only the public SDK (see README.md). It decides like `retention-retain-all` — keep the usage
//! event and, when the host handed it content (orgs in mode `retain-all`), the content — but
//! hands the host redacted bodies through `host::keep_content`: emails become `[EMAIL]`, phone
//! numbers `[PHONE]`, card numbers that pass the Luhn check `[CARD]`.
//!
//! Config: `{"redact": ["email", "phone", "card"]}` (default: all three),
//! `{"keep_client_ip": true}`, `{"retention_days": N}` (fewer days than the org's period).

mod redact;

pub use redact::{redact, Kinds};
use tollgate_plugin_sdk::serde_json::Value;
use tollgate_plugin_sdk::{export_plugin, host, Logging, RequestRecord, RetentionDecision};

pub struct PiiRedact;

/// Which kinds the config asks for (all when unset or unreadable).
pub fn kinds(config: &Value) -> Kinds {
    match config["redact"].as_array() {
        None => Kinds::ALL,
        Some(list) => {
            let has = |k: &str| list.iter().any(|v| v.as_str() == Some(k));
            Kinds {
                email: has("email"),
                phone: has("phone"),
                card: has("card"),
            }
        }
    }
}

/// The decision, and the content to keep instead of the record's (redacted).
pub fn decide(config: &Value, entry: &RequestRecord) -> RetentionDecision {
    let has_content = entry.request_body.is_some() || entry.response_body.is_some();
    if has_content {
        let k = kinds(config);
        let clean = |b: &Option<Vec<u8>>| {
            let text = String::from_utf8_lossy(b.as_deref().unwrap_or_default());
            redact(&text, k).into_bytes()
        };
        host::keep_content(&clean(&entry.request_body), &clean(&entry.response_body));
    }
    RetentionDecision {
        store_event: true,
        store_client_ip: config["keep_client_ip"].as_bool().unwrap_or(false),
        store_content: has_content,
        retention_days: config["retention_days"].as_u64().unwrap_or(0).min(90) as u32,
    }
}

impl Logging for PiiRedact {
    fn retain(entry: RequestRecord) -> RetentionDecision {
        decide(&host::config_json(), &entry)
    }
}

export_plugin!(logging: PiiRedact);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_plugin_sdk::serde_json::json;
    use tollgate_plugin_sdk::testing::TestHost;
    use tollgate_plugin_sdk::Usage;

    fn record(request: &str, response: Option<&str>) -> RequestRecord {
        RequestRecord {
            request_id: "r".into(),
            org_id: "o".into(),
            key_id: "k".into(),
            model: "m".into(),
            provider: "p".into(),
            usage: Usage {
                input: 1,
                output: 1,
                cache_read: 0,
                cache_write: 0,
                reasoning: 0,
            },
            cost_micros: 0,
            latency_ms: 1,
            status: 200,
            attempts: vec![],
            client_ip: "127.0.0.1".into(),
            stream: false,
            request_body: Some(request.as_bytes().to_vec()),
            response_body: response.map(|r| r.as_bytes().to_vec()),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn keeps_redacted_content_through_the_host() {
        TestHost::install(TestHost::default());
        let entry = record(
            r#"{"messages":[{"role":"user","content":"mail ann@example.com or call +44 20 7946 0958, card 4111 1111 1111 1111"}],"max_tokens":256}"#,
            Some("data: {\"created\":1731234567,\"content\":\"ok\"}\n\n"),
        );
        let d = decide(&json!({}), &entry);
        assert!(d.store_event && d.store_content);
        let (req, resp) = TestHost::with(|h| h.kept_content.clone()).expect("keep_content called");
        let req = String::from_utf8(req).unwrap();
        assert_eq!(
            req,
            r#"{"messages":[{"role":"user","content":"mail [EMAIL] or call [PHONE], card [CARD]"}],"max_tokens":256}"#
        );
        assert_eq!(
            String::from_utf8(resp).unwrap(),
            "data: {\"created\":1731234567,\"content\":\"ok\"}\n\n"
        );
    }

    #[test]
    fn config_chooses_kinds_and_nothing_is_kept_without_content() {
        TestHost::install(TestHost::default());
        let k = kinds(&json!({"redact": ["email"]}));
        assert_eq!(
            redact("a@b.io 4111111111111111", k),
            "[EMAIL] 4111111111111111"
        );
        let mut entry = record("{}", None);
        entry.request_body = None;
        let d = decide(&json!({"keep_client_ip": true}), &entry);
        assert!(d.store_event && !d.store_content && d.store_client_ip);
        assert!(TestHost::with(|h| h.kept_content.is_none()));
    }
}
