//! Tests of the Anthropic adapter: request checks and mapping, answers, errors, and streams
//! reassembled the way the official SDK's `MessageStream` accumulates them. This module holds
//! the helpers the topic modules share: a request from JSON, its canonical translation, and
//! canonical stream chunks run through a [`StreamAdapter`].

mod accumulator;
mod canonical;
mod props;
mod request;
mod response;
mod stream;

use serde_json::{json, Value};

use crate::anthropic::{parse_request, to_canonical, MessagesRequest, StreamAdapter};
use crate::{Event, FormatError, Usage};
use accumulator::Accumulator;

fn parse(v: Value) -> Result<MessagesRequest, FormatError> {
    parse_request(v.to_string().as_bytes())
}

fn canonical(v: Value) -> Value {
    let req = parse(v).expect("valid request");
    let bytes = to_canonical(&req).expect("translatable");
    serde_json::from_slice(&bytes).expect("canonical is JSON")
}

fn canonical_err(v: Value) -> FormatError {
    let req = parse(v).expect("valid request");
    to_canonical(&req).expect_err("should be rejected")
}

fn base(messages: Value) -> Value {
    json!({"model": "claude-x", "max_tokens": 100, "messages": messages})
}

fn param_of(r: Result<MessagesRequest, FormatError>) -> String {
    r.expect_err("should fail").param.unwrap_or_default()
}

fn chunk(delta: Value, finish: Value) -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

fn tool_piece(index: u64, id: Option<&str>, name: Option<&str>, args: &str) -> Value {
    let mut function = json!({"arguments": args});
    if let Some(name) = name {
        function["name"] = json!(name);
    }
    let mut call = json!({"index": index, "function": function});
    if let Some(id) = id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    json!({"tool_calls": [call]})
}

fn run(payloads: &[String], usage: Option<&Usage>) -> (Value, Vec<Event>) {
    let mut adapter = StreamAdapter::new("msg_x", "claude-x");
    let mut acc = Accumulator::default();
    let mut all = Vec::new();
    for p in payloads {
        let events = adapter.on_event(p).unwrap();
        acc.feed(&events);
        all.extend(events);
    }
    let events = adapter.finish(usage);
    acc.feed(&events);
    all.extend(events);
    (acc.done(), all)
}
