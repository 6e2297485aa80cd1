//! Every client API's stages in order, shared by the four routes:
//!
//! ```text
//! read body ─► auth (+ the key's state and API scope: access.rs) ─► parse for its API (call.rs)
//!   ─► model scope, rate limits (rate.rs) ─► routing, BYOK plan, billing.authorize, the
//!      credit reservation (route.rs)
//!   ─► attempts (attempts.rs): transform.request ─► upstream ─► complete.rs | stream.rs
//!      (through an adapter, adapt.rs, when the provider does not speak the client's API)
//!   ─► settle.rs: billing.settle ─► logging ─► usage writer
//! ```

use super::guard::Guarded;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora_proxy::Session;

use super::access::Access;
use super::adapt::{estimate_input, mode, Adapting, Mode};
use super::attempts::{failure_error, run_attempts, AttemptRunner, Attempts, Tried};
use super::byok::{Credential, Plan};
use super::call::{self, Call};
use super::client::SessionSink;
use super::complete::Pricing;
use super::context::Request;
use super::events::PluginEvents;
use super::outcome::{Outcome, CLIENT_GONE};
use super::stream::relay;
use super::upstream::AttemptFailure;
use crate::api_error::{ApiError, ApiFormat};
use crate::config::ModelKind;
use crate::plugins::bindings::{Attempt, Principal, TransformCtx};
use crate::plugins::Stage;
use crate::policy::{options, FailureClass};

/// Parses a body for its API (the call's history, for Responses, is loaded here too).
pub(super) enum Parse {
    Chat,
    Messages,
    Responses,
    Embeddings,
}

