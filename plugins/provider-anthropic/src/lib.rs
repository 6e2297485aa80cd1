//! Built-in transform for Anthropic's Messages API (`POST /v1/messages`,
//! `anthropic-version: 2023-06-01`; SSE events `message_start`, `content_block_start`,
//! `content_block_delta` (`text_delta`, `input_json_delta`), `content_block_stop`,
//! `message_delta`, `message_stop`, `ping`, `error`). Two modes, chosen by the client's format:
//!
//! - **canonical** (`openai-chat`): OpenAI chat completions in, Anthropic upstream, OpenAI back
//!   out, streaming included — [`request`] and [`tools`] translate the request, [`response`]
//!   the complete response and errors, [`stream`] the SSE events.
//! - **pass-through** (`anthropic-messages`): the client already speaks Anthropic; the request
//!   is patched and the answer forwarded untouched — [`passthrough`].
//!
//! The host never sends other formats here (the provider declares the ones it speaks); they
//! are refused with a 400. Property-based tests of all four stage calls in both modes are in
//! `tests/fuzz/` (`PROPTEST_CASES=100000 cargo test -p provider-anthropic fuzz` to run them
//! longer).
use tollgate_plugin_sdk::serde_json::{self, json, Value};
use tollgate_plugin_sdk::{
    export_plugin, host, http, ApiFormat, ClientResponse, Reject, SseEvent, StreamOutput,
    Transform, TransformCtx, UpstreamRequest,
};

pub mod passthrough;
pub mod request;
pub mod response;
pub mod stream;
pub mod tools;

pub use passthrough::PassthroughState;
pub use request::{translate_request, DEFAULT_MAX_TOKENS};
pub use response::{stream_error, translate_response};
pub use stream::{translate_event, StreamState};
pub use tools::{StructuredOutputs, JSON_TOOL};

pub struct AnthropicProvider;

pub(crate) const ANTHROPIC_VERSION: &str = "2023-06-01";

/// How one call is served.
enum Mode {
    Canonical,
    Passthrough,
}

/// The mode for the client's format; any format but the two this provider speaks is refused.
fn mode(format: ApiFormat) -> Result<Mode, Reject> {
    match format {
        ApiFormat::OpenaiChat => Ok(Mode::Canonical),
        ApiFormat::AnthropicMessages => Ok(Mode::Passthrough),
        ApiFormat::OpenaiResponses => Err(not_served("openai-responses")),
        ApiFormat::OpenaiEmbeddings => Err(not_served("openai-embeddings")),
        ApiFormat::Gemini => Err(not_served("gemini")),
    }
}

fn not_served(format: &str) -> Reject {
    Reject::bad_request(format!("{format} requests are not served by this provider"))
}

/// The mode of a stream: a pass-through state says so itself (it was written by this plugin
/// for this stream); otherwise the client's format decides.
fn stream_mode(ctx: &TransformCtx, state: &[u8]) -> Result<Option<PassthroughState>, Reject> {
    if let Some(st) = PassthroughState::from_bytes(state) {
        return Ok(Some(st));
    }
    Ok(match mode(ctx.client_format)? {
        Mode::Passthrough => Some(PassthroughState::new()),
        Mode::Canonical => None,
    })
}

impl Transform for AnthropicProvider {
    fn transform_request(ctx: TransformCtx, body: Vec<u8>) -> Result<UpstreamRequest, Reject> {
        if let Mode::Passthrough = mode(ctx.client_format)? {
            return passthrough::request(&ctx, &body);
        }
        let client: Value = serde_json::from_slice(&body)
            .map_err(|e| Reject::bad_request(format!("invalid JSON body: {e}")))?;
        let structured = StructuredOutputs::from_config(&host::config_json());
        let translated =
            request::translate_request_value(&client, &ctx.upstream_model, ctx.stream, structured)?;
        let stream_state = if ctx.stream {
            let wants_usage = client["stream_options"]["include_usage"] == json!(true);
            StreamState::new(&ctx.upstream_model, host::now_ms() / 1000, wants_usage).to_bytes()
        } else {
            Vec::new()
        };
        Ok(UpstreamRequest {
            method: "POST".into(),
            path: "/v1/messages".into(),
            headers: vec![
                http::json_content_type(),
                ("anthropic-version".into(), ANTHROPIC_VERSION.into()),
            ],
            body: serde_json::to_vec(&translated).unwrap_or_default(),
            stream_state,
        })
    }

