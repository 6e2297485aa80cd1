//! Built-in retention: metadata only. Every request leaves one usage event (ids, model,
//! provider, tokens by kind, cost, latency, status, attempts); request and response content is
//! never stored. Config: `{"keep_client_ip": true}` keeps the client IP (for its own, shorter
//! period), `{"retention_days": N}` overrides the org default.
use tollgate_plugin_sdk::{export_plugin, host, Logging, RequestRecord, RetentionDecision};

pub struct MetadataOnly;

pub fn decide(config: &tollgate_plugin_sdk::serde_json::Value) -> RetentionDecision {
    RetentionDecision {
        store_event: true,
        store_client_ip: config["keep_client_ip"].as_bool().unwrap_or(false),
        store_content: false,
        retention_days: config["retention_days"].as_u64().unwrap_or(0).min(90) as u32,
    }
}

impl Logging for MetadataOnly {
    fn retain(_entry: RequestRecord) -> RetentionDecision {
        decide(&host::config_json())
    }
}

export_plugin!(logging: MetadataOnly);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_plugin_sdk::serde_json::json;

    #[test]
    fn never_content() {
        let d = decide(&json!({}));
        assert!(d.store_event && !d.store_content && !d.store_client_ip);
        let d = decide(&json!({"keep_client_ip": true, "retention_days": 400}));
        assert!(d.store_client_ip && !d.store_content);
        assert_eq!(d.retention_days, 90);
    }
}
