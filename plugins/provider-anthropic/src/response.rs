//! Anthropic Messages response -> OpenAI chat completion, and Anthropic errors (whole-response
//! and in-stream) -> OpenAI error bodies and rejects. A call of the forced JSON tool
//! ([`crate::tools::JSON_TOOL`]) becomes message content, the way `response_format` answers.
use serde::Deserialize;
use tollgate_plugin_sdk::serde_json::{self, json, value::RawValue, Value};
use tollgate_plugin_sdk::{usage, Reject, Usage};

use crate::tools::JSON_TOOL;

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: &Value) -> Value {
    match stop_reason.as_str() {
        Some("end_turn") | Some("stop_sequence") | Some("pause_turn") => json!("stop"),
        Some("max_tokens") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some("refusal") => json!("content_filter"),
        _ => Value::Null,
    }
}

/// The body of a non-2xx Anthropic response in OpenAI's error shape.
pub fn openai_error(status: u16, body: &[u8]) -> Vec<u8> {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = parsed["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let kind = match status {
        400 | 413 | 422 => "invalid_request_error",
        401 | 403 => "authentication_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        _ => "api_error",
    };
    json!({"error": {"message": format!("upstream error: {message}"), "type": kind,
        "param": null, "code": parsed["error"]["type"].as_str()}})
    .to_string()
    .into_bytes()
}

/// Longest provider text quoted in a stream error whose data is not an Anthropic error object.
const MAX_QUOTED: usize = 512;

/// An Anthropic in-stream `error` event (`{"type":"error","error":{"type","message"}}`) as the
/// reject that ends the stream: the status follows the error type, the code is the type itself.
pub fn stream_error(data: &str) -> Reject {
    let parsed: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let kind = parsed["error"]["type"]
        .as_str()
        .filter(|k| !k.trim().is_empty());
    let status = match kind {
        Some("overloaded_error") => 503,
        Some("rate_limit_error") => 429,
        Some("api_error") => 500,
        Some("invalid_request_error") => 400,
        _ => 502,
    };
    let message = match parsed["error"]["message"]
        .as_str()
        .filter(|m| !m.trim().is_empty())
    {
        Some(m) => m.to_string(),
        None => {
            let text = data.trim();
            let mut end = text.len().min(MAX_QUOTED);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_string()
        }
    };
    Reject::new(
        status,
        kind.unwrap_or("upstream_error"),
        format!("Anthropic stream error: {message}"),
    )
}

#[derive(Deserialize)]
struct Inputs<'a> {
    #[serde(borrow)]
    content: Vec<Input<'a>>,
}

#[derive(Deserialize)]
struct Input<'a> {
    #[serde(borrow)]
    input: Option<&'a RawValue>,
}

/// The `input` of each content block of the response `body` as the provider wrote it. Parsed
/// into a [`Value`] and printed again, a float may come out one unit in the last place off
/// (serde_json's default float parsing), so the tool arguments the client gets would differ
/// from the streamed ones; the provider's own text is used instead. `None` when the body does
/// not have the usual shape.
fn raw_inputs(body: &[u8]) -> Option<Vec<Option<&RawValue>>> {
    let parsed: Inputs = serde_json::from_slice(body).ok()?;
    Some(parsed.content.into_iter().map(|b| b.input).collect())
}

/// Anthropic message -> OpenAI chat completion.
pub fn translate_response(msg: &Value, created: u64) -> (Value, Usage) {
    translate_response_with(msg, None, created)
}

/// [`translate_response`] of the response `body`, tool arguments copied from it verbatim.
pub fn translate_response_body(msg: &Value, body: &[u8], created: u64) -> (Value, Usage) {
    let has_tools = msg["content"]
        .as_array()
        .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_use"));
    let raw = if has_tools { raw_inputs(body) } else { None };
    translate_response_with(msg, raw.as_deref(), created)
}

