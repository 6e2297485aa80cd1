//! response_from_canonical: output items, echoed request fields, usage, incomplete answers.

use serde_json::{json, Value};

use super::{completion, meta, req, tool_call, weather_tool};
use crate::responses::response_from_canonical;
use crate::Usage;

fn usage_body() -> Value {
    json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2}})
}

#[test]
fn text_answer_is_a_completed_message_item_with_the_request_echoed() {
    let r = req(
        json!({"model": "gpt-test", "input": "Hi", "instructions": "Be brief.",
        "temperature": 0.2, "metadata": {"k": "v"}, "previous_response_id": "resp_0"}),
    );
    let exact = Usage {
        input: 10,
        output: 7,
        cache_read: 3,
        cache_write: 2,
        reasoning: 1,
    };
    let canonical = completion(
        json!({"role": "assistant", "content": "Hello!"}),
        "stop",
        usage_body(),
    );
    let done = response_from_canonical(&r, &meta(), &canonical, Some(&exact)).expect("translates");
    let resp = &done.response;
    assert_eq!(
        serde_json::from_slice::<Value>(&done.body).expect("JSON"),
        *resp
    );
    assert_eq!(
        (resp["id"].clone(), resp["object"].clone()),
        (json!("resp_test1"), json!("response"))
    );
    assert_eq!(
        (resp["status"].clone(), resp["model"].clone()),
        (json!("completed"), json!("gpt-test"))
    );
    assert_eq!(resp["created_at"], 1_700_000_000);
    assert!(resp["completed_at"]
        .as_u64()
        .is_some_and(|t| t >= 1_700_000_000));
    assert_eq!(
        resp["output"],
        json!([{"type": "message", "id": "msg_test1_0", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello!", "annotations": [],
                "logprobs": []}]}])
    );
    // The gateway's exact usage wins over the body's.
    assert_eq!(
        resp["usage"],
        json!({"input_tokens": 15,
            "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 2},
            "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 1},
            "total_tokens": 22})
    );
    assert_eq!(resp["instructions"], "Be brief.");
    assert_eq!(resp["temperature"], 0.2);
    assert_eq!(resp["top_p"], Value::Null);
    assert_eq!(resp["max_output_tokens"], Value::Null);
    assert_eq!(resp["previous_response_id"], "resp_0");
    assert_eq!(
        (resp["store"].clone(), resp["parallel_tool_calls"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(resp["metadata"], json!({"k": "v"}));
    assert_eq!(
        (resp["tools"].clone(), resp["tool_choice"].clone()),
        (json!([]), json!("auto"))
    );
    assert_eq!(resp["text"], json!({"format": {"type": "text"}}));
    assert_eq!(
        (resp["error"].clone(), resp["incomplete_details"].clone()),
        (Value::Null, Value::Null)
    );
    assert!(
        resp.get("user").is_none(),
        "user is a non-nullable string: absent when not given"
    );
    assert_eq!(
        done.output_messages,
        vec![json!({"role": "assistant", "content": "Hello!"})]
    );
}

#[test]
fn usage_comes_from_the_body_when_the_gateway_has_none() {
    let r = req(json!({"model": "m", "input": "Hi"}));
    let canonical = completion(
        json!({"role": "assistant", "content": "x"}),
        "stop",
        usage_body(),
    );
    let done = response_from_canonical(&r, &meta(), &canonical, None).expect("translates");
    assert_eq!(
        done.response["usage"],
        json!({"input_tokens": 12,
            "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
            "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2},
            "total_tokens": 17})
    );
    let canonical = completion(
        json!({"role": "assistant", "content": "x"}),
        "stop",
        Value::Null,
    );
    let done = response_from_canonical(&r, &meta(), &canonical, None).expect("translates");
    assert!(
        done.response.get("usage").is_none(),
        "usage is not nullable: left out"
    );
}

#[test]
fn tool_calls_become_function_call_items() {
    let r = req(
        json!({"model": "m", "input": "Weather?", "tools": [weather_tool()],
        "tool_choice": "required", "parallel_tool_calls": false, "user": "u"}),
    );
    let message = json!({"role": "assistant", "content": "Let me check.", "tool_calls": [
        tool_call("call_a", "{\"city\":\"Paris\"}"),
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]});
    let canonical = completion(message, "tool_calls", usage_body());
    let done = response_from_canonical(&r, &meta(), &canonical, None).expect("translates");
    let out = &done.response["output"];
    assert_eq!(out[0]["type"], "message");
    assert_eq!(
        out[1],
        json!({"type": "function_call", "id": "fc_test1_1", "call_id": "call_a",
            "name": "get_weather", "arguments": "{\"city\":\"Paris\"}", "status": "completed"})
    );
    // No id from the provider: one is made up, since call_id is how the client answers.
    assert_eq!(
        (out[2]["call_id"].clone(), out[2]["arguments"].clone()),
        (json!("call_test1_2"), json!("{\"city\":\"Rome\"}"))
    );
    let resp = &done.response;
    assert_eq!(resp["status"], "completed");
    assert_eq!(
        (
            resp["tool_choice"].clone(),
            resp["parallel_tool_calls"].clone()
        ),
        (json!("required"), json!(false))
    );
    assert_eq!(resp["user"], "u");
    assert_eq!(
        resp["tools"],
        json!([{"type": "function", "name": "get_weather", "description": "Weather for a city",
            "parameters": weather_tool()["parameters"], "strict": null}])
    );
    assert_eq!(
        done.output_messages,
        vec![
            json!({"role": "assistant", "content": "Let me check.", "tool_calls": [
            tool_call("call_a", "{\"city\":\"Paris\"}"),
            tool_call("call_test1_2", "{\"city\":\"Rome\"}")]})
        ]
    );
    // Tool calls only: content null in the stored message.
    let message = json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]});
    let done = response_from_canonical(
        &r,
        &meta(),
        &completion(message, "tool_calls", Value::Null),
        None,
    )
    .expect("translates");
    assert_eq!(done.response["output"][0]["id"], "fc_test1_0");
    assert_eq!(done.output_messages[0]["content"], Value::Null);
}

