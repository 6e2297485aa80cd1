//! Writes sample outputs to `target/formats-samples/responses-*.json` (or under
//! `$CARGO_TARGET_DIR`) so they can be checked against OpenAI's OpenAPI schemas outside Rust:
//! Responses (`Response`), stream events (each under its own schema) and the canonical request
//! (`CreateChatCompletionRequest`).

use std::path::PathBuf;

use serde_json::{json, Value};

use super::stream::text_then_call;
use super::{body_of, call_delta, chunk, completion, meta, req, weather_tool};
use crate::responses::{response_from_canonical, to_canonical, StreamAdapter};
use crate::{Event, Usage};

fn samples_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("formats-samples")
}

fn write(name: &str, value: &Value) {
    let dir = samples_dir();
    std::fs::create_dir_all(&dir).expect("create the samples directory");
    let text = serde_json::to_string_pretty(value).expect("serialise");
    std::fs::write(dir.join(format!("responses-{name}.json")), text).expect("write a sample");
}

fn events_json(events: &[Event]) -> Value {
    let all = events.iter().map(|e| {
        let data: Value = serde_json::from_str(&e.data).expect("JSON data");
        json!({"event": e.event, "data": data})
    });
    Value::Array(all.collect())
}

#[test]
fn write_samples() {
    let exact = Usage {
        input: 18,
        output: 9,
        cache_read: 2,
        cache_write: 1,
        reasoning: 3,
    };
    let full = json!({"model": "gpt-test", "instructions": "Be brief.", "tools": [weather_tool()],
        "tool_choice": "auto", "temperature": 0.7, "top_p": 1, "max_output_tokens": 256,
        "metadata": {"team": "a"}, "user": "u1", "parallel_tool_calls": true, "store": true,
        "previous_response_id": "resp_prev",
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"},
            "strict": true}},
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "What is here?"},
                {"type": "input_image", "image_url": "https://example.com/a.png",
                    "detail": "high"}]},
            {"type": "function_call", "call_id": "call_0", "name": "get_weather",
                "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_0", "output": "sunny"}]});
    let r = req(full.clone());
    let history = [
        json!({"role": "user", "content": "Earlier"}),
        json!({"role": "assistant", "content": "Yes"}),
    ];
    let mut canonical = to_canonical(&r, &history).expect("translates");
    write("canonical-request", &body_of(&canonical));
    let mut streamed = full.clone();
    streamed["stream"] = true.into();
    canonical = to_canonical(&req(streamed), &[]).expect("translates");
    write("canonical-request-stream", &body_of(&canonical));

    let answer = completion(
        json!({"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
        "tool_calls",
        Value::Null,
    );
    let done = response_from_canonical(&r, &meta(), &answer, Some(&exact)).expect("translates");
    write("response", &done.response);
    let minimal = req(json!({"model": "m", "input": "Hi"}));
    let cut = completion(
        json!({"role": "assistant", "content": "Once"}),
        "length",
        Value::Null,
    );
    let done = response_from_canonical(&minimal, &meta(), &cut, None).expect("translates");
    write("response-incomplete", &done.response);
    let refusal = completion(
        json!({"role": "assistant", "content": null, "refusal": "No."}),
        "stop",
        Value::Null,
    );
    let done =
        response_from_canonical(&minimal, &meta(), &refusal, Some(&exact)).expect("translates");
    write("response-refusal", &done.response);

    let mut adapter = StreamAdapter::new(&r, meta());
    let mut events: Vec<Event> = text_then_call()
        .iter()
        .flat_map(|c| adapter.on_event(c).expect("valid"))
        .collect();
    events.extend(adapter.finish(Some(&exact)).0);
    write("stream", &events_json(&events));

    let mut adapter = StreamAdapter::new(&minimal, meta());
    let mut events = Vec::new();
    for c in [
        chunk(json!({"content": "Hm."}), None),
        chunk(json!({"refusal": "No."}), None),
        chunk(json!({"content": "Once"}), Some("length")),
    ] {
        events.extend(adapter.on_event(&c).expect("valid"));
    }
    events.extend(adapter.finish(None).0);
    write("stream-incomplete", &events_json(&events));

    let mut adapter = StreamAdapter::new(&r, meta());
    let mut events = adapter
        .on_event(&chunk(
            call_delta(0, Some("c"), Some("get_weather"), "{\"ci"),
            None,
        ))
        .expect("valid");
    events.extend(adapter.fail("upstream_timeout", "The provider stopped sending."));
    write("stream-failed", &events_json(&events));
}
