//! Built-in transform for OpenAI and every OpenAI-compatible provider (chat completions).
//!
//! Client and provider speak the same format, so the request is patched, not rebuilt: `model`
//! becomes the routed upstream model and, for streams, `stream_options.include_usage` is turned
//! on so the gateway learns the exact usage. If the client did not ask for usage itself, the
//! usage-only chunk is taken out of the stream again, so the client sees what it asked for.
use serde::de::IgnoredAny;
use serde::Deserialize;
use tollgate_plugin_sdk::serde_json::{self, value::RawValue, Value};
use tollgate_plugin_sdk::{
    export_plugin, http, json, usage, ApiFormat, ClientResponse, Reject, SseEvent, StreamOutput,
    Transform, TransformCtx, UpstreamRequest,
};

pub struct OpenAiProvider;

/// Stream state: the client asked for the usage chunk itself.
const CLIENT_WANTS_USAGE: &[u8] = b"client-usage";

#[derive(Deserialize)]
struct UsageOnly<'a> {
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
    choices: Option<Vec<IgnoredAny>>,
}

fn parse_usage(raw: Option<&RawValue>) -> Option<tollgate_plugin_sdk::Usage> {
    let value: Value = serde_json::from_str(raw?.get()).ok()?;
    value.is_object().then(|| usage::from_openai(&value))
}

/// The body of an OpenAI-shaped error.
pub fn openai_error(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
    serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        .to_string()
        .into_bytes()
}

impl Transform for OpenAiProvider {
    fn transform_request(ctx: TransformCtx, body: Vec<u8>) -> Result<UpstreamRequest, Reject> {
        if ctx.client_format != ApiFormat::OpenaiChat {
            return Err(Reject::bad_request(
                "this provider accepts OpenAI chat completions requests only",
            ));
        }
        let top = json::TopLevel::parse(&body).map_err(Reject::bad_request)?;
        let model = json::string_literal(&ctx.upstream_model);
        let mut stream_state = Vec::new();
        let stream_options;
        let mut changes: Vec<(&str, Option<&str>)> = vec![("model", Some(&model))];
        if ctx.stream {
            let mut options = top
                .get_as::<serde_json::Map<String, Value>>("stream_options")
                .unwrap_or_default();
            if options.get("include_usage") == Some(&Value::Bool(true)) {
                stream_state = CLIENT_WANTS_USAGE.to_vec();
            }
            options.insert("include_usage".into(), Value::Bool(true));
            stream_options = Value::Object(options).to_string();
            changes.push(("stream_options", Some(&stream_options)));
        }
        Ok(UpstreamRequest {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            headers: vec![http::json_content_type()],
            body: json::write_patched(&top, &changes, body.len() + 64),
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
            // Upstream errors keep their status; a body that is not an OpenAI error is wrapped.
            let is_openai_error = serde_json::from_slice::<Value>(&body)
                .map(|v| v.get("error").is_some_and(Value::is_object))
                .unwrap_or(false);
            let body = if is_openai_error {
                body
            } else {
                let text = String::from_utf8_lossy(&body);
                openai_error(
                    &format!("upstream error: {}", text.trim()),
                    "upstream_error",
                    None,
                )
            };
            return Ok(ClientResponse {
                status,
                headers,
                body,
                usage: None,
            });
        }
        let parsed: UsageOnly = serde_json::from_slice(&body)
            .map_err(|e| Reject::bad_upstream(format!("upstream sent invalid JSON: {e}")))?;
        Ok(ClientResponse {
            status,
            headers,
            usage: parse_usage(parsed.usage),
            body,
        })
    }

    fn transform_event(
        _ctx: TransformCtx,
        state: Vec<u8>,
        event: SseEvent,
    ) -> Result<StreamOutput, Reject> {
        if event.data.trim() == "[DONE]" {
            return Ok(StreamOutput::events(vec![event], state));
        }
        let Ok(chunk) = serde_json::from_str::<UsageOnly>(&event.data) else {
            // Not JSON (a comment or a provider extension): forward untouched.
            return Ok(StreamOutput::events(vec![event], state));
        };
        let usage = parse_usage(chunk.usage);
        let usage_only = usage.is_some() && chunk.choices.is_none_or(|c| c.is_empty());
        let events = if usage_only && state != CLIENT_WANTS_USAGE {
            Vec::new()
        } else {
            vec![event]
        };
        Ok(StreamOutput {
            events,
            usage,
            state,
        })
    }

    fn end_of_stream(_ctx: TransformCtx, state: Vec<u8>) -> Result<StreamOutput, Reject> {
        Ok(StreamOutput::events(Vec::new(), state))
    }
}

export_plugin!(transform: OpenAiProvider);

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(stream: bool) -> TransformCtx {
        TransformCtx {
            request_id: "r".into(),
            client_format: ApiFormat::OpenaiChat,
            upstream_model: "gpt-4o-mini-2024".into(),
            stream,
        }
    }

    #[test]
    fn patches_model_and_turns_on_stream_usage() {
        let body =
            br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let up = OpenAiProvider::transform_request(ctx(true), body.to_vec()).unwrap();
        let v: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(v["model"], "gpt-4o-mini-2024");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["messages"][0]["content"], "hi");
        assert!(up.stream_state.is_empty());

        let asked =
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
        let up = OpenAiProvider::transform_request(ctx(true), asked.to_vec()).unwrap();
        assert_eq!(up.stream_state, CLIENT_WANTS_USAGE);
    }

    #[test]
    fn malformed_body_is_a_400() {
        let err = OpenAiProvider::transform_request(ctx(false), b"{nope".to_vec()).unwrap_err();
        assert_eq!(err.status, 400);
    }

    #[test]
    fn usage_chunk_is_read_and_hidden_unless_asked() {
        let usage_chunk = SseEvent::data(
            r#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#,
        );
        let out = OpenAiProvider::transform_event(ctx(true), vec![], usage_chunk.clone()).unwrap();
        assert!(out.events.is_empty());
        assert_eq!(out.usage.map(|u| (u.input, u.output)), Some((9, 3)));
        let out =
            OpenAiProvider::transform_event(ctx(true), CLIENT_WANTS_USAGE.to_vec(), usage_chunk)
                .unwrap();
        assert_eq!(out.events.len(), 1);

        let content =
            SseEvent::data(r#"{"choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}"#);
        let out = OpenAiProvider::transform_event(ctx(true), vec![], content).unwrap();
        assert_eq!(out.events.len(), 1);
        assert!(out.usage.is_none());
    }

    #[test]
    fn non_2xx_is_kept_in_openai_error_shape() {
        let out =
            OpenAiProvider::transform_response(ctx(false), 503, b"overloaded".to_vec()).unwrap();
        assert_eq!(out.status, 503);
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("overloaded"));
    }
}
