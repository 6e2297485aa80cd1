//! The client side of a request: reading its body under the size and time limits, and writing
//! answers (complete, error, or a stream's header and events) to the Pingora session.

use bytes::{Bytes, BytesMut};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::context::Request;
use super::stream::ClientSink;
use crate::api_error::{ApiError, ApiFormat};

pub(super) fn header_value<'h>(
    req: &'h pingora_http::RequestHeader,
    name: &str,
) -> Option<&'h str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The API key a client presented (`Authorization: Bearer` or `x-api-key`).
pub(super) fn presented_key(req: &pingora_http::RequestHeader) -> Option<&str> {
    if let Some(auth) = header_value(req, "authorization") {
        let (scheme, token) = auth.trim().split_once(' ')?;
        return (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
            .then(|| token.trim());
    }
    header_value(req, "x-api-key")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

impl Request<'_> {
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
        if self.format == ApiFormat::AnthropicMessages {
            // Anthropic's SDKs read the request id from `request-id`.
            let _ = resp.insert_header("request-id", self.id.as_str());
        }
        for (name, value) in self.extra_headers.lock().iter() {
            let _ = resp.insert_header(*name, value.as_str());
        }
        if let Some(capture) = self.capture.lock().as_mut() {
            capture.response(&body);
        }
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

    /// Sends an error in the client's format and counts it.
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

    /// Refuses a body that is not JSON (415) before reading it.
    pub(super) fn require_json(&self, session: &mut Session) -> Result<(), ApiError> {
        let Some(ct) = header_value(session.req_header(), "content-type") else {
            return Ok(());
        };
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime == "application/json" || mime.ends_with("+json") {
            return Ok(());
        }
        let err = ApiError::new(
            415,
            "unsupported_media_type",
            format!("Unsupported Content-Type '{ct}': send application/json."),
        );
        session.set_keepalive(None);
        Err(err)
    }

    /// Reads the request body, enforcing the size limit (413) before and while reading, and
    /// the whole-body deadline (408). A `Content-Length` body is already in memory (the front
    /// door read it); a chunked one is read here.
    pub(super) async fn read_body(&self, session: &mut Session) -> Result<Bytes, ApiError> {
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
}

/// A stream's client: the Pingora session.
pub(super) struct SessionSink<'s> {
    pub session: &'s mut Session,
    pub request_id: &'s str,
    pub format: ApiFormat,
    /// The request's extra headers (`x-ratelimit-*`).
    pub headers: Vec<(&'static str, String)>,
    /// Where the bytes sent are captured for the logging stage (retain-all only).
    pub capture: &'s parking_lot::Mutex<Option<crate::retention::capture::Capture>>,
}

impl ClientSink for SessionSink<'_> {
    async fn start(&mut self) -> bool {
        let Ok(mut resp) = ResponseHeader::build(200, Some(4)) else {
            return false;
        };
        let _ = resp.insert_header("content-type", "text/event-stream");
        let _ = resp.insert_header("cache-control", "no-cache");
        let _ = resp.insert_header("x-request-id", self.request_id);
        if self.format == ApiFormat::AnthropicMessages {
            let _ = resp.insert_header("request-id", self.request_id);
        }
        for (name, value) in &self.headers {
            let _ = resp.insert_header(*name, value.as_str());
        }
        self.session
            .write_response_header(Box::new(resp), false)
            .await
            .is_ok()
    }

    async fn send(&mut self, bytes: Bytes, end: bool) -> bool {
        if let Some(capture) = self.capture.lock().as_mut() {
            capture.response(&bytes);
        }
        self.session
            .write_response_body(Some(bytes), end)
            .await
            .is_ok()
    }
}
