//! StreamAdapter: event order and numbering, reassembly into the final Response, incomplete and
//! failed streams, malformed chunks.

use serde_json::{json, Value};

use super::{call_delta, chunk, completion, data, meta, reassemble, req, types, weather_tool};
use crate::responses::{response_from_canonical, ResponsesRequest, StreamAdapter};
use crate::{Event, Usage};

fn stream_req() -> ResponsesRequest {
    req(
        json!({"model": "gpt-test", "input": "Weather?", "stream": true,
        "instructions": "Be brief.", "tools": [weather_tool()]}),
    )
}

fn usage_chunk() -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "up",
        "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}})
    .to_string()
}

/// Text in pieces, then a tool call whose arguments come in pieces, a finish reason, the usage
/// chunk and `[DONE]`.
pub(super) fn text_then_call() -> Vec<String> {
    vec![
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"content": "Let me "}), None),
        chunk(json!({"content": "check."}), None),
        chunk(call_delta(0, Some("call_1"), Some("get_weather"), ""), None),
        chunk(call_delta(0, None, None, "{\"city\":"), None),
        chunk(call_delta(0, None, None, "\"Paris\"}"), None),
        chunk(json!({}), Some("tool_calls")),
        usage_chunk(),
        "[DONE]".into(),
    ]
}

fn run(adapter: &mut StreamAdapter, chunks: &[String]) -> Vec<Event> {
    chunks
        .iter()
        .flat_map(|c| adapter.on_event(c).expect("a valid chunk"))
        .collect()
}

fn without_completed_at(mut v: Value) -> Value {
    v["completed_at"] = Value::Null;
    v
}

