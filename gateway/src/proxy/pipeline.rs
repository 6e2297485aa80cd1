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
use serde::Deserialize;

use super::upstream::{AttemptFailure, BodyError, UpstreamResponse};
use super::AppState;
use crate::api_error::{ApiError, ClientFormat};
use crate::plugins::bindings::*;
use crate::plugins::{LoadedPlugin, PluginError, Stage};
use crate::sse;
use crate::store::{new_id, now_ms, ChargeEntry, UsageEvent};
use crate::validate;

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

/// The usage-record status of a request whose client left before its answer was delivered
/// (nginx's convention).
const CLIENT_GONE: u16 = 499;

/// The usage-record status of a stream the upstream broke after the first byte.
const STREAM_FAILED: u16 = 502;

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
    /// Tokens used, as far as known.
    usage: Usage,
    /// Whether `usage` is charged: false when the client never received the answer.
    charge: bool,
}

/// How an answer ended once its first byte had reached the client.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StreamEnd {
    Complete,
    /// The client went away: only what it received is charged.
    ClientGone,
    /// The upstream failed (cut, stall, deadline, refusal): the client got an error.
    Failed(String),
}

impl StreamEnd {
    /// The error recorded with the attempt ("" when it completed).
    fn class(&self) -> &str {
        match self {
            StreamEnd::Complete => "",
            StreamEnd::ClientGone => "client-gone",
            StreamEnd::Failed(why) => why,
        }
    }
}

/// An attempt that reached the client.
struct Answer {
    /// The status recorded (499 when the client left, 502 for a broken stream).
    status: u16,
    usage: Usage,
    /// Whether `usage` is charged.
    charge: bool,
    end: StreamEnd,
}

impl Answer {
    /// The client left: charged for what it received (`usage` says how much that was).
    fn client_gone(usage: Usage) -> Self {
        Answer {
            status: CLIENT_GONE,
            usage,
            charge: true,
            end: StreamEnd::ClientGone,
        }
    }
}

/// Why a stream stopped early.
enum StreamFault {
    /// The upstream's bytes stopped, broke or could not be framed.
    Broken(BodyError),
    /// The transform refused an event (e.g. the provider sent an error event).
    Rejected(ApiError),
    /// The transform plugin failed.
    Plugin(String),
}

impl StreamFault {
    /// Before the first byte reached the client: an attempt failure, so the next provider
    /// is tried (or the client gets the error as a normal response).
    fn into_failure(self) -> AttemptFailure {
        match self {
            StreamFault::Broken(e) => e.into(),
            StreamFault::Rejected(err) => AttemptFailure::Refused(err),
            StreamFault::Plugin(m) => AttemptFailure::Other(m),
        }
    }

    /// After it: an error event ends the stream (OpenAI SDKs raise on `{"error": ...}`).
    fn write_error(self, out: &mut BytesMut, format: ClientFormat) -> StreamEnd {
        let (err, class) = match self {
            StreamFault::Broken(e) => {
                let class = e.class().to_string();
                let message = match e {
                    BodyError::Stall | BodyError::Deadline => {
                        "The upstream provider stopped sending its answer (timed out); the stream was ended."
                    }
                    _ => "The upstream provider's stream was interrupted before it completed.",
                };
                (
                    ApiError::new(502, "upstream_stream_interrupted", message),
                    class,
                )
            }
            StreamFault::Rejected(err) => {
                let class = format!("refused: {}", err.code);
                (err, class)
            }
            StreamFault::Plugin(m) => (
                ApiError::new(
                    500,
                    "plugin_error",
                    format!("The stream failed in the gateway: {m}"),
                ),
                m,
            ),
        };
        sse::encode(out, None, &String::from_utf8_lossy(&err.body(format)));
        StreamEnd::Failed(class)
    }
}

