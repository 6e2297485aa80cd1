//! Reading canonical answers: a `chat.completion` → `Response` ([`response_from_canonical`]),
//! a `chat.completion.chunk` → what it adds ([`Chunk`], for the stream adapter), and canonical
//! usage. Upstream answers are provider output: anything malformed is a 502, never a panic.

use serde_json::Value;

use super::object::{echo, finished, item_id, Item, Part, Status};
use super::{Finished, ResponseMeta, ResponsesRequest};
use crate::{FormatError, Usage};

/// Canonical `chat.completion` → `Response` (completed, or incomplete when the output was cut
/// by the token limit or a content filter). `usage`, the gateway's exact count, wins over the
/// body's.
pub fn response_from_canonical(
    req: &ResponsesRequest,
    meta: &ResponseMeta,
    canonical: &[u8],
    usage: Option<&Usage>,
) -> Result<Finished, FormatError> {
    let v: Value = serde_json::from_slice(canonical)
        .map_err(|e| FormatError::upstream(format!("The upstream answer is not JSON: {e}")))?;
    let choice = v["choices"]
        .as_array()
        .and_then(|c| c.first())
        .ok_or_else(|| FormatError::upstream("The upstream answer has no choices."))?;
    let message = &choice["message"];
    if !message.is_object() {
        return Err(FormatError::upstream("The upstream answer has no message."));
    }
    let mut items = Vec::new();
    let mut parts = Vec::new();
    let text = content_text(&message["content"])?;
    if !text.is_empty() {
        parts.push(Part {
            refusal: false,
            text,
        });
    }
    if let Some(refusal) = message["refusal"].as_str().filter(|r| !r.is_empty()) {
        let text = refusal.to_owned();
        parts.push(Part {
            refusal: true,
            text,
        });
    }
    if !parts.is_empty() {
        items.push(Item::Message {
            id: item_id(meta, "msg", 0),
            parts,
        });
    }
    let calls = match &message["tool_calls"] {
        Value::Null => &[][..],
        Value::Array(calls) => calls,
        _ => {
            return Err(FormatError::upstream(
                "The upstream 'tool_calls' is not an array.",
            ))
        }
    };
    for call in calls {
        let index = items.len();
        items.push(call_item(meta, index, call)?);
    }
    let status = Status::from_finish_reason(choice["finish_reason"].as_str());
    let usage = usage.copied().or_else(|| usage_from_canonical(&v["usage"]));
    let cut = matches!(status, Status::Incomplete(_));
    Ok(finished(
        &echo(req, meta),
        status,
        &items,
        usage.as_ref(),
        cut,
    ))
}

/// Message content: a string, null, or (from some providers) an array of text parts.
fn content_text(content: &Value) -> Result<String, FormatError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => Ok(parts.iter().filter_map(|p| p["text"].as_str()).collect()),
        _ => Err(FormatError::upstream(
            "The upstream message content is not text.",
        )),
    }
}

fn call_item(meta: &ResponseMeta, index: usize, call: &Value) -> Result<Item, FormatError> {
    let name = call["function"]["name"]
        .as_str()
        .ok_or_else(|| FormatError::upstream("An upstream tool call has no function name."))?;
    Ok(Item::Call {
        id: item_id(meta, "fc", index),
        call_id: call_id(meta, index, &call["id"]),
        name: name.to_owned(),
        arguments: arguments_text(&call["function"]["arguments"]),
    })
}

/// The tool call id, or one made up when the provider gave none: `call_id` is how the client
/// answers the call.
pub(super) fn call_id(meta: &ResponseMeta, index: usize, id: &Value) -> String {
    match id.as_str() {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => item_id(meta, "call", index),
    }
}

/// Arguments are a JSON string; a provider that sent an object (or nothing) is forgiven.
pub(super) fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(s) => s.clone(),
        Value::Null => "{}".into(),
        other => other.to_string(),
    }
}

/// Canonical `usage` (prompt tokens include cached ones) → the gateway's usage; used only when
/// the gateway passed none.
pub(super) fn usage_from_canonical(usage: &Value) -> Option<Usage> {
    let prompt = usage["prompt_tokens"].as_u64()?;
    let output = usage["completion_tokens"].as_u64()?;
    let cached = usage["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    let reasoning = usage["completion_tokens_details"]["reasoning_tokens"].as_u64();
    Some(Usage {
        input: prompt.saturating_sub(cached),
        output,
        cache_read: cached.min(prompt),
        cache_write: 0,
        reasoning: reasoning.unwrap_or(0),
    })
}

/// What one canonical chunk says, checked before any state changes so that a malformed chunk
/// leaves the stream as it was.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    pub content: String,
    pub refusal: String,
    pub calls: Vec<CallDelta>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
}

#[derive(Debug)]
pub(super) struct CallDelta {
    pub index: u64,
    pub id: Value,
    pub name: Option<String>,
    pub arguments: String,
}

pub(super) fn parse_chunk(data: &str) -> Result<Chunk, FormatError> {
    let bad =
        |what: &str| FormatError::upstream(format!("Malformed upstream stream chunk: {what}"));
    let v: Value = serde_json::from_str(data).map_err(|e| bad(&e.to_string()))?;
    let obj = v.as_object().ok_or_else(|| bad("not a JSON object"))?;
    if let Some(error) = obj.get("error").filter(|e| !e.is_null()) {
        let message = error["message"].as_str().unwrap_or("no message");
        let msg = format!("The upstream stream reported an error: {message}");
        return Err(FormatError::upstream(msg));
    }
    let mut chunk = Chunk {
        usage: obj.get("usage").and_then(usage_from_canonical),
        ..Chunk::default()
    };
    let choices = match obj.get("choices") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(choices)) => choices,
        Some(_) => return Err(bad("'choices' is not an array")),
    };
    for choice in choices {
        if !choice.is_object() {
            return Err(bad("a choice is not an object"));
        }
        // One answer per request: other choices (n > 1) have no place in a Response.
        if choice["index"].as_u64().unwrap_or(0) != 0 {
            continue;
        }
        let delta = &choice["delta"];
        match &delta["content"] {
            Value::Null => {}
            Value::String(s) => chunk.content.push_str(s),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .for_each(|t| chunk.content.push_str(t)),
            _ => return Err(bad("'delta.content' is not text")),
        }
        if let Some(refusal) = delta["refusal"].as_str() {
            chunk.refusal.push_str(refusal);
        }
        let calls = match &delta["tool_calls"] {
            Value::Null => &[][..],
            Value::Array(calls) => calls,
            _ => return Err(bad("'delta.tool_calls' is not an array")),
        };
        for (k, call) in calls.iter().enumerate() {
            if !call.is_object() {
                return Err(bad("a tool call delta is not an object"));
            }
            let arguments = match &call["function"]["arguments"] {
                Value::Null => String::new(),
                other => arguments_text(other),
            };
            chunk.calls.push(CallDelta {
                index: call["index"].as_u64().unwrap_or(k as u64),
                id: call["id"].clone(),
                name: call["function"]["name"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned),
                arguments,
            });
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            chunk.finish_reason = Some(reason.to_owned());
        }
    }
    Ok(chunk)
}
