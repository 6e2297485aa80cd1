//! Strategies for the provider-anthropic property tests: arbitrary JSON (biased towards the keys
//! the translation reads) and OpenAI chat requests. Anthropic messages and streams are in
//! `streams.rs`.
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use tollgate_plugin_sdk::serde_json::{json, Map, Value};

/// Keys the translations read, so random objects often hit real code paths.
const KEYS: &[&str] = &[
    "type",
    "text",
    "index",
    "delta",
    "message",
    "content_block",
    "usage",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "partial_json",
    "id",
    "name",
    "model",
    "stop_reason",
    "error",
    "messages",
    "role",
    "content",
    "tool_calls",
    "function",
    "arguments",
    "image_url",
    "url",
    "input",
    "stream_options",
    "include_usage",
    "cache_control",
    "response_format",
    "json_schema",
    "schema",
    "strict",
    "thinking",
    "signature",
    "system",
    "stream",
];

/// Values of `type` fields and roles that mean something to the translation.
const WORDS: &[&str] = &[
    "text",
    "tool_use",
    "text_delta",
    "input_json_delta",
    "image_url",
    "message_start",
    "message_stop",
    "message_delta",
    "content_block_start",
    "content_block_delta",
    "error",
    "overloaded_error",
    "user",
    "assistant",
    "system",
    "tool",
    "end_turn",
    "tool_use",
    "max_tokens",
    "data:image/png;base64,AAAA",
    "https://example.com/a.png",
    "[DONE]",
    "json_object",
    "json_schema",
    "ephemeral",
    "tollgate_json_response",
];

pub fn arb_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z_ ]{0,12}",
        2 => any::<String>(),
        2 => select(WORDS).prop_map(str::to_string),
    ]
    .boxed()
}

fn arb_key() -> BoxedStrategy<String> {
    prop_oneof![3 => select(KEYS).prop_map(str::to_string), 1 => "[a-z]{1,6}"].boxed()
}

/// A token count as a provider might (mis)report it: small, huge, negative, float, or not a number.
pub fn arb_count() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => (0u64..100_000).prop_map(|n| json!(n)),
        1 => Just(json!(u64::MAX)),
        1 => any::<u64>().prop_map(|n| json!(n)),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => Just(json!(1e300)),
        1 => Just(Value::Null),
        1 => arb_string().prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value, up to 4 levels deep.