/// Usage of a stream that did not complete: what the provider reported so far, with output at
/// least the delivered text at ~4 characters a token.
fn cut_usage(reported: Option<Usage>, delivered_chars: u64) -> Usage {
    let u = reported.unwrap_or(NO_USAGE);
    Usage {
        output: u.output.max(delivered_chars.div_ceil(4)),
        ..u
    }
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

    /// The model as a metrics label: a catalog name, or `other`.
    fn model_label<'m>(&self, model: &'m str) -> &'m str {
        if self.state.config.models.contains_key(model) {
            model
        } else {
            crate::metrics::OTHER
        }
    }

    fn plugin_failed(&self, e: &PluginError) -> ApiError {
        self.state.metrics.plugin_failure(&e.plugin, e.class());
        tracing::error!(error = %e, "plugin failure");
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
        self.state.metrics.stage(stage.as_str(), t.elapsed());
        out
    }

    /// Sends a complete response; false when the client could not be written to.
    pub async fn respond(
        &self,
        session: &mut Session,
        status: u16,
        content_type: &str,
        body: Vec<u8>,
    ) -> bool {
        let mut resp = match ResponseHeader::build(status, Some(4)) {
            Ok(r) => r,
            Err(_) => return false,
        };
        let _ = resp.insert_header("content-type", content_type);
        let _ = resp.insert_header("content-length", body.len().to_string());
        let _ = resp.insert_header("x-request-id", self.id.as_str());
        if matches!(status, 408 | 413 | 431) {
            // The rest of what the client sent cannot be trusted to frame a next request.
            session.set_keepalive(None);
            let _ = resp.insert_header("connection", "close");
        }
        session
            .write_response_header(Box::new(resp), false)
            .await
            .is_ok()
            && session
                .write_response_body(Some(Bytes::from(body)), true)
                .await
                .is_ok()
    }

    pub async fn respond_error(&self, session: &mut Session, err: &ApiError, model: &str) {
        self.state
            .metrics
            .request(err.status, self.model_label(model));
        self.respond(
            session,
            err.status,
            "application/json",
            err.body(self.format),
        )
        .await;
    }

    /// Reads the request body, enforcing the size limit (413) before and while reading, and
    /// the whole-body deadline (408). A `Content-Length` body is already in memory (the front
    /// door read it); a chunked one is read here.
    async fn read_body(&self, session: &mut Session) -> Result<Bytes, ApiError> {
        let limits = &self.state.config.downstream;
        let limit = limits.max_body_bytes;
        let declared = header_value(session.req_header(), "content-length")
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            session.set_keepalive(None);
            return Err(ApiError::too_large(limit));
        }
        let mut body = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
        let deadline = tokio::time::Instant::now() + limits.body_timeout;
        loop {
            let read = tokio::time::timeout_at(deadline, session.read_request_body()).await;
            let Ok(read) = read else {
                session.set_keepalive(None);
                return Err(ApiError::new(
                    408,
                    "request_timeout",
                    format!(
                        "The request body did not arrive within {} ms.",
                        limits.body_timeout.as_millis()
                    ),
                ));
            };
            match read {
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
        if let Some(ct) = header_value(session.req_header(), "content-type").map(str::to_string) {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if mime != "application/json" && !mime.ends_with("+json") {
                session.set_keepalive(None);
                let err = ApiError::new(
                    415,
                    "unsupported_media_type",
                    format!("Unsupported Content-Type '{ct}': send application/json."),
                );
                return self.respond_error(session, &err, "").await;
            }
        }
        let body = match self.read_body(session).await {
            Ok(b) => b,
            Err(e) => return self.respond_error(session, &e, "").await,
        };
        let who = match self.authenticate(session).await {
            Ok(w) => w,
            Err(e) => return self.respond_error(session, &e, "").await,
        };
        let chat = match validate::chat(&body, &self.state.config.validation) {
            Ok(c) => c,
            Err(e) => {
                let summary = RequestSummary {
                    format: ApiFormat::OpenaiChat,
                    model: String::new(),
                    stream: false,
                    max_tokens: None,
                    has_tools: false,
                    body_bytes: u32::try_from(body.len()).unwrap_or(u32::MAX),
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
            body_bytes: u32::try_from(body.len()).unwrap_or(u32::MAX),
        };
        if let Err(e) = self.run_chat(session, &who, &summary, &body).await {
            // Refused or failed after authentication (routing, billing, a plugin): still one
            // usage record, so every authenticated request is accounted for.
            self.record_failure(&who, &summary, e.status, Vec::new())
                .await;
            self.respond_error(session, &e, &summary.model).await;
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
            let total = if attempt.timeout_ms > 0 {
                Duration::from_millis(u64::from(attempt.timeout_ms))
            } else {
                state.upstreams.limits.total
            };
            let sent = Instant::now();
            let result = state
                .upstreams
                .send(provider, upstream_request, summary.stream, total)
                .await;
            let latency = sent.elapsed();
            let price = price_of(attempt);
            // What the attempt produced: an outcome (the client got an answer or an error
            // after its first byte), or a failure before any byte reached the client.
            let (header_status, produced) = match result {
                Ok(response) => {
                    let status = response.status;
                    let produced =
                        if summary.stream && response.is_event_stream && response.status < 300 {
                            self.stream_response(session, &transform, &ctx, stream_state, response)
                                .await
                        } else {
                            self.complete_response(session, &transform, &ctx, response)
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
            match produced {
                Ok(answer) => {
                    state.metrics.upstream(&provider.name, "ok", latency);
                    state.upstreams.health.record(&provider.name, true, latency);
                    records.push(AttemptRecord {
                        provider: provider.name.clone(),
                        upstream_model: attempt.upstream_model.clone(),
                        status: header_status,
                        error: answer.end.class().to_string(),
                        latency,
                    });
                    let outcome = Outcome {
                        status: answer.status,
                        provider: provider.name.clone(),
                        price,
                        usage: answer.usage,
                        charge: answer.charge,
                    };
                    self.settle_and_log(who, summary, outcome, records).await;
                    return Ok(());
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
                    records.push(AttemptRecord {
                        provider: provider.name.clone(),
                        upstream_model: attempt.upstream_model.clone(),
                        status: header_status,
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

        // Every attempt failed before the client got a byte: tell it what the last provider
        // said, in its format.
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
                        self.state
                            .metrics
                            .request(status, self.model_label(&summary.model));
                        let delivered = self
                            .respond(session, status, "application/json", resp.body)
                            .await;
                        let status = if delivered { status } else { CLIENT_GONE };
                        self.record_failure(who, summary, status, records).await;
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
                "All providers failed; the last one did not answer in time.",
            ),
            Some((_, _, AttemptFailure::Refused(err))) => err,
            Some((_, _, AttemptFailure::Stall)) => ApiError::new(
                504,
                "upstream_timeout",
                "All providers failed; the last one stopped sending its answer.",
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
        self.respond_error(session, &error, &summary.model).await;
        Ok(())
    }

    /// Reads a complete upstream response, translates it and sends it: (status, usage, charge).
    /// A failure to read the body comes back as an attempt failure (nothing was sent yet).
    async fn complete_response(
        &self,
        session: &mut Session,
        transform: &LoadedPlugin,
        ctx: &TransformCtx,
        mut response: UpstreamResponse,
    ) -> Result<Answer, AttemptFailure> {
        let limit = self.state.upstreams.limits.max_body_bytes;
        let body = response.read_to_end(limit).await?;
        let status = response.status;
        self.state.upstreams.release(response).await;
        let translated = self.timed(Stage::Transform, || {
            transform.transform_response(&self.id, ctx, status, &body)
        });
        let out = match self.stage_result(translated) {
            Ok(out) => out,
            // The provider's answer could not be used (malformed, a provider-side error):
            // nothing was sent yet, so another provider may still answer.
            Err(err) if err.status >= 500 => return Err(AttemptFailure::Refused(err)),
            Err(err) => {
                // Counted in the metrics by settlement, like every answer: not here too.
                self.respond(
                    session,
                    err.status,
                    "application/json",
                    err.body(self.format),
                )
                .await;
                return Ok(Answer {
                    status: err.status,
                    usage: NO_USAGE,
                    charge: false,
                    end: StreamEnd::Failed("refused".into()),
                });
            }
        };
        let usage = out.usage.unwrap_or(NO_USAGE);
        let content_type = out
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "application/json".into());
        if self
            .respond(session, out.status, &content_type, out.body)
            .await
        {
            Ok(Answer {
                status: out.status,
                usage,
                charge: true,
                end: StreamEnd::Complete,
            })
        } else {
            // The client never received the answer: record the tokens, charge nothing.
            Ok(Answer {
                status: CLIENT_GONE,
                usage,
                charge: false,
                end: StreamEnd::ClientGone,
            })
        }
    }

    /// Translates one chunk of upstream SSE bytes into client bytes.
    #[allow(clippy::too_many_arguments)]
    fn translate_chunk(
        &self,
        transform: &LoadedPlugin,
        ctx: &TransformCtx,
        parser: &mut sse::Parser,
        chunk: &[u8],
        state_bytes: &mut Vec<u8>,
        usage: &mut Option<Usage>,
        delivered_chars: &mut u64,
        saw_done: &mut bool,
        out: &mut BytesMut,
    ) -> Result<(), StreamFault> {
        let events = parser
            .feed(chunk)
            .map_err(|e| StreamFault::Broken(BodyError::Io(format!("stream-invalid: {e}"))))?;
        for event in events {
            let ev = SseEvent {
                event: event.event,
                data: event.data,
            };
            match self.timed(Stage::Transform, || {
                transform.transform_event(&self.id, ctx, state_bytes, &ev)
            }) {
                Ok(Ok(o)) => {
                    *state_bytes = o.state;
                    if o.usage.is_some() {
                        *usage = o.usage;
                    }
                    for e in &o.events {
                        *saw_done |= e.data == "[DONE]";
                        *delivered_chars += content_chars(&e.data);
                        sse::encode(out, e.event.as_deref(), &e.data);
                    }
                }
                Ok(Err(reject)) => return Err(StreamFault::Rejected(ApiError::from(&reject))),
                Err(e) => {
                    self.plugin_failed(&e);
                    return Err(StreamFault::Plugin(format!("plugin: {}", e.class())));
                }
            }
        }
        Ok(())
    }

    /// Streams an upstream SSE response to the client event by event. Until the first event
    /// is ready nothing is sent, so an upstream that stalls, breaks or refuses before that is
    /// an attempt failure (the next provider is tried). After it, failures end the stream with
    /// an error event in the client's format.
    async fn stream_response(
        &self,
        session: &mut Session,
        transform: &LoadedPlugin,
        ctx: &TransformCtx,
        mut state_bytes: Vec<u8>,
        mut response: UpstreamResponse,
    ) -> Result<Answer, AttemptFailure> {
        let mut parser = sse::Parser::new();
        let mut usage: Option<Usage> = None;
        let mut delivered_chars: u64 = 0;
        let mut saw_done = false;
        let mut committed = false;
        let mut out = BytesMut::new();
        // Set when the stream stops early; the error event (if any) is already in `out`.
        let mut end: Option<StreamEnd> = None;
        loop {
            let fault = match response.next_chunk().await {
                Ok(Some(chunk)) => self
                    .translate_chunk(
                        transform,
                        ctx,
                        &mut parser,
                        &chunk,
                        &mut state_bytes,
                        &mut usage,
                        &mut delivered_chars,
                        &mut saw_done,
                        &mut out,
                    )
                    .err(),
                Ok(None) if parser.has_partial() => {
                    Some(StreamFault::Broken(BodyError::Io("stream-cut".into())))
                }
                Ok(None) => break,
                Err(e) => Some(StreamFault::Broken(e)),
            };
            if let Some(fault) = fault {
                if !committed {
                    return Err(fault.into_failure());
                }
                end = Some(fault.write_error(&mut out, self.format));
                break;
            }
            if out.is_empty() {
                continue;
            }
            if !committed {
                if !self.start_stream(session).await {
                    return Ok(Answer::client_gone(cut_usage(usage, 0)));
                }
                committed = true;
            }
            if session
                .write_response_body(Some(out.split().freeze()), false)
                .await
                .is_err()
            {
                // The client left: dropping the upstream session closes it, cancelling the work.
                end = Some(StreamEnd::ClientGone);
                break;
            }
        }
        if !committed && !self.start_stream(session).await {
            return Ok(Answer::client_gone(cut_usage(usage, 0)));
        }
        let end = match end {
            Some(StreamEnd::ClientGone) => StreamEnd::ClientGone,
            Some(failed) => {
                let _ = session
                    .write_response_body(Some(out.split().freeze()), true)
                    .await;
                failed
            }
            None => {
                match transform.end_of_stream(&self.id, ctx, &state_bytes) {
                    Ok(Ok(o)) => {
                        if o.usage.is_some() {
                            usage = o.usage;
                        }
                        for e in &o.events {
                            saw_done |= e.data == "[DONE]";
                            sse::encode(&mut out, e.event.as_deref(), &e.data);
                        }
                    }
                    Ok(Err(reject)) => {
                        tracing::warn!(message = %reject.message, "transform refused the end of the stream");
                    }
                    Err(e) => {
                        self.plugin_failed(&e);
                    }
                }
                if !saw_done {
                    sse::encode(&mut out, None, "[DONE]");
                }
                let written = session
                    .write_response_body(Some(out.split().freeze()), true)
                    .await
                    .is_ok();
                self.state.upstreams.release(response).await;
                if written {
                    StreamEnd::Complete
                } else {
                    StreamEnd::ClientGone
                }
            }
        };
        // Charge only what the client received: a stream that did not complete has no final
        // usage, so keep what the provider reported so far (e.g. Anthropic's prompt tokens) and
        // count output from the text delivered (~4 characters a token).
        Ok(match end {
            StreamEnd::Complete => Answer {
                status: 200,
                usage: usage.unwrap_or(NO_USAGE),
                charge: true,
                end,
            },
            StreamEnd::ClientGone => Answer::client_gone(cut_usage(usage, delivered_chars)),
            StreamEnd::Failed(_) => Answer {
                status: STREAM_FAILED,
                usage: cut_usage(usage, delivered_chars),
                charge: true,
                end,
            },
        })
    }

    /// Writes the stream's response header; false when the client is gone.
    async fn start_stream(&self, session: &mut Session) -> bool {
        let Ok(mut resp) = ResponseHeader::build(200, Some(4)) else {
            return false;
        };
        let _ = resp.insert_header("content-type", "text/event-stream");
        let _ = resp.insert_header("cache-control", "no-cache");
        let _ = resp.insert_header("x-request-id", self.id.as_str());
        session
            .write_response_header(Box::new(resp), false)
            .await
            .is_ok()
    }

    async fn settle_and_log(
        &self,
        who: &Principal,
        summary: &RequestSummary,
        outcome: Outcome,
        records: Vec<AttemptRecord>,
    ) {
        let state = self.state;
        let charge = if outcome.charge && usage_tokens(&outcome.usage) > 0 {
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
        let label = self.model_label(&summary.model);
        let u = &outcome.usage;
        for (kind, n) in [
            ("input", u.input),
            ("output", u.output),
            ("cache_read", u.cache_read),
            ("cache_write", u.cache_write),
        ] {
            if n > 0 {
                state.metrics.tokens(label, kind, n);
            }
        }
        state.metrics.cost(label, cost);
        state.metrics.request(outcome.status, label);
        state.metrics.request_duration(self.started.elapsed());
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
        self.state.metrics.request_duration(self.started.elapsed());
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
