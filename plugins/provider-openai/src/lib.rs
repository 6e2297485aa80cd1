//! Built-in transform for OpenAI and every OpenAI-compatible provider: chat completions
//! (canonical form) and, in [`embeddings`], the embeddings API. Other client formats are never
//! sent here by the host (the provider declares the formats it speaks) and are refused.
//!
//! Client and provider speak the same format, so the request is patched, not rebuilt: `model`
//! becomes the routed upstream model and, for streams, `stream_options.include_usage` is turned
//! on so the gateway learns the exact usage. If the client did not ask for usage itself, the
//! usage-only chunk is taken out of the stream again, so the client sees what it asked for.
//! An error object in the stream (`data: {"error": {...}}`, or an `event: error`) ends the
//! stream with a [`Reject`] instead of being forwarded as a chunk.
//!
//! Property-based tests of all four stage calls are in `tests/fuzz/`
//! (`PROPTEST_CASES=100000 cargo test -p provider-openai fuzz` to run them longer).
use serde::de::IgnoredAny;
use serde::Deserialize;
use tollgate_plugin_sdk::serde_json::{self, value::RawValue, Value};
use tollgate_plugin_sdk::{
    export_plugin, http, json, usage, ApiFormat, ClientResponse, Reject, SseEvent, StreamOutput,
    Transform, TransformCtx, UpstreamRequest,
};

pub mod embeddings;

pub struct OpenAiProvider;

/// What one call serves.
enum Mode {
    Chat,
    Embeddings,
}

/// The mode for the client's format; any format but the two this provider speaks is refused.
fn mode(format: ApiFormat) -> Result<Mode, Reject> {
    let name = match format {
        ApiFormat::OpenaiChat => return Ok(Mode::Chat),
        ApiFormat::OpenaiEmbeddings => return Ok(Mode::Embeddings),
        ApiFormat::OpenaiResponses => "openai-responses",
        ApiFormat::AnthropicMessages => "anthropic-messages",
        ApiFormat::Gemini => "gemini",
    };
    Err(Reject::bad_request(format!(
        "{name} requests are not served by this provider"
    )))
}

/// Stream state: the client asked for the usage chunk itself.
const CLIENT_WANTS_USAGE: &[u8] = b"client-usage";

/// The parts of a response or chunk the gateway reads; the rest is skipped, not built.
#[derive(Deserialize)]
pub(crate) struct UsageOnly<'a> {
    #[serde(borrow)]
    pub(crate) usage: Option<&'a RawValue>,
    /// Left unparsed: only looked into for a chunk that carries usage.
    #[serde(borrow)]
    choices: Option<&'a RawValue>,
    /// Present (and not null) only in an error object.
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

