//! Upstream attempts: one Pingora connector per provider (each may trust its own CA), the
//! request written from what the transform plugin produced plus the provider's credentials,
//! and a small health record per provider that routing reads.
//!
//! Every phase of an attempt has its own bound (`UpstreamLimits`): connect, first byte (request
//! written to response header), stall (the longest gap between two body reads) and the whole
//! attempt. Each read is wrapped in a tokio timeout of the tighter of the stall bound and what
//! is left of the attempt, and the same stall bound is set as the Pingora session's own read
//! timeout, so no upstream can hold a request (or a connection) longer than configured.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use pingora_core::connectors::http::Connector;
use pingora_core::connectors::ConnectorOptions;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;

use crate::config::{Config, Provider, ProviderAuth, UpstreamLimits};
use crate::plugins::bindings::UpstreamRequest;

/// Why an attempt produced no usable response.
#[derive(Debug, Clone)]
pub enum AttemptFailure {
    Connect(String),
    /// No response header within the first-byte bound (or the attempt's deadline).
    Timeout,
    /// The body stopped arriving for longer than the stall bound.
    Stall,
    /// The provider answered with a status another provider may not (429, 5xx, and 4xx
    /// answers that say the prompt is too long or was filtered); its body is kept so the client
    /// can be told what the last provider said, and a 429's `Retry-After` so it can be waited
    /// out.
    Status(u16, Vec<u8>, Option<Duration>),
    /// The transform refused what the provider sent (e.g. an error event at the start of a
    /// stream): the error to give the client if no other provider answers.
    Refused(crate::api_error::ApiError),
    /// A guardrail stopped the answer before its first byte reached the client: a content
    /// filter of the gateway's own (another provider is tried only if the route's
    /// `fallback_on` includes `content-filter`).
    Blocked(crate::api_error::ApiError),
    Other(String),
}

impl AttemptFailure {
    /// The error class recorded with the attempt.
    pub fn class(&self) -> &'static str {
        match self {
            AttemptFailure::Connect(_) => "connect",
            AttemptFailure::Timeout => "timeout",
            AttemptFailure::Stall => "stall",
            AttemptFailure::Status(..) => "status",
            AttemptFailure::Refused(_) => "refused",
            AttemptFailure::Blocked(_) => "blocked",
            AttemptFailure::Other(_) => "error",
        }
    }

    /// The class a route's `fallback_on` is checked against.
    pub fn fallback_class(&self) -> crate::policy::FailureClass {
        use crate::policy::FailureClass;
        match self {
            AttemptFailure::Status(429, ..) => FailureClass::RateLimit,
            AttemptFailure::Status(s, body, _) if *s < 500 => {
                refusal_class(body).unwrap_or(FailureClass::ServerError)
            }
            AttemptFailure::Status(..) => FailureClass::ServerError,
            AttemptFailure::Refused(e) if e.status == 429 => FailureClass::RateLimit,
            AttemptFailure::Refused(_) => FailureClass::ServerError,
            AttemptFailure::Blocked(_) => FailureClass::ContentFilter,
            AttemptFailure::Connect(_)
            | AttemptFailure::Timeout
            | AttemptFailure::Stall
            | AttemptFailure::Other(_) => FailureClass::Timeout,
        }
    }
}

/// A response whose header has been read; the body is read by the caller with
/// [`UpstreamResponse::next_chunk`], which applies the stall and whole-attempt bounds.
pub struct UpstreamResponse {
    pub session: HttpSession,
    pub peer: HttpPeer,
    pub status: u16,
    pub is_event_stream: bool,
    /// When the whole attempt must be over.
    deadline: Instant,
    stall: Duration,
    provider: String,
    /// The body, when it was read to classify the answer.
    prefetched: Option<Vec<u8>>,
}

/// Why reading a response body stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Nothing arrived for the stall bound.
    Stall,
    /// The attempt's whole-response bound passed.
    Deadline,
    /// The connection failed or the framing was broken.
    Io(String),
    /// Larger than allowed.
    TooLarge(usize),
}

impl BodyError {
    pub fn class(&self) -> &'static str {
        match self {
            BodyError::Stall => "stall",
            BodyError::Deadline => "timeout",
            BodyError::Io(_) => "stream-cut",
            BodyError::TooLarge(_) => "too-large",
        }
    }
}

impl From<BodyError> for AttemptFailure {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::Stall => AttemptFailure::Stall,
            BodyError::Deadline => AttemptFailure::Timeout,
            BodyError::Io(m) => AttemptFailure::Other(m),
            BodyError::TooLarge(n) => {
                AttemptFailure::Other(format!("upstream body over {n} bytes"))
            }
        }
    }
}

