//! `POST /v1/chat/completions`, the stages in order:
//!
//! ```text
//! read body ─► auth ─► validate ─► routing ─► billing.authorize
//!   ─► attempts (attempts.rs): transform.request ─► upstream ─► complete.rs | stream.rs
//!   ─► settle.rs: billing.settle ─► logging ─► usage writer
//! ```

use std::time::{Duration, Instant};

use pingora_proxy::Session;

use super::attempts::{failure_error, run_attempts, AttemptRunner, Attempts, Tried};
use super::client::SessionSink;
use super::context::Request;
use super::events::PluginEvents;
use super::outcome::{Outcome, CLIENT_GONE};
use super::stream::relay;
use super::upstream::AttemptFailure;
use crate::api_error::ApiError;
use crate::catalog;
use crate::plugins::bindings::{
    ApiFormat, Attempt, Candidate, Principal, RequestSummary, TransformCtx,
};
use crate::plugins::Stage;
use crate::validate;

impl Request<'_> {
    /// `POST /v1/chat/completions`.
    pub async fn chat(&self, session: &mut Session) {
        if let Err(e) = self.require_json(session) {
            return self.respond_error(session, &e, "").await;
        }
        let body = match self.read_body(session).await {
            Ok(b) => b,
            Err(e) => return self.respond_error(session, &e, "").await,
        };
        let who = match self.authenticate(session).await {
            Ok(w) => w,
            Err(e) => return self.respond_error(session, &e, "").await,
        };
        let body_bytes = u32::try_from(body.len()).unwrap_or(u32::MAX);
        let chat = match validate::chat(&body, &self.state.config.validation) {
            Ok(c) => c,
            Err(e) => {
                let summary = RequestSummary {
                    format: ApiFormat::OpenaiChat,
                    model: String::new(),
                    stream: false,
                    max_tokens: None,
                    has_tools: false,
                    body_bytes,
                };
                self.record_failure(&who, &summary, e.status, Vec::new())
                    .await;
                return self.respond_error(session, &e, "").await;
            }
        };
        let summary = RequestSummary {
            format: ApiFormat::OpenaiChat,
            model: chat.model,
            stream: chat.stream,
            max_tokens: chat.max_tokens,
            has_tools: chat.has_tools,
            body_bytes,
        };
        if let Err(e) = self.run_chat(session, &who, &summary, &body).await {
            // Refused or failed after authentication (routing, billing, a plugin): still one
            // usage record, so every authenticated request is accounted for.
            self.record_failure(&who, &summary, e.status, Vec::new())
                .await;
            self.respond_error(session, &e, &summary.model).await;
        }
    }

    /// The routes the catalog offers for `model`, as the routing stage sees them.
    fn candidates(&self, model: &str) -> Vec<Candidate> {
        let state = self.state;
        state
            .config
            .models
            .get(model)
            .into_iter()
            .flatten()
            .filter_map(|route| {
                let provider = state.config.providers.get(&route.provider)?;
                Some(Candidate {
                    provider: route.provider.clone(),
                    upstream_model: route.upstream_model.clone(),
                    price: route.price.into(),
                    healthy: state.upstreams.health.healthy(&route.provider),
                    zero_retention: provider.zero_retention,
                    latency_ms: state.upstreams.health.latency_ms(&route.provider),
                })
            })
            .collect()
    }

    /// Routing, then billing.authorize for the first route: the attempts to make.
    async fn route_and_authorize(
        &self,
        who: &Principal,
        summary: &RequestSummary,
    ) -> Result<Vec<Attempt>, ApiError> {
        let state = self.state;
        let candidates = self.candidates(&summary.model);
        let routing = self.plugin(&state.config.routing_plugin, Stage::Routing)?;
        let attempts = self.stage_result(self.timed(Stage::Routing, || {
            routing.route(&self.id, who, summary, &candidates)
        }))?;
        let Some(first) = attempts.first() else {
            return Err(ApiError::new(
                404,
                "model_not_found",
                format!(
                    "The model '{}' does not exist or you do not have access to it.",
                    summary.model
                ),
            ));
        };
        state
            .services
            .prefetch_balance(&who.org_id)
            .await
            .map_err(|e| ApiError::internal(format!("balance lookup failed: {e}")))?;
        let billing = self.plugin(&state.config.billing_plugin, Stage::Billing)?;
        let price = catalog::route_price(
            &state.config,
            &summary.model,
            &first.provider,
            &first.upstream_model,
        );
        self.stage_result(self.timed(Stage::Billing, || {
            billing.authorize(&self.id, who, summary, &first.provider, price)
        }))?;
        Ok(attempts)
    }

    /// Routes, authorizes and runs the attempts. Everything it answers itself is recorded;
    /// an `Err` is a refusal before any attempt, not yet recorded or answered.
    async fn run_chat(
        &self,
        session: &mut Session,
        who: &Principal,
        summary: &RequestSummary,
        body: &[u8],
    ) -> Result<(), ApiError> {
        let state = self.state;
        let attempts = self.route_and_authorize(who, summary).await?;
        let mut runner = ChatAttempt {
            req: self,
            session: &mut *session,
            summary,
            body,
        };
        match run_attempts(&attempts, &mut runner).await? {
            Attempts::Answered {
                index,
                answer,
                records,
            } => {
                let attempt = &attempts[index];
                let outcome = Outcome {
                    status: answer.status,
                    provider: attempt.provider.clone(),
                    price: catalog::route_price(
                        &state.config,
                        &summary.model,
                        &attempt.provider,
                        &attempt.upstream_model,
                    ),
                    usage: answer.usage,
                    charge: answer.charge,
                };
                self.settle_and_log(who, summary, outcome, records).await;
            }
            Attempts::AllFailed { last, records } => {
                // Every attempt failed before the client got a byte: tell it what the last
                // provider said, in its format.
                if let Some((index, AttemptFailure::Status(status, body))) = &last {
                    if let Some(translated) = self.translate_error(&attempts[*index], *status, body)
                    {
                        self.state
                            .metrics
                            .request(*status, self.model_label(&summary.model));
                        let delivered = self
                            .respond(session, *status, "application/json", translated)
                            .await;
                        let status = if delivered { *status } else { CLIENT_GONE };
                        self.record_failure(who, summary, status, records).await;
                        return Ok(());
                    }
                }
                let error = failure_error(last.as_ref().map(|(_, f)| f));
                self.record_failure(who, summary, error.status, records)
                    .await;
                self.respond_error(session, &error, &summary.model).await;
            }
        }
        Ok(())
    }

    /// A provider's error answer in the client's format (through its transform plugin).
    fn translate_error(&self, attempt: &Attempt, status: u16, body: &[u8]) -> Option<Vec<u8>> {
        let provider = self.state.upstreams.provider(&attempt.provider)?;
        let transform = self
            .state
            .registry
            .get_stage(&provider.transform, Stage::Transform)
            .ok()?;
        let ctx = TransformCtx {
            request_id: self.id.clone(),
            client_format: ApiFormat::OpenaiChat,
            upstream_model: attempt.upstream_model.clone(),
            stream: false,
        };
        let resp = transform
            .transform_response(&self.id, &ctx, status, body)
            .ok()?
            .ok()?;
        Some(resp.body)
    }
}

