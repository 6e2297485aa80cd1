//! Tests of the Anthropic adapter: request checks and mapping, answers, errors, and streams
//! reassembled the way the official SDK's `MessageStream` accumulates them.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::{Event, FormatError, Usage};

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

// ---- parse_request ----

#[test]
fn parses_the_basics() {
    let req = parse(
        json!({"model": "claude-x", "max_tokens": 1024, "stream": true,
                           "messages": [{"role": "user", "content": "hi"}],
                           "tools": [{"name": "t", "input_schema": {"type": "object"}}]}),
    )
    .unwrap();
    assert_eq!(req.model, "claude-x");
    assert!(req.stream);
    assert_eq!(req.max_tokens, Some(1024));
    assert!(req.has_tools);
    let req = parse(base(json!([{"role": "user", "content": "hi"}]))).unwrap();
    assert!(!req.stream && !req.has_tools);
}

#[test]
fn rejects_bad_bodies_with_params() {
    let e = parse_request(b"{nope").unwrap_err();
    assert_eq!((e.status, e.param.as_deref()), (400, None));
    assert_eq!(parse_request(b"[1]").unwrap_err().param, None);

    let m = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!({"max_tokens": 1, "messages": m}), "model"),
        (
            json!({"model": "", "max_tokens": 1, "messages": m}),
            "model",
        ),
        (json!({"model": 5, "max_tokens": 1, "messages": m}), "model"),
        (json!({"model": "x", "messages": m}), "max_tokens"),
        (
            json!({"model": "x", "max_tokens": 0, "messages": m}),
            "max_tokens",
        ),
        (
            json!({"model": "x", "max_tokens": -3, "messages": m}),
            "max_tokens",
        ),
        (
            json!({"model": "x", "max_tokens": 1.5, "messages": m}),
            "max_tokens",
        ),
        (
            json!({"model": "x", "max_tokens": 5_000_000_000u64, "messages": m}),
            "max_tokens",
        ),
        (json!({"model": "x", "max_tokens": 1}), "messages"),
        (
            json!({"model": "x", "max_tokens": 1, "messages": []}),
            "messages",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": {}}),
            "messages",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": m, "stream": "yes"}),
            "stream",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": m, "system": 3}),
            "system",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": m, "system": [{"type": "image"}]}),
            "system[0].type",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": m, "tools": {}}),
            "tools",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": m, "tools": [{"name": "t"}]}),
            "tools[0].input_schema",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": m, "tools": [{"input_schema": {}}]}),
            "tools[0].name",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": m, "tool_choice": {"type": "maybe"}}),
            "tool_choice.type",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": m, "tool_choice": {"type": "tool"}}),
            "tool_choice.name",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": m, "stop_sequences": [1]}),
            "stop_sequences",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": m, "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"model": "x", "max_tokens": 1, "messages": m, "metadata": {"user_id": 7}}),
            "metadata.user_id",
        ),
    ];
    for (body, param) in cases {
        let e = parse(body.clone()).expect_err(&body.to_string());
        assert_eq!(e.status, 400);
        assert_eq!(e.code, "invalid_request_error");
        assert_eq!(e.param.as_deref(), Some(param), "{body}");
        assert!(e.message.starts_with(param), "{}", e.message);
    }
}

#[test]
fn message_errors_name_the_field() {
    let p = |m: Value| param_of(parse(base(m)));
    assert_eq!(
        p(json!([{"role": "user", "content": "a"}, 3])),
        "messages[1]"
    );
    assert_eq!(
        p(json!([{"role": "system", "content": "a"}])),
        "messages[0].role"
    );
    assert_eq!(
        p(json!([{"role": "user", "content": "a"}, {"role": "assistant"}])),
        "messages[1].content"
    );
    assert_eq!(
        p(json!([{"role": "user", "content": 4}])),
        "messages[0].content"
    );
    assert_eq!(
        p(json!([{"role": "user", "content": [{"text": "x"}]}])),
        "messages[0].content[0].type"
    );
    assert_eq!(
        p(json!([{"role": "user", "content": [{"type": "text"}]}])),
        "messages[0].content[0].text"
    );
    assert_eq!(
        p(
            json!([{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}]}])
        ),
        "messages[0].content[0].source.media_type"
    );
    assert_eq!(
        p(
            json!([{"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "n", "input": "x"}]}])
        ),
        "messages[0].content[0].input"
    );
    assert_eq!(
        p(
            json!([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": [{"type": "text"}]}]}])
        ),
        "messages[0].content[0].content[0].text"
    );
    assert_eq!(
        p(
            json!([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "is_error": "y"}]}])
        ),
        "messages[0].content[0].is_error"
    );
}

#[test]
fn unknown_block_and_tool_types_pass_the_check() {
    // Pass-through to an Anthropic provider may support them; only to_canonical refuses.
    let req = parse(json!({"model": "x", "max_tokens": 1,
        "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "AA"}},
            {"type": "search_result", "whatever": 1}]}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}]}));
    assert!(req.is_ok());
}

