//! Property-based tests ("fuzz") of the Anthropic transform's four stage calls, run natively.
//!
//! A few hundred cases per property by default, so `cargo test` stays quick; run longer by hand:
//! `PROPTEST_CASES=100000 cargo test -p provider-anthropic fuzz`. Every property's name starts
//! with `fuzz_` so that filter selects exactly these.
mod checks;
mod gen;
mod passthrough;
mod streams;

use gen::{arb_count, arb_json, chat_request};
use proptest::collection::vec;
use proptest::prelude::*;
use provider_anthropic::{translate_event, AnthropicProvider, StreamState};
use streams::{anthropic_message, apply, arb_event, edit, Message};
use tollgate_plugin_sdk::serde_json::{self, Value};
use tollgate_plugin_sdk::testing::TestHost;
use tollgate_plugin_sdk::{
    usage, ApiFormat, Reject, SseEvent, StreamOutput, Transform, TransformCtx, Usage,
};

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
        upstream_model: "claude-up".into(),
        stream,
    }
}

fn initial_state(wants_usage: bool) -> Vec<u8> {
    StreamState::new("claude-up", 1, wants_usage).to_bytes()
}

/// A reject a client may be shown: an error status and a code and message.
fn check_reject(r: &Reject) {
    assert!((400..=599).contains(&r.status), "{r:?}");
    assert!(!r.code.is_empty() && !r.message.is_empty(), "{r:?}");
}

/// Feeds `events` the way the host does: state bytes from each call into the next, stopping at
/// the first reject. Returns every call's result.
fn run_host(state: Vec<u8>, events: &[SseEvent]) -> Vec<Result<StreamOutput, Reject>> {
    let mut state = state;
    let mut results = Vec::new();
    for event in events {
        let result = AnthropicProvider::transform_event(ctx(true), state.clone(), event.clone());
        if let Ok(out) = &result {
            state = out.state.clone();
        }
        let stop = result.is_err();
        results.push(result);
        if stop {
            return results;
        }
    }
    let end = AnthropicProvider::end_of_stream(ctx(true), state).expect("end_of_stream is Ok");
    assert!(end.events.is_empty());
    results.push(Ok(end));
    results
}

/// What a client reassembles from the chunks of a stream.
#[derive(Debug, Default, PartialEq)]
struct Reassembled {
    text: String,
    /// (id, name, arguments) by tool call index.
    tools: Vec<(Value, Value, String)>,
    finish: Value,
    usage_chunk: Option<Value>,
}

/// Checks each event is a well-formed chunk (or the one final `[DONE]`) and reassembles them.
fn reassemble(events: &[SseEvent], id: &str) -> Reassembled {
    let mut r = Reassembled::default();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.event, None);
        if e.data == "[DONE]" {
            assert_eq!(i, events.len() - 1, "[DONE] is last and only once");
            continue;
        }
        let chunk: Value = serde_json::from_str(&e.data).expect("chunks are JSON");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], format!("chatcmpl-{id}"));
        if !chunk["usage"].is_null() {
            r.usage_chunk = Some(chunk["usage"].clone());
            continue;
        }
        let choice = &chunk["choices"][0];
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str() {
            r.text.push_str(text);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().expect("tool call index") as usize;
            if index == r.tools.len() {
                assert_eq!(call["type"], "function", "the first delta names the call");
                r.tools.push((
                    call["id"].clone(),
                    call["function"]["name"].clone(),
                    String::new(),
                ));
            }
            let args = call["function"]["arguments"]
                .as_str()
                .expect("arguments text");
            r.tools[index].2.push_str(args);
        }
        if !choice["finish_reason"].is_null() {
            r.finish = choice["finish_reason"].clone();
        }
    }
    r
}

