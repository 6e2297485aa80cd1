//! Per-request cost of the client-format adapters (the `tollgate-formats` crate) on the request
//! path: an Anthropic Messages or Responses request to canonical chat, a canonical answer back,
//! one streamed event through each stream adapter, and the tokenizer estimate used when a
//! provider reports no usage.
//!
//! `cargo bench -p benches --bench translation`

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use tollgate_formats::{anthropic, estimate, responses, Usage};

/// A ~2 KB conversation: system prompt, four turns, one tool.
fn messages_body() -> Vec<u8> {
    let turn =
        "Summarise the quarterly figures for the northern region and flag anything unusual. ";
    json!({
        "model": "claude-sonnet-4", "max_tokens": 1024, "system": turn.repeat(3),
        "messages": [
            {"role": "user", "content": turn.repeat(4)},
            {"role": "assistant", "content": [{"type": "text", "text": turn.repeat(3)}]},
            {"role": "user", "content": [{"type": "text", "text": turn.repeat(4)}]},
        ],
        "tools": [{"name": "lookup", "description": "Look a figure up",
                   "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}],
    })
    .to_string()
    .into_bytes()
}

fn responses_body() -> Vec<u8> {
    let turn =
        "Summarise the quarterly figures for the northern region and flag anything unusual. ";
    json!({
        "model": "gpt-4o", "instructions": turn.repeat(3), "max_output_tokens": 1024,
        "input": [
            {"role": "user", "content": turn.repeat(4)},
            {"role": "assistant", "content": [{"type": "output_text", "text": turn.repeat(3)}]},
            {"role": "user", "content": [{"type": "input_text", "text": turn.repeat(4)}]},
        ],
        "tools": [{"type": "function", "name": "lookup", "description": "Look a figure up",
                   "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}],
    })
    .to_string()
    .into_bytes()
}

fn canonical_answer() -> Vec<u8> {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "The northern region grew 4%. ".repeat(20)}}],
        "usage": {"prompt_tokens": 500, "completion_tokens": 120, "total_tokens": 620}})
    .to_string()
    .into_bytes()
}

const CHUNK: &str = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"The northern region"}}]}"#;

fn bench(c: &mut Criterion) {
    let usage = Usage {
        input: 500,
        output: 120,
        ..Usage::default()
    };
    let mbody = messages_body();
    let rbody = responses_body();
    let answer = canonical_answer();
    c.bench_function("anthropic request -> canonical (2 KB)", |b| {
        b.iter(|| {
            let req = anthropic::parse_request(&mbody).expect("valid");
            anthropic::to_canonical(&req).expect("translates")
        })
    });
    c.bench_function("canonical answer -> anthropic message", |b| {
        b.iter(|| anthropic::response_from_canonical(&answer, "msg_1", "m", Some(&usage)))
    });
    c.bench_function("anthropic stream: one text event", |b| {
        let mut s = anthropic::StreamAdapter::new("msg_1", "m");
        let _ = s.on_event(CHUNK);
        b.iter(|| s.on_event(CHUNK).expect("event"))
    });
    let rreq = responses::parse_request(&rbody).expect("valid");
    let meta = responses::ResponseMeta {
        id: "resp_1".into(),
        created_at: 1,
        model: "gpt-4o".into(),
    };
    c.bench_function("responses request -> canonical (2 KB)", |b| {
        b.iter(|| {
            let req = responses::parse_request(&rbody).expect("valid");
            responses::to_canonical(&req, &[]).expect("translates")
        })
    });
    c.bench_function("canonical answer -> responses object", |b| {
        b.iter(|| responses::response_from_canonical(&rreq, &meta, &answer, Some(&usage)))
    });
    c.bench_function("responses stream: one text event", |b| {
        let mut s = responses::StreamAdapter::new(&rreq, meta.clone());
        let _ = s.on_event(CHUNK);
        b.iter(|| s.on_event(CHUNK).expect("event"))
    });
    let canonical: serde_json::Value = serde_json::from_slice(
        &anthropic::to_canonical(&anthropic::parse_request(&mbody).expect("valid")).expect("ok"),
    )
    .expect("json");
    estimate::warm_up();
    c.bench_function("estimate input tokens (2 KB request)", |b| {
        b.iter(|| estimate::canonical_input_tokens(&canonical))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
