//! parse_request: the fields it reads, and the 400s (with the field's path in `param`) for
//! bodies Anthropic would refuse; block and tool types it does not know pass the check.

use serde_json::{json, Value};

use super::{base, param_of, parse};
use crate::anthropic::parse_request;

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
