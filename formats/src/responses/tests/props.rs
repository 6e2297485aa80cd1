//! Property tests: no client body and no upstream chunk can panic the adapter.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::meta;
use crate::responses::{parse_request, response_from_canonical, to_canonical, StreamAdapter};

/// The names the adapter looks at, so that random JSON reaches deep paths.
const WORDS: &[&str] = &[
    "model",
    "input",
    "type",
    "role",
    "content",
    "text",
    "image_url",
    "call_id",
    "name",
    "arguments",
    "output",
    "tools",
    "tool_choice",
    "instructions",
    "max_output_tokens",
    "stream",
    "store",
    "metadata",
    "parameters",
    "strict",
    "format",
    "schema",
    "detail",
    "file_id",
    "id",
    "temperature",
    "top_p",
    "message",
    "function_call",
    "function_call_output",
    "input_text",
    "input_image",
    "output_text",
    "refusal",
    "user",
    "assistant",
    "developer",
    "function",
    "json_schema",
    "json_object",
    "reasoning",
    "choices",
    "delta",
    "tool_calls",
    "index",
    "finish_reason",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "error",
    "length",
    "[DONE]",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(WORDS).prop_map(str::to_owned),
        "[a-z_]{0,6}"
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        word().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..7)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A request-shaped body: a model, then random fields (often the input).
fn request_body() -> impl Strategy<Value = Value> {
    (
        json_value(),
        prop::collection::vec((word(), json_value()), 0..6),
    )
        .prop_map(|(input, rest)| {
            let mut m: Map<String, Value> = rest.into_iter().collect();
            m.insert("model".into(), "m".into());
            m.entry("input").or_insert(input);
            Value::Object(m)
        })
}

/// A chunk-shaped payload: `choices: [{delta: random}]`, or random JSON, or random text.
fn stream_data() -> impl Strategy<Value = String> {
    prop_oneof![
        (json_value(), json_value()).prop_map(|(delta, reason)| {
            serde_json::json!({"choices": [{"index": 0, "delta": delta, "finish_reason": reason}]})
                .to_string()
        }),
        json_value().prop_map(|v| v.to_string()),
        ".{0,40}",
    ]
}

proptest! {
    #[test]
    fn parse_request_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_request(&bytes);
    }

    #[test]
    fn requests_never_panic(
        body in prop_oneof![json_value(), request_body()],
        history in prop::collection::vec(json_value(), 0..3),
        answer in json_value(),
    ) {
        if let Ok(req) = parse_request(body.to_string().as_bytes()) {
            let _ = to_canonical(&req, &history);
            let _ = response_from_canonical(&req, &meta(), answer.to_string().as_bytes(), None);
        }
    }

    #[test]
    fn streams_never_panic(
        data in prop::collection::vec(stream_data(), 0..8),
        fail in any::<bool>(),
    ) {
        let req = parse_request(br#"{"model": "m", "input": "x", "stream": true}"#)
            .map_err(|e| TestCaseError::fail(e.message))?;
        let mut adapter = StreamAdapter::new(&req, meta());
        let mut count = 0;
        for d in &data {
            count += adapter.on_event(d).map(|e| e.len()).unwrap_or(0);
        }
        let end = if fail { adapter.fail("server_error", "x") } else { adapter.finish(None).0 };
        // Whatever came in, the stream ends with a terminal event, numbered after the rest.
        let last = end.last().map(|e| e.data.as_str()).unwrap_or_default();
        let last: Value =
            serde_json::from_str(last).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(last["sequence_number"].as_u64(), Some((count + end.len() - 1) as u64));
    }
}