fn outputs(results: &[Result<StreamOutput, Reject>]) -> (Vec<SseEvent>, Option<Usage>) {
    let mut events = Vec::new();
    let mut last_usage = None;
    for out in results.iter().flatten() {
        events.extend(out.events.iter().cloned());
        if out.usage.is_some() {
            last_usage = out.usage;
        }
    }
    (events, last_usage)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_request_never_panics_on_bytes(body in vec(any::<u8>(), 0..512), stream in any::<bool>()) {
        if let Err(r) = AnthropicProvider::transform_request(ctx(stream), body) {
            prop_assert_eq!(r.status, 400);
        }
    }

    #[test]
    fn fuzz_request_never_panics_on_json(body in arb_json(), stream in any::<bool>()) {
        let result = AnthropicProvider::transform_request(ctx(stream), body.to_string().into_bytes());
        if let Err(r) = result {
            prop_assert_eq!(r.status, 400);
        }
    }

    #[test]
    fn fuzz_response_never_panics(status in any::<u16>(), body in vec(any::<u8>(), 0..512)) {
        check_response(status, body)?;
    }

    #[test]
    fn fuzz_response_never_panics_on_json(status in prop_oneof![Just(200u16), any::<u16>()],
                                          body in arb_json()) {
        check_response(status, body.to_string().into_bytes())?;
    }

    #[test]
    fn fuzz_usage_saturates(counts in [arb_count(), arb_count(), arb_count(), arb_count()]) {
        // Negative, fractional, huge or non-numeric counts: never a panic, never a negative or
        // wrapped-around number.
        let [input, output, read, write] = counts;
        let body = serde_json::json!({"content": [], "usage": {"input_tokens": input,
            "output_tokens": output, "cache_read_input_tokens": read,
            "cache_creation_input_tokens": write}});
        check_response(200, body.to_string().into_bytes())?;
    }

    #[test]
    fn fuzz_events_never_panic(state in prop_oneof![
                                   any::<bool>().prop_map(initial_state),
                                   vec(any::<u8>(), 0..64)],
                               events in vec(arb_event(), 0..24)) {
        for result in run_host(state, &events) {
            match result {
                Ok(out) => for e in &out.events {
                    prop_assert!(e.data == "[DONE]" || serde_json::from_str::<Value>(&e.data).is_ok());
                },
                Err(r) => {
                    check_reject(&r);
                    prop_assert!(r.message.starts_with("Anthropic stream error: "));
                }
            }
        }
    }
}

fn check_response(status: u16, body: Vec<u8>) -> Result<(), TestCaseError> {
    match AnthropicProvider::transform_response(ctx(false), status, body) {
        Ok(out) => {
            prop_assert_eq!(out.status, status);
            let v: Value = serde_json::from_slice(&out.body).expect("the body is JSON");
            if (200..300).contains(&status) {
                prop_assert_eq!(&v["object"], "chat.completion");
                prop_assert!(v["choices"][0]["message"].is_object());
                let u = out.usage.expect("a translated response has usage");
                prop_assert_eq!(&v["usage"], &usage::to_openai(&u));
                let count = |key: &str| v["usage"][key].as_u64().expect("a non-negative integer");
                let prompt = u
                    .input
                    .saturating_add(u.cache_read)
                    .saturating_add(u.cache_write);
                prop_assert_eq!(count("prompt_tokens"), prompt);
                prop_assert_eq!(count("total_tokens"), prompt.saturating_add(u.output));
            } else {
                prop_assert!(v["error"]["message"].is_string());
                prop_assert!(v["error"]["type"].is_string());
                prop_assert!(v["error"]["code"].is_string() || v["error"]["code"].is_null());
            }
        }
        Err(r) => {
            prop_assert!((200..300).contains(&status), "only a 2xx body is parsed");
            prop_assert_eq!(r.status, 502);
        }
    }
    Ok(())
}

