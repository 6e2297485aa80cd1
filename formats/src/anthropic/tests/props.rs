//! Property tests: arbitrary bodies, bytes and stream payloads never panic, and well-formed
//! streams cut at arbitrary places reassemble to the same message.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{chunk, run, tool_piece};
use crate::anthropic::{
    error_from_canonical, parse_request, response_from_canonical, to_canonical, MessagesRequest,
    StreamAdapter,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bodies_never_panic(json in crate::test_support::arb_json()) {
        let body = json.to_string();
        if let Ok(req) = parse_request(body.as_bytes()) {
            let _ = to_canonical(&req);
        }
        // Also a body wrapped to pass the top-level checks, so message mapping is exercised.
        let wrapped = json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": [json.clone()]},
            {"role": "assistant", "content": [json.clone()]}], "tools": [json.clone()],
            "system": [json.clone()], "tool_choice": json.clone()});
        if let Ok(req) = parse_request(wrapped.to_string().as_bytes()) {
            let _ = to_canonical(&req);
        }
        let hand_built = MessagesRequest { model: "m".into(), stream: true, max_tokens: Some(1),
                                           has_tools: true, value: json.clone() };
        let _ = to_canonical(&hand_built);
        let _ = response_from_canonical(body.as_bytes(), "msg_p", "m", None);
        let _ = error_from_canonical(500, body.as_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_request(&bytes);
        let _ = response_from_canonical(&bytes, "msg_p", "m", None);
        let _ = error_from_canonical(400, &bytes);
    }

    #[test]
    fn arbitrary_stream_data_never_panics(
        payloads in proptest::collection::vec(
            prop_oneof![
                ".{0,40}".prop_map(|s| s),
                crate::test_support::arb_json().prop_map(|v| v.to_string()),
                crate::test_support::arb_json().prop_map(|d| json!({"choices": [{"index": 0, "delta": d}]}).to_string()),
                crate::test_support::arb_json().prop_map(|t| json!({"choices": [{"delta": {"tool_calls": [t]}}]}).to_string()),
            ],
            0..12,
        )
    ) {
        let mut adapter = StreamAdapter::new("msg_p", "m");
        let mut events = Vec::new();
        for p in &payloads {
            if let Ok(e) = adapter.on_event(p) {
                events.extend(e);
            }
        }
        events.extend(adapter.finish(None));
        prop_assert!(adapter.finish(None).is_empty());
        // Whatever came in, the events are well-formed JSON named after their type.
        for e in &events {
            let data: Value = serde_json::from_str(&e.data).expect("JSON");
            prop_assert_eq!(data["type"].as_str(), e.event.as_deref());
        }
    }

    #[test]
    fn well_formed_streams_reassemble(
        text in proptest::collection::vec(".{0,8}", 0..5),
        args in proptest::collection::vec(proptest::collection::vec("[a-z0-9]{1,3}", 1..4), 0..3),
        cuts in proptest::collection::vec(1usize..6, 1..8),
    ) {
        // Any text pieces and any number of tool calls, their argument JSON cut at arbitrary
        // places, reassemble to the same message.
        let mut payloads: Vec<String> = text.iter().map(|t| chunk(json!({"content": t}), Value::Null)).collect();
        let mut expected = Vec::new();
        let joined: String = text.concat();
        if !joined.is_empty() {
            expected.push(json!({"type": "text", "text": joined}));
        }
        for (i, values) in args.iter().enumerate() {
            let input = json!({"v": values});
            let text = input.to_string();
            let id = format!("call_{i}");
            payloads.push(chunk(tool_piece(i as u64, Some(&id), Some("f"), ""), Value::Null));
            let mut rest = text.as_str();
            let mut k = 0;
            while !rest.is_empty() {
                let mut n = cuts[k % cuts.len()].min(rest.len());
                while !rest.is_char_boundary(n) { n += 1; }
                let (piece, tail) = rest.split_at(n);
                payloads.push(chunk(tool_piece(i as u64, None, None, piece), Value::Null));
                rest = tail;
                k += 1;
            }
            expected.push(json!({"type": "tool_use", "id": id, "name": "f", "input": input}));
        }
        let (message, _) = run(&payloads, None);
        prop_assert_eq!(&message["content"], &Value::Array(expected));
    }
}