impl UpstreamResponse {
    /// The next piece of the body, `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        if let Some(body) = self.prefetched.take() {
            return Ok(Some(Bytes::from(body)));
        }
        let now = Instant::now();
        if now >= self.deadline {
            return Err(BodyError::Deadline);
        }
        let stall_at = now + self.stall;
        let until = stall_at.min(self.deadline);
        match tokio::time::timeout_at(until, self.session.read_response_body()).await {
            Ok(Ok(chunk)) => Ok(chunk),
            // The session's own read timeout is the same stall bound and may fire first.
            Ok(Err(e)) if *e.etype() == pingora_core::ErrorType::ReadTimedout => {
                Err(BodyError::Stall)
            }
            Ok(Err(e)) => Err(BodyError::Io(e.to_string())),
            Err(_) if until == self.deadline => Err(BodyError::Deadline),
            Err(_) => Err(BodyError::Stall),
        }
    }

    /// Reads the whole body, refusing more than `limit` bytes.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        if let Some(body) = self.prefetched.take() {
            return Ok(body);
        }
        let mut body = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            if body.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

pub struct Upstreams {
    connectors: HashMap<String, Connector>,
    providers: HashMap<String, Provider>,
    pub limits: UpstreamLimits,
    pub health: super::health::Health,
}

impl Upstreams {
    pub fn new(config: &Config) -> Self {
        let mut connectors = HashMap::new();
        for (name, p) in &config.providers {
            let mut options = ConnectorOptions::new(128);
            options.ca_file = p.ca_file.as_ref().map(|f| f.display().to_string());
            connectors.insert(name.clone(), Connector::new(Some(options)));
        }
        Upstreams {
            connectors,
            providers: config
                .providers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            limits: config.upstream,
            health: super::health::Health::default(),
        }
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.get(name)
    }

    async fn peer(&self, p: &Provider) -> Result<HttpPeer, AttemptFailure> {
        let addr: SocketAddr = match format!("{}:{}", p.host, p.port).parse() {
            Ok(a) => a,
            Err(_) => tokio::net::lookup_host((p.host.as_str(), p.port))
                .await
                .map_err(|e| AttemptFailure::Connect(format!("resolving {}: {e}", p.host)))?
                .next()
                .ok_or_else(|| AttemptFailure::Connect(format!("{} has no address", p.host)))?,
        };
        let mut peer = HttpPeer::new(addr, p.scheme_https, p.host.clone());
        let l = &self.limits;
        peer.options.connection_timeout = Some(l.connect);
        peer.options.total_connection_timeout = Some(l.connect);
        peer.options.read_timeout = Some(l.stall);
        peer.options.write_timeout = Some(l.stall);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(peer)
    }

    /// Sends the transformed request and reads the response header, within the connect and
    /// first-byte bounds and `total` for the whole attempt (the caller keeps reading the body
    /// under the same deadline). Retryable statuses (429, 5xx) come back as `Err(Status)`,
    /// after their (bounded) body was read.
    pub async fn send(
        &self,
        provider: &Provider,
        request: UpstreamRequest,
        stream: bool,
        total: Duration,
        credential: Option<&str>,
    ) -> Result<UpstreamResponse, AttemptFailure> {
        let started = Instant::now();
        let deadline = started + total;
        let connector = self
            .connectors
            .get(&provider.name)
            .ok_or_else(|| AttemptFailure::Other(format!("no connector for {}", provider.name)))?;
        let peer = self.peer(provider).await?;
        let limits = self.limits;
        let connect = async {
            connector
                .get_http_session(&peer)
                .await
                .map_err(|e| AttemptFailure::Connect(e.to_string()))
        };
        let (mut session, _reused) =
            match tokio::time::timeout_at(deadline.min(started + limits.connect), connect).await {
                Ok(r) => r?,
                Err(_) => return Err(AttemptFailure::Connect("connect timed out".into())),
            };
        // Pingora's own proxy copies these from the peer onto the session; we drive the
        // session ourselves, so we set them: the first-byte bound while the response header is
        // awaited, the stall bound once it arrived.
        session.set_read_timeout(Some(limits.first_byte));
        session.set_write_timeout(Some(limits.stall));
        let exchange = async {
            let header = build_request(provider, &request, stream, credential)
                .map_err(|e| AttemptFailure::Other(e.to_string()))?;
            let io = |e: Box<pingora_core::Error>| match e.etype() {
                pingora_core::ErrorType::ReadTimedout | pingora_core::ErrorType::WriteTimedout => {
                    AttemptFailure::Timeout
                }
                _ => AttemptFailure::Connect(e.to_string()),
            };
            session
                .write_request_header(Box::new(header))
                .await
                .map_err(io)?;
            session
                .write_request_body(request.body.into(), true)
                .await
                .map_err(io)?;
            session.finish_request_body().await.map_err(io)?;
            session.read_response_header().await.map_err(io)?;
            Ok::<_, AttemptFailure>(())
        };
        let first_byte_at = deadline.min(Instant::now() + limits.first_byte);
        match tokio::time::timeout_at(first_byte_at, exchange).await {
            Ok(r) => r?,
            Err(_) => return Err(AttemptFailure::Timeout),
        }
        session.set_read_timeout(Some(limits.stall));
        let resp = session
            .response_header()
            .ok_or_else(|| AttemptFailure::Other("no response header".into()))?;
        let status = resp.status.as_u16();
        let is_event_stream = resp
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
        let mut response = UpstreamResponse {
            session,
            peer: peer.clone(),
            status,
            is_event_stream,
            deadline,
            stall: limits.stall,
            provider: provider.name.clone(),
            prefetched: None,
        };
        if status == 429 || status >= 500 {
            let retry_after = (status == 429).then(|| retry_after(&response)).flatten();
            let body = response.read_to_end(1 << 20).await.unwrap_or_default();
            return Err(AttemptFailure::Status(status, body, retry_after));
        }
        if matches!(status, 400 | 403 | 413 | 422) && !response.is_event_stream {
            // Read (bounded) to see whether the provider says the prompt is too long or was
            // filtered: those may go to another provider. Anything else is the client's own
            // mistake and is answered as is.
            let body = response
                .read_to_end(limits.max_body_bytes)
                .await
                .map_err(AttemptFailure::from)?;
            if refusal_class(&body).is_some() {
                return Err(AttemptFailure::Status(status, body, None));
            }
            response.prefetched = Some(body);
        }
        Ok(response)
    }

