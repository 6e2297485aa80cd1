//! The Responses API objects the adapter emits: the `Response` (with the request fields it
//! repeats), its output items and content parts, `ResponseUsage`, and the canonical messages
//! an output becomes in the stored conversation. Shared by the one-shot and streaming paths so
//! both produce the same `Response`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::{Finished, ResponseMeta, ResponsesRequest};
use crate::Usage;

/// One output item as it is built (all at once here, piece by piece in the stream).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Item {
    Message {
        id: String,
        parts: Vec<Part>,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// A content part of a message item: `output_text`, or a `refusal`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Part {
    pub refusal: bool,
    pub text: String,
}

impl Part {
    pub(super) fn to_json(&self) -> Value {
        if self.refusal {
            json!({"type": "refusal", "refusal": self.text})
        } else {
            // `annotations` and `logprobs` are required by OutputTextContent, even empty.
            json!({"type": "output_text", "text": self.text, "annotations": [], "logprobs": []})
        }
    }
}

impl Item {
    pub(super) fn to_json(&self, status: &str) -> Value {
        match self {
            Item::Message { id, parts } => json!({
                "type": "message", "id": id, "status": status, "role": "assistant",
                "content": parts.iter().map(Part::to_json).collect::<Vec<_>>(),
            }),
            Item::Call {
                id,
                call_id,
                name,
                arguments,
            } => json!({
                "type": "function_call", "id": id, "call_id": call_id, "name": name,
                "arguments": arguments, "status": status,
            }),
        }
    }
}

/// Where a response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status<'a> {
    InProgress,
    Completed,
    /// `incomplete_details.reason`: `max_output_tokens` or `content_filter`.
    Incomplete(&'a str),
    Failed {
        code: &'a str,
        message: &'a str,
    },
}

impl Status<'static> {
    /// The canonical `finish_reason` decides between completed and incomplete.
    pub(super) fn from_finish_reason(reason: Option<&str>) -> Self {
        match reason {
            Some("length") => Status::Incomplete("max_output_tokens"),
            Some("content_filter") => Status::Incomplete("content_filter"),
            _ => Status::Completed,
        }
    }
}

impl Status<'_> {
    fn name(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Incomplete(_) => "incomplete",
            Status::Failed { .. } => "failed",
        }
    }
}

/// `ResponseError.code` is an enum; a gateway code outside it (timeouts, upstream errors) is a
/// `server_error` to the client, with the gateway's message kept.
const ERROR_CODES: &[&str] = &[
    "server_error",
    "rate_limit_exceeded",
    "invalid_prompt",
    "data_residency_mismatch",
    "bio_policy",
    "vector_store_timeout",
    "invalid_image",
    "invalid_image_format",
    "invalid_base64_image",
    "invalid_image_url",
    "image_too_large",
    "image_too_small",
    "image_parse_error",
    "image_content_policy_violation",
    "invalid_image_mode",
    "image_file_too_large",
    "unsupported_image_media_type",
    "empty_image_file",
    "failed_to_download_image",
    "image_file_not_found",
];

/// An output item id derived from the response id (`resp_X` → `msg_X_0`): unique per response
/// without a random source, and stable between the stream's events and its final `Response`.
pub(super) fn item_id(meta: &ResponseMeta, prefix: &str, index: usize) -> String {
    let base = meta.id.strip_prefix("resp_").unwrap_or(&meta.id);
    format!("{prefix}_{base}_{index}")
}

/// The fields every `Response` of a request repeats (the spec requires most of them, nullable),
/// built once per response.
pub(super) fn echo(req: &ResponsesRequest, meta: &ResponseMeta) -> Map<String, Value> {
    let v = &req.value;
    let mut m = Map::new();
    m.insert("id".into(), meta.id.clone().into());
    m.insert("object".into(), "response".into());
    m.insert("created_at".into(), meta.created_at.into());
    m.insert("model".into(), meta.model.clone().into());
    let instructions = v["instructions"].as_str().map_or(Value::Null, Value::from);
    m.insert("instructions".into(), instructions);
    m.insert("tools".into(), Value::Array(echo_tools(&v["tools"])));
    let choice = match &v["tool_choice"] {
        c @ (Value::String(_) | Value::Object(_)) => c.clone(),
        _ => "auto".into(),
    };
    m.insert("tool_choice".into(), choice);
    for key in ["temperature", "top_p"] {
        let n = if v[key].is_number() {
            v[key].clone()
        } else {
            Value::Null
        };
        m.insert(key.into(), n);
    }
    let max = req.max_output_tokens.map_or(Value::Null, Value::from);
    m.insert("max_output_tokens".into(), max);
    let previous = req
        .previous_response_id
        .clone()
        .map_or(Value::Null, Value::from);
    m.insert("previous_response_id".into(), previous);
    m.insert("store".into(), req.store.into());
    let metadata = if v["metadata"].is_object() {
        v["metadata"].clone()
    } else {
        json!({})
    };
    m.insert("metadata".into(), metadata);
    let parallel = v["parallel_tool_calls"].as_bool().unwrap_or(true);
    m.insert("parallel_tool_calls".into(), parallel.into());
    let format = match &v["text"]["format"] {
        f @ Value::Object(_) => f.clone(),
        _ => json!({"type": "text"}),
    };
    let mut text = json!({"format": format});
    if let Some(verbosity) = v["text"]["verbosity"].as_str() {
        text["verbosity"] = verbosity.into();
    }
    m.insert("text".into(), text);
    // `user` is a plain string in the schema (not nullable): only echoed when given.
    if let Some(user) = v["user"].as_str() {
        m.insert("user".into(), user.into());
    }
    // Reasoning settings go nowhere through canonical, and the gateway never truncates input.
    m.insert("reasoning".into(), Value::Null);
    m.insert("truncation".into(), "disabled".into());
    m.insert("background".into(), false.into());
    m
}

