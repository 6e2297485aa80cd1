//! Unit tests of the Responses adapter, with the helpers they share: a request from JSON, a
//! response meta, canonical answers and chunks as a provider plugin would produce them.

mod conversation;
mod props;
mod request;
mod response;
mod samples;
mod stream;

use serde_json::{json, Value};

use super::{parse_request, to_canonical, Canonical, ResponseMeta, ResponsesRequest};
use crate::{Event, FormatError};

fn req(body: Value) -> ResponsesRequest {
    parse_request(body.to_string().as_bytes()).expect("a valid request")
}

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "resp_test1".into(),
        created_at: 1_700_000_000,
        model: "gpt-test".into(),
    }
}

fn body_of(canonical: &Canonical) -> Value {
    serde_json::from_slice(&canonical.body).expect("canonical body is JSON")
}

/// The canonical request for `body` with no earlier turns.
fn canonical(body: Value) -> Value {
    body_of(&to_canonical(&req(body), &[]).expect("translates"))
}

/// The error parse_request or to_canonical gives.
fn error(body: Value) -> FormatError {
    match parse_request(body.to_string().as_bytes()) {
        Err(e) => e,
        Ok(r) => to_canonical(&r, &[]).expect_err("an error"),
    }
}

/// A canonical `chat.completion` with `message`.
fn completion(message: Value, finish_reason: &str, usage: Value) -> Vec<u8> {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage})
    .to_string()
    .into_bytes()
}

/// A canonical chunk with `delta` (and `finish_reason`).
fn chunk(delta: Value, finish_reason: Option<&str>) -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "up",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
    .to_string()
}

fn call_delta(index: u64, id: Option<&str>, name: Option<&str>, args: &str) -> Value {
    let mut call = json!({"index": index, "function": {"arguments": args}});
    if let Some(id) = id {
        call["id"] = id.into();
        call["type"] = "function".into();
    }
    if let Some(name) = name {
        call["function"]["name"] = name.into();
    }
    json!({"tool_calls": [call]})
}

fn weather_tool() -> Value {
    json!({"type": "function", "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"], "additionalProperties": false}})
}

/// A canonical tool call (as in a `chat.completion` message).
fn tool_call(id: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function",
        "function": {"name": "get_weather", "arguments": arguments}})
}

pub(super) fn data(e: &Event) -> Value {
    serde_json::from_str(&e.data).expect("event data is JSON")
}

pub(super) fn types(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.event.clone().unwrap_or_default())
        .collect()
}

/// Rebuilds the output from the events the way the SDKs do, checking each event on the way
/// (named after its type, numbered from 0, indexes consistent, `done` matching the deltas),
/// and returns (final response, rebuilt output).
pub(super) fn reassemble(events: &[Event]) -> (Value, Vec<Value>) {
    let (mut response, mut output) = (Value::Null, Vec::<Value>::new());
    for (n, e) in events.iter().enumerate() {
        let d = data(e);
        assert_eq!(
            e.event.as_deref(),
            d["type"].as_str(),
            "event name = data type"
        );
        assert_eq!(d["sequence_number"], n, "numbered from 0 without gaps");
        let i = d["output_index"].as_u64().unwrap_or(0) as usize;
        let k = d["content_index"].as_u64().unwrap_or(0) as usize;
        let append = |v: &mut Value, piece: &Value| {
            *v = format!(
                "{}{}",
                v.as_str().expect("text"),
                piece.as_str().expect("piece")
            )
            .into();
        };
        match d["type"].as_str().expect("type") {
            "response.created" | "response.in_progress" => {
                assert!(
                    response.is_null() || n == 1,
                    "created/in_progress come first"
                );
                response = d["response"].clone();
                assert_eq!(
                    (response["status"].clone(), response["output"].clone()),
                    (json!("in_progress"), json!([]))
                );
            }
            "response.output_item.added" => {
                assert_eq!(i, output.len());
                assert_eq!(d["item"]["status"], "in_progress");
                output.push(d["item"].clone());
            }
            "response.content_part.added" => {
                let content = output[i]["content"].as_array_mut().expect("content");
                assert_eq!(k, content.len());
                content.push(d["part"].clone());
            }
            "response.output_text.delta" => {
                assert_eq!(d["item_id"], output[i]["id"]);
                append(&mut output[i]["content"][k]["text"], &d["delta"]);
            }
            "response.refusal.delta" => {
                append(&mut output[i]["content"][k]["refusal"], &d["delta"])
            }
            "response.output_text.done" => assert_eq!(output[i]["content"][k]["text"], d["text"]),
            "response.refusal.done" => assert_eq!(output[i]["content"][k]["refusal"], d["refusal"]),
            "response.content_part.done" => assert_eq!(output[i]["content"][k], d["part"]),
            "response.function_call_arguments.delta" => {
                assert_eq!(d["item_id"], output[i]["id"]);
                append(&mut output[i]["arguments"], &d["delta"]);
            }
            "response.function_call_arguments.done" => {
                assert_eq!(
                    (&output[i]["arguments"], &output[i]["name"]),
                    (&d["arguments"], &d["name"])
                );
            }
            "response.output_item.done" => {
                let mut built = output[i].clone();
                built["status"] = d["item"]["status"].clone();
                assert_eq!(built, d["item"], "done item = what the deltas built");
                output[i] = d["item"].clone();
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                assert_eq!(n, events.len() - 1, "the terminal event is last");
                response = d["response"].clone();
            }
            other => panic!("unexpected event {other}"),
        }
    }
    (response, output)
}
