//! The front door: every client connection passes here before Pingora's HTTP/1 parser sees it.
//!
//! Pingora bounds a request header at 1 MiB and 256 lines and answers violations with an empty
//! 400; it puts no deadline on a header that arrives one byte a second, and accepts connections
//! until the process runs out of descriptors. This layer reads each request's header (and a
//! `Content-Length` body) itself, under the operator's limits, then hands the bytes to Pingora
//! as an already-read prefix, so Pingora parses from memory. What it enforces:
//!
//! - a whole-header deadline from the first byte (408), an idle keep-alive deadline (close);
//! - header size and count limits (431), framing that could smuggle a second request (400);
//! - a whole-body deadline for `Content-Length` bodies (408) and the body size limit (413);
//! - a cap on open connections, in all and per address: at a cap the oldest connection that
//!   is idle or still sending its header is closed to make room (so a flood of half-open
//!   connections cannot starve real clients); only when none can be closed does the new one
//!   get a 503 and a close;
//! - HTTP/1.1 pipelining served in order: bytes past one `Content-Length` request are kept
//!   here and become the start of the next one.
//!
//! Errors written here use the client's error shape (Anthropic's for `/v1/messages`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use parking_lot::Mutex;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use super::AppState;
use crate::api_error::{ApiError, ApiFormat};
use crate::config::DownstreamLimits;

mod connections;
mod framing;
#[cfg(test)]
mod tests;

pub use connections::{ConnGuard, Connections};
use framing::format_of;
pub use framing::{error_response, frame, Framing, Refusal};

/// Wraps a Pingora HTTP application (the API's proxy, the admin app) with the limits above.
pub struct FrontDoor<A> {
    pub app: Arc<A>,
    pub limits: DownstreamLimits,
    /// The connection table this listener counts against.
    pub connections: Arc<Connections>,
    pub state: Arc<AppState>,
}

/// What became of one pre-read.
enum Head {
    /// A request to hand to Pingora: its bytes, and what follows it.
    Request(BytesMut),
    /// The connection is done (closed, idle too long, evicted, or refused and answered).
    Close,
}

impl<A> FrontDoor<A> {
    /// Writes a canned response and closes, bounded by the write timeout.
    async fn refuse(&self, stream: &mut Stream, refusal: &Refusal, format: ApiFormat) {
        self.state.metrics.connection_refused(refusal.code);
        let bytes = error_response(refusal.status, refusal.code, &refusal.message, format);
        let write = async {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.flush().await;
        };
        let _ = tokio::time::timeout(self.limits.write_timeout, write).await;
    }

    /// Reads the next request's header (and a sized body) into `buf`, which may already hold
    /// pipelined bytes. Returns the request's bytes, leaving what follows in `buf`.
    async fn read_head(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        guard: &mut ConnGuard<'_>,
        shutdown: &ShutdownWatch,
    ) -> Head {
        let limits = &self.limits;
        let idle_deadline = tokio::time::Instant::now() + limits.keepalive_timeout;
        let mut header_deadline =
            (!buf.is_empty()).then(|| tokio::time::Instant::now() + limits.header_timeout);
        guard.set_idle();
        let framing = loop {
            match frame(buf, limits) {
                Ok(Framing::Partial) => {}
                Ok(done) => break done,
                Err(refusal) => {
                    self.refuse(stream, &refusal, format_of(buf)).await;
                    return Head::Close;
                }
            }
            let deadline = header_deadline.unwrap_or(idle_deadline);
            let mut shutdown = shutdown.clone();
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline, stream.read_buf(buf)) => r,
                _ = guard.evicted() => {
                    self.state.metrics.connection_refused("evicted");
                    return Head::Close;
                }
                _ = shutdown.changed(), if header_deadline.is_none() => return Head::Close,
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => return Head::Close,
                Ok(Ok(_)) => {
                    header_deadline
                        .get_or_insert_with(|| tokio::time::Instant::now() + limits.header_timeout);
                }
                Err(_) if header_deadline.is_some() => {
                    let refusal = Refusal::new(
                        408,
                        "request_timeout",
                        format!(
                            "The request header did not arrive within {} ms.",
                            limits.header_timeout.as_millis()
                        ),
                    );
                    self.refuse(stream, &refusal, format_of(buf)).await;
                    return Head::Close;
                }
                Err(_) => return Head::Close, // idle keep-alive connection
            }
        };
        guard.set_active();
        let (header_len, body_len) = match framing {
            Framing::Sized {
                header_len,
                body_len,
            } => (header_len, body_len),
            // Pingora reads a chunked body itself (the pipeline bounds it in time and size).
            Framing::Chunked { .. } | Framing::Partial => return Head::Request(buf.split()),
        };
        let total = header_len + body_len;
        if buf.len() < total {
            if expects_continue(&buf[..header_len]) {
                let _ = tokio::time::timeout(
                    limits.write_timeout,
                    stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n"),
                )
                .await;
            }
            buf.reserve(total - buf.len());
            let body_deadline = tokio::time::Instant::now() + limits.body_timeout;
            while buf.len() < total {
                match tokio::time::timeout_at(body_deadline, stream.read_buf(buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Head::Close,
                    Ok(Ok(_)) => {}
                    Err(_) => {
                        let refusal = Refusal::new(
                            408,
                            "request_timeout",
                            format!(
                                "The request body did not arrive within {} ms.",
                                limits.body_timeout.as_millis()
                            ),
                        );
                        self.refuse(stream, &refusal, format_of(buf)).await;
                        return Head::Close;
                    }
                }
            }
        }
        Head::Request(buf.split_to(total))
    }
}

fn expects_continue(header: &[u8]) -> bool {
    header
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let s = std::str::from_utf8(line).ok()?;
            let (k, v) = s.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase()))
        })
        .any(|(k, v)| k == "expect" && v == "100-continue")
}

#[async_trait]
impl<A> ServerApp for FrontDoor<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut guard = match self.connections.admit(ip) {
            Ok(g) => g,
            Err(refusal) => {
                self.refuse(&mut stream, &refusal, ApiFormat::OpenaiChat)
                    .await;
                return None;
            }
        };
        // Small to start with: most request headers fit, and a flood of idle connections each
        // holding a buffer is what this layer exists to survive.
        let mut buf = BytesMut::with_capacity(1024);
        let mut served: u32 = 0;
        loop {
            let request = match self
                .read_head(&mut stream, &mut buf, &mut guard, shutdown)
                .await
            {
                Head::Request(bytes) => bytes,
                Head::Close => return None,
            };
            served += 1;
            let mut session = ServerSession::new_http1(stream);
            let last = *shutdown.borrow()
                || (self.limits.max_requests_per_connection > 0
                    && served >= self.limits.max_requests_per_connection);
            let keepalive = self.limits.keepalive_timeout.as_secs().max(1);
            session.set_keepalive(if last { None } else { Some(keepalive) });
            session.set_write_timeout(Some(self.limits.write_timeout));
            session.set_read_timeout(Some(self.limits.body_timeout));
            session.set_total_drain_timeout(Some(self.limits.body_timeout));
            session.set_pipelined_prefix(request);
            let reused = self.app.process_new_http(session, shutdown).await?;
            let (next, _settings) = reused.consume();
            stream = next;
            if buf.capacity() > 64 << 10 && buf.is_empty() {
                // Give back a large body's buffer between requests.
                buf = BytesMut::with_capacity(1024);
            }
        }
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}