/// `FunctionTool` requires `strict` and `parameters` (nullable): null when the client left
/// them out, since the provider behind the gateway decides the default.
fn echo_tools(tools: &Value) -> Vec<Value> {
    let tools = tools.as_array().map(Vec::as_slice).unwrap_or_default();
    let function = |t: &&Value| t["type"] == "function" && t["name"].is_string();
    let field = |t: &Value, key: &str, ok: bool| if ok { t[key].clone() } else { Value::Null };
    tools
        .iter()
        .filter(function)
        .map(|t| {
            json!({
                "type": "function",
                "name": t["name"],
                "description": field(t, "description", t["description"].is_string()),
                "parameters": field(t, "parameters", t["parameters"].is_object()),
                "strict": field(t, "strict", t["strict"].is_boolean()),
            })
        })
        .collect()
}

/// A full `Response`: the echoed fields plus status, output, error and usage.
pub(super) fn build(
    echo: &Map<String, Value>,
    status: Status<'_>,
    output: Vec<Value>,
    usage: Option<&Usage>,
) -> Value {
    let mut m = echo.clone();
    m.insert("status".into(), status.name().into());
    m.insert("output".into(), Value::Array(output));
    let error = match status {
        Status::Failed { code, message } => {
            let code = if ERROR_CODES.contains(&code) {
                code
            } else {
                "server_error"
            };
            json!({"code": code, "message": message})
        }
        _ => Value::Null,
    };
    m.insert("error".into(), error);
    let incomplete = match status {
        Status::Incomplete(reason) => json!({"reason": reason}),
        _ => Value::Null,
    };
    m.insert("incomplete_details".into(), incomplete);
    let completed_at = match status {
        Status::Completed => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let created = echo.get("created_at").and_then(Value::as_u64).unwrap_or(0);
            now.max(created).into()
        }
        _ => Value::Null,
    };
    m.insert("completed_at".into(), completed_at);
    // `usage` is not nullable: left out until it is known.
    if let Some(u) = usage {
        m.insert("usage".into(), response_usage(u));
    }
    Value::Object(m)
}

/// The gateway's usage as `ResponseUsage` (input tokens include cached and cache-write ones).
pub(super) fn response_usage(u: &Usage) -> Value {
    let input = u.input + u.cache_read + u.cache_write;
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": u.cache_read,
            "cache_write_tokens": u.cache_write,
        },
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": input + u.output,
    })
}

/// The output as canonical messages for the stored conversation: one assistant message
/// (refusals kept as its text), or none when the model said nothing.
pub(super) fn output_messages(items: &[Item]) -> Vec<Value> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for item in items {
        match item {
            Item::Message { parts, .. } => parts.iter().for_each(|p| text.push_str(&p.text)),
            Item::Call {
                call_id,
                name,
                arguments,
                ..
            } => calls.push(json!({"id": call_id, "type": "function",
                "function": {"name": name, "arguments": arguments}})),
        }
    }
    if text.is_empty() && calls.is_empty() {
        return vec![];
    }
    let mut message = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        if text.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = Value::Array(calls);
    }
    vec![message]
}

/// The record of a finished (or failed) response. `cut_last`: the last item was still being
/// generated when the response ended (token limit, content filter, failure), so it is
/// `incomplete`; the items before it were finished.
pub(super) fn finished(
    echo: &Map<String, Value>,
    status: Status<'_>,
    items: &[Item],
    usage: Option<&Usage>,
    cut_last: bool,
) -> Finished {
    let last = items.len().checked_sub(1).filter(|_| cut_last);
    let output = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.to_json(if Some(i) == last {
                "incomplete"
            } else {
                "completed"
            })
        })
        .collect();
    let response = build(echo, status, output, usage);
    Finished {
        body: response.to_string().into_bytes(),
        output_messages: output_messages(items),
        response,
    }
}