#[test]
fn text_then_tool_call_reassembles_into_the_final_response() {
    let r = stream_req();
    let mut adapter = StreamAdapter::new(&r, meta());
    let mut events = run(&mut adapter, &text_then_call());
    let exact = Usage {
        input: 18,
        output: 9,
        cache_read: 2,
        cache_write: 0,
        reasoning: 0,
    };
    let (tail, done) = adapter.finish(Some(&exact));
    events.extend(tail);
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let (response, output) = reassemble(&events);
    assert_eq!(
        response, done.response,
        "the completed event carries the finished Response"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&done.body).expect("JSON"),
        done.response
    );
    assert_eq!(Value::Array(output), done.response["output"]);
    assert_eq!(
        done.response["usage"]["input_tokens"], 20,
        "the gateway's usage"
    );
    // The same answer, not streamed, gives the same Response.
    let answer = completion(
        json!({"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
        "tool_calls",
        Value::Null,
    );
    let whole = response_from_canonical(&r, &meta(), &answer, Some(&exact)).expect("translates");
    assert_eq!(
        without_completed_at(whole.response),
        without_completed_at(done.response.clone())
    );
    assert_eq!(whole.output_messages, done.output_messages);
    // Finishing again emits nothing and gives the same record.
    let (again, same) = adapter.finish(None);
    assert!(again.is_empty());
    assert_eq!(same, done);
    assert!(adapter
        .on_event(&chunk(json!({"content": "late"}), None))
        .expect("ignored")
        .is_empty());
    assert!(adapter.fail("server_error", "late").is_empty());
}

#[test]
fn usage_chunk_is_used_when_the_gateway_has_none() {
    let mut adapter = StreamAdapter::new(&stream_req(), meta());
    run(&mut adapter, &text_then_call());
    let (_, done) = adapter.finish(None);
    assert_eq!(done.response["usage"]["total_tokens"], 29);
}

#[test]
fn cut_stream_is_incomplete() {
    let mut adapter = StreamAdapter::new(&stream_req(), meta());
    let mut events = run(
        &mut adapter,
        &[
            chunk(json!({"content": "Once upon"}), None),
            chunk(json!({"content": " a time"}), Some("length")),
            usage_chunk(),
            "[DONE]".into(),
        ],
    );
    let (tail, done) = adapter.finish(None);
    events.extend(tail);
    assert_eq!(
        events.last().and_then(|e| e.event.as_deref()),
        Some("response.incomplete")
    );
    let (response, output) = reassemble(&events);
    assert_eq!(response, done.response);
    assert_eq!(Value::Array(output), done.response["output"]);
    assert_eq!(response["status"], "incomplete");
    assert_eq!(
        response["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(response["output"][0]["status"], "incomplete");
}

#[test]
fn broken_stream_fails_with_what_was_generated() {
    let mut adapter = StreamAdapter::new(&stream_req(), meta());
    let mut events = run(
        &mut adapter,
        &[chunk(json!({"content": "Hal"}), None), usage_chunk()],
    );
    events.extend(adapter.fail("upstream_timeout", "The provider stopped sending."));
    let (response, _) = reassemble(&events);
    assert_eq!(response["status"], "failed");
    // The gateway's code is outside ResponseErrorCode: server_error, message kept.
    assert_eq!(
        response["error"],
        json!({"code": "server_error", "message": "The provider stopped sending."})
    );
    assert_eq!(response["output"][0]["status"], "incomplete");
    assert_eq!(response["output"][0]["content"][0]["text"], "Hal");
    assert_eq!(response["usage"]["output_tokens"], 9);
    assert!(adapter.fail("server_error", "again").is_empty());
    let (tail, done) = adapter.finish(None);
    assert!(tail.is_empty());
    assert_eq!(done.response, response);
    // A stream that fails before any chunk still opens with response.created.
    let mut adapter = StreamAdapter::new(&stream_req(), meta());
    let events = adapter.fail("rate_limit_exceeded", "Slow down.");
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.in_progress",
            "response.failed"
        ]
    );
    assert_eq!(
        data(&events[2])["response"]["error"]["code"],
        "rate_limit_exceeded"
    );
}

#[test]
fn created_and_in_progress_come_first_and_once() {
    let mut adapter = StreamAdapter::new(&stream_req(), meta());
    let events = adapter.on_event("[DONE]").expect("done marker");
    assert_eq!(types(&events), ["response.created", "response.in_progress"]);
    let created = data(&events[0]);
    assert_eq!(created["response"]["id"], "resp_test1");
    assert_eq!(created["response"]["instructions"], "Be brief.");
    assert!(created["response"].get("usage").is_none());
    assert!(adapter.on_event(&usage_chunk()).expect("usage").is_empty());
    let (events, done) = adapter.finish(None);
    assert_eq!(types(&events), ["response.completed"]);
    assert_eq!(data(&events[0])["sequence_number"], 2);
    assert_eq!(done.response["output"], json!([]));
}

#[test]
fn malformed_chunks_are_502_and_change_nothing() {
    let mut adapter = StreamAdapter::new(&stream_req(), meta());
    for bad in [
        "{",
        "[]",
        "{\"choices\": 3}",
        "{\"choices\": [1]}",
        "{\"choices\": [{\"delta\": {\"content\": 5}}]}",
        "{\"choices\": [{\"delta\": {\"tool_calls\": [7]}}]}",
        "{\"error\": {\"message\": \"overloaded\"}}",
    ] {
        let e = adapter.on_event(bad).expect_err("refused");
        assert_eq!(
            (e.status, e.code.as_str()),
            (502, "upstream_error"),
            "{bad}"
        );
    }
    let events = run(&mut adapter, &[chunk(json!({"content": "ok"}), None)]);
    assert_eq!(data(&events[0])["type"], "response.created");
    assert_eq!(
        data(&events[0])["sequence_number"],
        0,
        "nothing was emitted before"
    );
}

#[test]
fn parallel_calls_close_in_turn_and_late_arguments_are_refused() {
    let mut adapter = StreamAdapter::new(&stream_req(), meta());
    let mut events = run(
        &mut adapter,
        &[
            // One chunk carrying two whole calls (Gemini-style), the first without an id, the
            // second repeating its id and name on a later empty delta.
            chunk(
                json!({"tool_calls": [
                    {"index": 0,
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"A\"}"}},
                    {"index": 1, "id": "call_b",
                        "function": {"name": "get_weather", "arguments": "{\"city\":"}}]}),
                None,
            ),
            chunk(
                call_delta(1, Some("call_b"), Some("get_weather"), "\"B\"}"),
                None,
            ),
            chunk(call_delta(0, None, None, ""), Some("tool_calls")),
        ],
    );
    let e = adapter
        .on_event(&chunk(call_delta(0, None, None, "more"), None))
        .expect_err("late");
    assert_eq!(e.status, 502);
    let (tail, done) = adapter.finish(None);
    events.extend(tail);
    let (response, output) = reassemble(&events);
    assert_eq!(Value::Array(output), response["output"]);
    let out = &done.response["output"];
    assert_eq!(
        (out[0]["call_id"].clone(), out[0]["arguments"].clone()),
        (json!("call_test1_0"), json!("{\"city\":\"A\"}"))
    );
    assert_eq!(
        (out[1]["call_id"].clone(), out[1]["arguments"].clone()),
        (json!("call_b"), json!("{\"city\":\"B\"}"))
    );
    assert_eq!(
        done.output_messages[0]["tool_calls"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[test]
fn refusal_and_text_parts_stream_in_one_message() {
    let mut adapter = StreamAdapter::new(&stream_req(), meta());
    let mut events = run(
        &mut adapter,
        &[
            chunk(json!({"content": "Hm. "}), None),
            chunk(json!({"refusal": "I can't"}), None),
            chunk(json!({"refusal": " help."}), Some("stop")),
        ],
    );
    let (tail, done) = adapter.finish(None);
    events.extend(tail);
    let (response, output) = reassemble(&events);
    assert_eq!(Value::Array(output), response["output"]);
    assert_eq!(
        done.response["output"][0]["content"],
        json!([{"type": "output_text", "text": "Hm. ", "annotations": [], "logprobs": []},
            {"type": "refusal", "refusal": "I can't help."}])
    );
    assert!(types(&events).contains(&"response.refusal.done".to_owned()));
}

#[test]
fn sequence_numbers_increase_across_calls() {
    let mut adapter = StreamAdapter::new(&stream_req(), meta());
    let mut numbers = Vec::new();
    for c in text_then_call() {
        numbers.extend(
            adapter
                .on_event(&c)
                .expect("valid")
                .iter()
                .map(|e| data(e)["sequence_number"].clone()),
        );
    }
    numbers.extend(
        adapter
            .finish(None)
            .0
            .iter()
            .map(|e| data(e)["sequence_number"].clone()),
    );
    let expected: Vec<Value> = (0..numbers.len()).map(|n| json!(n)).collect();
    assert_eq!(numbers, expected);
}
