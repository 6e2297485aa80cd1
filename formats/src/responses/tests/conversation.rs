//! A three-turn conversation the way the gateway runs it: each turn's canonical messages
//! (`turn_messages` + `output_messages`) stored and handed back as `history`.

use serde_json::{json, Value};

use super::{body_of, completion, meta, req, tool_call, weather_tool};
use crate::responses::{response_from_canonical, to_canonical};

#[test]
fn three_turns_with_a_tool_call_through_previous_response_id() {
    let mut history: Vec<Value> = Vec::new();

    // Turn 1: the model calls the tool.
    let r1 = req(
        json!({"model": "m", "instructions": "Be brief.", "tools": [weather_tool()],
        "input": "Weather in Paris?"}),
    );
    let c1 = to_canonical(&r1, &history).expect("turn 1");
    assert_eq!(
        body_of(&c1)["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    let answer = completion(
        json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
        "tool_calls",
        Value::Null,
    );
    let f1 = response_from_canonical(&r1, &meta(), &answer, None).expect("turn 1 answer");
    assert_eq!(f1.response["output"][0]["call_id"], "call_1");
    history.extend(c1.turn_messages);
    history.extend(f1.output_messages);

    // Turn 2: the client answers the call; new instructions replace the old ones.
    let r2 = req(
        json!({"model": "m", "instructions": "Be terse.", "tools": [weather_tool()],
        "previous_response_id": "resp_test1",
        "input": [{"type": "function_call_output", "call_id": "call_1", "output": "sunny, 24C"}]}),
    );
    let c2 = to_canonical(&r2, &history).expect("turn 2");
    assert_eq!(
        body_of(&c2)["messages"],
        json!([
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null,
                "tool_calls": [tool_call("call_1", "{\"city\":\"Paris\"}")]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24C"}])
    );
    let answer = completion(
        json!({"role": "assistant", "content": "Sunny, 24C."}),
        "stop",
        Value::Null,
    );
    let f2 = response_from_canonical(&r2, &meta(), &answer, None).expect("turn 2 answer");
    history.extend(c2.turn_messages);
    history.extend(f2.output_messages);

    // Turn 3: no instructions at all: none are carried over.
    let r3 = req(json!({"model": "m", "input": "Thanks!", "previous_response_id": "resp_test2"}));
    let c3 = to_canonical(&r3, &history).expect("turn 3");
    let messages = body_of(&c3)["messages"].clone();
    let roles: Vec<&str> = messages
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "user"]);
    assert_eq!(
        messages[3],
        json!({"role": "assistant", "content": "Sunny, 24C."})
    );
    assert_eq!(messages[4], json!({"role": "user", "content": "Thanks!"}));
}

#[test]
fn a_stateless_client_replays_the_output_items_as_input() {
    // What `input += response.output` sends: output items, with their ids and statuses.
    let r1 = req(json!({"model": "m", "tools": [weather_tool()], "input": "Weather in Paris?"}));
    let answer = completion(
        json!({"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
        "tool_calls",
        Value::Null,
    );
    let f1 = response_from_canonical(&r1, &meta(), &answer, None).expect("answer");
    let mut input = vec![json!({"role": "user", "content": "Weather in Paris?"})];
    input.extend(
        f1.response["output"]
            .as_array()
            .expect("output")
            .iter()
            .cloned(),
    );
    input.push(json!({"type": "function_call_output", "call_id": "call_1", "output": "sunny"}));
    let r2 = req(json!({"model": "m", "tools": [weather_tool()], "input": input}));
    let c2 = to_canonical(&r2, &[]).expect("translates");
    let mut expected = vec![json!({"role": "user", "content": "Weather in Paris?"})];
    expected.extend(f1.output_messages);
    expected.push(json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"}));
    assert_eq!(
        c2.turn_messages, expected,
        "replayed items give the stored messages back"
    );
}