impl<'a> UsageOnly<'a> {
    /// Parses a JSON object (a derived struct would also take an array of its fields).
    pub(crate) fn parse(text: &'a [u8]) -> Result<Self, String> {
        let first = text
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        if first != Some(&b'{') {
            return Err("not a JSON object".into());
        }
        serde_json::from_slice(text).map_err(|e| e.to_string())
    }
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

/// A non-2xx upstream answer: the status is kept; an OpenAI error body passes unchanged, any
/// other body is wrapped in one so the client's SDK can read it.
pub(crate) fn error_response(status: u16, body: Vec<u8>) -> ClientResponse {
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
    ClientResponse {
        status,
        headers: vec![http::json_content_type()],
        body,
        usage: None,
    }
}

/// Longest provider text quoted in a stream error that carries no message.
const MAX_QUOTED: usize = 512;

fn quoted(text: &str) -> &str {
    let text = text.trim();
    let mut end = text.len().min(MAX_QUOTED);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An error that arrived inside a stream (`error` is the chunk's `error` field, `raw` the event
/// data) as the reject that ends the stream. The status comes from a numeric HTTP-like `code`
/// (as some compatible providers send) or from the error's type; the code is the provider's
/// `code`, else its `type`.
pub fn stream_error(error: &Value, raw: &str) -> Reject {
    let field = |key: &str| {
        error
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    };
    let numeric = error
        .get("code")
        .and_then(Value::as_u64)
        .filter(|c| (400..=599).contains(c));
    let kind = field("code").or_else(|| field("type"));
    let status = match (numeric, kind) {
        (Some(code), _) => code as u16,
        (None, Some("invalid_request_error")) => 400,
        (None, Some("rate_limit_error" | "rate_limit_exceeded" | "insufficient_quota")) => 429,
        (None, Some("server_error" | "api_error" | "internal_error")) => 500,
        (None, Some("overloaded" | "overloaded_error" | "service_unavailable")) => 503,
        _ => 502,
    };
    let message = error
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| field("message"))
        .unwrap_or_else(|| quoted(raw));
    Reject::new(
        status,
        kind.unwrap_or("upstream_error"),
        format!("upstream stream error: {message}"),
    )
}

impl Transform for OpenAiProvider {
    fn transform_request(ctx: TransformCtx, body: Vec<u8>) -> Result<UpstreamRequest, Reject> {
        if let Mode::Embeddings = mode(ctx.client_format)? {
            return embeddings::request(&ctx, &body);
        }
        let top = json::TopLevel::parse(&body).map_err(Reject::bad_request)?;
        let model = json::string_literal(&ctx.upstream_model);
        let mut stream_state = Vec::new();
        let stream_options;
        let mut changes: Vec<(&str, Option<&str>)> = vec![("model", Some(&model))];
        if ctx.stream {
            // Patched like the body, so the client's other options are kept byte for byte.
            let raw = top.get("stream_options").map(|raw| raw.get());
            let options = raw.and_then(|raw| json::TopLevel::parse(raw.as_bytes()).ok());
            if options
                .as_ref()
                .and_then(|o| o.get_as::<bool>("include_usage"))
                == Some(true)
            {
                stream_state = CLIENT_WANTS_USAGE.to_vec();
            }
            stream_options = match (&options, raw) {
                (Some(options), Some(raw)) => {
                    let patched = json::write_patched(
                        options,
                        &[("include_usage", Some("true"))],
                        raw.len() + 24,
                    );
                    // Copied from valid UTF-8 input: cannot fail.
                    String::from_utf8(patched).unwrap_or_default()
                }
                _ => r#"{"include_usage":true}"#.to_string(),
            };
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
        ctx: TransformCtx,
        status: u16,
        body: Vec<u8>,
    ) -> Result<ClientResponse, Reject> {
        if let Mode::Embeddings = mode(ctx.client_format)? {
            return embeddings::response(status, body);
        }
        let headers = vec![http::json_content_type()];
        if !(200..300).contains(&status) {
            return Ok(error_response(status, body));
        }
        let parsed = UsageOnly::parse(&body)
            .map_err(|e| Reject::bad_upstream(format!("upstream sent invalid JSON: {e}")))?;
        Ok(ClientResponse {
            status,
            headers,
            usage: parse_usage(parsed.usage),
            body,
        })
    }

    fn transform_event(
        ctx: TransformCtx,
        state: Vec<u8>,
        event: SseEvent,
    ) -> Result<StreamOutput, Reject> {
        if let Mode::Embeddings = mode(ctx.client_format)? {
            return Err(embeddings::not_streamed());
        }
        let named_error = event.event.as_deref() == Some("error");
        if event.data.trim() == "[DONE]" && !named_error {
            return Ok(StreamOutput::events(vec![event], state));
        }
        let chunk = match UsageOnly::parse(event.data.as_bytes()) {
            Ok(chunk) => chunk,
            Err(_) if named_error => return Err(stream_error(&Value::Null, &event.data)),
            // Not JSON at all: the stream is broken (a client SDK would fail to decode it), so
            // it ends here as an error rather than reaching the client.
            Err(_) if serde_json::from_str::<IgnoredAny>(&event.data).is_err() => {
                return Err(Reject::new(
                    502,
                    "invalid_upstream_stream",
                    format!(
                        "upstream stream error: the provider sent an event that is not JSON: {}",
                        quoted(&event.data)
                    ),
                ))
            }
            // JSON of an unexpected shape (a provider extension): forward untouched.
            Err(_) => return Ok(StreamOutput::events(vec![event], state)),
        };
        if chunk.error.is_some() || named_error {
            let error = chunk
                .error
                .and_then(|raw| serde_json::from_str(raw.get()).ok())
                .unwrap_or(Value::Null);
            return Err(stream_error(&error, &event.data));
        }
        let usage = parse_usage(chunk.usage);
        let no_choices = || {
            chunk.choices.is_none_or(|raw| {
                serde_json::from_str::<Vec<IgnoredAny>>(raw.get()).is_ok_and(|c| c.is_empty())
            })
        };
        let usage_only = usage.is_some() && no_choices();
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

    fn end_of_stream(ctx: TransformCtx, state: Vec<u8>) -> Result<StreamOutput, Reject> {
        if let Mode::Embeddings = mode(ctx.client_format)? {
            return Err(embeddings::not_streamed());
        }
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
    fn other_stream_options_are_kept_verbatim() {
        // Found by fuzz_request_patches_only_model_and_stream_options: re-serialised through a
        // Value, this float came out as 1.1795780594463033e191.
        let body = br#"{"stream_options":{"x":[1.1795780594463031e+191],"include_usage":false}}"#;
        let up = OpenAiProvider::transform_request(ctx(true), body.to_vec()).unwrap();
        let text = String::from_utf8(up.body).unwrap();
        assert!(
            text.contains(
                r#""stream_options":{"x":[1.1795780594463031e+191],"include_usage":true}"#
            ),
            "{text}"
        );
        assert!(up.stream_state.is_empty());
        for odd in [r#""stream_options":null"#, r#""stream_options":[1]"#] {
            let body = format!("{{{odd},\"messages\":[]}}");
            let up = OpenAiProvider::transform_request(ctx(true), body.into_bytes()).unwrap();
            let v: Value = serde_json::from_slice(&up.body).unwrap();
            assert_eq!(
                v["stream_options"],
                serde_json::json!({"include_usage": true})
            );
        }
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
    fn error_in_stream_is_a_reject() {
        let cases = [
            (
                r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#,
                500,
                "server_error",
            ),
            (
                r#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#,
                429,
                "rate_limit_exceeded",
            ),
            (
                r#"{"id":"x","choices":[{"delta":{},"finish_reason":"error"}],"error":{"code":502,"message":"provider went away"}}"#,
                502,
                "upstream_error",
            ),
            (r#"{"error":"overloaded"}"#, 502, "upstream_error"),
            // Found by fuzz_events_never_panic: an empty code was passed on as the code.
            (
                r#"{"error":{"code":"","message":"","type":"server_error"}}"#,
                500,
                "server_error",
            ),
        ];
        for (data, status, code) in cases {
            let err = OpenAiProvider::transform_event(ctx(true), vec![], SseEvent::data(data))
                .unwrap_err();
            assert_eq!((err.status, err.code.as_str()), (status, code), "{data}");
            assert!(
                err.message.starts_with("upstream stream error: "),
                "{err:?}"
            );
        }
        let named = SseEvent::named("error", "upstream exploded");
        let err = OpenAiProvider::transform_event(ctx(true), vec![], named).unwrap_err();
        assert_eq!(err.status, 502);
        assert_eq!(err.message, "upstream stream error: upstream exploded");
        // A chunk whose error is null is an ordinary chunk.
        let ok =
            SseEvent::data(r#"{"choices":[{"index":0,"delta":{"content":"x"}}],"error":null}"#);
        let out = OpenAiProvider::transform_event(ctx(true), vec![], ok).unwrap();
        assert_eq!(out.events.len(), 1);
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

    #[test]
    fn formats_this_provider_does_not_speak_are_400s() {
        for format in [
            ApiFormat::AnthropicMessages,
            ApiFormat::OpenaiResponses,
            ApiFormat::Gemini,
        ] {
            let c = || TransformCtx {
                client_format: format,
                ..ctx(false)
            };
            let err = OpenAiProvider::transform_request(c(), b"{}".to_vec()).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(
                err.message.contains("not served by this provider"),
                "{err:?}"
            );
            let err = OpenAiProvider::transform_response(c(), 200, b"{}".to_vec()).unwrap_err();
            assert_eq!(err.status, 400);
            let err = OpenAiProvider::transform_event(c(), vec![], SseEvent::data("{}"));
            assert_eq!(err.unwrap_err().status, 400);
            assert_eq!(
                OpenAiProvider::end_of_stream(c(), vec![])
                    .unwrap_err()
                    .status,
                400
            );
        }
    }
}