    fn transform_response(
        ctx: TransformCtx,
        status: u16,
        body: Vec<u8>,
    ) -> Result<ClientResponse, Reject> {
        if let Mode::Passthrough = mode(ctx.client_format)? {
            return passthrough::response(status, body);
        }
        let headers = vec![http::json_content_type()];
        if !(200..300).contains(&status) {
            return Ok(ClientResponse {
                status,
                headers,
                body: response::openai_error(status, &body),
                usage: None,
            });
        }
        let msg: Value = serde_json::from_slice(&body)
            .map_err(|e| Reject::bad_upstream(format!("upstream sent invalid JSON: {e}")))?;
        let (out, used) = response::translate_response_body(&msg, &body, host::now_ms() / 1000);
        Ok(ClientResponse {
            status,
            headers,
            body: out.to_string().into_bytes(),
            usage: Some(used),
        })
    }

    fn transform_event(
        ctx: TransformCtx,
        state: Vec<u8>,
        event: SseEvent,
    ) -> Result<StreamOutput, Reject> {
        if let Some(mut st) = stream_mode(&ctx, &state)? {
            return passthrough::event(&mut st, event);
        }
        let mut st = StreamState::from_bytes(&state);
        let events = translate_event(&mut st, &event)?;
        Ok(StreamOutput {
            events,
            usage: st.usage(),
            state: st.to_bytes(),
        })
    }

    fn end_of_stream(ctx: TransformCtx, state: Vec<u8>) -> Result<StreamOutput, Reject> {
        if let Some(st) = stream_mode(&ctx, &state)? {
            return Ok(passthrough::end_of_stream(&st));
        }
        let st = StreamState::from_bytes(&state);
        Ok(StreamOutput {
            events: Vec::new(),
            usage: st.usage(),
            state,
        })
    }
}

