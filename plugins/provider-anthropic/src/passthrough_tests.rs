//! Unit tests of the pass-through mode, through the transform stage calls as the host makes
//! them (client format `anthropic-messages`).
use super::*;
use crate::AnthropicProvider;
use tollgate_plugin_sdk::serde_json::json;
use tollgate_plugin_sdk::{ApiFormat, Transform};

fn ctx(stream: bool) -> TransformCtx {
    TransformCtx {
        request_id: "r".into(),
        client_format: ApiFormat::AnthropicMessages,
        upstream_model: "claude-up".into(),
        stream,
    }
}

/// An Anthropic request with everything canonical form would lose.
const REQUEST: &str = r#"{"model":"claude-x","max_tokens":1024,"stream":false,
 "system":[{"type":"text","text":"big prompt","cache_control":{"type":"ephemeral","ttl":"1h"}}],
 "thinking":{"type":"enabled","budget_tokens":2048},"top_k":5,"temperature":1.0e0,
 "messages":[{"role":"user","content":"hi"},
  {"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"EqQBCgIY\u002bAo="},
   {"type":"tool_use","id":"toolu_01A","name":"f","input":{"x":1.50}}]},
  {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01A","content":"ok"}]}],
 "some_future_field":{"a":[1,2,3]}}"#;

#[test]
fn request_is_patched_not_rebuilt() {
    for stream in [false, true] {
        let up = AnthropicProvider::transform_request(ctx(stream), REQUEST.into()).unwrap();
        assert_eq!(
            (up.method.as_str(), up.path.as_str()),
            ("POST", "/v1/messages")
        );
        assert!(up
            .headers
            .contains(&("anthropic-version".into(), "2023-06-01".into())));
        let sent = String::from_utf8(up.body).unwrap();
        let original = json::TopLevel::parse(REQUEST.as_bytes()).unwrap();
        let patched = json::TopLevel::parse(sent.as_bytes()).unwrap();
        assert_eq!(patched.fields.len(), original.fields.len());
        for (key, raw) in &original.fields {
            let out = patched.get(key).unwrap().get();
            match key.as_str() {
                "model" => assert_eq!(out, r#""claude-up""#),
                "stream" => assert_eq!(out, stream.to_string()),
                // Byte for byte: the escape, the float spelling, the thinking signature.
                _ => assert_eq!(out, raw.get(), "{key}"),
            }
        }
        if stream {
            assert_eq!(
                PassthroughState::from_bytes(&up.stream_state),
                Some(PassthroughState::new())
            );
        } else {
            assert!(up.stream_state.is_empty());
        }
    }
    // `stream` is added when the client left it out; a body that is not an object is a 400.
    let up = AnthropicProvider::transform_request(ctx(true), br#"{"messages":[]}"#.to_vec());
    let body = up.unwrap().body;
    assert_eq!(
        body,
        br#"{"messages":[],"model":"claude-up","stream":true}"#.to_vec()
    );
    for bad in [&b"[1]"[..], b"{", b"\xff", b""] {
        let err = AnthropicProvider::transform_request(ctx(false), bad.to_vec()).unwrap_err();
        assert_eq!(err.status, 400);
    }
}

#[test]
fn response_is_forwarded_with_its_usage() {
    let body = br#"{"id":"msg_1","type":"message","content":[{"type":"thinking","thinking":"x",
        "signature":"s"},{"type":"text","text":"hi"}],"usage":{"input_tokens":10,
        "output_tokens":3,"cache_read_input_tokens":200,"cache_creation_input_tokens":40}}"#;
    let out = AnthropicProvider::transform_response(ctx(false), 200, body.to_vec()).unwrap();
    assert_eq!((out.status, &out.body), (200, &body.to_vec()));
    let u = out.usage.unwrap();
    assert_eq!(
        (u.input, u.output, u.cache_read, u.cache_write, u.reasoning),
        (10, 3, 200, 40, 0)
    );
    // No usage object: no usage. Errors pass as they are, with no usage.
    let out = AnthropicProvider::transform_response(ctx(false), 200, b"{}".to_vec()).unwrap();
    assert_eq!(out.usage, None);
    for (status, body) in [
        (
            529,
            &br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#[..],
        ),
        (400, b"not even json"),
    ] {
        let out = AnthropicProvider::transform_response(ctx(false), status, body.to_vec()).unwrap();
        assert_eq!(
            (out.status, out.body.as_slice(), out.usage),
            (status, body, None)
        );
    }
    // A 2xx that is not a JSON object cannot be billed or read: 502.
    for bad in [&b"<html>"[..], b"[{\"usage\":null}]", b""] {
        let err = AnthropicProvider::transform_response(ctx(false), 200, bad.to_vec()).unwrap_err();
        assert_eq!(err.status, 502);
    }
}

fn ev(name: &str, data: Value) -> SseEvent {
    SseEvent::named(name, data.to_string())
}

