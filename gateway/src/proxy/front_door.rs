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
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
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
fn format_of(buf: &[u8]) -> ApiFormat {
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

// ---------------------------------------------------------------------------------------------
// Connection accounting

struct Slot {
    ip: IpAddr,
    /// Set once the slot's counts were given back (by eviction or by the guard's drop).
    released: AtomicBool,
    evict: Notify,
}

#[derive(Default)]
struct Table {
    total: usize,
    /// Most connections open at once since memory was last given back (see `trim_after_surge`).
    peak: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections that may be closed to make room, oldest first.
    idle: BTreeMap<u64, Arc<Slot>>,
    idle_by_ip: HashMap<IpAddr, BTreeSet<u64>>,
    next: u64,
}

impl Table {
    fn release(&mut self, slot: &Slot) {
        if slot.released.swap(true, Ordering::AcqRel) {
            return;
        }
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_ip.get_mut(&slot.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&slot.ip);
            }
        }
    }

    fn unmark_idle(&mut self, seq: u64, ip: IpAddr) -> Option<Arc<Slot>> {
        let slot = self.idle.remove(&seq)?;
        if let Some(set) = self.idle_by_ip.get_mut(&ip) {
            set.remove(&seq);
            if set.is_empty() {
                self.idle_by_ip.remove(&ip);
            }
        }
        Some(slot)
    }

    /// Closes the oldest idle connection (of `ip` when given); false when there is none.
    fn evict_oldest(&mut self, ip: Option<IpAddr>) -> bool {
        let seq = match ip {
            Some(ip) => self.idle_by_ip.get(&ip).and_then(|s| s.first().copied()),
            None => self.idle.keys().next().copied(),
        };
        let Some(seq) = seq else { return false };
        let Some(slot) = self.idle.get(&seq).cloned() else {
            return false;
        };
        self.unmark_idle(seq, slot.ip);
        self.release(&slot);
        slot.evict.notify_one();
        true
    }
}

/// Open client connections, with the caps and the eviction of idle ones.
pub struct Connections {
    table: Mutex<Table>,
    max_total: usize,
    max_per_ip: usize,
}

/// One admitted connection; gives its place back when dropped.
pub struct ConnGuard<'a> {
    conns: &'a Connections,
    slot: Arc<Slot>,
    idle_seq: Option<u64>,
}

impl Connections {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Connections {
            table: Mutex::new(Table::default()),
            max_total,
            max_per_ip,
        }
    }

    pub fn open(&self) -> usize {
        self.table.lock().total
    }

    /// After a surge of connections (a flood) has drained, hands the memory they used back to
    /// the operating system: glibc keeps freed heap pages in its arenas otherwise, and a flood
    /// of 18,000 half-open connections left RSS at ~4x its baseline. Cheap to call often; it
    /// only trims when the open count fell below a quarter of a peak of at least `surge`.
    pub fn trim_after_surge(&self, surge: usize) -> bool {
        let mut t = self.table.lock();
        if t.peak < surge || t.total > t.peak / 4 {
            return false;
        }
        t.peak = t.total;
        drop(t);
        release_free_memory();
        true
    }

    /// Admits a connection from `ip`, closing idle ones to make room when at a cap.
    pub fn admit(&self, ip: IpAddr) -> Result<ConnGuard<'_>, Refusal> {
        let mut t = self.table.lock();
        if t.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip && !t.evict_oldest(Some(ip)) {
            return Err(Refusal::new(
                503,
                "too_many_connections",
                "Too many open connections from your address; try again later.",
            ));
        }
        if t.total >= self.max_total && !t.evict_oldest(None) {
            return Err(Refusal::new(
                503,
                "server_overloaded",
                "The gateway is at its connection limit; try again later.",
            ));
        }
        t.total += 1;
        t.peak = t.peak.max(t.total);
        *t.per_ip.entry(ip).or_default() += 1;
        Ok(ConnGuard {
            conns: self,
            slot: Arc::new(Slot {
                ip,
                released: AtomicBool::new(false),
                evict: Notify::new(),
            }),
            idle_seq: None,
        })
    }
}

impl ConnGuard<'_> {
    /// Marks the connection as closable to make room (waiting for a request header).
    fn set_idle(&mut self) {
        if self.idle_seq.is_some() || self.slot.released.load(Ordering::Acquire) {
            return;
        }
        let mut t = self.conns.table.lock();
        let seq = t.next;
        t.next += 1;
        t.idle.insert(seq, self.slot.clone());
        t.idle_by_ip.entry(self.slot.ip).or_default().insert(seq);
        self.idle_seq = Some(seq);
    }

    /// Marks the connection as serving a request (not closable).
    fn set_active(&mut self) {
        if let Some(seq) = self.idle_seq.take() {
            self.conns.table.lock().unmark_idle(seq, self.slot.ip);
        }
    }

    /// Resolves when the connection was chosen to be closed to make room.
    async fn evicted(&self) {
        self.slot.evict.notified().await
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        let mut t = self.conns.table.lock();
        if let Some(seq) = self.idle_seq.take() {
            t.unmark_idle(seq, self.slot.ip);
        }
        t.release(&self.slot);
    }
}