export_plugin!(transform: AnthropicProvider);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_plugin_sdk::testing::TestHost;

    fn ctx(stream: bool) -> TransformCtx {
        TransformCtx {
            request_id: "r".into(),
            client_format: ApiFormat::OpenaiChat,
            upstream_model: "claude-up".into(),
            stream,
        }
    }

    #[test]
    fn stream_request_carries_the_initial_state() {
        TestHost::install(TestHost {
            now_ms: 7_000,
            ..Default::default()
        });
        let body = br#"{"model":"c","stream":true,"stream_options":{"include_usage":true},
            "messages":[{"role":"user","content":"hi"}]}"#;
        let up = AnthropicProvider::transform_request(ctx(true), body.to_vec()).unwrap();
        assert_eq!(up.path, "/v1/messages");
        assert_eq!(
            StreamState::from_bytes(&up.stream_state),
            StreamState::new("claude-up", 7, true)
        );
        let sent: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(sent["stream"], true);
        let up = AnthropicProvider::transform_request(ctx(false), body.to_vec()).unwrap();
        assert!(up.stream_state.is_empty());
    }

    #[test]
    fn in_stream_error_ends_the_stream_with_a_reject() {
        let state = StreamState::new("claude-up", 0, false).to_bytes();
        let event = SseEvent::named(
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        let err = AnthropicProvider::transform_event(ctx(true), state, event).unwrap_err();
        assert_eq!(
            (err.status, err.code.as_str(), err.message.as_str()),
            (
                503,
                "overloaded_error",
                "Anthropic stream error: Overloaded"
            )
        );
    }

    #[test]
    fn upstream_errors_keep_their_status() {
        let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#;
        let out = AnthropicProvider::transform_response(ctx(false), 529, body.to_vec()).unwrap();
        assert_eq!(out.status, 529);
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["error"]["code"], "overloaded_error");
        let err =
            AnthropicProvider::transform_response(ctx(false), 200, b"<html>".to_vec()).unwrap_err();
        assert_eq!(err.status, 502);
    }

    fn as_client(format: ApiFormat, stream: bool) -> TransformCtx {
        TransformCtx {
            client_format: format,
            ..ctx(stream)
        }
    }

    #[test]
    fn formats_this_provider_does_not_speak_are_400s() {
        for format in [
            ApiFormat::OpenaiResponses,
            ApiFormat::OpenaiEmbeddings,
            ApiFormat::Gemini,
        ] {
            let c = || as_client(format, true);
            let err = AnthropicProvider::transform_request(c(), b"{}".to_vec()).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(
                err.message.contains("not served by this provider"),
                "{err:?}"
            );
            let err = AnthropicProvider::transform_response(c(), 200, b"{}".to_vec());
            assert_eq!(err.unwrap_err().status, 400);
            let err = AnthropicProvider::transform_event(c(), vec![], SseEvent::data("{}"));
            assert_eq!(err.unwrap_err().status, 400);
            assert_eq!(
                AnthropicProvider::end_of_stream(c(), vec![])
                    .unwrap_err()
                    .status,
                400
            );
        }
    }

    fn json_tool_request() -> Vec<u8> {
        json!({"messages": [{"role": "user", "content": "count"}], "response_format": {
            "type": "json_schema", "json_schema": {"name": "n", "strict": true,
            "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn structured_output_mode_comes_from_the_config() {
        TestHost::install(TestHost::default());
        let up = AnthropicProvider::transform_request(ctx(false), json_tool_request()).unwrap();
        let sent: Value = serde_json::from_slice(&up.body).unwrap();
        assert!(sent["output_config"]["format"]["schema"].is_object());
        assert!(sent.get("tools").is_none());
        TestHost::install(TestHost {
            config: r#"{"structured_outputs":"tool"}"#.into(),
            ..Default::default()
        });
        let up = AnthropicProvider::transform_request(ctx(false), json_tool_request()).unwrap();
        let sent: Value = serde_json::from_slice(&up.body).unwrap();
        assert!(sent.get("output_config").is_none());
        assert_eq!(sent["tools"][0]["name"], JSON_TOOL);
    }

    #[test]
    fn json_tool_answer_is_message_content() {
        let body = json!({"id": "msg_1", "model": "claude-up", "stop_reason": "tool_use",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL,
                "input": {"n": 3, "why": "three \"items\""}}],
            "usage": {"input_tokens": 5, "output_tokens": 7}});
        let raw = r#"{"id":"msg_1","model":"claude-up","stop_reason":"tool_use","content":[
            {"type":"tool_use","id":"toolu_1","name":"tollgate_json_response","input":{"n": 3.50}}],
            "usage":{"input_tokens":5,"output_tokens":7}}"#;
        for (body, content) in [
            (
                body.to_string().into_bytes(),
                r#"{"n":3,"why":"three \"items\""}"#,
            ),
            // The provider's own text, not a re-serialisation (3.50 stays 3.50).
            (raw.as_bytes().to_vec(), r#"{"n": 3.50}"#),
        ] {
            let out = AnthropicProvider::transform_response(ctx(false), 200, body).unwrap();
            let v: Value = serde_json::from_slice(&out.body).unwrap();
            let choice = &v["choices"][0];
            assert_eq!(choice["message"]["content"], content);
            assert!(choice["message"].get("tool_calls").is_none());
            assert_eq!(choice["finish_reason"], "stop");
        }
        // Beside a real tool call, the real call stays a call and the finish says so.
        let body = json!({"stop_reason": "tool_use", "content": [
            {"type": "tool_use", "id": "t1", "name": "search", "input": {"q": "x"}}]});
        let out =
            AnthropicProvider::transform_response(ctx(false), 200, body.to_string().into_bytes())
                .unwrap();
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "search"
        );
    }

    #[test]
    fn streamed_json_tool_answer_is_content() {
        let named = |name: &str, data: Value| SseEvent::named(name, data.to_string());
        let delta = |partial: &str| {
            named(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": partial}}),
            )
        };
        let events = [
            named(
                "message_start",
                json!({"message": {"id": "m", "usage": {"input_tokens": 4}}}),
            ),
            named(
                "content_block_start",
                json!({"index": 0, "content_block": {"type": "tool_use", "id": "toolu_1",
                    "name": JSON_TOOL, "input": {}}}),
            ),
            delta("{\"n\""),
            delta(": 3}"),
            named("content_block_stop", json!({"index": 0})),
            named(
                "message_delta",
                json!({"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 6}}),
            ),
            named("message_stop", json!({})),
        ];
        let mut state = StreamState::new("claude-up", 0, false).to_bytes();
        let mut chunks = Vec::new();
        for event in events {
            let out = AnthropicProvider::transform_event(ctx(true), state, event).unwrap();
            state = out.state;
            chunks.extend(out.events);
        }
        let parsed: Vec<Value> = chunks
            .iter()
            .filter(|e| e.data != "[DONE]")
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect();
        let content: String = parsed
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, r#"{"n": 3}"#);
        assert!(parsed
            .iter()
            .all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()));
        let finish: Vec<&Value> = parsed
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, [&json!("stop")]);
        // A JSON tool that streams no input answers `{}`.
        let mut st = StreamState::new("c", 0, false);
        let start = named(
            "content_block_start",
            json!({"index": 2, "content_block": {"type": "tool_use", "name": JSON_TOOL}}),
        );
        translate_event(&mut st, &start).unwrap();
        let out = translate_event(&mut st, &named("content_block_stop", json!({"index": 2})));
        let chunk: Value = serde_json::from_str(&out.unwrap()[0].data).unwrap();
        assert_eq!(chunk["choices"][0]["delta"], json!({"content": "{}"}));
    }

    #[test]
    fn cache_tokens_reach_openai_usage_and_wit_usage() {
        let body = json!({"content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 300,
                "cache_creation_input_tokens": 50}});
        let out =
            AnthropicProvider::transform_response(ctx(false), 200, body.to_string().into_bytes())
                .unwrap();
        let u = out.usage.unwrap();
        assert_eq!(
            (u.input, u.output, u.cache_read, u.cache_write),
            (10, 4, 300, 50)
        );
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(
            v["usage"]["prompt_tokens"], 360,
            "prompt_tokens includes cached"
        );
        assert_eq!(v["usage"]["completion_tokens"], 4);
        assert_eq!(v["usage"]["total_tokens"], 364);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 300);
        // The streamed usage chunk says the same.
        let mut st = StreamState::new("c", 0, true);
        let usage = json!({"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 300,
            "cache_creation_input_tokens": 50});
        let events = [
            SseEvent::named(
                "message_start",
                json!({"message": {"id": "m", "usage": usage}}).to_string(),
            ),
            SseEvent::named(
                "message_delta",
                json!({"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}})
                    .to_string(),
            ),
            SseEvent::named("message_stop", "{}"),
        ];
        let mut last = Vec::new();
        for e in &events {
            last = translate_event(&mut st, e).unwrap();
        }
        let chunk: Value = serde_json::from_str(&last[0].data).unwrap();
        assert_eq!(chunk["usage"], v["usage"]);
        assert_eq!(st.usage(), Some(u));
    }
}
