//! A transform plugin built for `wasm32-wasip2`, so it imports WASI, that tries what a hostile
//! guest would try with it. The request body names the attempt; the answer body says what
//! happened, so the host tests can check each was denied:
//! `passwd` (read `/etc/passwd`), `env` (count environment variables and arguments), `socket`
//! (connect to 127.0.0.1:5432), `stdout` (print lines until interrupted), `hello` (print one line
//! to stdout and one to stderr, then echo), `sleep` (sleep 10 s in a WASI host call), `loop`,
//! `memory`; anything else is echoed back (with a clock reading and a random number, which WASI
//! grants).
use std::io::Write;
use tollgate_plugin_sdk::{
    export_plugin, ClientResponse, Reject, SseEvent, StreamOutput, Transform, TransformCtx,
    UpstreamRequest,
};

pub struct HostileWasi;

fn attempt(body: &[u8]) -> Vec<u8> {
    let command = String::from_utf8_lossy(body);
    match command.trim() {
        "passwd" => match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => format!("READ {} bytes", text.len()).into_bytes(),
            Err(e) => format!("denied: {e}").into_bytes(),
        },
        "env" => format!(
            "env={} args={}",
            std::env::vars_os().count(),
            std::env::args_os().count()
        )
        .into_bytes(),
        "socket" => match std::net::TcpStream::connect("127.0.0.1:5432") {
            Ok(_) => b"CONNECTED".to_vec(),
            Err(e) => format!("denied: {e}").into_bytes(),
        },
        "stdout" => {
            let mut n: u64 = 0;
            loop {
                n += 1;
                println!("flood line {n}");
            }
        }
        "hello" => {
            println!("hello from a wasi guest");
            eprintln!("a warning from a wasi guest");
            let _ = std::io::stdout().flush();
            b"hello".to_vec()
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(10));
            b"woke".to_vec()
        }
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        other => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            // HashMap's RandomState draws its keys from wasi:random.
            let random = {
                use std::hash::{BuildHasher, Hasher};
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u8(1);
                h.finish()
            };
            format!("{other} clock={} random={}", now > 0, random != 0).into_bytes()
        }
    }
}

/// Behind a running gateway the body is a client's JSON: a message containing
/// `tollgate-test:wasi:<attempt>` runs that attempt, and its outcome comes back to the client as
/// a 400 `wasi_result` (the end-to-end tests read it there).
const MARKER: &str = "tollgate-test:wasi:";

impl Transform for HostileWasi {
    fn transform_request(_ctx: TransformCtx, body: Vec<u8>) -> Result<UpstreamRequest, Reject> {
        let text = String::from_utf8_lossy(&body);
        if let Some(at) = text.find(MARKER) {
            let command: String = text[at + MARKER.len()..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            let outcome = attempt(command.as_bytes());
            return Err(Reject::new(
                400,
                "wasi_result",
                String::from_utf8_lossy(&outcome),
            ));
        }
        Ok(UpstreamRequest {
            method: "POST".into(),
            path: "/".into(),
            headers: Vec::new(),
            body: attempt(&body),
            stream_state: Vec::new(),
        })
    }

    fn transform_response(
        _ctx: TransformCtx,
        status: u16,
        body: Vec<u8>,
    ) -> Result<ClientResponse, Reject> {
        Ok(ClientResponse {
            status,
            headers: Vec::new(),
            body: attempt(&body),
            usage: None,
        })
    }

    fn transform_event(
        _ctx: TransformCtx,
        state: Vec<u8>,
        event: SseEvent,
    ) -> Result<StreamOutput, Reject> {
        let data = String::from_utf8_lossy(&attempt(event.data.as_bytes())).into_owned();
        Ok(StreamOutput::events(vec![SseEvent::data(data)], state))
    }

    fn end_of_stream(_ctx: TransformCtx, state: Vec<u8>) -> Result<StreamOutput, Reject> {
        Ok(StreamOutput::events(Vec::new(), state))
    }
}

export_plugin!(transform: HostileWasi);
