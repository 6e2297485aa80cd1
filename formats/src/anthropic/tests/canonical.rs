//! to_canonical: the mapping of system prompts, content blocks, tool calls and results, tools,
//! tool choice, sampling fields and structured output, and the 400s for what canonical cannot
//! carry.

use serde_json::{json, Value};

use super::{base, canonical, canonical_err};
use crate::anthropic::{to_canonical, MessagesRequest};

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