/// One chat attempt against a provider: transform.request, the upstream call, the answer.
struct ChatAttempt<'r, 'a, 's> {
    req: &'r Request<'a>,
    session: &'s mut Session,
    summary: &'r RequestSummary,
    body: &'r [u8],
}

impl AttemptRunner for ChatAttempt<'_, '_, '_> {
    async fn try_once(&mut self, attempt: &Attempt) -> Result<Tried, ApiError> {
        let req = self.req;
        let state = req.state;
        let Some(provider) = state.upstreams.provider(&attempt.provider) else {
            return Ok(Tried::Skipped);
        };
        let transform = req.plugin(&provider.transform, Stage::Transform)?;
        let ctx = TransformCtx {
            request_id: req.id.clone(),
            client_format: ApiFormat::OpenaiChat,
            upstream_model: attempt.upstream_model.clone(),
            stream: self.summary.stream,
        };
        // A refusal here means the request itself is bad for this provider: not something
        // another provider fixes, so it goes straight to the client.
        let upstream_request = req.stage_result(req.timed(Stage::Transform, || {
            transform.transform_request(&req.id, &ctx, self.body)
        }))?;
        let stream_state = upstream_request.stream_state.clone();
        let total = if attempt.timeout_ms > 0 {
            Duration::from_millis(u64::from(attempt.timeout_ms))
        } else {
            state.upstreams.limits.total
        };
        let sent = Instant::now();
        let result = state
            .upstreams
            .send(provider, upstream_request, self.summary.stream, total)
            .await;
        let latency = sent.elapsed();
        // What the attempt produced: an answer (the client got it, or an error after its first
        // byte), or a failure before any byte reached the client.
        let (status, produced) = match result {
            Ok(mut response) => {
                let status = response.status;
                let produced =
                    if self.summary.stream && response.is_event_stream && response.status < 300 {
                        let mut sink = SessionSink {
                            session: &mut *self.session,
                            request_id: &req.id,
                        };
                        let mut events = PluginEvents::new(req, &transform, &ctx, stream_state);
                        match relay(&mut sink, &mut response, &mut events).await {
                            Ok(relayed) => {
                                if relayed.upstream_done {
                                    state.upstreams.release(response).await;
                                }
                                Ok(relayed.answer)
                            }
                            Err(f) => Err(f),
                        }
                    } else {
                        req.complete_response(self.session, &transform, &ctx, response)
                            .await
                    };
                (status, produced)
            }
            Err(failure) => {
                let status = match &failure {
                    AttemptFailure::Status(s, _) => *s,
                    _ => 0,
                };
                (status, Err(failure))
            }
        };
        Ok(match produced {
            Ok(answer) => {
                state.metrics.upstream(&provider.name, "ok", latency);
                state.upstreams.health.record(&provider.name, true, latency);
                Tried::Answered {
                    status,
                    answer,
                    latency,
                }
            }
            Err(failure) => {
                state
                    .upstreams
                    .health
                    .record(&provider.name, false, latency);
                state
                    .metrics
                    .upstream(&provider.name, failure.class(), latency);
                tracing::warn!(provider = %provider.name, error = failure.class(), "upstream attempt failed");
                Tried::Failed {
                    status,
                    failure,
                    latency,
                }
            }
        })
    }
}