impl Request<'_> {
    /// Serves one call on the API `parse` names: the five stages, one usage record.
    pub(super) async fn serve(&self, session: &mut Session, parse: Parse) {
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
        let access = match self.access(&who).await {
            Ok(a) => a,
            Err(e) => {
                let summary = call::unparsed(self.format, &body);
                self.record_failure(&who, &summary, e.status, Vec::new())
                    .await;
                return self.respond_error(session, &e, "").await;
            }
        };
        self.begin_retention(&access, &body);
        let call = match self.parse(session, parse, body.clone(), &who).await {
            Ok(c) => c,
            Err(e) => {
                let summary = call::unparsed(self.format, &body);
                self.record_failure(&who, &summary, e.status, Vec::new())
                    .await;
                return self.respond_error(session, &e, "").await;
            }
        };
        if let Err(e) = self.run(session, &who, &access, &call).await {
            // Refused or failed after authentication (routing, billing, a plugin): still one
            // usage record, so every authenticated request is accounted for.
            self.record_failure(&who, &call.summary, e.status, Vec::new())
                .await;
            self.respond_error(session, &e, &call.summary.model).await;
        }
    }

    async fn parse(
        &self,
        session: &Session,
        parse: Parse,
        body: Bytes,
        who: &Principal,
    ) -> Result<Call, ApiError> {
        let limits = &self.state.config.validation;
        let call = match parse {
            Parse::Chat => call::chat(body, limits)?,
            Parse::Embeddings => call::embeddings(body, limits)?,
            Parse::Messages => call::messages(
                body,
                session.req_header(),
                format!("msg_{}", &self.id[4..]),
                limits,
            )?,
            Parse::Responses => {
                let mut call = call::responses(body, self.response_meta(), limits)?;
                if self.retention_mode() == crate::retention::RetentionMode::Zero {
                    call.without_state()?;
                }
                let history = self.history(&call, who).await?;
                call.with_history(history)?
            }
        };
        let mut call = call;
        self.resolve_model(&mut call)?;
        self.check_kind(&call)?;
        Ok(call)
    }

    /// The model the client named, through the policy: an alias, `provider/model` (that model
    /// at that provider only), and OpenRouter's routing options on chat requests (taken out of
    /// the body that goes upstream).
    fn resolve_model(&self, call: &mut Call) -> Result<(), ApiError> {
        if call.format == ApiFormat::OpenaiChat
            && options::may_have_options(&call.body, &call.summary.model)
        {
            let (model, opts, body) = options::parse(&call.summary.model, &call.body)?;
            call.summary.model = model;
            if let Some(body) = body {
                call.body = Bytes::from(body);
            }
            call.options = opts;
        }
        let policy = &self.policy;
        let name = call.summary.model.clone();
        if !policy.models.contains_key(&name) {
            if let Some(target) = policy.aliases.get(&name) {
                call.summary.model = target.clone();
            } else if let Some((provider, model)) = name.split_once('/') {
                let model = policy.resolve(model);
                let served = policy
                    .models
                    .get(model)
                    .is_some_and(|routes| routes.iter().any(|r| r.provider == provider));
                if served {
                    call.summary.model = model.to_string();
                    call.pinned = Some(provider.to_string());
                }
            }
        }
        if let Some(o) = &mut call.options {
            for m in &mut o.fallback_models {
                *m = policy.resolve(m).to_string();
            }
        }
        Ok(())
    }

    /// A model used on the wrong API (an embedding model for chat, or the reverse) is refused
    /// before routing.
    fn check_kind(&self, call: &Call) -> Result<(), ApiError> {
        let Some(info) = self.policy.model_info.get(&call.summary.model) else {
            return Ok(()); // unknown: routing says so
        };
        let model = &call.summary.model;
        match (call.wants(), info.kind) {
            (ModelKind::Embedding, ModelKind::Chat) => Err(ApiError::bad_request(format!(
                "The model '{model}' is not an embedding model: use it with chat completions, Messages or Responses."
            ))
            .with_param("model")),
            (ModelKind::Chat, ModelKind::Embedding) => Err(ApiError::bad_request(format!(
                "The model '{model}' is an embedding model: use it with /v1/embeddings."
            ))
            .with_param("model")),
            _ => Ok(()),
        }
    }

    /// Routes, authorizes and runs the attempts. Everything it answers itself is recorded;
    /// an `Err` is a refusal before any attempt, not yet recorded or answered.
    async fn run(
        &self,
        session: &mut Session,
        who: &Principal,
        access: &Access,
        call: &Call,
    ) -> Result<(), ApiError> {
        let state = self.state;
        let summary = &call.summary;
        self.check_model_scope(access, call)?;
        self.admit(access, call).await?;
        self.check_prompt(who, call).await?;
        let Plan {
            attempts,
            credentials,
            rules,
            ..
        } = self.route_and_authorize(who, access, call).await?;
        let mut runner = CallAttempt {
            req: self,
            session: &mut *session,
            call,
            who,
            credentials: &credentials,
            refused_context: None,
            tried: Vec::new(),
        };
        let result = run_attempts(&attempts, &mut runner, rules).await?;
        match result {
            Attempts::Answered {
                index,
                answer,
                records,
            } => {
                let attempt = &attempts[index];
                if self.unpriced_route(summary, attempt) {
                    state.metrics.unpriced(self.model_label(&summary.model));
                    tracing::warn!(model = %summary.model, provider = %attempt.provider,
                        request = %self.id, "served by a route with no price: not charged (limits.unpriced_models = \"alert\")");
                }
                let mut usage = answer.usage;
                if answer.estimated {
                    usage.input = usage.input.max(estimate_input_off_path(call).await);
                }
                let outcome = Outcome {
                    status: answer.status,
                    provider: attempt.provider.clone(),
                    price: self.policy.route_price(
                        &summary.model,
                        &attempt.provider,
                        &attempt.upstream_model,
                    ),
                    usage,
                    charge: answer.charge,
                    estimated: answer.estimated,
                    byok: credentials.get(index).is_some_and(Option::is_some),
                    charged: answer.charged,
                };
                self.settle_and_log(who, summary, outcome, records).await;
            }
            Attempts::AllFailed { last, records } => {
                self.trace_failed(&records);
                // Every attempt failed before the client got a byte: tell it what the last
                // provider said, in its format.
                if let Some((index, AttemptFailure::Status(status, body, _))) = &last {
                    if let Some(translated) = self
                        .translate_error(who, call, &attempts[*index], *status, body)
                        .await
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

    /// `x-tollgate-route` on an answer that no attempt gave (when the request is traced).
    fn trace_failed(&self, records: &[super::outcome::AttemptRecord]) {
        if !self.trace_header.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let outcomes: Vec<_> = records
            .iter()
            .map(crate::plugins::bindings::AttemptOutcome::from)
            .collect();
        if let Some(trace) = self.finished_trace(&outcomes) {
            let mut headers = self.extra_headers.lock();
            headers.retain(|(k, _)| *k != ROUTE_HEADER);
            headers.push((ROUTE_HEADER, trace.header()));
        }
    }

    /// A provider's error answer in the client's format (through its transform plugin, then
    /// the adapter when the provider does not speak the client's API).
    async fn translate_error(
        &self,
        who: &Principal,
        call: &Call,
        attempt: &Attempt,
        status: u16,
        body: &[u8],
    ) -> Option<Vec<u8>> {
        let provider = self.state.upstreams.provider(&attempt.provider)?;
        let config = self.state.config.providers.get(&attempt.provider)?;
        let how = mode(call, config)?;
        let transform = self
            .state
            .registry
            .get_stage(&provider.transform, Stage::Transform)
            .ok()?;
        let ctx = TransformCtx {
            request_id: self.id.clone(),
            client_format: transform_format(call, how),
            upstream_model: attempt.upstream_model.clone(),
            stream: false,
        };
        let resp = transform
            .transform_response(&self.id, &ctx, status, body)
            .await
            .ok()?
            .ok()?;
        match how {
            Mode::Native => Some(resp.body),
            Mode::Adapted => Adapting::new(call, who)
                .complete(status, &resp.body, None)
                .ok(),
        }
    }
}

/// Estimates input tokens on the blocking pool: the tokenizer over a large body is CPU work
/// that must not hold a proxy worker.
async fn estimate_input_off_path(call: &Call) -> u64 {
    let canonical = call.canonical_body().to_vec();
    let format = call.format;
    tokio::task::spawn_blocking(move || estimate_input(format, &canonical))
        .await
        .unwrap_or(0)
}

/// The client format a transform plugin is told: the call's own when the provider speaks it,
/// canonical chat otherwise.
fn transform_format(call: &Call, how: Mode) -> ApiFormat {
    match how {
        Mode::Native => call.format,
        Mode::Adapted => ApiFormat::OpenaiChat,
    }
}

/// One attempt against a provider: transform.request, the upstream call, the answer.
struct CallAttempt<'r, 'a, 's> {
    req: &'r Request<'a>,
    session: &'s mut Session,
    call: &'r Call,
    who: &'r Principal,
    /// Per attempt: the org's own provider key (BYOK), or None for the provider's.
    credentials: &'r [Option<Credential>],
    /// The context window of a route that said the prompt is too long (0: unknown): routes
    /// no larger are skipped.
    refused_context: Option<u64>,
    /// The attempts so far, for the route trace header.
    tried: Vec<crate::policy::trace::Tried>,
}

impl CallAttempt<'_, '_, '_> {
    /// Sets `x-tollgate-route` (when the request is traced) for the attempt about to answer.
    fn trace_header(&self, attempt: &Attempt, status: u16, latency: Duration) {
        let req = self.req;
        if !req.trace_header.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let Some(mut trace) = req.trace.lock().clone() else {
            return;
        };
        trace.attempts = self.tried.clone();
        trace.attempts.push(crate::policy::trace::Tried {
            provider: attempt.provider.clone(),
            model: attempt.upstream_model.clone(),
            status,
            error: None,
            latency_ms: latency.as_millis() as u64,
        });
        let mut headers = req.extra_headers.lock();
        headers.retain(|(k, _)| *k != ROUTE_HEADER);
        headers.push((ROUTE_HEADER, trace.header()));
    }
}

/// The route trace response header.
pub(super) const ROUTE_HEADER: &str = "x-tollgate-route";

impl AttemptRunner for CallAttempt<'_, '_, '_> {
    async fn try_once(&mut self, index: usize, attempt: &Attempt) -> Result<Tried, ApiError> {
        let req = self.req;
        let state = req.state;
        let call = self.call;
        let (Some(provider), Some(config)) = (
            state.upstreams.provider(&attempt.provider),
            state.config.providers.get(&attempt.provider),
        ) else {
            return Ok(Tried::Skipped);
        };
        let Some(how) = mode(call, config) else {
            return Ok(Tried::Skipped);
        };
        let route = req.policy.find_route(
            &call.summary.model,
            &attempt.provider,
            &attempt.upstream_model,
        );
        let context = route.and_then(|r| r.context_length);
        if let (Some(refused), Some(context)) = (self.refused_context, context) {
            if context <= refused {
                return Ok(Tried::SkippedFor("context-length"));
            }
        }
        let stream = call.summary.stream;
        let transform = req.plugin(&provider.transform, Stage::Transform)?;
        let ctx = TransformCtx {
            request_id: req.id.clone(),
            client_format: transform_format(call, how),
            upstream_model: attempt.upstream_model.clone(),
            stream,
        };
        let body: &[u8] = match how {
            Mode::Native => &call.body,
            Mode::Adapted => call.canonical_body(),
        };
        // A refusal here means the request itself is bad for this provider: not something
        // another provider fixes, so it goes straight to the client.
        let mut upstream_request = req.stage_result(
            req.timed(
                Stage::Transform,
                transform.transform_request(&req.id, &ctx, body),
            )
            .await,
        )?;
        if how == Mode::Native {
            // A same-format provider gets the client's version and beta headers verbatim.
            for (name, _) in &call.forward_headers {
                upstream_request
                    .headers
                    .retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            }
            for (name, value) in &call.forward_headers {
                upstream_request.headers.push((name.clone(), value.clone()));
            }
        }
        let stream_state = upstream_request.stream_state.clone();
        let total = if attempt.timeout_ms > 0 {
            Duration::from_millis(u64::from(attempt.timeout_ms))
        } else {
            state.upstreams.limits.total
        };
        let sent = Instant::now();
        let result = state
            .upstreams
            .send(
                provider,
                upstream_request,
                stream,
                total,
                self.credentials
                    .get(index)
                    .and_then(Option::as_ref)
                    .map(Credential::expose),
            )
            .await;
        let latency = sent.elapsed();
        if let Ok(response) = &result {
            self.trace_header(attempt, response.status, latency);
        }
        let mut adapting = (how == Mode::Adapted).then(|| Adapting::new(call, self.who));
        let pricing = Pricing {
            who: self.who,
            provider: &attempt.provider,
            price: req.policy.route_price(
                &call.summary.model,
                &attempt.provider,
                &attempt.upstream_model,
            ),
            byok: self.credentials.get(index).is_some_and(Option::is_some),
        };
        // What the attempt produced: an answer (the client got it, or an error after its first
        // byte), or a failure before any byte reached the client.
        let (status, produced) = match result {
            Ok(mut response) => {
                let status = response.status;
                let produced = if stream && response.is_event_stream && response.status < 300 {
                    let mut sink = SessionSink {
                        session: &mut *self.session,
                        request_id: &req.id,
                        format: req.format,
                        headers: req.extra_headers.lock().clone(),
                        capture: &req.capture,
                    };
                    let events =
                        PluginEvents::new(req, &transform, &ctx, stream_state).priced(pricing);
                    let relayed = match adapting.as_ref() {
                        Some(a) => {
                            let mut adapted = Guarded::new(a.events(events), req, self.who);
                            // Boxed: a stream's relay future holds every stage call it makes;
                            // inline, it overflowed a debug build's proxy thread stack.
                            Box::pin(relay(&mut sink, &mut response, &mut adapted)).await
                        }
                        None => {
                            let mut events = Guarded::new(events, req, self.who);
                            Box::pin(relay(&mut sink, &mut response, &mut events)).await
                        }
                    };
                    match relayed {
                        Ok(relayed) => {
                            if relayed.upstream_done {
                                state.upstreams.release(response).await;
                            }
                            Ok(relayed.answer)
                        }
                        Err(f) => Err(f),
                    }
                } else {
                    let answer = req
                        .complete_response(
                            self.session,
                            &transform,
                            &ctx,
                            response,
                            adapting.as_mut(),
                            pricing,
                        )
                        .await;
                    answer
                };
                (status, produced)
            }
            Err(failure) => {
                let status = match &failure {
                    AttemptFailure::Status(s, ..) => *s,
                    _ => 0,
                };
                (status, Err(failure))
            }
        };
        let health = &state.upstreams.health;
        Ok(match produced {
            Ok(answer) => {
                state.metrics.upstream(&provider.name, "ok", latency);
                if answer.end.error().is_none() {
                    health.success(
                        &provider.name,
                        &attempt.upstream_model,
                        latency,
                        answer.usage.output,
                        sent.elapsed(),
                    );
                }
                Tried::Answered {
                    status,
                    answer,
                    latency,
                }
            }
            Err(failure) => {
                let retry_after = match &failure {
                    AttemptFailure::Status(429, _, wait) => *wait,
                    _ => None,
                };
                let class = failure.fallback_class();
                // A prompt too long or a filtered one says nothing about the provider's health.
                if !matches!(
                    class,
                    FailureClass::ContextLength | FailureClass::ContentFilter
                ) {
                    health.failure(&provider.name, &attempt.upstream_model, retry_after);
                }
                if class == FailureClass::ContextLength {
                    self.refused_context =
                        Some(context.unwrap_or(0).max(self.refused_context.unwrap_or(0)));
                }
                self.tried.push(crate::policy::trace::Tried {
                    provider: attempt.provider.clone(),
                    model: attempt.upstream_model.clone(),
                    status,
                    error: Some(super::outcome::AttemptError::from(&failure).as_record()),
                    latency_ms: latency.as_millis() as u64,
                });
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
