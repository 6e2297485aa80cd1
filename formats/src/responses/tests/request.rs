//! parse_request and to_canonical: each input mapping, the request fields, and the 400s.

use serde_json::json;

use super::{canonical, error, req, weather_tool};
use crate::responses::{parse_request, to_canonical};

#[test]
fn string_input_is_one_user_message_after_the_instructions() {
    let body = canonical(json!({"model": "m", "input": "Hi", "instructions": "Be brief."}));
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    );
    assert_eq!(body["model"], "m");
    // Gateway state, not the provider's: never forwarded.
    for key in [
        "store",
        "stream",
        "stream_options",
        "metadata",
        "instructions",
        "input",
    ] {
        assert!(body.get(key).is_none(), "{key} leaked");
    }
}

#[test]
fn message_items_map_roles_and_content_parts() {
    let body = canonical(json!({"model": "m", "input": [
        {"role": "developer", "content": "Rules."},
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "More."}]},
        {"role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA",
                "detail": "original"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
            "content": [{"type": "output_text", "text": "A ", "annotations": []},
                        {"type": "output_text", "text": "cat."}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"role": "user", "content": "Thanks"}]}));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "Rules."},
            {"role": "system", "content": [{"type": "text", "text": "More."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "Thanks"}])
    );
}

#[test]
fn function_calls_merge_into_the_assistant_message_before_them() {
    let call = |id: &str, city: &str| {
        json!({"type": "function_call", "id": format!("fc_{id}"), "call_id": id,
            "name": "get_weather", "arguments": format!("{{\"city\":\"{city}\"}}"),
            "status": "completed"})
    };
    let body = canonical(json!({"model": "m", "tools": [weather_tool()], "input": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking."},
        call("c1", "Paris"),
        call("c2", "Rome"),
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2",
            "output": [{"type": "input_text", "text": "rain"},
                {"type": "input_text", "text": "y"}]},
        call("c3", "Oslo")]}));
    let tool_call = |id: &str, city: &str| {
        json!({"id": id, "type": "function", "function": {"name": "get_weather",
            "arguments": format!("{{\"city\":\"{city}\"}}")}})
    };
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Checking.",
                "tool_calls": [tool_call("c1", "Paris"), tool_call("c2", "Rome")]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "c2", "content": "rainy"},
            {"role": "assistant", "content": null, "tool_calls": [tool_call("c3", "Oslo")]}])
    );
}

