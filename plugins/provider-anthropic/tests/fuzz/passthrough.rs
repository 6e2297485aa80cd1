//! Property tests of the pass-through mode (an Anthropic client): the request is patched in
//! `model` and `stream` only, answers and events pass unchanged with their usage read, and
//! only an `error` event ends a stream. Also: formats the provider does not speak are refused
//! by every call.
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use provider_anthropic::{AnthropicProvider, PassthroughState};
use tollgate_plugin_sdk::serde_json::{self, json, Value};
use tollgate_plugin_sdk::{json as patch, usage, ApiFormat, SseEvent, Transform, TransformCtx};

use crate::gen::{arb_count, arb_json, arb_object, arb_string};
use crate::streams::{anthropic_message, apply, arb_event, edit};
use crate::{check_reject, config};

fn ctx(format: ApiFormat, stream: bool) -> TransformCtx {
    TransformCtx {
        request_id: "r".into(),
        client_format: format,
        upstream_model: "claude-up".into(),
        stream,
    }
}

fn anthropic(stream: bool) -> TransformCtx {
    ctx(ApiFormat::AnthropicMessages, stream)
}

/// An Anthropic Messages request with the fields canonical form would lose, plus anything.
fn messages_request() -> BoxedStrategy<Value> {
    let block = prop_oneof![
        arb_string().prop_map(|t| json!({"type": "text", "text": t,
            "cache_control": {"type": "ephemeral"}})),
        (arb_string(), "[A-Za-z0-9+/=]{0,24}").prop_map(|(t, s)| json!({"type": "thinking",
            "thinking": t, "signature": s})),
        ("toolu_[a-z0-9]{1,8}", arb_object()).prop_map(|(id, input)| json!({"type": "tool_use",
            "id": id, "name": "f", "input": input})),
        arb_json(),
    ];
    (
        vec(block, 0..5),
        proptest::option::of(arb_json()),
        proptest::option::of(any::<bool>()),
        arb_object(),
        any::<f64>(),
    )
        .prop_map(|(blocks, model, stream, extra, temperature)| {
            let mut req = extra;
            req.insert(
                "messages".into(),
                json!([{"role": "user", "content": blocks}]),
            );
            req.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": 1024}),
            );
            req.insert("temperature".into(), json!(temperature));
            if let Some(m) = model {
                req.insert("model".into(), m);
            }
            if let Some(s) = stream {
                req.insert("stream".into(), json!(s));
            }
            Value::Object(req)
        })
        .boxed()
}

