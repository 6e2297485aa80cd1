//! Property-based tests ("fuzz") of the OpenAI transform's four stage calls, run natively.
//!
//! A few hundred cases per property by default, so `cargo test` stays quick; run longer by hand:
//! `PROPTEST_CASES=100000 cargo test -p provider-openai fuzz`. Every property's name starts with
//! `fuzz_` so that filter selects exactly these. Chat (canonical) is here; embeddings and the
//! refused formats are in `formats.rs`.
mod formats;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use provider_openai::OpenAiProvider;
use tollgate_plugin_sdk::serde_json::{self, json, Map, Value};
use tollgate_plugin_sdk::{usage, ApiFormat, Reject, SseEvent, Transform, TransformCtx};

/// The stream state of a client that asked for the usage chunk itself.
const CLIENT_WANTS_USAGE: &[u8] = b"client-usage";

/// `cases` unless `PROPTEST_CASES` says otherwise (proptest reads its other variables itself).
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

fn ctx(stream: bool) -> TransformCtx {
    TransformCtx {
        request_id: "r".into(),
        client_format: ApiFormat::OpenaiChat,
        upstream_model: "gpt-up".into(),
        stream,
    }
}

// ---- strategies ------------------------------------------------------------------------------

/// Keys the transform reads, so random objects often hit real code paths.
const KEYS: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "include_usage",
    "usage",
    "choices",
    "error",
    "message",
    "type",
    "code",
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "delta",
    "content",
    "role",
    "messages",
    "tools",
    "input",
    "encoding_format",
    "dimensions",
    "data",
    "embedding",
];

pub(crate) fn arb_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z_ ]{0,12}",
        2 => any::<String>(),
        1 => select(KEYS).prop_map(str::to_string),
        1 => Just("[DONE]".to_string()),
    ]
    .boxed()
}

/// A token count as a provider might (mis)report it.
pub(crate) fn arb_count() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => (0u64..100_000).prop_map(|n| json!(n)),
        1 => Just(json!(u64::MAX)),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => Just(json!(1e300)),
        1 => arb_string().prop_map(Value::String),
    ]
    .boxed()
}

