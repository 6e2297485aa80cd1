//! Built-in retention: zero. No request log at all — no usage event, no client IP, no content.
//! The host still writes what billing needs (the ledger's charge, which names the request id,
//! and the key's spend counters); nothing else of the request outlives it.
use tollgate_plugin_sdk::{export_plugin, Logging, RequestRecord, RetentionDecision};

pub struct Zero;

pub fn decide() -> RetentionDecision {
    RetentionDecision {
        store_event: false,
        store_client_ip: false,
        store_content: false,
        retention_days: 0,
    }
}

impl Logging for Zero {
    fn retain(_entry: RequestRecord) -> RetentionDecision {
        decide()
    }
}

export_plugin!(logging: Zero);

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_nothing() {
        let d = super::decide();
        assert!(!d.store_event && !d.store_content && !d.store_client_ip);
    }
}
