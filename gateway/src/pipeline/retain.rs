//! The logging stage and what is kept of a request, by its retention policy (see
//! [`crate::retention`]): the mode is fixed once the org and key are known; under `retain-all`
//! the request's content is captured from then on and handed to the mode's logging plugin,
//! which decides what is stored (and may replace the content, e.g. redacted). The mode is a
//! ceiling the host enforces whatever the plugin answers: content only under `retain-all`,
//! nothing but the billing record under `zero`.

use bytes::Bytes;

use super::access::Access;
use super::context::Request;
use crate::plugins::bindings::{Principal, RequestRecord, RetentionDecision};
use crate::plugins::Stage;
use crate::retention::capture::{as_text, Capture};
use crate::retention::{self, Policy, RetentionMode};
use crate::store::StoredContent;

/// What is kept when the logging stage cannot decide: the metadata event (billing needs it),
/// nothing else — fail safe for privacy.
const METADATA_ONLY: RetentionDecision = RetentionDecision {
    store_event: true,
    store_client_ip: false,
    store_content: false,
    retention_days: 0,
};

/// What the host keeps of one request, after the logging stage.
pub(super) struct Kept {
    pub policy: Policy,
    pub decision: RetentionDecision,
    /// The content to store with the usage row (retain-all, when the plugin kept it).
    pub content: Option<Box<StoredContent>>,
}

impl Request<'_> {
    /// Fixes the request's retention policy once its org and key are known; under
    /// `retain-all` starts capturing its content.
    pub(super) fn begin_retention(&self, access: &Access, body: &Bytes) {
        let policy = Policy::of(access.org.as_deref(), access.key.as_deref());
        let policy = self.policy.retention_ceiling(
            policy,
            access.org.as_ref().map_or("", |o| o.id.as_str()),
            access.key.as_ref().map_or("", |k| k.id.as_str()),
        );
        let _ = self.retention.set(policy);
        if policy.mode.sees_content() {
            let mut capture = Capture::new(self.state.config.retention.max_content_bytes);
            capture.request(body);
            *self.capture.lock() = Some(capture);
        }
    }

    /// The request's policy: fixed by [`Self::begin_retention`], else (a request refused
    /// before it) looked up now.
    async fn retention_policy(&self, who: &Principal) -> Policy {
        if let Some(p) = self.retention.get() {
            return *p;
        }
        let org = self.state.services.org(&who.org_id).await.ok().flatten();
        let key = self
            .stored_key
            .get()
            .filter(|k| k.id == who.key_id && k.org_id == who.org_id);
        self.policy.retention_ceiling(
            Policy::of(org.as_deref(), key.map(|k| &**k)),
            &who.org_id,
            &who.key_id,
        )
    }

    /// The retention mode the request runs under (`metadata-only` before it is known).
    pub(super) fn retention_mode(&self) -> RetentionMode {
        self.retention
            .get()
            .map_or(RetentionMode::MetadataOnly, |p| p.mode)
    }

    /// Runs the logging stage of the request's mode over `record` (content added here when the
    /// mode allows it) and applies the mode's ceiling to its answer.
    pub(super) async fn logging_stage(&self, who: &Principal, mut record: RequestRecord) -> Kept {
        let state = self.state;
        let policy = self.retention_policy(who).await;
        let capture = self.capture.lock().take();
        if policy.mode.sees_content() {
            if let Some(c) = &capture {
                record.request_body = Some(c.request.clone());
                record.response_body = Some(c.response.clone());
            }
        }
        let plugin = state.config.retention.plugin(policy.mode);
        let retained = match state.registry.get_stage(plugin, Stage::Logging) {
            Ok(p) => match self
                .timed(Stage::Logging, p.retain(&self.id, &record))
                .await
            {
                Ok(r) => Some(r),
                Err(e) => {
                    self.plugin_failed(&e);
                    None
                }
            },
            Err(e) => {
                self.plugin_failed(&e);
                None
            }
        };
        let (mut decision, kept) = match retained {
            Some(r) => (r.decision, r.kept_content),
            None => (METADATA_ONLY, None),
        };
        // The mode's ceiling.
        match policy.mode {
            RetentionMode::RetainAll => {}
            RetentionMode::MetadataOnly => decision.store_content = false,
            RetentionMode::Zero => {
                decision.store_event = false;
                decision.store_client_ip = false;
                decision.store_content = false;
            }
        }
        let content = match (&capture, decision.store_content && decision.store_event) {
            (Some(c), true) => {
                let cap = state.config.retention.max_content_bytes;
                let (request, response, cut) = match kept {
                    Some((req, resp)) => {
                        let cut = req.len() > cap || resp.len() > cap;
                        (cut_to(req, cap), cut_to(resp, cap), cut || c.truncated)
                    }
                    None => (c.request.clone(), c.response.clone(), c.truncated),
                };
                let created_at = i64::try_from(record.timestamp_ms).unwrap_or(i64::MAX);
                Some(Box::new(StoredContent {
                    request_id: self.id.clone(),
                    org_id: who.org_id.clone(),
                    key_id: who.key_id.clone(),
                    request_body: as_text(&request),
                    response_body: as_text(&response),
                    truncated: cut,
                    created_at,
                    expires_at: retention::expires_at(
                        created_at,
                        policy.days,
                        decision.retention_days,
                    ),
                }))
            }
            _ => None,
        };
        Kept {
            policy,
            decision,
            content,
        }
    }
}

fn cut_to(mut bytes: Vec<u8>, cap: usize) -> Vec<u8> {
    bytes.truncate(cap);
    bytes
}
