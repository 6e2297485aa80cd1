//! Mock LLM providers for load tests: OpenAI chat completions and Anthropic Messages, JSON and
//! SSE, with a configurable answer size, chunk count and delay between chunks. Loopback only.
//!
//! With `fault_rate` > 0 (the soak test) each request meets each kind of fault with that
//! probability: 429, 500, a connection reset, a header followed by silence, a stream that
//! stalls after a few events, and a malformed body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the mock answers.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Characters of assistant text per answer.
    pub answer_chars: usize,
    /// SSE content chunks per streamed answer.
    pub chunks: usize,
    /// Delay between streamed chunks.
    pub chunk_delay: Duration,
    /// Probability of each fault kind per request (0 = none).
    pub fault_rate: f64,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            answer_chars: 400,
            chunks: 20,
            chunk_delay: Duration::ZERO,
            fault_rate: 0.0,
        }
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn sse(events: Vec<String>, delay: Duration) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(event_body(events, delay).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// The events as a streamed body, optionally paced.
fn event_body(events: Vec<String>, delay: Duration) -> ChannelBody {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        for (i, e) in events.into_iter().enumerate() {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Bytes::from(e)).await.is_err() {
                return;
            }
        }
    });
    ChannelBody { rx }
}

struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn pieces(opts: &MockOptions) -> Vec<String> {
    let text: String = "lorem ipsum dolor sit amet "
        .chars()
        .cycle()
        .take(opts.answer_chars)
        .collect();
    let n = opts.chunks.max(1);
    let size = text.len().div_ceil(n).max(1);
    text.as_bytes()
        .chunks(size)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

fn openai(body: &serde_json::Value, opts: &MockOptions) -> Response<Body> {
    let model = body["model"].as_str().unwrap_or("mock");
    let parts = pieces(opts);
    let completion_tokens = opts.answer_chars.div_ceil(4);
    let usage = serde_json::json!({"prompt_tokens": 250, "completion_tokens": completion_tokens,
        "total_tokens": 250 + completion_tokens});
    if body["stream"] != serde_json::Value::Bool(true) {
        return full(200, serde_json::json!({"id": "chatcmpl-bench", "object": "chat.completion",
            "created": 1, "model": model, "choices": [{"index": 0, "message": {"role": "assistant",
            "content": parts.concat(), "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage}).to_string());
    }
    let include_usage = body["stream_options"]["include_usage"] == serde_json::Value::Bool(true);
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        format!(
            "data: {}\n\n",
            serde_json::json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
            "created": 1, "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut events = vec![chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        serde_json::Value::Null,
    )];
    events.extend(
        parts
            .iter()
            .map(|p| chunk(serde_json::json!({"content": p}), serde_json::Value::Null)),
    );
    events.push(chunk(serde_json::json!({}), serde_json::json!("stop")));
    if include_usage {
        events.push(format!("data: {}\n\n", serde_json::json!({"id": "chatcmpl-bench",
            "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": usage})));
    }
    events.push("data: [DONE]\n\n".into());
    sse(events, opts.chunk_delay)
}

fn anthropic(body: &serde_json::Value, opts: &MockOptions) -> Response<Body> {
    let model = body["model"].as_str().unwrap_or("mock");
    let parts = pieces(opts);
    let output_tokens = opts.answer_chars.div_ceil(4);
    if body["stream"] != serde_json::Value::Bool(true) {
        return full(200, serde_json::json!({"id": "msg_bench", "type": "message", "role": "assistant",
            "model": model, "content": [{"type": "text", "text": parts.concat()}], "stop_reason": "end_turn",
            "stop_sequence": null, "usage": {"input_tokens": 250, "output_tokens": output_tokens}}).to_string());
    }
    let ev = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![
        ev(
            "message_start",
            serde_json::json!({"type": "message_start", "message": {"id": "msg_bench",
            "type": "message", "role": "assistant", "model": model, "content": [],
            "usage": {"input_tokens": 250, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    events.extend(parts.iter().map(|p| {
        ev(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta",
        "index": 0, "delta": {"type": "text_delta", "text": p}}),
        )
    }));
    events.push(ev(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(ev(
        "message_delta",
        serde_json::json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": output_tokens}}),
    ));
    events.push(ev(
        "message_stop",
        serde_json::json!({"type": "message_stop"}),
    ));
    sse(events, opts.chunk_delay)
}

/// The injectable faults, in the order [`pick_fault`] numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Status429,
    Status500,
    Reset,
    HeaderThenHang,
    StallMidStream,
    Malformed,
}

const FAULTS: [Fault; 6] = [
    Fault::Status429,
    Fault::Status500,
    Fault::Reset,
    Fault::HeaderThenHang,
    Fault::StallMidStream,
    Fault::Malformed,
];

/// A cheap shared random source (xorshift on an atomic): good enough to spread faults.
fn random_unit() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut x = STATE.load(Ordering::Relaxed);
    loop {
        let mut y = x;
        y ^= y << 13;
        y ^= y >> 7;
        y ^= y << 17;
        match STATE.compare_exchange_weak(x, y, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return (y >> 11) as f64 / (1u64 << 53) as f64,
            Err(now) => x = now,
        }
    }
}

fn pick_fault(rate: f64) -> Option<Fault> {
    if rate <= 0.0 {
        return None;
    }
    let r = random_unit();
    FAULTS
        .iter()
        .enumerate()
        .find(|(i, _)| r < rate * (*i as f64 + 1.0))
        .map(|(_, f)| *f)
}

/// How long a hanging fault holds its connection (longer than any gateway stall bound).
const HANG: Duration = Duration::from_secs(40);

/// A response whose body sends `events` then stays silent until [`HANG`] passes.
fn hanging(status: u16, content_type: &str, events: Vec<String>) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        for e in events {
            if tx.send(Bytes::from(e)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(HANG) => {}
            _ = tx.closed() => {}
        }
    });
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(ChannelBody { rx }.boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn faulty(fault: Fault, stream: bool) -> Result<Response<Body>, std::io::Error> {
    let error = |status: u16| {
        full(
            status,
            format!(
                "{{\"error\":{{\"message\":\"mock fault {status}\",\"type\":\"server_error\"}}}}"
            ),
        )
    };
    let chunk = |text: &str| {
        format!(
            "data: {}\n\n",
            serde_json::json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"content": text},
                "finish_reason": null}]})
        )
    };
    Ok(match (fault, stream) {
        (Fault::Status429, _) => error(429),
        (Fault::Status500, _) => error(500),
        // An error from the service makes hyper drop the connection without an answer.
        (Fault::Reset, _) => return Err(std::io::Error::other("mock reset")),
        (Fault::HeaderThenHang, true) => hanging(200, "text/event-stream", vec![]),
        (Fault::HeaderThenHang, false) => hanging(200, "application/json", vec![]),
        (Fault::StallMidStream, true) => hanging(
            200,
            "text/event-stream",
            vec![chunk("lorem "), chunk("ipsum ")],
        ),
        (Fault::StallMidStream, false) => {
            hanging(200, "application/json", vec!["{\"choices\": [".into()])
        }
        (Fault::Malformed, true) => sse(
            vec![chunk("lorem "), "data: {not json\n\n".into()],
            Duration::ZERO,
        ),
        (Fault::Malformed, false) => full(200, "{\"choices\": [".into()),
    })
}

async fn handle(
    req: Request<Incoming>,
    opts: Arc<MockOptions>,
) -> Result<Response<Body>, std::io::Error> {
    let path = req.uri().path().to_string();
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(full(400, "{}".into())),
    };
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if let Some(fault) = pick_fault(opts.fault_rate) {
        return faulty(fault, body["stream"] == serde_json::Value::Bool(true));
    }
    Ok(match path.as_str() {
        "/v1/chat/completions" => openai(&body, &opts),
        "/v1/messages" => anthropic(&body, &opts),
        _ => full(404, "{\"error\":{\"message\":\"not found\"}}".into()),
    })
}

/// Starts a mock on 127.0.0.1 (random port) on the current runtime; returns its address.
pub async fn start(opts: MockOptions) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let opts = Arc::new(opts);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let opts = opts.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(req, opts.clone()));
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