/// Checks a translated request against what Anthropic accepts.
fn check_translated(body: &[u8], stream: bool) -> Result<Value, TestCaseError> {
    let out: Value = serde_json::from_slice(body).expect("the upstream body is JSON");
    prop_assert_eq!(&out["model"], "claude-up");
    prop_assert!(out["max_tokens"].is_u64());
    prop_assert_eq!(out.get("stream").is_some(), stream);
    checks::check_extras(&out)?;
    let messages = out["messages"].as_array().expect("messages");
    for pair in messages.windows(2) {
        prop_assert_ne!(&pair[0]["role"], &pair[1]["role"], "roles alternate");
    }
    for m in messages {
        prop_assert!(m["role"] == "user" || m["role"] == "assistant");
        let blocks = m["content"].as_array().expect("content blocks");
        prop_assert!(!blocks.is_empty());
        for b in blocks {
            match b["type"].as_str() {
                Some("text") => prop_assert!(b["text"].as_str().is_some_and(|t| !t.is_empty())),
                Some("image") => {
                    let source = &b["source"];
                    match source["type"].as_str() {
                        Some("base64") => {
                            prop_assert!(source["media_type"]
                                .as_str()
                                .is_some_and(|t| !t.is_empty()));
                            prop_assert!(source["data"].is_string());
                        }
                        Some("url") => {
                            let url = source["url"]
                                .as_str()
                                .unwrap_or_default()
                                .to_ascii_lowercase();
                            prop_assert!(url.starts_with("http://") || url.starts_with("https://"));
                        }
                        other => prop_assert!(false, "image source {:?}", other),
                    }
                }
                Some("tool_use") => prop_assert!(b["input"].is_object()),
                Some("tool_result") => prop_assert!(b["content"].is_string()),
                other => prop_assert!(false, "block type {:?}", other),
            }
        }
    }
    Ok(out)
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn fuzz_chat_requests_translate_or_reject(req in chat_request(false), stream in any::<bool>()) {
        TestHost::install(TestHost { now_ms: 5_000, ..Default::default() });
        match AnthropicProvider::transform_request(ctx(stream), req.to_string().into_bytes()) {
            Ok(up) => {
                check_translated(&up.body, stream)?;
                if stream {
                    let wants = req["stream_options"]["include_usage"] == true;
                    prop_assert_eq!(StreamState::from_bytes(&up.stream_state),
                        StreamState::new("claude-up", 5, wants));
                } else {
                    prop_assert!(up.stream_state.is_empty());
                }
            }
            Err(r) => prop_assert_eq!(r.status, 400),
        }
    }

    #[test]
    fn fuzz_valid_chat_requests_translate(req in chat_request(true), stream in any::<bool>()) {
        let up = AnthropicProvider::transform_request(ctx(stream), req.to_string().into_bytes());
        let up = up.map_err(|r| TestCaseError::fail(format!("{r:?}")))?;
        let out = check_translated(&up.body, stream)?;
        // Nothing is lost: every tool call, tool result and image arrives.
        let blocks = |kind: &str| out["messages"].as_array().into_iter().flatten()
            .flat_map(|m| m["content"].as_array().into_iter().flatten())
            .filter(|b| b["type"] == kind).count();
        let messages = &req["messages"];
        let calls: usize = messages.as_array().into_iter().flatten()
            .map(|m| m["tool_calls"].as_array().map_or(0, Vec::len)).sum();
        prop_assert_eq!(blocks("tool_use"), calls);
        let tool_messages = messages.as_array().into_iter().flatten()
            .filter(|m| m["role"] == "tool").count();
        prop_assert_eq!(blocks("tool_result"), tool_messages);
        let images: usize = messages.as_array().into_iter().flatten()
            .filter(|m| m["role"] == "user" || m["role"] == "assistant")
            .flat_map(|m| m["content"].as_array().into_iter().flatten())
            .filter(|p| p["type"] == "image_url").count();
        prop_assert_eq!(blocks("image"), images);
        checks::check_mapping(&req, &out)?;
    }

    #[test]
    fn fuzz_stream_matches_non_stream(msg in anthropic_message(), wants_usage in any::<bool>()) {
        check_stream_matches(&msg, wants_usage)?;
    }

    #[test]
    fn fuzz_state_bytes_round_trip(msg in anthropic_message(), edits in vec(edit(), 0..8),
                                   wants_usage in any::<bool>()) {
        let mut events = msg.events();
        apply(&mut events, &edits);
        let mut kept = StreamState::new("claude-up", 1, wants_usage);
        let host = run_host(kept.to_bytes(), &events);
        for (event, via_bytes) in events.iter().zip(&host) {
            let in_memory = translate_event(&mut kept, event);
            prop_assert_eq!(StreamState::from_bytes(&kept.to_bytes()), kept.clone());
            match (in_memory, via_bytes) {
                (Ok(events), Ok(out)) => {
                    prop_assert_eq!(&events, &out.events);
                    prop_assert_eq!(kept.usage(), out.usage);
                    prop_assert_eq!(kept.to_bytes(), out.state.clone());
                }
                (Err(a), Err(b)) => {
                    check_reject(b);
                    prop_assert_eq!(&a, b);
                }
                (a, b) => prop_assert!(false, "in memory {:?}, via bytes {:?}", a, b),
            }
        }
    }
}

fn check_stream_matches(msg: &Message, wants_usage: bool) -> Result<(), TestCaseError> {
    let body = msg.to_json().to_string().into_bytes();
    let whole = AnthropicProvider::transform_response(ctx(false), 200, body)
        .map_err(|r| TestCaseError::fail(format!("{r:?}")))?;
    let whole_usage = whole.usage.expect("usage");
    let whole: Value = serde_json::from_slice(&whole.body).expect("JSON");
    let message = &whole["choices"][0]["message"];

    let results = run_host(initial_state(wants_usage), &msg.events());
    prop_assert!(
        results.iter().all(Result::is_ok),
        "a valid stream is not rejected"
    );
    let (events, usage) = outputs(&results);
    prop_assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
    let streamed = reassemble(&events, &msg.id);

    prop_assert_eq!(
        &streamed.text,
        message["content"].as_str().unwrap_or_default()
    );
    let calls: Vec<&Value> = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    prop_assert_eq!(streamed.tools.len(), calls.len());
    for ((id, name, args), call) in streamed.tools.iter().zip(calls) {
        prop_assert_eq!(id, &call["id"]);
        prop_assert_eq!(name, &call["function"]["name"]);
        let streamed_args: Value = serde_json::from_str(args).expect("streamed arguments parse");
        let whole_args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or_default())
                .expect("arguments parse");
        prop_assert_eq!(streamed_args, whole_args);
    }
    prop_assert_eq!(&streamed.finish, &whole["choices"][0]["finish_reason"]);
    prop_assert_eq!(usage, Some(whole_usage));
    if wants_usage {
        prop_assert_eq!(streamed.usage_chunk.as_ref(), Some(&whole["usage"]));
    } else {
        prop_assert_eq!(streamed.usage_chunk, None);
    }
    Ok(())
}