#[test]
fn events_are_forwarded_and_usage_accumulates() {
    let events = [
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 10,
                "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20,
                "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta", "signature": "abc"}}),
        ),
        ev("ping", json!({"type": "ping"})),
        SseEvent::named("some_future_event", "not json at all"),
        ev(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 42}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ];
    let mut state = PassthroughState::new().to_bytes();
    let mut usages = Vec::new();
    for e in &events {
        let out = AnthropicProvider::transform_event(ctx(true), state, e.clone()).unwrap();
        assert_eq!(&out.events, &vec![e.clone()], "forwarded unchanged");
        usages.push(
            out.usage
                .map(|u| (u.input, u.output, u.cache_read, u.cache_write)),
        );
        state = out.state;
    }
    assert_eq!(usages[0], Some((10, 1, 100, 20)));
    assert_eq!(usages[4], Some((10, 1, 100, 20)));
    assert_eq!(usages[6], Some((10, 42, 100, 20)));
    let end = AnthropicProvider::end_of_stream(ctx(true), state).unwrap();
    assert!(end.events.is_empty());
    assert_eq!(end.usage.map(|u| u.output), Some(42));
}

#[test]
fn newer_message_delta_counts_overwrite_earlier_ones() {
    let mut st = PassthroughState::new();
    event(
        &mut st,
        ev(
            "message_start",
            json!({"message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ),
    )
    .unwrap();
    let out = event(
        &mut st,
        ev(
            "message_delta",
            json!({"usage": {"input_tokens": 7, "cache_read_input_tokens": 3,
                "cache_creation_input_tokens": null, "output_tokens": 9}}),
        ),
    )
    .unwrap();
    let u = out.usage.unwrap();
    assert_eq!(
        (u.input, u.output, u.cache_read, u.cache_write),
        (7, 9, 3, 0)
    );
    // Unnamed events are typed by their data.
    let out = event(
        &mut st,
        SseEvent::data(
            json!({"type": "message_delta", "usage": {"output_tokens": 11}}).to_string(),
        ),
    )
    .unwrap();
    assert_eq!(out.usage.map(|u| u.output), Some(11));
}

#[test]
fn error_events_end_the_stream_with_anthropic_statuses() {
    let cases = [
        ("overloaded_error", 529),
        ("api_error", 500),
        ("rate_limit_error", 429),
        ("invalid_request_error", 400),
        ("request_too_large", 413),
        ("not_found_error", 404),
        ("timeout_error", 504),
        ("authentication_error", 502),
        ("billing_error", 502),
        ("something_new", 502),
    ];
    for (kind, status) in cases {
        let data = json!({"type": "error", "error": {"type": kind, "message": "Overloaded"}});
        let state = PassthroughState::new().to_bytes();
        let err =
            AnthropicProvider::transform_event(ctx(true), state, ev("error", data)).unwrap_err();
        assert_eq!(
            (err.status, err.code.as_str(), err.message.as_str()),
            (status, kind, "Overloaded")
        );
    }
    let unnamed = SseEvent::data(r#"{"type":"error","error":{"type":"api_error","message":"x"}}"#);
    let err = event(&mut PassthroughState::new(), unnamed).unwrap_err();
    assert_eq!(err.status, 500);
    let err = event(&mut PassthroughState::new(), SseEvent::named("error", "")).unwrap_err();
    assert_eq!(
        (err.status, err.code.as_str(), err.message.as_str()),
        (502, "upstream_error", "upstream stream error:")
    );
    let err = event(
        &mut PassthroughState::new(),
        SseEvent::named("error", "gone"),
    )
    .unwrap_err();
    assert_eq!(err.message, "upstream stream error: gone");
}

#[test]
fn the_state_records_the_mode() {
    // A pass-through state keeps the stream in pass-through whatever the context says, and a
    // translating state is never mistaken for one.
    let canonical = TransformCtx {
        client_format: ApiFormat::OpenaiChat,
        ..ctx(true)
    };
    let e = ev("ping", json!({"type": "ping"}));
    let out = AnthropicProvider::transform_event(
        canonical.clone(),
        PassthroughState::new().to_bytes(),
        e.clone(),
    )
    .unwrap();
    assert_eq!(out.events, vec![e.clone()]);
    assert_eq!(PassthroughState::from_bytes(b"{}"), None);
    assert_eq!(PassthroughState::from_bytes(b"junk"), None);
    let translating = crate::StreamState::new("m", 0, false).to_bytes();
    assert_eq!(PassthroughState::from_bytes(&translating), None);
    // With no state at all, the client's format decides.
    let out = AnthropicProvider::transform_event(ctx(true), Vec::new(), e.clone()).unwrap();
    assert_eq!(out.events, vec![e]);
    let end = AnthropicProvider::end_of_stream(ctx(true), Vec::new()).unwrap();
    assert_eq!((end.events.len(), end.usage), (0, None));
}