fn translate_response_with(
    msg: &Value,
    raw_inputs: Option<&[Option<&RawValue>]>,
    created: u64,
) -> (Value, Usage) {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for (i, block) in msg["content"].as_array().into_iter().flatten().enumerate() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => {
                let raw = raw_inputs.and_then(|r| r.get(i).copied().flatten());
                // A tool without parameters may come without `input`: its arguments are `{}`.
                let arguments = match (&block["input"], raw) {
                    (Value::Null, _) => "{}".to_string(),
                    (_, Some(raw)) => raw.get().to_string(),
                    (input, None) => input.to_string(),
                };
                if block["name"] == JSON_TOOL {
                    // The forced tool of `response_format`: its input is the answer. Appended
                    // in block order, as the stream sends it.
                    text.push_str(&arguments);
                    continue;
                }
                tool_calls.push(json!({"id": block["id"], "type": "function",
                    "function": {"name": block["name"], "arguments": arguments}}))
            }
            _ => {}
        }
    }
    let used = usage::from_anthropic(&msg["usage"]);
    let mut finish = finish_reason(&msg["stop_reason"]);
    if finish == "tool_calls" && tool_calls.is_empty() {
        // No tool call reaches the client (the JSON answer is content): the answer is complete.
        finish = json!("stop");
    }
    let mut message = json!({"role": "assistant", "refusal": null,
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) }});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let out = json!({
        "id": format!("chatcmpl-{}", msg["id"].as_str().unwrap_or_default()),
        "object": "chat.completion",
        "created": created,
        "model": msg["model"],
        "choices": [{"index": 0, "message": message, "logprobs": null,
            "finish_reason": finish}],
        "usage": usage::to_openai(&used),
    });
    (out, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_translation() {
        let msg = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up",
            "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 12, "output_tokens": 3, "cache_read_input_tokens": 4}});
        let (out, used) = translate_response(&msg, 7);
        assert_eq!(out["choices"][0]["message"]["content"], "Hi");
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        assert_eq!(out["usage"]["prompt_tokens"], 16);
        assert_eq!(out["usage"]["completion_tokens"], 3);
        assert_eq!((used.input, used.output, used.cache_read), (12, 3, 4));
    }

    #[test]
    fn tool_use_without_input_has_empty_object_arguments() {
        let msg = json!({"content": [{"type": "tool_use", "id": "t", "name": "now"}],
            "stop_reason": "tool_use"});
        let (out, _) = translate_response(&msg, 0);
        let call = &out["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["arguments"], "{}");
        assert_eq!(out["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn tool_arguments_are_copied_verbatim() {
        // Found by fuzz_stream_matches_non_stream: printed from a parsed Value, this float came
        // out as 5.404985490886417e-289 while the stream passed the provider's text through.
        let body = br#"{"content": [{"type": "text", "text": "x"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {"type": [5.404985490886416e-289]}}]}"#;
        let msg: Value = serde_json::from_slice(body).unwrap();
        let (out, _) = translate_response_body(&msg, body, 0);
        assert_eq!(
            out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            r#"{"type": [5.404985490886416e-289]}"#
        );
    }

    #[test]
    fn huge_usage_saturates() {
        let msg = json!({"content": [], "usage": {"input_tokens": u64::MAX,
            "output_tokens": u64::MAX, "cache_read_input_tokens": u64::MAX,
            "cache_creation_input_tokens": 1e300}});
        let (out, used) = translate_response(&msg, 0);
        assert_eq!(used.cache_write, u64::MAX);
        assert_eq!(out["usage"]["prompt_tokens"], u64::MAX);
        assert_eq!(out["usage"]["total_tokens"], u64::MAX);
    }

    #[test]
    fn error_bodies_and_codes() {
        let body = br#"{"type":"error","error":{"type":"not_found_error","message":"no model"}}"#;
        let v: Value = serde_json::from_slice(&openai_error(404, body)).unwrap();
        assert_eq!(v["error"]["message"], "upstream error: no model");
        assert_eq!(v["error"]["code"], "not_found_error");
        assert_eq!(v["error"]["type"], "not_found_error");
        // A non-string error type is not passed on as the code.
        let v: Value =
            serde_json::from_slice(&openai_error(500, br#"{"error":{"type":{"x":1}}}"#)).unwrap();
        assert_eq!(v["error"]["code"], Value::Null);
    }

    #[test]
    fn stream_errors_map_to_statuses() {
        let cases = [
            ("overloaded_error", 503),
            ("rate_limit_error", 429),
            ("api_error", 500),
            ("invalid_request_error", 400),
            ("authentication_error", 502),
        ];
        for (kind, status) in cases {
            let data = json!({"type": "error", "error": {"type": kind, "message": "Overloaded"}});
            let reject = stream_error(&data.to_string());
            assert_eq!((reject.status, reject.code.as_str()), (status, kind));
            assert_eq!(reject.message, "Anthropic stream error: Overloaded");
        }
        let reject = stream_error(r#"{"type":"error","error":{"type":"","message":""}}"#);
        assert_eq!(
            (reject.status, reject.code.as_str()),
            (502, "upstream_error")
        );
        let reject = stream_error("upstream fell over");
        assert_eq!(
            (reject.status, reject.code.as_str()),
            (502, "upstream_error")
        );
        assert_eq!(reject.message, "Anthropic stream error: upstream fell over");
        let long = "é".repeat(MAX_QUOTED);
        assert!(stream_error(&long).message.len() <= MAX_QUOTED + 40);
    }
}