/// Returns freed heap memory to the operating system (glibc's `malloc_trim`; a no-op elsewhere).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists; it takes no
    // pointers from us and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

// ---------------------------------------------------------------------------------------------
// The application

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) fn limits() -> DownstreamLimits {
        DownstreamLimits {
            header_timeout: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            max_connections: 3,
            max_connections_per_ip: 2,
            max_header_bytes: 1024,
            max_headers: 8,
            max_requests_per_connection: 0,
            body_timeout: Duration::from_secs(1),
            max_body_bytes: 100,
        }
    }

    #[test]
    fn frames_sized_chunked_and_partial_requests() {
        let l = limits();
        let req =
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            frame(req, &l),
            Ok(Framing::Sized {
                header_len: req.len() - 5,
                body_len: 5
            })
        );
        assert_eq!(frame(b"GET / HTTP/1.1\r\nHost:", &l), Ok(Framing::Partial));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(frame(chunked, &l), Ok(Framing::Chunked { .. })));
    }

    #[test]
    fn refuses_smuggling_shapes_and_oversize() {
        let l = limits();
        for bad in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        ] {
            assert_eq!(frame(bad, &l).unwrap_err().status, 400, "{bad:?}");
        }
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(2000));
        assert_eq!(frame(big.as_bytes(), &l).unwrap_err().status, 431);
        let partial_big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(2000));
        assert_eq!(frame(partial_big.as_bytes(), &l).unwrap_err().status, 431);
        let many: String = (0..20).map(|i| format!("X{i}: y\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(frame(many.as_bytes(), &l).unwrap_err().status, 431);
        let body = b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n";
        assert_eq!(frame(body, &l).unwrap_err().status, 413);
        // Duplicate but equal lengths are allowed (RFC 9112 6.3).
        let dup = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx";
        assert!(frame(dup, &l).is_ok());
    }

    #[test]
    fn error_responses_use_the_clients_shape() {
        let r = error_response(
            431,
            "request_header_too_large",
            "big",
            ApiFormat::OpenaiChat,
        );
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        let body: serde_json::Value =
            serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "request_header_too_large");
        assert_eq!(
            format_of(b"POST /v1/messages HTTP/1.1\r\n"),
            ApiFormat::AnthropicMessages
        );
    }

    proptest::proptest! {
        /// Whatever a client sends, framing answers without panicking, and a complete request
        /// it accepts never claims more bytes than the limits allow.
        #[test]
        fn framing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let l = limits();
            match frame(&bytes, &l) {
                Ok(Framing::Sized { header_len, body_len }) => {
                    proptest::prop_assert!(header_len <= bytes.len() && header_len <= l.max_header_bytes);
                    proptest::prop_assert!(body_len <= l.max_body_bytes);
                }
                Ok(Framing::Chunked { header_len }) => proptest::prop_assert!(header_len <= bytes.len()),
                Ok(Framing::Partial) => proptest::prop_assert!(bytes.len() <= l.max_header_bytes),
                Err(r) => proptest::prop_assert!(matches!(r.status, 400 | 413 | 431)),
            }
        }
    }

    #[test]
    fn caps_evict_the_oldest_idle_connection_first() {
        let conns = Connections::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut a1 = conns.admit(a).unwrap();
        let mut a2 = conns.admit(a).unwrap();
        a1.set_idle();
        a2.set_active();
        // a is at its cap: the idle a1 makes room for a3.
        let a3 = conns.admit(a).unwrap();
        assert!(a1.slot.released.load(Ordering::Acquire));
        assert_eq!(conns.open(), 2);
        // Both of a's connections are busy: a fourth is refused.
        assert_eq!(conns.admit(a).err().unwrap().code, "too_many_connections");
        let b1 = conns.admit(b).unwrap();
        assert_eq!(conns.open(), 3);
        // Total cap with nothing idle: refused.
        assert_eq!(conns.admit(b).err().unwrap().code, "server_overloaded");
        drop(a1); // already released: must not give back a second place
        assert_eq!(conns.open(), 3);
        drop((a2, a3, b1));
        assert_eq!(conns.open(), 0);
    }

    #[test]
    fn memory_is_trimmed_once_after_a_surge_drains() {
        let conns = Connections::new(100, 100);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let guards: Vec<_> = (0..40).map(|_| conns.admit(ip).unwrap()).collect();
        assert!(!conns.trim_after_surge(32), "still open: no trim");
        drop(guards);
        assert!(conns.trim_after_surge(32), "the surge drained: trim");
        assert!(!conns.trim_after_surge(32), "only once per surge");
        let few: Vec<_> = (0..10).map(|_| conns.admit(ip).unwrap()).collect();
        drop(few);
        assert!(!conns.trim_after_surge(32), "10 connections are no surge");
    }
}
