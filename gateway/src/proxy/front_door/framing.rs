//! Framing a request from the bytes read so far: header limits (431), smuggling shapes (400),
//! the body's length; and the complete error responses the front door writes itself, in the
//! client's error shape.

use super::*;

/// What the pre-reader learned about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    /// Header complete; the request occupies `header_len + body_len` bytes.
    Sized { header_len: usize, body_len: usize },
    /// Header complete; a chunked body follows (Pingora reads it).
    Chunked { header_len: usize },
    /// More bytes are needed.
    Partial,
}

/// Why a request was refused before it reached the pipeline.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub(super) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }
}

/// Parses what has arrived of one request. Pure, so it is unit-tested and fuzzed.
pub fn frame(buf: &[u8], limits: &DownstreamLimits) -> Result<Framing, Refusal> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let too_large = || {
        Refusal::new(
            431,
            "request_header_too_large",
            format!(
                "The request header exceeds the limit of {} bytes or {} lines.",
                limits.max_header_bytes, limits.max_headers
            ),
        )
    };
    let header_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > limits.max_header_bytes {
                Err(too_large())
            } else {
                Ok(Framing::Partial)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
        Err(e) => {
            return Err(Refusal::new(
                400,
                "invalid_request_error",
                format!("Malformed HTTP request: {e}."),
            ))
        }
    };
    if header_len > limits.max_header_bytes {
        return Err(too_large());
    }
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).unwrap_or("").trim();
            let n = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .then(|| v.parse::<usize>().ok())
                .flatten()
                .ok_or_else(|| smuggling("an invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(smuggling("two different Content-Length values"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = std::str::from_utf8(h.value).unwrap_or("").trim();
            if chunked || !v.eq_ignore_ascii_case("chunked") {
                return Err(smuggling(
                    "a Transfer-Encoding other than a single 'chunked'",
                ));
            }
            chunked = true;
        }
    }
    if chunked && length.is_some() {
        return Err(smuggling("both Content-Length and Transfer-Encoding"));
    }
    if chunked {
        return Ok(Framing::Chunked { header_len });
    }
    let body_len = length.unwrap_or(0);
    if body_len > limits.max_body_bytes {
        return Err(Refusal::new(
            413,
            "request_too_large",
            format!(
                "Request body exceeds the {}-byte limit.",
                limits.max_body_bytes
            ),
        ));
    }
    Ok(Framing::Sized {
        header_len,
        body_len,
    })
}

fn smuggling(what: &str) -> Refusal {
    Refusal::new(
        400,
        "invalid_request_error",
        format!("The request has {what}; refused because it is ambiguous."),
    )
}

/// The client's error format, guessed from the request path in the buffer.
pub(super) fn format_of(buf: &[u8]) -> ApiFormat {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = &buf[..line_end.min(256)];
    if line.windows(12).any(|w| w == b"/v1/messages") {
        ApiFormat::AnthropicMessages
    } else {
        ApiFormat::OpenaiChat
    }
}

/// A complete HTTP/1.1 error response that closes the connection.
pub fn error_response(status: u16, code: &str, message: &str, format: ApiFormat) -> Vec<u8> {
    let body = ApiError::new(status, code, message).body(format);
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}