    /// Returns a finished session to the keep-alive pool.
    pub async fn release(&self, response: UpstreamResponse) {
        let mut session = response.session;
        if !session.response_done() {
            return;
        }
        if let Some(c) = self.connectors.get(&response.provider) {
            c.release_http_session(session, &response.peer, Some(Duration::from_secs(60)))
                .await;
        } else {
            session.shutdown().await;
        }
    }
}

/// A 429's wait: `retry-after-ms` (OpenAI), else `retry-after` in seconds (an HTTP date is
/// not waited for: it is treated as absent).
fn retry_after(response: &UpstreamResponse) -> Option<Duration> {
    let headers = &response.session.response_header()?.headers;
    let get = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let secs = get("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| get("retry-after"))?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// What a 4xx answer says, when it is something another provider may not say: the prompt is
/// longer than the model's context, or the content was refused by the provider's filter.
pub fn refusal_class(body: &[u8]) -> Option<crate::policy::FailureClass> {
    use crate::policy::FailureClass;
    let text = std::str::from_utf8(body).ok()?.to_ascii_lowercase();
    const CONTEXT: [&str; 5] = [
        "context_length_exceeded",
        "maximum context length",
        "prompt is too long",
        "context window",
        "too many tokens",
    ];
    const FILTER: [&str; 4] = [
        "content_filter",
        "content_policy_violation",
        "content management policy",
        "flagged by",
    ];
    if CONTEXT.iter().any(|p| text.contains(p)) {
        Some(FailureClass::ContextLength)
    } else if FILTER.iter().any(|p| text.contains(p)) {
        Some(FailureClass::ContentFilter)
    } else {
        None
    }
}

/// The upstream request header; `credential` (the org's own key, BYOK) replaces the
/// provider's configured key. Either is set here, by the host, never by a plugin.
fn build_request(
    provider: &Provider,
    request: &UpstreamRequest,
    stream: bool,
    credential: Option<&str>,
) -> pingora_core::Result<RequestHeader> {
    let path = format!("{}{}", provider.base_path, request.path);
    let mut header = RequestHeader::build(request.method.as_str(), path.as_bytes(), None)?;
    let host = if (provider.scheme_https && provider.port == 443)
        || (!provider.scheme_https && provider.port == 80)
    {
        provider.host.clone()
    } else {
        format!("{}:{}", provider.host, provider.port)
    };
    header.insert_header("host", host)?;
    for (name, value) in &request.headers {
        // Credentials are the host's business: a plugin cannot set or leak them.
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "authorization" | "x-api-key" | "host" | "content-length"
        ) {
            continue;
        }
        header.insert_header(lower, value.as_str())?;
    }
    header.insert_header("content-length", request.body.len().to_string())?;
    header.insert_header(
        "user-agent",
        concat!("tollgate/", env!("CARGO_PKG_VERSION")),
    )?;
    if stream {
        header.insert_header("accept", "text/event-stream")?;
    }
    if let Some(key) = credential
        .map(str::to_string)
        .or_else(|| provider.api_key())
    {
        match provider.auth {
            ProviderAuth::Bearer => {
                header.insert_header("authorization", format!("Bearer {key}"))?
            }
            ProviderAuth::XApiKey => header.insert_header("x-api-key", key)?,
        }
    }
    Ok(header)
}
