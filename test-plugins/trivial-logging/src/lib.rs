//! Keeps the usage event, never content or the client IP.
use tollgate_plugin_sdk::{export_plugin, Logging, RequestRecord, RetentionDecision};

pub struct TrivialLogging;

impl Logging for TrivialLogging {
    fn retain(_entry: RequestRecord) -> RetentionDecision {
        RetentionDecision {
            store_event: true,
            store_client_ip: false,
            store_content: false,
            retention_days: 0,
        }
    }
}

export_plugin!(logging: TrivialLogging);