// ---- to_canonical ----

#[test]
fn system_string_and_blocks() {
    let c = canonical(
        json!({"model": "claude-x", "max_tokens": 10, "system": "be brief",
                             "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(
        c["messages"],
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    );
    assert_eq!(c["model"], "claude-x");
    assert_eq!(c["max_tokens"], 10);
    assert!(c.get("stream").is_none() && c.get("stream_options").is_none());

    let c = canonical(json!({"model": "m", "max_tokens": 10,
        "system": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "b"}],
        "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(
        c["messages"][0],
        json!({"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]})
    );
    // An empty system prompt adds no message.
    let c = canonical(json!({"model": "m", "max_tokens": 10, "system": "",
                             "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(c["messages"].as_array().map(Vec::len), Some(1));
}

#[test]
fn user_text_and_images() {
    let c = canonical(base(json!([{"role": "user", "content": [
        {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
    ]}])));
    assert_eq!(
        c["messages"][0],
        json!({"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
        ]})
    );
}

#[test]
fn tool_round_trip_messages() {
    let c = canonical(base(json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "text", "text": "Let me "},
            {"type": "text", "text": "check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "text", "text": "here you go"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
             "content": [{"type": "text", "text": "clock"}, {"type": "text", "text": "broken"}]},
        ]},
    ])));
    assert_eq!(
        c["messages"],
        json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: clock\nbroken"},
            {"role": "user", "content": [{"type": "text", "text": "here you go"}]},
        ])
    );
}

#[test]
fn assistant_edge_shapes() {
    let c = canonical(base(json!([
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
        {"role": "assistant", "content": "prefill"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": "s"}]},
    ])));
    let m = &c["messages"];
    assert_eq!(m[1]["content"], Value::Null);
    assert_eq!(
        m[2],
        json!({"role": "tool", "tool_call_id": "t", "content": ""})
    );
    assert_eq!(m[3], json!({"role": "assistant", "content": "prefill"}));
    // A turn of only thinking stays a turn, with empty text.
    assert_eq!(m[4], json!({"role": "assistant", "content": ""}));
}

#[test]
fn tools_choice_and_sampling_fields() {
    let c = canonical(json!({"model": "m", "max_tokens": 5, "stream": true,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "get_weather", "description": "Weather", "cache_control": {"type": "ephemeral"},
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                  {"type": "custom", "name": "bare", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["END", "STOP"], "temperature": 0.2, "top_p": 0.9, "top_k": 5,
        "metadata": {"user_id": "u-42"}, "thinking": {"type": "enabled", "budget_tokens": 100},
        "service_tier": "auto"}));
    assert_eq!(
        c,
        json!({"model": "m", "max_tokens": 5, "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "hi"}],
               "tools": [
                   {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                   {"type": "function", "function": {"name": "bare", "parameters": {"type": "object"}}}],
               "tool_choice": "required", "parallel_tool_calls": false,
               "stop": ["END", "STOP"], "temperature": 0.2, "top_p": 0.9, "user": "u-42"})
    );
    let choice = |tc: Value| {
        canonical(
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                         "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": tc}),
        )
    };
    assert_eq!(choice(json!({"type": "auto"}))["tool_choice"], "auto");
    assert_eq!(choice(json!({"type": "none"}))["tool_choice"], "none");
    assert_eq!(
        choice(json!({"type": "tool", "name": "f"}))["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert!(choice(json!({"type": "auto"}))
        .get("parallel_tool_calls")
        .is_none());
    // Without tools, OpenAI refuses tool_choice, so none is sent.
    let c = canonical(
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                             "tool_choice": {"type": "auto"}}),
    );
    assert!(c.get("tool_choice").is_none() && c.get("tools").is_none());
}

