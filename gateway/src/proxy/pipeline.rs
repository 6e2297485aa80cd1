//! One request through the five stages:
//!
//! ```text
//! read body ─► auth ─► parse summary ─► routing ─► billing.authorize
//!   ─► for each attempt: transform.request ─► upstream ─► (429/5xx/connect/timeout: next)
//!   ─► transform.response | transform.event per SSE event ─► client
//!   ─► billing.settle ─► logging ─► usage writer (batched, off the request path)
//! ```
//!
//! Upstream attempts are driven here (not through Pingora's `upstream_peer` loop) so that the
//! body can be re-transformed per provider and fallback happens strictly before the first byte
//! reaches the client.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::upstream::{read_body, AttemptFailure, UpstreamResponse};
use super::AppState;
use crate::api_error::{ApiError, ClientFormat};
use crate::plugins::bindings::*;
use crate::plugins::{LoadedPlugin, PluginError, Stage};
use crate::sse;
use crate::store::{new_id, now_ms, ChargeEntry, UsageEvent};

/// The fields the host itself needs from a chat request, parsed once.
#[derive(Deserialize)]
struct ChatPeek {
    model: Option<String>,
    stream: Option<bool>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    tools: Option<IgnoredAny>,
    messages: Option<IgnoredAny>,
}

/// One OpenAI stream chunk, for counting delivered text when usage never arrives.
#[derive(Deserialize)]
struct ChunkPeek<'a> {
    #[serde(borrow)]
    choices: Option<Vec<ChoicePeek<'a>>>,
}
#[derive(Deserialize)]
struct ChoicePeek<'a> {
    #[serde(borrow)]
    delta: Option<DeltaPeek<'a>>,
}
#[derive(Deserialize)]
struct DeltaPeek<'a> {
    #[serde(borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
}

/// No tokens.
const NO_USAGE: Usage = Usage {
    input: 0,
    output: 0,
    cache_read: 0,
    cache_write: 0,
    reasoning: 0,
};

/// Largest upstream response body read for a non-streaming request.
const MAX_UPSTREAM_BODY: usize = 64 << 20;

/// Everything recorded about an attempt.
struct AttemptRecord {
    provider: String,
    upstream_model: String,
    status: u16,
    error: String,
    latency: Duration,
}

/// What happened to the request, for settlement and logging.
struct Outcome {
    status: u16,
    provider: String,
    price: Price,
    usage: Usage,
}

pub struct Request<'a> {
    state: &'a AppState,
    pub id: String,
    started: Instant,
    format: ClientFormat,
    client_ip: String,
}

fn header_value<'h>(resp: &'h pingora_http::RequestHeader, name: &str) -> Option<&'h str> {
    resp.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The API key a client presented (`Authorization: Bearer` or `x-api-key`).