#[test]
fn request_fields_map_onto_chat_completions() {
    let body = canonical(json!({"model": "m", "input": "x", "stream": true,
        "max_output_tokens": 300, "temperature": 0.5, "top_p": 0.9, "user": "u1",
        "parallel_tool_calls": false, "tools": [weather_tool(),
            {"type": "function", "name": "noop", "parameters": null, "strict": true}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "out", "strict": true,
            "schema": {"type": "object"}}, "verbosity": "low"},
        "reasoning": {"effort": "low"}, "metadata": {"k": "v"}, "store": false}));
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(body["max_tokens"], 300);
    assert_eq!(
        (body["temperature"].clone(), body["top_p"].clone()),
        (json!(0.5), json!(0.9))
    );
    assert_eq!(body["user"], "u1");
    assert_eq!(body["parallel_tool_calls"], false);
    assert_eq!(
        body["tools"],
        json!([
            {"type": "function", "function": {"name": "get_weather",
                "description": "Weather for a city", "parameters": weather_tool()["parameters"]}},
            {"type": "function", "function": {"name": "noop", "strict": true}}])
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(
        body["response_format"],
        json!({"type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}})
    );
    assert!(body.get("reasoning").is_none());
    let plain = |format: serde_json::Value| {
        canonical(json!({"model": "m", "input": "x", "text": {"format": format}}))
            ["response_format"]
            .clone()
    };
    assert_eq!(
        plain(json!({"type": "json_object"})),
        json!({"type": "json_object"})
    );
    assert_eq!(plain(json!({"type": "text"})), serde_json::Value::Null);
    for choice in ["auto", "none", "required"] {
        let body = canonical(
            json!({"model": "m", "input": "x", "tools": [weather_tool()],
            "tool_choice": choice}),
        );
        assert_eq!(body["tool_choice"], choice);
    }
}

#[test]
fn tool_settings_without_tools_are_not_forwarded() {
    // Chat completions refuses tool_choice and parallel_tool_calls when there are no tools.
    let body = canonical(json!({"model": "m", "input": "x", "tool_choice": "none",
        "parallel_tool_calls": true, "tools": []}));
    for key in ["tools", "tool_choice", "parallel_tool_calls"] {
        assert!(body.get(key).is_none(), "{key}");
    }
}

#[test]
fn parsed_request_fields() {
    let r = req(json!({"model": "m", "input": "x"}));
    assert!(r.store && !r.stream && !r.has_tools);
    assert_eq!((r.previous_response_id, r.max_output_tokens), (None, None));
    let r = req(
        json!({"model": "m", "input": "x", "store": false, "stream": true,
        "previous_response_id": "resp_9", "max_output_tokens": 5_000_000_000u64,
        "tools": [weather_tool()]}),
    );
    assert!(!r.store && r.stream && r.has_tools);
    assert_eq!(r.previous_response_id.as_deref(), Some("resp_9"));
    assert_eq!(r.max_output_tokens, Some(u32::MAX), "clamped, not refused");
}

#[test]
fn instructions_stay_out_of_the_stored_turn_and_history_goes_between() {
    let r = req(json!({"model": "m", "input": "Next", "instructions": "Sys"}));
    let history = [
        json!({"role": "user", "content": "First"}),
        json!({"role": "assistant", "content": "Ok"}),
    ];
    let c = to_canonical(&r, &history).expect("translates");
    assert_eq!(
        c.turn_messages,
        vec![json!({"role": "user", "content": "Next"})]
    );
    let body = super::body_of(&c);
    let roles: Vec<_> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    // An empty input is fine when there is an earlier turn to continue, not otherwise.
    let empty = req(json!({"model": "m", "input": []}));
    assert!(to_canonical(&empty, &history).is_ok());
    assert_eq!(
        to_canonical(&empty, &[])
            .expect_err("nothing to send")
            .param
            .as_deref(),
        Some("input")
    );
}

#[test]
fn bad_requests_name_the_parameter() {
    let cases = [
        (json!({"input": "x"}), "model"),
        (json!({"model": "", "input": "x"}), "model"),
        (json!({"model": "m"}), "input"),
        (json!({"model": "m", "input": 3}), "input"),
        (json!({"model": "m", "input": ["x"]}), "input[0]"),
        (
            json!({"model": "m", "input": [{"content": "x"}]}),
            "input[0].role",
        ),
        (
            json!({"model": "m", "input": [{"role": "bot", "content": "x"}]}),
            "input[0].role",
        ),
        (
            json!({"model": "m", "input": [{"role": "user"}]}),
            "input[0].content",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file",
            "file_id": "f"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image",
            "file_id": "f", "detail": "auto"}]}]}),
            "input[0].content[0].file_id",
        ),
        (
            json!({"model": "m", "input": [{"role": "system", "content": [{"type": "input_image",
            "image_url": "https://x", "detail": "auto"}]}]}),
            "input[0].content[0]",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}),
            "input[0].content[0].text",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": "a"},
            {"type": "item_reference", "id": "msg_1"}]}),
            "input[1].type",
        ),
        (
            json!({"model": "m", "input": [{"id": "msg_1"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": [{"type": "web_search_call", "id": "w"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f",
            "arguments": "{}"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}),
            "input[0].output",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
            "tools[0].name",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f",
            "parameters": "x"}]}),
            "tools[0].parameters",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [weather_tool()],
            "tool_choice": {"type": "function", "name": "other"}}),
            "tool_choice.name",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": {"type": "file_search"}}),
            "tool_choice.type",
        ),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": 0}),
            "max_output_tokens",
        ),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": "9"}),
            "max_output_tokens",
        ),
        (
            json!({"model": "m", "input": "x", "temperature": 3}),
            "temperature",
        ),
        (json!({"model": "m", "input": "x", "top_p": -1}), "top_p"),
        (
            json!({"model": "m", "input": "x", "stream": "yes"}),
            "stream",
        ),
        (json!({"model": "m", "input": "x", "store": 1}), "store"),
        (
            json!({"model": "m", "input": "x", "instructions": 1}),
            "instructions",
        ),
        (
            json!({"model": "m", "input": "x", "previous_response_id": ""}),
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": "x", "metadata": {"k": 1}}),
            "metadata.k",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema",
            "name": "n"}}}),
            "text.format.schema",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}),
            "text.format.type",
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": "x", "conversation": "conv_1"}),
            "conversation",
        ),
    ];
    for (body, param) in cases {
        let e = error(body.clone());
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some(param)),
            "{body}: {e:?}"
        );
        assert_eq!(e.code, "invalid_request_error");
    }
    let metadata: serde_json::Map<_, _> = (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(
        error(json!({"model": "m", "input": "x", "metadata": metadata}))
            .param
            .as_deref(),
        Some("metadata")
    );
}

#[test]
fn a_body_that_is_not_a_json_object_names_no_parameter() {
    for body in [&b"{not json"[..], b"[1]", b"", b"\"x\""] {
        let e = parse_request(body).expect_err("refused");
        assert_eq!((e.status, e.param), (400, None));
    }
}