#[test]
fn structured_output_maps_to_response_format() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let c = canonical(
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                             "output_format": {"type": "json_schema", "schema": schema}}),
    );
    assert_eq!(
        c["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": true}})
    );
}

#[test]
fn untranslatable_content_is_rejected_with_its_path() {
    let doc = json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "AA"}});
    let e = canonical_err(base(
        json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                      {"role": "user", "content": [{"type": "text", "text": "x"}, doc]}]),
    ));
    assert_eq!(
        (e.status, e.param.as_deref()),
        (400, Some("messages[2].content[1]"))
    );
    assert!(e.message.contains("document"), "{}", e.message);

    let cases = [
        (
            base(
                json!([{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]),
            ),
            "messages[0].content[0].source",
        ),
        (
            base(
                json!([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://x"}}]}]}]),
            ),
            "messages[0].content[0].content[0]",
        ),
        (
            base(
                json!([{"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}]),
            ),
            "messages[0].content[0]",
        ),
        (
            base(
                json!([{"role": "user", "content": [{"type": "tool_use", "id": "s", "name": "n", "input": {}}]}]),
            ),
            "messages[0].content[0]",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "tools[0]",
        ),
    ];
    for (body, param) in cases {
        let e = canonical_err(body.clone());
        assert_eq!(e.param.as_deref(), Some(param), "{body}");
        assert!(e.message.contains("not supported"), "{}", e.message);
    }
}

#[test]
fn to_canonical_survives_a_hand_built_request() {
    let req = MessagesRequest {
        model: "m".into(),
        stream: false,
        max_tokens: None,
        has_tools: false,
        value: json!([1, 2]),
    };
    assert_eq!(to_canonical(&req).unwrap_err().status, 400);
    let req = MessagesRequest {
        value: json!({"messages": [{"role": "user", "content": "hi"}]}),
        ..req
    };
    let c: Value = serde_json::from_slice(&to_canonical(&req).unwrap()).unwrap();
    assert!(c.get("max_tokens").is_none());
}

// ---- response_from_canonical ----

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

// ---- errors ----

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

// ---- streaming ----

/// Reassembles Anthropic stream events as the official Python SDK's `accumulate_event` does,
/// and checks the ordering rules it (and Anthropic's other SDKs) rely on.
#[derive(Default)]
struct Accumulator {
    message: Option<Value>,
    json_bufs: Vec<String>,
    open: Option<usize>,
    stopped: bool,
}

impl Accumulator {
    fn feed(&mut self, events: &[Event]) {
        for ev in events {
            let data: Value = serde_json::from_str(&ev.data).expect("event data is JSON");
            let kind = data["type"].as_str().expect("type").to_string();
            assert_eq!(
                ev.event.as_deref(),
                Some(kind.as_str()),
                "event name matches data type"
            );
            assert!(!self.stopped, "event after message_stop: {kind}");
            if kind == "message_start" {
                assert!(self.message.is_none(), "second message_start");
                self.message = Some(data["message"].clone());
                continue;
            }
            let message = self.message.as_mut().expect("message_start comes first");
            match kind.as_str() {
                "content_block_start" => {
                    assert!(self.open.is_none(), "block started while another is open");
                    let content = message["content"].as_array_mut().unwrap();
                    assert_eq!(data["index"], content.len(), "consecutive block indexes");
                    content.push(data["content_block"].clone());
                    self.json_bufs.push(String::new());
                    self.open = Some(content.len() - 1);
                }
                "content_block_delta" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    assert_eq!(self.open, Some(index), "delta to the open block");
                    let block = &mut message["content"][index];
                    match data["delta"]["type"].as_str().unwrap() {
                        "text_delta" => {
                            assert_eq!(block["type"], "text");
                            let text = format!(
                                "{}{}",
                                block["text"].as_str().unwrap(),
                                data["delta"]["text"].as_str().unwrap()
                            );
                            block["text"] = json!(text);
                        }
                        "input_json_delta" => {
                            assert_eq!(block["type"], "tool_use");
                            self.json_bufs[index]
                                .push_str(data["delta"]["partial_json"].as_str().unwrap());
                        }
                        other => panic!("unexpected delta {other}"),
                    }
                }
                "content_block_stop" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    assert_eq!(self.open, Some(index), "stop of the open block");
                    self.open = None;
                    if !self.json_bufs[index].is_empty() {
                        message["content"][index]["input"] =
                            serde_json::from_str(&self.json_bufs[index]).expect("tool input JSON");
                    }
                }
                "message_delta" => {
                    assert!(self.open.is_none(), "message_delta with a block open");
                    message["stop_reason"] = data["delta"]["stop_reason"].clone();
                    message["stop_sequence"] = data["delta"]["stop_sequence"].clone();
                    let usage = data["usage"].as_object().unwrap();
                    assert!(usage.contains_key("output_tokens"));
                    for (k, v) in usage {
                        message["usage"][k] = v.clone();
                    }
                }
                "message_stop" => self.stopped = true,
                other => panic!("unexpected event {other}"),
            }
        }
    }

    fn done(self) -> Value {
        assert!(self.stopped, "stream ended with message_stop");
        self.message.unwrap()
    }
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

#[test]
fn full_stream_text_then_two_tool_calls() {
    let mut adapter = StreamAdapter::new("msg_s1", "claude-x");
    let mut acc = Accumulator::default();
    let payloads = vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Let me "}), Value::Null),
        chunk(json!({"content": "check "}), Value::Null),
        chunk(json!({"content": "that."}), Value::Null),
        chunk(tool_piece(0, Some("call_a"), Some("get_weather"), ""), Value::Null),
        chunk(tool_piece(0, None, None, "{\"ci"), Value::Null),
        chunk(tool_piece(0, None, None, "ty\": \"Par"), Value::Null),
        chunk(tool_piece(0, None, None, "is\"}"), Value::Null),
        chunk(tool_piece(1, Some("call_b"), Some("get_time"), "{\"tz\""), Value::Null),
        chunk(tool_piece(1, None, None, ":"), Value::Null),
        chunk(tool_piece(1, None, None, " \"CET\"}"), Value::Null),
        chunk(json!({}), json!("tool_calls")),
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
               "usage": {"prompt_tokens": 50, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 10}}})
        .to_string(),
        "[DONE]".to_string(),
    ];
    let mut first = true;
    for p in &payloads {
        let events = adapter.on_event(p).unwrap();
        if first {
            assert_eq!(events[0].event.as_deref(), Some("message_start"));
            first = false;
        }
        acc.feed(&events);
    }
    acc.feed(&adapter.finish(None));
    assert!(adapter.finish(None).is_empty(), "finish is idempotent");
    assert!(adapter
        .on_event(&chunk(json!({"content": "late"}), Value::Null))
        .unwrap()
        .is_empty());
    assert_eq!(
        acc.done(),
        json!({"id": "msg_s1", "type": "message", "role": "assistant", "model": "claude-x",
               "content": [
                   {"type": "text", "text": "Let me check that."},
                   {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
                   {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {"tz": "CET"}},
               ],
               "stop_reason": "tool_use", "stop_sequence": null,
               "usage": {"input_tokens": 40, "output_tokens": 20,
                         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10}})
    );
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

#[test]
fn exact_usage_wins_over_the_usage_chunk() {
    let exact = Usage {
        input: 1,
        output: 2,
        cache_read: 3,
        cache_write: 4,
        reasoning: 0,
    };
    let (message, events) = run(
        &[
            chunk(json!({"content": "hi"}), json!("stop")),
            json!({"choices": [], "usage": {"prompt_tokens": 99, "completion_tokens": 99}})
                .to_string(),
        ],
        Some(&exact),
    );
    assert_eq!(
        message["usage"],
        json!({"input_tokens": 1, "output_tokens": 2, "cache_creation_input_tokens": 4, "cache_read_input_tokens": 3})
    );
    assert_eq!(message["stop_reason"], "end_turn");
    let start: Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(
        start,
        json!({"type": "message_start", "message": {"id": "msg_x", "type": "message", "role": "assistant",
               "content": [], "model": "claude-x", "stop_reason": null, "stop_sequence": null,
               "usage": {"input_tokens": 0, "output_tokens": 0}}})
    );
}

#[test]
fn empty_stream_is_still_a_message() {
    let (message, events) = run(&[], None);
    assert_eq!(message["content"], json!([]));
    assert_eq!(message["stop_reason"], "end_turn");
    let names: Vec<_> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
    let (_, events) = run(&["[DONE]".to_string()], None);
    assert_eq!(events.len(), 3);
}

#[test]
fn text_after_tool_and_length_stop() {
    let (message, _) = run(
        &[
            chunk(tool_piece(0, Some("c1"), Some("f"), "{}"), Value::Null),
            chunk(json!({"content": "after"}), json!("length")),
        ],
        None,
    );
    assert_eq!(
        message["content"],
        json!([{"type": "tool_use", "id": "c1", "name": "f", "input": {}}, {"type": "text", "text": "after"}])
    );
    assert_eq!(message["stop_reason"], "max_tokens");
}

#[test]
fn tool_quirks_of_compatible_providers() {
    // All calls numbered 0, told apart by id; name repeated in each piece; one call without
    // an id; arguments before the name.
    let (message, _) = run(
        &[
            chunk(tool_piece(0, Some("a"), Some("f"), "{\"x\":"), Value::Null),
            chunk(tool_piece(0, None, Some("f"), "1}"), Value::Null),
            chunk(tool_piece(0, Some("b"), Some("g"), "{}"), Value::Null),
            chunk(tool_piece(2, None, None, "{\"late\":"), Value::Null),
            chunk(tool_piece(2, None, Some("h"), "true}"), json!("stop")),
        ],
        None,
    );
    assert_eq!(
        message["content"],
        json!([
            {"type": "tool_use", "id": "a", "name": "f", "input": {"x": 1}},
            {"type": "tool_use", "id": "b", "name": "g", "input": {}},
            {"type": "tool_use", "id": "toolu_x_2", "name": "h", "input": {"late": true}},
        ])
    );
    // `stop` with tool calls is reported as tool_use.
    assert_eq!(message["stop_reason"], "tool_use");
}

#[test]
fn whole_calls_without_index_or_id() {
    let call = |name: &str, args: &str| json!({"tool_calls": [{"function": {"name": name, "arguments": args}}]});
    let (message, _) = run(
        &[
            chunk(call("f", "{\"a\":1}"), Value::Null),
            chunk(call("g", "{\"b\":2}"), json!("tool_calls")),
        ],
        None,
    );
    assert_eq!(
        message["content"],
        json!([
            {"type": "tool_use", "id": "toolu_x_0", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "toolu_x_1", "name": "g", "input": {"b": 2}},
        ])
    );
}

#[test]
fn nameless_tool_call_is_flushed_at_finish() {
    let (message, _) = run(
        &[chunk(
            tool_piece(0, Some("a"), None, "{\"q\":1}"),
            Value::Null,
        )],
        None,
    );
    assert_eq!(
        message["content"],
        json!([{"type": "tool_use", "id": "a", "name": "", "input": {"q": 1}}])
    );
}

#[test]
fn refusal_and_content_filter() {
    let (message, _) = run(
        &[chunk(json!({"refusal": "I can't help"}), json!("stop"))],
        None,
    );
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": "I can't help"}])
    );
    assert_eq!(message["stop_reason"], "refusal");
    let (message, _) = run(
        &[chunk(json!({"content": "x"}), json!("content_filter"))],
        None,
    );
    assert_eq!(message["stop_reason"], "refusal");
}

#[test]
fn other_choices_are_ignored() {
    let other = json!({"choices": [{"index": 1, "delta": {"content": "B"}}]}).to_string();
    let (message, _) = run(&[chunk(json!({"content": "A"}), Value::Null), other], None);
    assert_eq!(message["content"], json!([{"type": "text", "text": "A"}]));
}

#[test]
fn malformed_chunks_are_upstream_errors() {
    for bad in [
        "not json",
        "[1,2]",
        "\"s\"",
        r#"{"choices": 5}"#,
        r#"{"error": {"message": "overloaded"}}"#,
    ] {
        let mut adapter = StreamAdapter::new("msg_1", "m");
        let e = adapter.on_event(bad).unwrap_err();
        assert_eq!(e.status, 502, "{bad}");
        // Nothing half-started: the next good payload still opens with message_start.
        let events = adapter
            .on_event(&chunk(json!({"content": "x"}), Value::Null))
            .unwrap();
        assert_eq!(events[0].event.as_deref(), Some("message_start"), "{bad}");
    }
    let mut adapter = StreamAdapter::new("msg_1", "m");
    let e = adapter
        .on_event(r#"{"error": {"message": "overloaded"}}"#)
        .unwrap_err();
    assert_eq!(e.message, "overloaded");
    // A tool call resumed after another block started cannot be expressed.
    let mut adapter = StreamAdapter::new("msg_1", "m");
    adapter
        .on_event(&chunk(
            tool_piece(0, Some("a"), Some("f"), "{"),
            Value::Null,
        ))
        .unwrap();
    adapter
        .on_event(&chunk(
            tool_piece(1, Some("b"), Some("g"), "{}"),
            Value::Null,
        ))
        .unwrap();
    let e = adapter
        .on_event(&chunk(tool_piece(0, None, None, "}"), Value::Null))
        .unwrap_err();
    assert_eq!(e.status, 502);
}

// ---- properties ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bodies_never_panic(json in crate::test_support::arb_json()) {
        let body = json.to_string();
        if let Ok(req) = parse_request(body.as_bytes()) {
            let _ = to_canonical(&req);
        }
        // Also a body wrapped to pass the top-level checks, so message mapping is exercised.
        let wrapped = json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": [json.clone()]},
            {"role": "assistant", "content": [json.clone()]}], "tools": [json.clone()],
            "system": [json.clone()], "tool_choice": json.clone()});
        if let Ok(req) = parse_request(wrapped.to_string().as_bytes()) {
            let _ = to_canonical(&req);
        }
        let hand_built = MessagesRequest { model: "m".into(), stream: true, max_tokens: Some(1),
                                           has_tools: true, value: json.clone() };
        let _ = to_canonical(&hand_built);
        let _ = response_from_canonical(body.as_bytes(), "msg_p", "m", None);
        let _ = error_from_canonical(500, body.as_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_request(&bytes);
        let _ = response_from_canonical(&bytes, "msg_p", "m", None);
        let _ = error_from_canonical(400, &bytes);
    }

    #[test]
    fn arbitrary_stream_data_never_panics(
        payloads in proptest::collection::vec(
            prop_oneof![
                ".{0,40}".prop_map(|s| s),
                crate::test_support::arb_json().prop_map(|v| v.to_string()),
                crate::test_support::arb_json().prop_map(|d| json!({"choices": [{"index": 0, "delta": d}]}).to_string()),
                crate::test_support::arb_json().prop_map(|t| json!({"choices": [{"delta": {"tool_calls": [t]}}]}).to_string()),
            ],
            0..12,
        )
    ) {
        let mut adapter = StreamAdapter::new("msg_p", "m");
        let mut events = Vec::new();
        for p in &payloads {
            if let Ok(e) = adapter.on_event(p) {
                events.extend(e);
            }
        }
        events.extend(adapter.finish(None));
        prop_assert!(adapter.finish(None).is_empty());
        // Whatever came in, the events are well-formed JSON named after their type.
        for e in &events {
            let data: Value = serde_json::from_str(&e.data).expect("JSON");
            prop_assert_eq!(data["type"].as_str(), e.event.as_deref());
        }
    }

    #[test]
    fn well_formed_streams_reassemble(
        text in proptest::collection::vec(".{0,8}", 0..5),
        args in proptest::collection::vec(proptest::collection::vec("[a-z0-9]{1,3}", 1..4), 0..3),
        cuts in proptest::collection::vec(1usize..6, 1..8),
    ) {
        // Any text pieces and any number of tool calls, their argument JSON cut at arbitrary
        // places, reassemble to the same message.
        let mut payloads: Vec<String> = text.iter().map(|t| chunk(json!({"content": t}), Value::Null)).collect();
        let mut expected = Vec::new();
        let joined: String = text.concat();
        if !joined.is_empty() {
            expected.push(json!({"type": "text", "text": joined}));
        }
        for (i, values) in args.iter().enumerate() {
            let input = json!({"v": values});
            let text = input.to_string();
            let id = format!("call_{i}");
            payloads.push(chunk(tool_piece(i as u64, Some(&id), Some("f"), ""), Value::Null));
            let mut rest = text.as_str();
            let mut k = 0;
            while !rest.is_empty() {
                let mut n = cuts[k % cuts.len()].min(rest.len());
                while !rest.is_char_boundary(n) { n += 1; }
                let (piece, tail) = rest.split_at(n);
                payloads.push(chunk(tool_piece(i as u64, None, None, piece), Value::Null));
                rest = tail;
                k += 1;
            }
            expected.push(json!({"type": "tool_use", "id": id, "name": "f", "input": input}));
        }
        let (message, _) = run(&payloads, None);
        prop_assert_eq!(&message["content"], &Value::Array(expected));
    }
}
