//! Non-streamed answers and errors: response_from_canonical (content, tool calls, usage, stop
//! reasons, unusable answers) and error_from_canonical / stream_error_event.

use serde_json::{json, Value};

use crate::anthropic::{error_from_canonical, response_from_canonical, stream_error_event};
use crate::Usage;

fn answer(canonical: Value, usage: Option<&Usage>) -> Value {
    let bytes = response_from_canonical(
        canonical.to_string().as_bytes(),
        "msg_abc",
        "claude-x",
        usage,
    )
    .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn text_answer_with_body_usage() {
    let a = answer(
        json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107,
                         "prompt_tokens_details": {"cached_tokens": 60}}}),
        None,
    );
    assert_eq!(
        a,
        json!({"id": "msg_abc", "type": "message", "role": "assistant", "model": "claude-x",
               "content": [{"type": "text", "text": "Hello!"}],
               "stop_reason": "end_turn", "stop_sequence": null,
               "usage": {"input_tokens": 40, "output_tokens": 7,
                         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60}})
    );
}

#[test]
fn gateway_usage_wins() {
    let exact = Usage {
        input: 11,
        output: 22,
        cache_read: 33,
        cache_write: 44,
        reasoning: 5,
    };
    let a = answer(
        json!({"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 1, "completion_tokens": 1}}),
        Some(&exact),
    );
    assert_eq!(
        a["usage"],
        json!({"input_tokens": 11, "output_tokens": 22, "cache_creation_input_tokens": 44, "cache_read_input_tokens": 33})
    );
    // No usage anywhere: zeros.
    let a = answer(json!({"choices": [{"message": {"content": "x"}}]}), None);
    assert_eq!(a["usage"]["input_tokens"], 0);
}

#[test]
fn tool_call_answer() {
    let a = answer(
        json!({"choices": [{"message": {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"type": "function", "function": {"name": "noargs", "arguments": ""}},
            {"id": "call_3", "type": "function", "function": {"name": "broken", "arguments": "{\"city\": "}},
            {"id": "call_4", "type": "function", "function": {"name": "array", "arguments": "[1]"}},
            {"id": "call_5", "type": "function", "function": {"name": "parsed", "arguments": {"k": 1}}},
        ]}, "finish_reason": "tool_calls"}]}),
        None,
    );
    assert_eq!(
        a["content"],
        json!([
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_abc_1", "name": "noargs", "input": {}},
            {"type": "tool_use", "id": "call_3", "name": "broken", "input": {}},
            {"type": "tool_use", "id": "call_4", "name": "array", "input": {}},
            {"type": "tool_use", "id": "call_5", "name": "parsed", "input": {"k": 1}},
        ])
    );
    assert_eq!(a["stop_reason"], "tool_use");
}

#[test]
fn finish_reasons() {
    let reason = |finish: Value, extra: Value| {
        let mut message = json!({"content": "x"});
        if let (Some(m), Some(e)) = (message.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        answer(
            json!({"choices": [{"message": message, "finish_reason": finish}]}),
            None,
        )["stop_reason"]
            .clone()
    };
    assert_eq!(reason(json!("stop"), json!({})), "end_turn");
    assert_eq!(reason(json!("length"), json!({})), "max_tokens");
    assert_eq!(reason(json!("tool_calls"), json!({})), "tool_use");
    assert_eq!(reason(json!("content_filter"), json!({})), "refusal");
    assert_eq!(reason(json!(null), json!({})), "end_turn");
    assert_eq!(reason(json!("weird"), json!({})), "end_turn");
    let call = json!({"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]});
    assert_eq!(reason(json!("stop"), call.clone()), "tool_use");
    assert_eq!(reason(json!("length"), call), "max_tokens");
    assert_eq!(
        reason(json!("stop"), json!({"refusal": "I can't"})),
        "refusal"
    );
}

#[test]
fn content_parts_and_refusal_become_text() {
    let a = answer(
        json!({"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                                        "refusal": "no", "reasoning_content": "secret"}}]}),
        None,
    );
    assert_eq!(
        a["content"],
        json!([{"type": "text", "text": "ab"}, {"type": "text", "text": "no"}])
    );
    let a = answer(json!({"choices": [{"message": {"content": null}}]}), None);
    assert_eq!(a["content"], json!([]));
}

#[test]
fn unusable_answers_are_upstream_errors() {
    for body in [
        &b"not json"[..],
        b"[]",
        b"{}",
        b"{\"choices\": []}",
        b"{\"choices\": [{\"index\": 0}]}",
    ] {
        let e = response_from_canonical(body, "msg_1", "m", None).unwrap_err();
        assert_eq!(e.status, 502, "{}", String::from_utf8_lossy(body));
    }
}

fn error(status: u16, body: &[u8]) -> Value {
    serde_json::from_slice(&error_from_canonical(status, body)).unwrap()
}

#[test]
fn error_types_by_status() {
    let cases = [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ];
    for (status, kind) in cases {
        let e = error(
            status,
            br#"{"error":{"message":"boom","type":"x","code":"y"}}"#,
        );
        assert_eq!(
            e,
            json!({"type": "error", "error": {"type": kind, "message": "boom"}}),
            "{status}"
        );
    }
}

#[test]
fn error_messages_from_any_body() {
    assert_eq!(
        error(400, br#"{"error":"flat"}"#)["error"]["message"],
        "flat"
    );
    assert_eq!(
        error(400, br#"{"message":"top"}"#)["error"]["message"],
        "top"
    );
    assert_eq!(
        error(
            400,
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"anthropic"}}"#
        )["error"]["message"],
        "anthropic"
    );
    assert_eq!(
        error(502, b"  Bad Gateway\n")["error"]["message"],
        "Bad Gateway"
    );
    assert_eq!(
        error(500, b"")["error"]["message"],
        "upstream error (HTTP 500)"
    );
    assert_eq!(
        error(500, b"{}")["error"]["message"],
        "upstream error (HTTP 500)"
    );
    let long = "é".repeat(2000);
    let m = error(500, long.as_bytes())["error"]["message"]
        .as_str()
        .map(|s| s.chars().count());
    assert_eq!(m, Some(500));
    let ev = stream_error_event(529, b"{}");
    assert_eq!(ev.event.as_deref(), Some("error"));
    let data: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(data["error"]["type"], "overloaded_error");
}