#[test]
fn cut_answers_are_incomplete() {
    let r = req(json!({"model": "m", "input": "Hi", "max_output_tokens": 16}));
    for (finish, reason) in [
        ("length", "max_output_tokens"),
        ("content_filter", "content_filter"),
    ] {
        let canonical = completion(
            json!({"role": "assistant", "content": "Once upon"}),
            finish,
            Value::Null,
        );
        let done = response_from_canonical(&r, &meta(), &canonical, None).expect("translates");
        let resp = &done.response;
        assert_eq!(resp["status"], "incomplete");
        assert_eq!(resp["incomplete_details"], json!({"reason": reason}));
        assert_eq!(resp["output"][0]["status"], "incomplete");
        assert_eq!(
            (
                resp["completed_at"].clone(),
                resp["max_output_tokens"].clone()
            ),
            (Value::Null, json!(16))
        );
    }
}

#[test]
fn refusals_and_empty_answers() {
    let r = req(json!({"model": "m", "input": "Hi"}));
    let message =
        json!({"role": "assistant", "content": null, "refusal": "I can't help with that."});
    let done =
        response_from_canonical(&r, &meta(), &completion(message, "stop", Value::Null), None)
            .expect("translates");
    assert_eq!(
        done.response["output"][0]["content"],
        json!([{"type": "refusal", "refusal": "I can't help with that."}])
    );
    assert_eq!(
        done.output_messages[0]["content"],
        "I can't help with that."
    );
    let message = json!({"role": "assistant", "content": ""});
    let done =
        response_from_canonical(&r, &meta(), &completion(message, "stop", Value::Null), None)
            .expect("translates");
    assert_eq!(done.response["output"], json!([]));
    assert!(
        done.output_messages.is_empty(),
        "nothing said, nothing stored"
    );
    // Content as text parts (some providers).
    let message = json!({"role": "assistant",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]});
    let done =
        response_from_canonical(&r, &meta(), &completion(message, "stop", Value::Null), None)
            .expect("translates");
    assert_eq!(done.response["output"][0]["content"][0]["text"], "ab");
}

#[test]
fn malformed_upstream_answers_are_502() {
    let r = req(json!({"model": "m", "input": "Hi"}));
    let bad: [&[u8]; 7] = [
        b"not json",
        b"[]",
        br#"{"choices": []}"#,
        br#"{"choices": [{"message": "x"}]}"#,
        br#"{"choices": [{"message": {"content": 5}}]}"#,
        br#"{"choices": [{"message": {"tool_calls": {}}}]}"#,
        br#"{"choices": [{"message": {"tool_calls": [{"function": {}}]}}]}"#,
    ];
    for body in bad {
        let e = response_from_canonical(&r, &meta(), body, None).expect_err("refused");
        assert_eq!((e.status, e.code.as_str()), (502, "upstream_error"));
    }
}