pub fn arb_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_count(),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((arb_key(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

pub fn arb_object() -> BoxedStrategy<Map<String, Value>> {
    vec((arb_key(), arb_json()), 0..4)
        .prop_map(|kv| kv.into_iter().collect())
        .boxed()
}

// ---- OpenAI chat requests ----------------------------------------------------------------

/// A prompt-caching mark, sometimes: valid ones are what Anthropic accepts, the others
/// anything.
fn mark(valid: bool) -> BoxedStrategy<Option<Value>> {
    let good = prop_oneof![
        Just(json!({"type": "ephemeral"})),
        Just(json!({"type": "ephemeral", "ttl": "1h"})),
    ];
    if valid {
        return proptest::option::weighted(0.25, good).boxed();
    }
    proptest::option::weighted(0.3, prop_oneof![2 => good, 1 => arb_json()]).boxed()
}

/// `object` with `cache_control` set when `mark` is one.
fn marked(mut object: Value, mark: Option<Value>) -> Value {
    if let (Some(o), Some(m)) = (object.as_object_mut(), mark) {
        o.insert("cache_control".into(), m);
    }
    object
}

fn image_url(valid: bool) -> BoxedStrategy<Value> {
    let good = prop_oneof![
        ("image/(png|jpeg|gif|webp)", "[A-Za-z0-9+/]{0,40}={0,2}")
            .prop_map(|(t, d)| json!(format!("data:{t};base64,{d}"))),
        "(http|https|HTTPS)://[a-z]{1,10}\\.example/[a-z]{0,8}\\.png".prop_map(Value::String),
    ];
    if valid {
        return good.boxed();
    }
    prop_oneof![
        2 => good,
        1 => "data:[a-z/]{0,10}(;base64)?,[ -~]{0,20}".prop_map(Value::String),
        1 => "[ -~]{0,20}".prop_map(Value::String),
        1 => arb_json(),
    ]
    .boxed()
}

fn content_part(valid: bool) -> BoxedStrategy<Value> {
    let good = prop_oneof![
        3 => arb_string().prop_map(|t| json!({"type": "text", "text": t})),
        1 => image_url(true).prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
    ];
    let good = (good, mark(valid)).prop_map(|(part, m)| marked(part, m));
    if valid {
        return good.boxed();
    }
    prop_oneof![
        4 => good,
        1 => image_url(false).prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
        1 => image_url(false).prop_map(|u| json!({"type": "image_url", "image_url": u})),
        1 => arb_json().prop_map(|t| json!({"type": "text", "text": t})),
        1 => arb_string().prop_map(|t| json!({"type": t})),
        1 => arb_json(),
    ]
    .boxed()
}

fn content(valid: bool) -> BoxedStrategy<Value> {
    let good = prop_oneof![
        1 => Just(Value::Null),
        2 => arb_string().prop_map(Value::String),
        2 => vec(content_part(valid), 0..4).prop_map(Value::Array),
    ];
    if valid {
        return good.boxed();
    }
    prop_oneof![5 => good, 1 => arb_json()].boxed()
}

fn tool_call(valid: bool) -> BoxedStrategy<Value> {
    let arguments = if valid {
        arb_object()
            .prop_map(|o| json!(Value::Object(o).to_string()))
            .boxed()
    } else {
        prop_oneof![
            2 => arb_object().prop_map(|o| json!(Value::Object(o).to_string())),
            1 => arb_string().prop_map(Value::String),
            1 => arb_json().prop_map(|v| json!(v.to_string())),
            1 => arb_json(),
        ]
        .boxed()
    };
    ("call_[a-z0-9]{1,8}", "[a-z_]{1,10}", arguments)
        .prop_map(|(id, name, arguments)| {
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
        })
        .boxed()
}

fn chat_message(valid: bool) -> BoxedStrategy<Value> {
    let good = prop_oneof![
        (select(&["system", "developer"][..]), content(valid))
            .prop_map(|(role, c)| json!({"role": role, "content": c})),
        content(valid).prop_map(|c| json!({"role": "user", "content": c})),
        (content(valid), vec(tool_call(valid), 0..3)).prop_map(|(c, calls)| {
            let mut m = json!({"role": "assistant", "content": c});
            if !calls.is_empty() {
                m["tool_calls"] = Value::Array(calls);
            }
            m
        }),
        ("call_[a-z0-9]{1,8}", content(valid))
            .prop_map(|(id, c)| json!({"role": "tool", "tool_call_id": id, "content": c})),
    ];
    let good = (good, mark(valid)).prop_map(|(message, m)| marked(message, m));
    if valid {
        return good.boxed();
    }
    prop_oneof![
        6 => good,
        1 => (arb_json(), content(false)).prop_map(|(role, c)| json!({"role": role, "content": c})),
        1 => arb_json(),
    ]
    .boxed()
}

fn tool_def(valid: bool) -> BoxedStrategy<Value> {
    (
        "[a-z_]{1,10}",
        proptest::option::of(arb_string()),
        proptest::option::of(arb_object()),
        mark(valid),
        any::<bool>(),
    )
        .prop_map(|(name, description, parameters, m, on_tool)| {
            let function = json!({"name": name, "description": description,
                "parameters": parameters});
            // OpenRouter marks the tool, others the function.
            if on_tool {
                marked(json!({"type": "function", "function": function}), m)
            } else {
                json!({"type": "function", "function": marked(function, m)})
            }
        })
        .boxed()
}

/// A `response_format`: valid ones as OpenAI documents them, the others anything.
fn response_format(valid: bool) -> BoxedStrategy<Value> {
    let good = prop_oneof![
        Just(json!({"type": "text"})),
        Just(json!({"type": "json_object"})),
        (
            "[a-z_]{1,10}",
            proptest::option::of(arb_object()),
            proptest::option::of(any::<bool>())
        )
            .prop_map(|(name, schema, strict)| {
                let mut spec = json!({"name": name});
                if let Some(schema) = schema {
                    spec["schema"] = json!({"type": "object", "properties": schema});
                }
                if let Some(strict) = strict {
                    spec["strict"] = json!(strict);
                }
                json!({"type": "json_schema", "json_schema": spec})
            }),
    ];
    if valid {
        return good.boxed();
    }
    prop_oneof![
        3 => good,
        1 => arb_json().prop_map(|spec| json!({"type": "json_schema", "json_schema": spec})),
        1 => arb_json(),
    ]
    .boxed()
}

/// An OpenAI chat completions request. `valid` requests use only what the translation
/// supports, so they must translate; the others may also carry wrong types and unknown roles.
pub fn chat_request(valid: bool) -> BoxedStrategy<Value> {
    let optional = |s: BoxedStrategy<Value>| proptest::option::weighted(0.4, s);
    let tool_choice = prop_oneof![
        select(&["auto", "none", "required"][..]).prop_map(|s| json!(s)),
        "[a-z_]{1,10}".prop_map(|n| json!({"type": "function", "function": {"name": n}})),
        arb_json(),
    ];
    let stop = prop_oneof![
        arb_string().prop_map(Value::String),
        vec(arb_string(), 0..3).prop_map(|v| json!(v))
    ];
    (
        vec(chat_message(valid), 0..8),
        vec(tool_def(valid), 0..3),
        optional(tool_choice.boxed()),
        optional(arb_count()),
        optional(arb_count()),
        optional(stop.boxed()),
        optional(
            any::<bool>()
                .prop_map(|b| json!({"include_usage": b}))
                .boxed(),
        ),
        optional(arb_json()),
        optional(response_format(valid)),
        arb_object(),
    )
        .prop_map(
            move |(
                messages,
                tools,
                tool_choice,
                max_tokens,
                max_completion,
                stop,
                opts,
                user,
                format,
                extra,
            )| {
                let mut req = extra;
                if valid {
                    // A random one would not be valid.
                    req.remove("response_format");
                }
                req.insert("model".into(), json!("gpt-ish"));
                req.insert("messages".into(), Value::Array(messages));
                if !tools.is_empty() {
                    req.insert("tools".into(), Value::Array(tools));
                }
                let fields = [
                    ("tool_choice", tool_choice),
                    ("max_tokens", max_tokens),
                    ("max_completion_tokens", max_completion),
                    ("stop", stop),
                    ("stream_options", opts),
                    ("user", user),
                    ("response_format", format),
                ];
                for (key, value) in fields {
                    if let Some(v) = value {
                        req.insert(key.into(), v);
                    }
                }
                Value::Object(req)
            },
        )
        .boxed()
}
