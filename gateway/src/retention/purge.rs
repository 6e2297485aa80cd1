//! The purge service: every `[retention] purge_interval` (and once at start) one pass of
//! [`Store::purge_expired`] as of the wall clock — expired usage rows and content deleted,
//! expired client IPs nulled, expired Responses state deleted — in batches, off the request
//! path. Errors are logged and the next round tries again; the task never panics.
//! `tollgate purge --now MS` runs one pass at a chosen time (the injectable clock).

use crate::config::RetentionSettings;
use crate::store::{now_ms, Store};

/// Starts the purge on the current tokio runtime.
pub fn spawn_purge(store: Store, settings: &RetentionSettings) -> tokio::task::JoinHandle<()> {
    let every = settings.purge_interval;
    let batch = i64::try_from(settings.purge_batch).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        loop {
            match store.purge_expired(now_ms(), batch).await {
                Ok(report) if report.total() > 0 => {
                    tracing::info!(
                        usage_rows = report.usage_rows,
                        content_rows = report.content_rows,
                        client_ips = report.client_ips,
                        response_states = report.response_states,
                        "retention purge"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention purge failed; retrying later"),
            }
            tokio::time::sleep(every).await;
        }
    })
}
