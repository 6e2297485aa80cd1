//! Tests of the front door: framing, limits, eviction.

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
    let req = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
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
    assert!(a1.is_released());
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
