//! Built-in transform: OpenAI chat completions in, Anthropic Messages upstream, OpenAI back out
//! (streaming included). Formats from Anthropic's public Messages API reference:
//! `POST /v1/messages`, `anthropic-version: 2023-06-01`, SSE events `message_start`,
//! `content_block_start`, `content_block_delta` (`text_delta`, `input_json_delta`),
//! `content_block_stop`, `message_delta`, `message_stop`, `ping`, `error`.
//!
//! [`request`] translates the request, [`response`] the complete response and errors, [`stream`]
//! the SSE events; this file ties them to the transform stage. Property-based tests of all four
//! stage calls are in `tests/fuzz.rs` (`PROPTEST_CASES=100000 cargo test -p provider-anthropic
//! fuzz` to run them longer).
use tollgate_plugin_sdk::serde_json::{self, json, Value};
use tollgate_plugin_sdk::{
    export_plugin, host, http, ApiFormat, ClientResponse, Reject, SseEvent, StreamOutput,
    Transform, TransformCtx, UpstreamRequest,
};

pub mod request;
pub mod response;
pub mod stream;

pub use request::{translate_request, DEFAULT_MAX_TOKENS};
pub use response::{stream_error, translate_response};
pub use stream::{translate_event, StreamState};

pub struct AnthropicProvider;

const ANTHROPIC_VERSION: &str = "2023-06-01";

impl Transform for AnthropicProvider {
    fn transform_request(ctx: TransformCtx, body: Vec<u8>) -> Result<UpstreamRequest, Reject> {
        if ctx.client_format != ApiFormat::OpenaiChat {
            return Err(Reject::bad_request(
                "this provider accepts OpenAI chat completions requests",
            ));
        }
        let client: Value = serde_json::from_slice(&body)
            .map_err(|e| Reject::bad_request(format!("invalid JSON body: {e}")))?;
        let translated =
            request::translate_request_value(&client, &ctx.upstream_model, ctx.stream)?;
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
        _ctx: TransformCtx,
        status: u16,
        body: Vec<u8>,
    ) -> Result<ClientResponse, Reject> {
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
        _ctx: TransformCtx,
        state: Vec<u8>,
        event: SseEvent,
    ) -> Result<StreamOutput, Reject> {
        let mut st = StreamState::from_bytes(&state);
        let events = translate_event(&mut st, &event)?;
        Ok(StreamOutput {
            events,
            usage: st.usage(),
            state: st.to_bytes(),
        })
    }

    fn end_of_stream(_ctx: TransformCtx, state: Vec<u8>) -> Result<StreamOutput, Reject> {
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
}
