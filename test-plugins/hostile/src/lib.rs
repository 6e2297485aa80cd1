//! A transform plugin that misbehaves on request, to prove the host contains it. The request
//! body names the behaviour: `loop`, `trap`, `memory` (grow until refused), `huge` (return a
//! body of the size given by `huge:<bytes>`), anything else is echoed back. A body containing
//! `tollgate-test:loop` anywhere loops too (the looping-plugin benchmark).
use tollgate_plugin_sdk::{
    export_plugin, ClientResponse, Reject, SseEvent, StreamOutput, Transform, TransformCtx,
    UpstreamRequest,
};

pub struct Hostile;

fn misbehave(body: &[u8]) -> Vec<u8> {
    let command = String::from_utf8_lossy(body);
    match command.trim() {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "trap" => panic!("hostile plugin asked to trap"),
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        // A whole request (the gateway's JSON) carrying the marker: loops like `loop`, so a
        // benchmark can make some requests loop among others.
        other if other.contains("tollgate-test:loop") => misbehave(b"loop"),
        other => match other.strip_prefix("huge:") {
            Some(n) => vec![b'x'; n.parse().unwrap_or(0)],
            None => body.to_vec(),
        },
    }
}

impl Transform for Hostile {
    fn transform_request(_ctx: TransformCtx, body: Vec<u8>) -> Result<UpstreamRequest, Reject> {
        Ok(UpstreamRequest {
            method: "POST".into(),
            path: "/".into(),
            headers: Vec::new(),
            body: misbehave(&body),
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
            body: misbehave(&body),
            usage: None,
        })
    }

    fn transform_event(
        _ctx: TransformCtx,
        state: Vec<u8>,
        event: SseEvent,
    ) -> Result<StreamOutput, Reject> {
        let data = String::from_utf8_lossy(&misbehave(event.data.as_bytes())).into_owned();
        Ok(StreamOutput::events(vec![SseEvent::data(data)], state))
    }

    fn end_of_stream(_ctx: TransformCtx, state: Vec<u8>) -> Result<StreamOutput, Reject> {
        Ok(StreamOutput::events(Vec::new(), state))
    }
}

export_plugin!(transform: Hostile);
