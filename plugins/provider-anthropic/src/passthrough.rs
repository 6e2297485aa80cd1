//! Anthropic Messages client, Anthropic provider: no translation at all.
//!
//! The host chose pass-through (`client-format = anthropic-messages`), so everything the client
//! sent must reach Anthropic as sent — `cache_control`, `thinking` blocks and their signatures,
//! `tool_use` ids, beta fields this plugin has never heard of. The request is patched, not
//! rebuilt: only `model` (the routed upstream name) and `stream` (the host's decision) change,
//! every other top-level value is copied byte for byte. Answers and stream events go back
//! unchanged; the plugin only reads usage from them, and turns an in-stream `error` event into
//! a [`Reject`] so the host ends the stream with an error in the client's (Anthropic) shape.
use serde::{Deserialize, Serialize};
use tollgate_plugin_sdk::serde_json::{self, value::RawValue, Value};
use tollgate_plugin_sdk::{
    http, json, usage, ClientResponse, Reject, SseEvent, StreamOutput, TransformCtx,
    UpstreamRequest, Usage,
};

use crate::stream::{update_usage, UsageState};
use crate::ANTHROPIC_VERSION;

/// Stream state of a pass-through stream. `passthrough` is always true: it is what tells this
/// state from the translating one ([`crate::StreamState`]) on every later call.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct PassthroughState {
    passthrough: bool,
    usage: Option<UsageState>,
}

impl PassthroughState {
    /// The state a pass-through stream starts with.
    pub fn new() -> Self {
        PassthroughState {
            passthrough: true,
            usage: None,
        }
    }

    /// The pass-through state saved in `bytes`, or None when they are not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice::<PassthroughState>(bytes)
            .ok()
            .filter(|s| s.passthrough)
    }

    /// The state as bytes, for the host to hand back with the next event.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Usage reported so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage.map(Usage::from)
    }
}

/// The client's Messages request with `model` and `stream` set, and nothing else touched.
pub fn request(ctx: &TransformCtx, body: &[u8]) -> Result<UpstreamRequest, Reject> {
    let top = json::TopLevel::parse(body).map_err(Reject::bad_request)?;
    let model = json::string_literal(&ctx.upstream_model);
    let stream = if ctx.stream { "true" } else { "false" };
    // `stream` absent means false to Anthropic: only written when it changes the meaning or the
    // client wrote it, so a non-streamed pass-through differs from the client's body in `model`.
    let mut changes = vec![("model", Some(model.as_str()))];
    if ctx.stream || top.get("stream").is_some() {
        changes.push(("stream", Some(stream)));
    }
    let patched = json::write_patched(&top, &changes, body.len() + model.len() + 16);
    Ok(UpstreamRequest {
        method: "POST".into(),
        path: "/v1/messages".into(),
        // The host replaces this with the client's own `anthropic-version` (and adds its
        // `anthropic-beta`) when the client sent them: the body was written for those.
        headers: vec![
            http::json_content_type(),
            ("anthropic-version".into(), ANTHROPIC_VERSION.into()),
        ],
        body: patched,
        stream_state: if ctx.stream {
            PassthroughState::new().to_bytes()
        } else {
            Vec::new()
        },
    })
}

/// The one part of a message the gateway reads; the content is skipped, not built.
#[derive(Deserialize)]
struct UsageOnly<'a> {
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
}

/// The upstream answer, unchanged. A 2xx body must be a JSON object (else there is no answer
/// to bill, and the client could not read it either): its `usage` is read. Any other status is
/// already an Anthropic error body, which is what the client expects.
pub fn response(status: u16, body: Vec<u8>) -> Result<ClientResponse, Reject> {
    let headers = vec![http::json_content_type()];
    if !(200..300).contains(&status) {
        return Ok(ClientResponse {
            status,
            headers,
            body,
            usage: None,
        });
    }
    let starts_an_object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let parsed = serde_json::from_slice::<UsageOnly>(&body)
        .ok()
        .filter(|_| starts_an_object)
        .ok_or_else(|| Reject::bad_upstream("upstream sent a response that is not JSON"))?;
    let used = parsed
        .usage
        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        .filter(Value::is_object)
        .map(|u| usage::from_anthropic(&u));
    Ok(ClientResponse {
        status,
        headers,
        body,
        usage: used,
    })
}

/// The HTTP status an Anthropic client expects for an in-stream error of `kind`: Anthropic's
/// own status for each error type (<https://platform.claude.com/docs/en/api/errors>), so the
/// host renders the same `error.type` back (529 stays 529: Anthropic clients know it and retry
/// it). Errors about the gateway's provider account rather than the client's request
/// (authentication, permission, billing) are a 502: the client's own credentials are fine.
fn error_status(kind: Option<&str>) -> u16 {
    match kind {
        Some("invalid_request_error") => 400,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("api_error") => 500,
        Some("timeout_error") => 504,
        Some("overloaded_error") => 529,
        _ => 502,
    }
}

/// Longest provider text quoted in a stream error whose data is not an Anthropic error object.
const MAX_QUOTED: usize = 512;

/// An in-stream `error` event as the reject that ends the stream. The message is Anthropic's
/// own, unprefixed: this client reads Anthropic's errors natively.
pub fn stream_error(data: &str) -> Reject {
    let parsed: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let error = &parsed["error"];
    let kind = error["type"].as_str().filter(|k| !k.trim().is_empty());
    let message = match error["message"].as_str().filter(|m| !m.trim().is_empty()) {
        Some(m) => m.to_string(),
        None => {
            let text = data.trim();
            let mut end = text.len().min(MAX_QUOTED);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("upstream stream error: {}", &text[..end])
                .trim_end()
                .to_string()
        }
    };
    Reject::new(
        error_status(kind),
        kind.unwrap_or("upstream_error"),
        message,
    )
}

/// Folds the usage object `reported` into `state` (counts are cumulative: present ones
/// overwrite).
fn fold_usage(state: &mut PassthroughState, reported: &Value) {
    if reported.is_object() {
        let mut u = state.usage.unwrap_or_default();
        update_usage(&mut u, reported);
        state.usage = Some(u);
    }
}

/// One upstream event, forwarded as it is; usage read from `message_start` and
/// `message_delta` (which in newer API versions repeats the input and cache counts too).
pub fn event(state: &mut PassthroughState, event: SseEvent) -> Result<StreamOutput, Reject> {
    let name = event.event.as_deref();
    // Most events are content deltas: only what can carry usage or an error is parsed (those
    // come once or twice a stream). Anthropic names every event; an unnamed one is typed by
    // its data.
    if matches!(
        name,
        None | Some("message_start" | "message_delta" | "error")
    ) {
        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
        match name.or_else(|| data["type"].as_str()) {
            Some("error") => return Err(stream_error(&event.data)),
            Some("message_start") => fold_usage(state, &data["message"]["usage"]),
            Some("message_delta") => fold_usage(state, &data["usage"]),
            _ => {}
        }
    }
    Ok(StreamOutput {
        events: vec![event],
        usage: state.usage(),
        state: state.to_bytes(),
    })
}

/// The end of a pass-through stream: nothing to add, the final usage.
pub fn end_of_stream(state: &PassthroughState) -> StreamOutput {
    StreamOutput {
        events: Vec::new(),
        usage: state.usage(),
        state: state.to_bytes(),
    }
}

#[cfg(test)]
#[path = "passthrough_tests.rs"]
mod tests;