fn presented_key(req: &pingora_http::RequestHeader) -> Option<&str> {
    if let Some(auth) = header_value(req, "authorization") {
        let (scheme, token) = auth.trim().split_once(' ')?;
        return (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
            .then(|| token.trim());
    }
    header_value(req, "x-api-key")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn usage_tokens(u: &Usage) -> u64 {
    u.input + u.output + u.cache_read + u.cache_write
}

impl<'a> Request<'a> {
    pub fn new(state: &'a AppState, session: &Session) -> Self {
        Request {
            state,
            id: format!("req_{}", &new_id("x")[2..]),
            started: Instant::now(),
            format: ClientFormat::OpenAi,
            client_ip: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip().to_string())
                .unwrap_or_default(),
        }
    }

    fn plugin(&self, name: &str, stage: Stage) -> Result<std::sync::Arc<LoadedPlugin>, ApiError> {
        self.state
            .registry
            .get_stage(name, stage)
            .map_err(|e| self.plugin_failed(&e))
    }

    fn plugin_failed(&self, e: &PluginError) -> ApiError {
        self.state
            .metrics
            .plugin_failures
            .inc_by(&[("plugin", &e.plugin), ("class", e.class())], 1);
        tracing::error!(request_id = %self.id, error = %e, "plugin failure");
        ApiError::new(
            500,
            "plugin_error",
            format!("Request failed in the gateway: {e}"),
        )
    }

    /// A stage call's outcome as the client will see it: a refusal keeps its status, a plugin
    /// failure is a 500 naming the plugin.
    fn stage_result<T>(&self, r: Result<Result<T, Reject>, PluginError>) -> Result<T, ApiError> {
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(reject)) => Err(ApiError::from(&reject)),
            Err(e) => Err(self.plugin_failed(&e)),
        }
    }

    fn timed<T>(&self, stage: Stage, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.state
            .metrics
            .stage_duration
            .observe(&[("stage", stage.as_str())], t.elapsed());
        out
    }

    /// Sends a complete response.
    pub async fn respond(
        &self,
        session: &mut Session,
        status: u16,
        content_type: &str,
        body: Vec<u8>,
    ) {
        let mut resp = match ResponseHeader::build(status, Some(4)) {
            Ok(r) => r,
            Err(_) => return,
        };
        let _ = resp.insert_header("content-type", content_type);
        let _ = resp.insert_header("content-length", body.len().to_string());
        let _ = resp.insert_header("x-request-id", self.id.as_str());
        if session
            .write_response_header(Box::new(resp), false)
            .await
            .is_ok()
        {
            let _ = session
                .write_response_body(Some(Bytes::from(body)), true)
                .await;
        }
    }

    pub async fn respond_error(&self, session: &mut Session, err: &ApiError, model: &str) {
        self.state
            .metrics
            .requests
            .inc_by(&[("status", &err.status.to_string()), ("model", model)], 1);
        self.respond(
            session,
            err.status,
            "application/json",
            err.body(self.format),
        )
        .await;
    }

    /// Reads the request body, enforcing the size limit (413) before and while reading.
    async fn read_body(&self, session: &mut Session) -> Result<Bytes, ApiError> {
        let limit = self.state.config.max_body_bytes;
        let declared = header_value(session.req_header(), "content-length")
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            session.set_keepalive(None);
            return Err(ApiError::too_large(limit));
        }
        let mut body = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        session.set_keepalive(None);
                        return Err(ApiError::too_large(limit));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body.freeze()),
                Err(e) => {
                    return Err(ApiError::bad_request(format!(
                        "reading the request body: {e}"
                    )))
                }
            }
        }
    }

    /// Runs the auth stage (prefetching the key record it will look up).
    pub async fn authenticate(&self, session: &Session) -> Result<Principal, ApiError> {
        let req = session.req_header();
        if let Some(key) = presented_key(req) {
            self.state
                .services
                .prefetch_key(key)
                .await
                .map_err(|e| ApiError::internal(format!("key lookup failed: {e}")))?;
        }
        let head = RequestHead {
            id: self.id.clone(),
            method: req.method.as_str().to_string(),
            path: req.uri.path().to_string(),
            headers: req
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect(),
            client_ip: self.client_ip.clone(),
        };
        let auth = self.plugin(&self.state.config.auth_plugin, Stage::Auth)?;
        self.stage_result(self.timed(Stage::Auth, || auth.authenticate(&self.id, &head)))
    }

    /// `POST /v1/chat/completions`.
    pub async fn chat(&self, session: &mut Session) {
        let body = match self.read_body(session).await {
            Ok(b) => b,
            Err(e) => return self.respond_error(session, &e, "").await,
        };
        let who = match self.authenticate(session).await {
            Ok(w) => w,
            Err(e) => return self.respond_error(session, &e, "").await,
        };
        let peek: ChatPeek = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                let err = ApiError::bad_request(format!(
                    "We could not parse the JSON body of your request: {e}"
                ));
                return self.respond_error(session, &err, "").await;
            }
        };
        let Some(model) = peek.model.filter(|m| !m.is_empty()) else {
            let err = ApiError::bad_request("you must provide a model parameter");
            return self.respond_error(session, &err, "").await;
        };
        if peek.messages.is_none() {
            let err = ApiError::bad_request("'messages' is a required property");
            return self.respond_error(session, &err, &model).await;
        }
        let summary = RequestSummary {
            format: ApiFormat::OpenaiChat,
            model: model.clone(),
            stream: peek.stream.unwrap_or(false),
            max_tokens: peek.max_completion_tokens.or(peek.max_tokens),
            has_tools: peek.tools.is_some(),
            body_bytes: u32::try_from(body.len()).unwrap_or(u32::MAX),
        };
        if let Err(e) = self.run_chat(session, &who, &summary, &body).await {
            self.respond_error(session, &e, &model).await;
        }
    }

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
                    price: Price {
                        input: route.price.input,
                        output: route.price.output,
                        cache_read: route.price.cache_read,
                        cache_write: route.price.cache_write,
                    },
                    healthy: state.upstreams.health.healthy(&route.provider),
                    zero_retention: provider.zero_retention,
                    latency_ms: state.upstreams.health.latency_ms(&route.provider),
                })
            })
            .collect()
    }

    async fn run_chat(
        &self,
        session: &mut Session,
        who: &Principal,
        summary: &RequestSummary,
        body: &[u8],
    ) -> Result<(), ApiError> {
        let state = self.state;
        let candidates = self.candidates(&summary.model);
        let prices: Vec<(String, String, Price)> = candidates
            .iter()
            .map(|c| (c.provider.clone(), c.upstream_model.clone(), c.price))
            .collect();
        let routing = self.plugin(&state.config.routing_plugin, Stage::Routing)?;
        let attempts = self.stage_result(self.timed(Stage::Routing, || {
            routing.route(&self.id, who, summary, &candidates)
        }))?;
        if attempts.is_empty() {
            return Err(ApiError::new(
                404,
                "model_not_found",
                format!(
                    "The model '{}' does not exist or you do not have access to it.",
                    summary.model
                ),
            ));
        }
        let price_of = |a: &Attempt| {
            prices
                .iter()
                .find(|(p, m, _)| *p == a.provider && *m == a.upstream_model)
                .map(|(_, _, price)| *price)
                .unwrap_or(Price {
                    input: 0,
                    output: 0,
                    cache_read: 0,
                    cache_write: 0,
                })
        };

        state
            .services
            .prefetch_balance(&who.org_id)
            .await
            .map_err(|e| ApiError::internal(format!("balance lookup failed: {e}")))?;
        let billing = self.plugin(&state.config.billing_plugin, Stage::Billing)?;
        let first_price = price_of(&attempts[0]);
        self.stage_result(self.timed(Stage::Billing, || {
            billing.authorize(&self.id, who, summary, &attempts[0].provider, first_price)
        }))?;

        let mut records: Vec<AttemptRecord> = Vec::new();
        let mut last_failure: Option<(String, String, AttemptFailure)> = None;
        for attempt in &attempts {
            let Some(provider) = state.upstreams.provider(&attempt.provider) else {
                records.push(AttemptRecord {
                    provider: attempt.provider.clone(),
                    upstream_model: attempt.upstream_model.clone(),
                    status: 0,
                    error: "unknown provider".into(),
                    latency: Duration::ZERO,
                });
                continue;
            };
            let transform = self.plugin(&provider.transform, Stage::Transform)?;
            let ctx = TransformCtx {
                request_id: self.id.clone(),
                client_format: ApiFormat::OpenaiChat,
                upstream_model: attempt.upstream_model.clone(),
                stream: summary.stream,
            };
            // A refusal here means the request itself is bad for this provider: not something
            // another provider fixes, so it goes straight to the client.
            let upstream_request = self.stage_result(self.timed(Stage::Transform, || {
                transform.transform_request(&self.id, &ctx, body)
            }))?;
            let stream_state = upstream_request.stream_state.clone();
            let deadline = if attempt.timeout_ms > 0 {
                Duration::from_millis(u64::from(attempt.timeout_ms))
            } else {
                state.config.upstream_timeout
            };
            let sent = Instant::now();
            let result = state
                .upstreams
                .send(provider, upstream_request, summary.stream, deadline)
                .await;
            let latency = sent.elapsed();
            state
                .metrics
                .upstream_duration
                .observe(&[("provider", &provider.name)], latency);
            match result {
                Ok(response) => {
                    state.upstreams.health.record(&provider.name, true, latency);
                    state
                        .metrics
                        .upstream_attempts
                        .inc_by(&[("provider", &provider.name), ("outcome", "ok")], 1);
                    records.push(AttemptRecord {
                        provider: provider.name.clone(),
                        upstream_model: attempt.upstream_model.clone(),
                        status: response.status,
                        error: String::new(),
                        latency,
                    });
                    let price = price_of(attempt);
                    let (status, usage, stream_error) = if summary.stream
                        && response.is_event_stream
                        && response.status < 300
                    {
                        self.stream_response(
                            session,
                            &transform,
                            &ctx,
                            stream_state,
                            response,
                            &provider.name,
                        )
                        .await
                    } else {
                        match self
                            .complete_response(session, &transform, &ctx, response, &provider.name)
                            .await
                        {
                            Ok((status, usage)) => (status, usage, None),
                            Err(failure) => {
                                // Nothing reached the client yet: fall back like any failed attempt.
                                if let Some(last) = records.last_mut() {
                                    last.error = failure.class().to_string();
                                }
                                last_failure = Some((
                                    provider.name.clone(),
                                    attempt.upstream_model.clone(),
                                    failure,
                                ));
                                continue;
                            }
                        }
                    };
                    if let (Some(err), Some(last)) = (&stream_error, records.last_mut()) {
                        last.error = err.clone();
                    }
                    let outcome = Outcome {
                        status,
                        provider: provider.name.clone(),
                        price,
                        usage,
                    };
                    self.settle_and_log(who, summary, outcome, records).await;
                    return Ok(());
                }
                Err(failure) => {
                    state
                        .upstreams
                        .health
                        .record(&provider.name, false, latency);
                    state.metrics.upstream_attempts.inc_by(
                        &[("provider", &provider.name), ("outcome", failure.class())],
                        1,
                    );
                    tracing::warn!(request_id = %self.id, provider = %provider.name, error = ?failure.class(), "upstream attempt failed");
                    records.push(AttemptRecord {
                        provider: provider.name.clone(),
                        upstream_model: attempt.upstream_model.clone(),
                        status: match &failure {
                            AttemptFailure::Status(s, _) => *s,
                            _ => 0,
                        },
                        error: failure.class().to_string(),
                        latency,
                    });
                    last_failure = Some((
                        provider.name.clone(),
                        attempt.upstream_model.clone(),
                        failure,
                    ));
                }
            }
        }

        // Every attempt failed: tell the client what the last provider said, in its format.
        let error = match last_failure {
            Some((provider_name, upstream_model, AttemptFailure::Status(status, body))) => {
                let translated = state
                    .upstreams
                    .provider(&provider_name)
                    .and_then(|p| {
                        state
                            .registry
                            .get_stage(&p.transform, Stage::Transform)
                            .ok()
                    })
                    .and_then(|t| {
                        let ctx = TransformCtx {
                            request_id: self.id.clone(),
                            client_format: ApiFormat::OpenaiChat,
                            upstream_model,
                            stream: false,
                        };
                        t.transform_response(&self.id, &ctx, status, &body)
                            .ok()?
                            .ok()
                    });
                match translated {
                    Some(resp) => {
                        self.record_failure(who, summary, status, records).await;
                        self.state.metrics.requests.inc_by(
                            &[("status", &status.to_string()), ("model", &summary.model)],
                            1,
                        );
                        self.respond(session, status, "application/json", resp.body)
                            .await;
                        return Ok(());
                    }
                    None => ApiError::new(
                        status,
                        "upstream_error",
                        format!("All providers failed; the last answered {status}."),
                    ),
                }
            }
            Some((_, _, AttemptFailure::Timeout)) => ApiError::new(
                504,
                "upstream_timeout",
                "All providers failed; the last one timed out.",
            ),
            Some((_, _, f)) => ApiError::bad_gateway(format!(
                "All providers failed; the last error: {}",
                match f {
                    AttemptFailure::Connect(m) | AttemptFailure::Other(m) => m,
                    _ => f.class().to_string(),
                }
            )),
            None => ApiError::bad_gateway("No provider could be tried for this model."),
        };
        self.record_failure(who, summary, error.status, records)
            .await;
        Err(error)
    }

    /// Reads a complete upstream response, translates it and sends it. A failure to read the
    /// body comes back as an attempt failure (nothing was sent yet).
    async fn complete_response(
        &self,
        session: &mut Session,
        transform: &LoadedPlugin,
        ctx: &TransformCtx,
        mut response: UpstreamResponse,
        provider: &str,
    ) -> Result<(u16, Usage), AttemptFailure> {
        let body = read_body(&mut response.session, MAX_UPSTREAM_BODY)
            .await
            .map_err(AttemptFailure::Other)?;
        let status = response.status;
        self.state.upstreams.release(provider, response).await;
        let translated = self.timed(Stage::Transform, || {
            transform.transform_response(&self.id, ctx, status, &body)
        });
        let out = match self.stage_result(translated) {
            Ok(out) => out,
            Err(err) => {
                self.respond_error(session, &err, &ctx.upstream_model).await;
                return Ok((err.status, NO_USAGE));
            }
        };
        let usage = out.usage.unwrap_or(NO_USAGE);
        let content_type = out
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "application/json".into());
        self.respond(session, out.status, &content_type, out.body)
            .await;
        Ok((out.status, usage))
    }

    /// Streams an upstream SSE response to the client event by event.
    /// Returns (status, usage, error class when the stream did not end cleanly).
    async fn stream_response(
        &self,
        session: &mut Session,
        transform: &LoadedPlugin,
        ctx: &TransformCtx,
        mut state_bytes: Vec<u8>,
        mut response: UpstreamResponse,
        provider: &str,
    ) -> (u16, Usage, Option<String>) {
        let zero = NO_USAGE;
        let mut resp = match ResponseHeader::build(200, Some(4)) {
            Ok(r) => r,
            Err(_) => return (500, zero, Some("internal".into())),
        };
        let _ = resp.insert_header("content-type", "text/event-stream");
        let _ = resp.insert_header("cache-control", "no-cache");
        let _ = resp.insert_header("x-request-id", self.id.as_str());
        if session
            .write_response_header(Box::new(resp), false)
            .await
            .is_err()
        {
            return (499, zero, Some("client-gone".into()));
        }
        let mut parser = sse::Parser::new();
        let mut usage: Option<Usage> = None;
        let mut delivered_chars: u64 = 0;
        let mut error: Option<String> = None;
        let mut saw_done = false;
        loop {
            let chunk = match response.session.read_response_body().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(request_id = %self.id, provider, error = %e, "upstream stream cut");
                    error = Some("stream-cut".into());
                    break;
                }
            };
            let events = match parser.feed(&chunk) {
                Ok(e) => e,
                Err(e) => {
                    error = Some(format!("stream-invalid: {e}"));
                    break;
                }
            };
            let mut out = BytesMut::new();
            for event in events {
                let ev = SseEvent {
                    event: event.event,
                    data: event.data,
                };
                match self.timed(Stage::Transform, || {
                    transform.transform_event(&self.id, ctx, &state_bytes, &ev)
                }) {
                    Ok(Ok(o)) => {
                        state_bytes = o.state;
                        if o.usage.is_some() {
                            usage = o.usage;
                        }
                        for e in &o.events {
                            saw_done |= e.data == "[DONE]";
                            delivered_chars += content_chars(&e.data);
                            sse::encode(&mut out, e.event.as_deref(), &e.data);
                        }
                    }
                    Ok(Err(reject)) => {
                        error = Some(format!("transform-reject: {}", reject.message));
                        break;
                    }
                    Err(e) => {
                        self.plugin_failed(&e);
                        error = Some(format!("plugin: {}", e.class()));
                        break;
                    }
                }
            }
            if !out.is_empty()
                && session
                    .write_response_body(Some(out.freeze()), false)
                    .await
                    .is_err()
            {
                // The client left: dropping the upstream session closes it, cancelling the work.
                error = Some("client-gone".into());
                break;
            }
            if error.is_some() {
                break;
            }
        }
        if error.is_none() && parser.has_partial() {
            error = Some("stream-cut".into());
        }
        if error.is_none() {
            if let Ok(Ok(o)) = transform.end_of_stream(&self.id, ctx, &state_bytes) {
                if o.usage.is_some() {
                    usage = o.usage;
                }
                let mut out = BytesMut::new();
                for e in &o.events {
                    saw_done |= e.data == "[DONE]";
                    sse::encode(&mut out, e.event.as_deref(), &e.data);
                }
                if !saw_done {
                    sse::encode(&mut out, None, "[DONE]");
                }
                let _ = session.write_response_body(Some(out.freeze()), true).await;
            }
            self.state.upstreams.release(provider, response).await;
        } else if error.as_deref() != Some("client-gone") {
            let err = ApiError::new(
                502,
                "upstream_stream_interrupted",
                "The upstream provider's stream was interrupted before it completed.",
            );
            let mut out = BytesMut::new();
            sse::encode(
                &mut out,
                None,
                &String::from_utf8_lossy(&err.body(self.format)),
            );
            let _ = session.write_response_body(Some(out.freeze()), true).await;
        }
        // Charge only what the client received. A stream that did not complete has no final
        // usage: keep what the provider reported so far (e.g. Anthropic's prompt tokens) and
        // count output from the text delivered (~4 characters a token).
        let usage = match (usage, error.is_some()) {
            (Some(u), false) => u,
            (reported, _) => {
                let u = reported.unwrap_or(zero);
                Usage {
                    output: u.output.max(delivered_chars.div_ceil(4)),
                    ..u
                }
            }
        };
        (200, usage, error)
    }

    async fn settle_and_log(
        &self,
        who: &Principal,
        summary: &RequestSummary,
        outcome: Outcome,
        records: Vec<AttemptRecord>,
    ) {
        let state = self.state;
        let charge = if (200..300).contains(&outcome.status) && usage_tokens(&outcome.usage) > 0 {
            let billing = self
                .plugin(&state.config.billing_plugin, Stage::Billing)
                .ok();
            let settled = billing.map(|b| {
                self.timed(Stage::Billing, || {
                    b.settle(
                        &self.id,
                        who,
                        &outcome.provider,
                        outcome.price,
                        outcome.usage,
                        false,
                    )
                })
            });
            match settled {
                Some(Ok(c)) => Some(c),
                Some(Err(e)) => {
                    self.plugin_failed(&e);
                    None
                }
                None => None,
            }
        } else {
            None
        };
        let cost = charge.as_ref().map_or(0, |c| c.amount_micros);
        if cost > 0 {
            state
                .services
                .debit(&who.org_id, i64::try_from(cost).unwrap_or(i64::MAX));
        }
        let u = &outcome.usage;
        for (kind, n) in [
            ("input", u.input),
            ("output", u.output),
            ("cache_read", u.cache_read),
            ("cache_write", u.cache_write),
        ] {
            if n > 0 {
                state
                    .metrics
                    .tokens
                    .inc_by(&[("kind", kind), ("model", &summary.model)], n);
            }
        }
        state
            .metrics
            .cost_micros
            .inc_by(&[("model", &summary.model)], cost);
        state.metrics.requests.inc_by(
            &[
                ("status", &outcome.status.to_string()),
                ("model", &summary.model),
            ],
            1,
        );
        state
            .metrics
            .request_duration
            .observe(&[], self.started.elapsed());
        self.log(
            who,
            summary,
            outcome.status,
            &outcome.provider,
            outcome.usage,
            cost,
            records,
            charge,
        )
        .await;
    }

    async fn record_failure(
        &self,
        who: &Principal,
        summary: &RequestSummary,
        status: u16,
        records: Vec<AttemptRecord>,
    ) {
        let zero = NO_USAGE;
        let provider = records
            .last()
            .map(|r| r.provider.clone())
            .unwrap_or_default();
        self.state
            .metrics
            .request_duration
            .observe(&[], self.started.elapsed());
        self.log(who, summary, status, &provider, zero, 0, records, None)
            .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn log(
        &self,
        who: &Principal,
        summary: &RequestSummary,
        status: u16,
        provider: &str,
        usage: Usage,
        cost: u64,
        records: Vec<AttemptRecord>,
        charge: Option<Charge>,
    ) {
        let state = self.state;
        let latency_ms = self.started.elapsed().as_millis() as u32;
        let record = RequestRecord {
            request_id: self.id.clone(),
            org_id: who.org_id.clone(),
            key_id: who.key_id.clone(),
            model: summary.model.clone(),
            provider: provider.to_string(),
            usage,
            cost_micros: cost,
            latency_ms,
            status,
            attempts: records
                .iter()
                .map(|r| AttemptOutcome {
                    provider: r.provider.clone(),
                    upstream_model: r.upstream_model.clone(),
                    status: r.status,
                    error: r.error.clone(),
                    latency_ms: r.latency.as_millis() as u32,
                })
                .collect(),
            client_ip: self.client_ip.clone(),
            stream: summary.stream,
            request_body: None,
            response_body: None,
            timestamp_ms: now_ms() as u64,
        };
        let decision = match state
            .registry
            .get_stage(&state.config.logging_plugin, Stage::Logging)
        {
            Ok(p) => match self.timed(Stage::Logging, || p.retain(&self.id, &record)) {
                Ok(d) => d,
                Err(e) => {
                    // Fail safe for privacy: keep the metadata event (billing needs it), nothing else.
                    self.plugin_failed(&e);
                    RetentionDecision {
                        store_event: true,
                        store_client_ip: false,
                        store_content: false,
                        retention_days: 0,
                    }
                }
            },
            Err(e) => {
                self.plugin_failed(&e);
                RetentionDecision {
                    store_event: true,
                    store_client_ip: false,
                    store_content: false,
                    retention_days: 0,
                }
            }
        };
        // A charge is always recorded with its event: billing records are not optional.
        if !decision.store_event && charge.is_none() {
            return;
        }
        let attempts = serde_json::Value::Array(
            record
                .attempts
                .iter()
                .map(|a| {
                    serde_json::json!({"provider": a.provider, "model": a.upstream_model,
                    "status": a.status, "error": a.error, "latency_ms": a.latency_ms})
                })
                .collect(),
        );
        let event = UsageEvent {
            request_id: self.id.clone(),
            org_id: who.org_id.clone(),
            key_id: who.key_id.clone(),
            model: summary.model.clone(),
            provider: provider.to_string(),
            input_tokens: usage.input as i64,
            output_tokens: usage.output as i64,
            cache_read_tokens: usage.cache_read as i64,
            cache_write_tokens: usage.cache_write as i64,
            reasoning_tokens: usage.reasoning as i64,
            cost_micros: cost as i64,
            latency_ms: i64::from(latency_ms),
            status: i64::from(status),
            stream: summary.stream,
            attempts: attempts.to_string(),
            client_ip: decision.store_client_ip.then(|| self.client_ip.clone()),
            created_at: now_ms(),
        };
        let charge = charge.filter(|c| c.amount_micros > 0).map(|c| ChargeEntry {
            org_id: who.org_id.clone(),
            request_id: self.id.clone(),
            amount_micros: c.amount_micros as i64,
            memo: c.memo,
        });
        state.usage.record(event, charge).await;
    }
}

/// Characters of assistant text in one OpenAI chunk (for usage estimates on cut streams).
fn content_chars(data: &str) -> u64 {
    if !data.starts_with('{') {
        return 0;
    }
    serde_json::from_str::<ChunkPeek>(data)
        .ok()
        .and_then(|c| c.choices)
        .map(|choices| {
            choices
                .iter()
                .filter_map(|c| c.delta.as_ref()?.content.as_ref())
                .map(|s| s.chars().count() as u64)
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_delivered_content() {
        assert_eq!(
            content_chars(r#"{"choices":[{"index":0,"delta":{"content":"héllo"}}]}"#),
            5
        );
        assert_eq!(
            content_chars(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#),
            0
        );
        assert_eq!(content_chars("[DONE]"), 0);
    }
}
