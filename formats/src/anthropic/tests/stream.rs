//! StreamAdapter: canonical chunk streams translated to Anthropic events, checked by
//! reassembling them as the SDK does, including the tool-call quirks of OpenAI-compatible
//! providers and malformed chunks.

use serde_json::{json, Value};

use super::{chunk, run, tool_piece, Accumulator};
use crate::anthropic::StreamAdapter;
use crate::Usage;

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
