//! Built-in retention: retain all. Every request leaves its usage event and, when the host
//! handed it the content (only for orgs or keys in mode `retain-all`), the request body and the
//! response the client received, kept for the org's period. Config:
//! `{"keep_client_ip": true}` keeps the client IP (for its own, shorter period),
//! `{"retention_days": N}` keeps for fewer days than the org's period (never more).
//! To redact before storage, a plugin in this place calls `host::keep_content` with the
//! redacted bodies (see plugins/pii-redact).
use tollgate_plugin_sdk::{export_plugin, host, Logging, RequestRecord, RetentionDecision};

pub struct RetainAll;

pub fn decide(
    config: &tollgate_plugin_sdk::serde_json::Value,
    entry: &RequestRecord,
) -> RetentionDecision {
    RetentionDecision {
        store_event: true,
        store_client_ip: config["keep_client_ip"].as_bool().unwrap_or(false),
        // Content is stored when there is some: the host passes none outside retain-all.
        store_content: entry.request_body.is_some() || entry.response_body.is_some(),
        retention_days: config["retention_days"].as_u64().unwrap_or(0).min(90) as u32,
    }
}

impl Logging for RetainAll {
    fn retain(entry: RequestRecord) -> RetentionDecision {
        decide(&host::config_json(), &entry)
    }
}

export_plugin!(logging: RetainAll);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_plugin_sdk::serde_json::json;
    use tollgate_plugin_sdk::Usage;

    fn record(content: bool) -> RequestRecord {
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
            request_body: content.then(|| b"{}".to_vec()),
            response_body: content.then(|| b"{}".to_vec()),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn keeps_content_when_given() {
        let d = decide(&json!({}), &record(true));
        assert!(d.store_event && d.store_content && !d.store_client_ip);
        let d = decide(&json!({}), &record(false));
        assert!(d.store_event && !d.store_content);
        let d = decide(
            &json!({"keep_client_ip": true, "retention_days": 400}),
            &record(true),
        );
        assert!(d.store_client_ip);
        assert_eq!(d.retention_days, 90);
    }
}
