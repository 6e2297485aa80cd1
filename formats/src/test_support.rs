//! Test-only helpers shared by the adapters' property tests.

use proptest::prelude::*;
use serde_json::{Map, Value};

/// Field names and strings the adapters look for, so generated JSON reaches deep code paths
/// instead of being rejected at the first check.
const WORDS: &[&str] = &[
    "model",
    "messages",
    "role",
    "user",
    "assistant",
    "system",
    "tool",
    "content",
    "type",
    "text",
    "image",
    "source",
    "base64",
    "url",
    "media_type",
    "data",
    "tool_use",
    "tool_result",
    "tool_use_id",
    "is_error",
    "id",
    "name",
    "input",
    "document",
    "thinking",
    "redacted_thinking",
    "tools",
    "input_schema",
    "tool_choice",
    "auto",
    "any",
    "none",
    "stream",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "top_p",
    "metadata",
    "user_id",
    "choices",
    "delta",
    "index",
    "tool_calls",
    "function",
    "arguments",
    "finish_reason",
    "stop",
    "length",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "message",
    "error",
    "image_url",
    "disable_parallel_tool_use",
    "refusal",
    "[DONE]",
    "",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

/// Arbitrary JSON, biased towards the adapters' vocabulary.
pub(crate) fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((word(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}
