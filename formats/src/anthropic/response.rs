//! Canonical answers back to Anthropic: a `chat.completion` body to a Message, and error
//! bodies to Anthropic's error shape.

use serde_json::{json, Value};

use super::{stop_reason, synthetic_tool_id, usage_json};
use crate::{Event, FormatError, Usage};

/// A canonical `chat.completion` (2xx) body → an Anthropic Message body
/// (`{"id","type":"message","role":"assistant","model": client_model,"content":[…],
/// "stop_reason","stop_sequence":null,"usage":{…}}`). `usage` (the gateway's exact count,
/// when known) wins over the body's `usage`.
///
/// Only the first choice is translated (Anthropic has no `n`). Content: the message's text (a
/// string, or text parts) as one text block, then a refusal's text as a text block (with
/// `stop_reason: refusal`), then one `tool_use` block per tool call. Tool-call arguments that
/// are empty, unparsable or not a JSON object become `input: {}`: Anthropic requires an object
/// there and clients deserialise it as one, so the tool runs with no arguments and reports what
/// is missing, rather than the client failing on the whole answer. Provider reasoning text
/// (`reasoning_content`) is dropped: a thinking block needs a signature only Anthropic can make.
pub fn response_from_canonical(
    canonical: &[u8],
    message_id: &str,
    client_model: &str,
    usage: Option<&Usage>,
) -> Result<Vec<u8>, FormatError> {
    let body: Value = serde_json::from_slice(canonical)
        .map_err(|e| FormatError::upstream(format!("upstream answer is not valid JSON: {e}")))?;
    if !body.is_object() {
        return Err(FormatError::upstream(
            "upstream answer is not a JSON object",
        ));
    }
    let choice = body
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| FormatError::upstream("upstream answer has no choices"))?;
    let message = choice
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| FormatError::upstream("upstream answer's choice has no message"))?;

    let mut content = Vec::new();
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    };
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    let refusal = message
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty());
    if let Some(refusal) = refusal {
        content.push(json!({"type": "text", "text": refusal}));
    }
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (position, call) in calls.iter().enumerate() {
        let function = call.get("function").unwrap_or(&Value::Null);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map_or_else(|| synthetic_tool_id(message_id, position), str::to_string);
        let name = function.get("name").and_then(Value::as_str).unwrap_or("");
        let arguments = function.get("arguments");
        let input = match arguments {
            Some(Value::String(text)) => object_or_empty(serde_json::from_str(text).ok()),
            // A few providers send arguments already parsed.
            other => object_or_empty(other.cloned()),
        };
        content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }

    let finish_reason = choice.get("finish_reason").and_then(Value::as_str);
    let usage = usage.copied().unwrap_or_else(|| {
        body.get("usage")
            .map(Usage::from_canonical)
            .unwrap_or_default()
    });
    let answer = json!({
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": client_model,
        "content": content,
        "stop_reason": stop_reason(finish_reason, !calls.is_empty(), refusal.is_some()),
        "stop_sequence": null,
        "usage": usage_json(&usage),
    });
    serde_json::to_vec(&answer).map_err(|e| FormatError::upstream(e.to_string()))
}

fn object_or_empty(value: Option<Value>) -> Value {
    match value {
        Some(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

/// Anthropic's error `type` for an HTTP status (the gateway's own errors use it too).
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        // 400 itself, and the 4xx Anthropic has no name for (422, ...).
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The most a non-JSON error body contributes to the message, so an upstream's HTML error page
/// does not end up whole in the client's answer.
const MAX_RAW_MESSAGE: usize = 500;

/// The human-readable message of an error body in any of the shapes providers use.
fn error_message(body: &[u8]) -> Option<String> {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let candidates = [
            value.get("error").and_then(|e| e.get("message")),
            value.get("error"),
            value.get("message"),
            value.get("detail"),
        ];
        return candidates
            .into_iter()
            .flatten()
            .find_map(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let cut = text
        .char_indices()
        .nth(MAX_RAW_MESSAGE)
        .map_or(text.len(), |(i, _)| i);
    Some(text[..cut].to_string())
}

/// A canonical error body (OpenAI shape `{"error":{"message","type","code"}}`, or anything)
/// with its status → Anthropic error body `{"type":"error","error":{"type":…,"message":…}}`.
///
/// The type comes from the status (400 invalid_request_error, 401 authentication_error, 402
/// billing_error, 403 permission_error, 404 not_found_error, 413 request_too_large, 429
/// rate_limit_error, 503/529 overloaded_error, 504 timeout_error, other 4xx
/// invalid_request_error, anything else api_error). The message is the body's
/// `error.message` (or `error`, `message`, `detail` when a string), else the first 500
/// characters of a non-JSON body, else a generic one naming the status.
pub fn error_from_canonical(status: u16, body: &[u8]) -> Vec<u8> {
    error_value(status, body).to_string().into_bytes()
}

fn error_value(status: u16, body: &[u8]) -> Value {
    let message = error_message(body).unwrap_or_else(|| format!("upstream error (HTTP {status})"));
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
}

/// The same error as an `error` stream event, for a failure after the stream has started
/// (Anthropic's own streams report mid-stream errors this way).
pub fn stream_error_event(status: u16, body: &[u8]) -> Event {
    Event::named("error", &error_value(status, body))
}