fn other_format() -> impl Strategy<Value = ApiFormat> {
    select(
        &[
            ApiFormat::OpenaiResponses,
            ApiFormat::OpenaiEmbeddings,
            ApiFormat::Gemini,
        ][..],
    )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_passthrough_request_never_panics_on_bytes(body in vec(any::<u8>(), 0..512),
                                                     stream in any::<bool>()) {
        if let Err(r) = AnthropicProvider::transform_request(anthropic(stream), body) {
            prop_assert_eq!(r.status, 400);
        }
    }

    #[test]
    fn fuzz_passthrough_request_patches_only_model_and_stream(
        req in prop_oneof![3 => messages_request(), 1 => arb_json()], stream in any::<bool>()
    ) {
        let text = req.to_string();
        let result = AnthropicProvider::transform_request(anthropic(stream), text.clone().into_bytes());
        let Ok(original) = patch::TopLevel::parse(text.as_bytes()) else {
            prop_assert_eq!(result.map_err(|r| r.status).err(), Some(400));
            return Ok(());
        };
        let up = result.map_err(|r| TestCaseError::fail(format!("{r:?}")))?;
        prop_assert_eq!(up.path.as_str(), "/v1/messages");
        let sent = patch::TopLevel::parse(&up.body).expect("a JSON object");
        for (key, raw) in &original.fields {
            if key != "model" && key != "stream" {
                prop_assert_eq!(sent.get(key).map(|r| r.get()), Some(raw.get()), "{} verbatim", key);
            }
        }
        prop_assert_eq!(sent.get("model").map(|r| r.get()), Some("\"claude-up\""));
        // `stream` is written when streaming or when the client wrote it (absent means false).
        let stream_text = stream.to_string();
        let wrote_stream = stream || original.get("stream").is_some();
        let expected = wrote_stream.then_some(stream_text.as_str());
        prop_assert_eq!(sent.get("stream").map(|r| r.get()), expected);
        let added = usize::from(original.get("model").is_none())
            + usize::from(wrote_stream && original.get("stream").is_none());
        prop_assert_eq!(sent.fields.len(), original.fields.len() + added, "nothing else appears");
        prop_assert_eq!(PassthroughState::from_bytes(&up.stream_state).is_some(), stream);
    }

    #[test]
    fn fuzz_passthrough_response_is_unchanged(
        status in prop_oneof![Just(200u16), any::<u16>()],
        body in prop_oneof![
            vec(any::<u8>(), 0..256),
            arb_json().prop_map(|v| v.to_string().into_bytes()),
            [arb_count(), arb_count(), arb_count(), arb_count()].prop_map(|[i, o, r, w]| json!({
                "content": [], "usage": {"input_tokens": i, "output_tokens": o,
                "cache_read_input_tokens": r, "cache_creation_input_tokens": w}})
                .to_string().into_bytes()),
        ],
    ) {
        let ok = (200..300).contains(&status);
        match AnthropicProvider::transform_response(anthropic(false), status, body.clone()) {
            Ok(out) => {
                prop_assert_eq!(out.status, status);
                prop_assert_eq!(&out.body, &body, "passed through unchanged");
                let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let expected = (ok && parsed["usage"].is_object())
                    .then(|| usage::from_anthropic(&parsed["usage"]));
                prop_assert_eq!(out.usage, expected);
            }
            Err(r) => {
                prop_assert!(ok, "only a 2xx body is read");
                prop_assert_eq!(r.status, 502);
                prop_assert!(!serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.is_object()));
            }
        }
    }

    #[test]
    fn fuzz_passthrough_events_are_forwarded(
        state in prop_oneof![Just(PassthroughState::new().to_bytes()), Just(Vec::new()),
                             vec(any::<u8>(), 0..32)],
        events in prop_oneof![
            vec(arb_event(), 0..24),
            (anthropic_message(), vec(edit(), 0..6)).prop_map(|(m, edits)| {
                let mut events = m.events();
                apply(&mut events, &edits);
                events
            }),
        ],
    ) {
        let mut state = state;
        for event in events {
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            // Named events are what they are named; an unnamed one is typed by its data.
            let is_error = event.event.as_deref().or_else(|| data["type"].as_str()) == Some("error");
            match AnthropicProvider::transform_event(anthropic(true), state.clone(), event.clone()) {
                Ok(out) => {
                    prop_assert!(!is_error, "an error is not forwarded");
                    prop_assert_eq!(&out.events, &vec![event]);
                    prop_assert!(PassthroughState::from_bytes(&out.state).is_some());
                    state = out.state;
                }
                Err(r) => {
                    prop_assert!(is_error, "only errors end the stream: {:?}", r);
                    check_reject(&r);
                    prop_assert!([400, 404, 413, 429, 500, 502, 504, 529].contains(&r.status));
                    return Ok(());
                }
            }
        }
        let end = AnthropicProvider::end_of_stream(anthropic(true), state.clone()).expect("Ok");
        prop_assert!(end.events.is_empty());
        prop_assert_eq!(end.usage, PassthroughState::from_bytes(&state).and_then(|s| s.usage()));
    }

    #[test]
    fn fuzz_passthrough_stream_usage_is_the_message_usage(msg in anthropic_message()) {
        let mut state = PassthroughState::new().to_bytes();
        for event in msg.events() {
            let out = AnthropicProvider::transform_event(anthropic(true), state, event);
            state = out.map_err(|r| TestCaseError::fail(format!("{r:?}")))?.state;
        }
        let end = AnthropicProvider::end_of_stream(anthropic(true), state).expect("Ok");
        let u = end.usage.expect("usage");
        prop_assert_eq!([u.input, u.output, u.cache_read, u.cache_write], msg.usage);
    }

    #[test]
    fn fuzz_other_formats_are_refused(format in other_format(), stream in any::<bool>(),
                                      body in vec(any::<u8>(), 0..64),
                                      event in arb_event(), status in any::<u16>()) {
        let c = || ctx(format, stream);
        let results = [
            AnthropicProvider::transform_request(c(), body.clone()).map(|_| ()),
            AnthropicProvider::transform_response(c(), status, body.clone()).map(|_| ()),
            AnthropicProvider::transform_event(c(), Vec::new(), event).map(|_| ()),
            AnthropicProvider::end_of_stream(c(), Vec::new()).map(|_| ()),
        ];
        for r in results {
            prop_assert_eq!(r.map_err(|r| r.status), Err(400));
        }
    }
}

#[test]
fn a_pass_through_state_is_never_taken_for_garbage() {
    // Random state bytes in the property above almost never spell a pass-through state; this
    // pins the one that does.
    let state = br#"{"passthrough":true}"#;
    assert!(PassthroughState::from_bytes(state).is_some());
    let event = SseEvent::named("ping", "{}");
    let out = AnthropicProvider::transform_event(anthropic(true), state.to_vec(), event.clone());
    assert_eq!(out.unwrap().events, vec![event]);
}