pub(crate) fn arb_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_count(),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![select(KEYS).prop_map(str::to_string), "[a-z]{1,6}"];
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((key, inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

fn message() -> BoxedStrategy<Value> {
    let part = prop_oneof![
        arb_string().prop_map(|t| json!({"type": "text", "text": t})),
        "https://[a-z]{1,8}\\.example/[a-z]{1,8}\\.png"
            .prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
        arb_json(),
    ];
    let content = prop_oneof![
        Just(Value::Null),
        arb_string().prop_map(Value::String),
        vec(part, 0..4).prop_map(Value::Array),
    ];
    let role = prop_oneof![
        4 => select(&["system", "developer", "user", "assistant", "tool"][..]).prop_map(|r| json!(r)),
        1 => arb_json(),
    ];
    let calls = vec(
        ("[a-z0-9]{1,8}", arb_json())
            .prop_map(|(n, a)| json!({"id": n, "type": "function", "function": {"name": n, "arguments": a.to_string()}})),
        0..3,
    );
    (role, content, calls)
        .prop_map(|(role, content, calls)| {
            let mut m = json!({"role": role, "content": content});
            if !calls.is_empty() {
                m["tool_calls"] = Value::Array(calls);
            }
            m
        })
        .boxed()
}

/// An OpenAI chat request: random messages and tools, maybe stream options, other fields.
fn chat_request() -> BoxedStrategy<Value> {
    let stream_options = prop_oneof![
        any::<bool>().prop_map(|b| json!({"include_usage": b})),
        (any::<bool>(), arb_json()).prop_map(|(b, x)| json!({"include_usage": b, "x": x})),
        arb_json(),
    ];
    let tool = ("[a-z_]{1,8}", arb_json())
        .prop_map(|(n, p)| json!({"type": "function", "function": {"name": n, "parameters": p}}));
    (
        vec(message(), 0..6),
        vec(tool, 0..3),
        proptest::option::of(stream_options),
        proptest::option::of(arb_json()),
        vec(("[a-z_]{1,10}", arb_json()), 0..4),
    )
        .prop_map(|(messages, tools, options, model, extra)| {
            let mut req: Map<String, Value> = extra.into_iter().collect();
            req.insert("messages".into(), Value::Array(messages));
            if !tools.is_empty() {
                req.insert("tools".into(), Value::Array(tools));
            }
            if let Some(o) = options {
                req.insert("stream_options".into(), o);
            }
            if let Some(m) = model {
                req.insert("model".into(), m);
            }
            Value::Object(req)
        })
        .boxed()
}

/// A stream chunk: content, tool call, usage-only, error, `[DONE]`, or anything.
pub(crate) fn chunk() -> BoxedStrategy<SseEvent> {
    let usage = (arb_count(), arb_count(), arb_count()).prop_map(|(p, c, cached)| {
        json!({"prompt_tokens": p, "completion_tokens": c,
            "prompt_tokens_details": {"cached_tokens": cached}})
    });
    let error = (
        arb_string(),
        prop_oneof![arb_string().prop_map(Value::String), arb_count()],
    )
        .prop_map(
            |(m, code)| json!({"error": {"message": m, "type": "server_error", "code": code}}),
        );
    let data = prop_oneof![
        4 => arb_string().prop_map(|t| json!({"id": "c", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": null}]})),
        1 => arb_json().prop_map(|a| json!({"id": "c", "choices": [{"index": 0, "delta":
            {"tool_calls": [{"index": 0, "function": {"arguments": a.to_string()}}]}}]})),
        1 => usage.prop_map(|u| json!({"id": "c", "choices": [], "usage": u})),
        1 => error,
        1 => arb_json(),
    ];
    prop_oneof![
        8 => data.prop_map(|d| SseEvent::data(d.to_string())),
        1 => Just(SseEvent::data("[DONE]")),
        1 => (proptest::option::of(select(&["error", "message", "ping"][..])), any::<String>())
            .prop_map(|(name, data)| SseEvent { event: name.map(str::to_string), data }),
    ]
    .boxed()
}

fn arb_state() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(CLIENT_WANTS_USAGE.to_vec()),
        vec(any::<u8>(), 0..32),
    ]
    .boxed()
}

// ---- checks ----------------------------------------------------------------------------------

fn check_stream_reject(r: &Reject) -> Result<(), TestCaseError> {
    prop_assert!((400..=599).contains(&r.status), "{:?}", r);
    prop_assert!(!r.code.is_empty());
    prop_assert!(r.message.starts_with("upstream stream error: "), "{:?}", r);
    Ok(())
}

/// One event through `transform_event`: a reject only for an error (or data that is not JSON),
/// else the state handed back
/// unchanged and the event forwarded as it is or (a usage-only chunk) dropped.
fn check_event(state: &[u8], event: &SseEvent) -> Result<Option<Vec<SseEvent>>, TestCaseError> {
    let parsed: Option<Value> = serde_json::from_str(&event.data).ok();
    let not_json = parsed.is_none() && event.data.trim() != "[DONE]";
    let is_error = event.event.as_deref() == Some("error")
        || not_json
        || parsed
            .as_ref()
            .is_some_and(|v| v.get("error").is_some_and(|e| !e.is_null()));
    match OpenAiProvider::transform_event(ctx(true), state.to_vec(), event.clone()) {
        Ok(out) => {
            prop_assert_eq!(&out.state, state);
            if out.events.is_empty() {
                prop_assert!(
                    state != CLIENT_WANTS_USAGE,
                    "a client that asked gets usage"
                );
                prop_assert!(out.usage.is_some(), "only usage chunks are dropped");
            } else {
                prop_assert_eq!(&out.events, &vec![event.clone()]);
            }
            if let Some(u) = &out.usage {
                let reported = &parsed.as_ref().expect("usage came from JSON")["usage"];
                prop_assert_eq!(u, &usage::from_openai(reported));
            }
            prop_assert!(!is_error, "an error is not forwarded: {:?}", event);
            Ok(Some(out.events))
        }
        Err(r) => {
            check_stream_reject(&r)?;
            prop_assert!(is_error, "only errors are rejected: {:?}", event);
            Ok(None)
        }
    }
}

fn check_response(status: u16, body: Vec<u8>) -> Result<(), TestCaseError> {
    match OpenAiProvider::transform_response(ctx(false), status, body.clone()) {
        Ok(out) => {
            prop_assert_eq!(out.status, status);
            let v: Value = serde_json::from_slice(&out.body).expect("the body is JSON");
            if (200..300).contains(&status) {
                prop_assert_eq!(&out.body, &body, "a success body is passed through");
                if let Some(u) = out.usage {
                    prop_assert_eq!(u, usage::from_openai(&v["usage"]));
                }
            } else {
                prop_assert!(v["error"].is_object());
                let was_error =
                    serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["error"].is_object());
                prop_assert_eq!(was_error, out.body == body, "OpenAI errors pass unchanged");
            }
        }
        Err(r) => {
            prop_assert!((200..300).contains(&status), "only a 2xx body is parsed");
            prop_assert_eq!(r.status, 502);
        }
    }
    Ok(())
}

// ---- properties ------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_request_never_panics_on_bytes(body in vec(any::<u8>(), 0..512), stream in any::<bool>()) {
        if let Err(r) = OpenAiProvider::transform_request(ctx(stream), body) {
            prop_assert_eq!(r.status, 400);
        }
    }

    #[test]
    fn fuzz_request_patches_only_model_and_stream_options(
        req in prop_oneof![3 => chat_request(), 1 => arb_json()], stream in any::<bool>()
    ) {
        let result = OpenAiProvider::transform_request(ctx(stream), req.to_string().into_bytes());
        // Compared as parsed from the same text (a parsed float may differ from the generated).
        let req: Value = serde_json::from_str(&req.to_string()).expect("JSON");
        let Some(fields) = req.as_object() else {
            prop_assert_eq!(result.map_err(|r| r.status).err(), Some(400));
            return Ok(());
        };
        let up = result.map_err(|r| TestCaseError::fail(format!("{r:?}")))?;
        let out: Map<String, Value> = serde_json::from_slice(&up.body).expect("a JSON object");
        prop_assert_eq!(&out["model"], "gpt-up");
        for (key, value) in fields {
            if key != "model" && !(stream && key == "stream_options") {
                prop_assert_eq!(out.get(key), Some(value), "{} is kept", key);
            }
        }
        let patched = usize::from(!fields.contains_key("model"))
            + usize::from(stream && !fields.contains_key("stream_options"));
        prop_assert_eq!(out.len(), fields.len() + patched, "no other field appears");
        let options = &fields.get("stream_options").cloned().unwrap_or_default();
        if stream {
            let sent = out.get("stream_options").cloned().unwrap_or_default();
            prop_assert_eq!(&sent["include_usage"], true);
            for (key, value) in options.as_object().into_iter().flatten() {
                if key != "include_usage" {
                    prop_assert_eq!(&sent[key], value);
                }
            }
            let asked = options["include_usage"] == true;
            prop_assert_eq!(up.stream_state == CLIENT_WANTS_USAGE, asked);
        } else {
            prop_assert!(up.stream_state.is_empty());
        }
    }

    #[test]
    fn fuzz_response_never_panics(status in any::<u16>(), body in vec(any::<u8>(), 0..512)) {
        check_response(status, body)?;
    }

    #[test]
    fn fuzz_response_never_panics_on_json(
        status in prop_oneof![Just(200u16), any::<u16>()],
        body in prop_oneof![
            arb_json(),
            (arb_count(), arb_count(), arb_count()).prop_map(|(p, c, cached)| json!({
                "id": "c", "object": "chat.completion", "choices": [{"index": 0}],
                "usage": {"prompt_tokens": p, "completion_tokens": c,
                    "prompt_tokens_details": {"cached_tokens": cached}}})),
        ],
    ) {
        check_response(status, body.to_string().into_bytes())?;
    }

    #[test]
    fn fuzz_events_never_panic(state in arb_state(), event in prop_oneof![chunk(), (
        proptest::option::of(arb_string()), any::<String>()).prop_map(|(event, data)| SseEvent { event, data })]) {
        check_event(&state, &event)?;
    }

    #[test]
    fn fuzz_stream_state_round_trips(state in arb_state(), events in vec(chunk(), 0..16)) {
        // The host hands each call the state the previous one returned; the result is the same
        // as handing every call the initial state, and the same as each event on its own.
        let mut threaded = state.clone();
        for event in &events {
            let Some(_) = check_event(&threaded, event)? else { break };
            let out = OpenAiProvider::transform_event(ctx(true), threaded.clone(), event.clone());
            let fresh = OpenAiProvider::transform_event(ctx(true), state.clone(), event.clone());
            prop_assert_eq!(&out, &fresh);
            threaded = out.expect("checked above").state;
        }
        let end = OpenAiProvider::end_of_stream(ctx(true), threaded.clone()).expect("Ok");
        prop_assert!(end.events.is_empty() && end.usage.is_none());
        prop_assert_eq!(end.state, threaded);
    }
}
