//! Content-block mapping for [`super::to_canonical`]: a user turn's text, image and
//! `tool_result` blocks, and an assistant turn's text and `tool_use` blocks, as canonical
//! (OpenAI chat) messages; other block types are rejected with their path.

use serde_json::{json, Map, Value};

use super::fields::{invalid, unsupported};
use crate::FormatError;

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

/// One user turn: its tool results as `tool` messages first, then the rest as one user message.
pub(super) fn user_messages(
    content: &Value,
    param: &str,
    out: &mut Vec<Value>,
) -> Result<(), FormatError> {
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(invalid(
                &format!("{param}.content"),
                "Input should be a string or a list of content blocks",
            ))
        }
    };
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let param = format!("{param}.content[{j}]");
        match block_type(block) {
            "text" => parts.push(text_part(block, &param)?),
            "image" => parts.push(image_part(block, &param)?),
            "tool_result" => out.push(tool_message(block, &param)?),
            "document" => return Err(unsupported(&param, "a `document` content block")),
            other => {
                return Err(unsupported(
                    &param,
                    &format!("a `{other}` content block in a user message"),
                ))
            }
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    } else if blocks.is_empty() {
        // Keep the turn, so the conversation's shape is what the client sent.
        out.push(json!({"role": "user", "content": ""}));
    }
    Ok(())
}

fn text_part(block: &Value, param: &str) -> Result<Value, FormatError> {
    let text = block
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("{param}.text"), "Field required"))?;
    Ok(json!({"type": "text", "text": text}))
}

fn image_part(block: &Value, param: &str) -> Result<Value, FormatError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let field = |key: &str| source.get(key).and_then(Value::as_str);
    let url = match field("type") {
        Some("base64") => match (field("media_type"), field("data")) {
            (Some(media_type), Some(data)) => format!("data:{media_type};base64,{data}"),
            _ => {
                return Err(invalid(
                    &format!("{param}.source"),
                    "base64 sources need `media_type` and `data`",
                ))
            }
        },
        Some("url") => match field("url") {
            Some(url) => url.to_string(),
            None => return Err(invalid(&format!("{param}.source.url"), "Field required")),
        },
        _ => {
            return Err(unsupported(
                &format!("{param}.source"),
                "an image source other than base64 or url",
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn tool_message(block: &Value, param: &str) -> Result<Value, FormatError> {
    let id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("{param}.tool_use_id"), "Field required"))?;
    let mut text = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for (k, part) in parts.iter().enumerate() {
                let param = format!("{param}.content[{k}]");
                match block_type(part) {
                    "text" => texts.push(
                        part.get("text")
                            .and_then(Value::as_str)
                            .ok_or_else(|| invalid(&format!("{param}.text"), "Field required"))?,
                    ),
                    "image" => return Err(unsupported(&param, "an image inside a `tool_result`")),
                    other => {
                        return Err(unsupported(
                            &param,
                            &format!("a `{other}` block inside a `tool_result`"),
                        ))
                    }
                }
            }
            texts.join("\n")
        }
        Some(_) => {
            return Err(invalid(
                &format!("{param}.content"),
                "Input should be a string or a list of content blocks",
            ))
        }
    };
    if block.get("is_error") == Some(&Value::Bool(true)) {
        text.insert_str(0, "Error: ");
    }
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

pub(super) fn assistant_message(content: &Value, param: &str) -> Result<Value, FormatError> {
    let blocks = match content {
        Value::String(s) => return Ok(json!({"role": "assistant", "content": s})),
        Value::Array(blocks) => blocks,
        _ => {
            return Err(invalid(
                &format!("{param}.content"),
                "Input should be a string or a list of content blocks",
            ))
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let param = format!("{param}.content[{j}]");
        match block_type(block) {
            // Adjacent text blocks are pieces of one answer (Anthropic splits text around
            // citations), so they are joined as they are.
            "text" => match block.get("text").and_then(Value::as_str) {
                Some(t) => text.push_str(t),
                None => return Err(invalid(&format!("{param}.text"), "Field required")),
            },
            "tool_use" => {
                let field = |key: &str| {
                    block
                        .get(key)
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid(&format!("{param}.{key}"), "Field required"))
                };
                let arguments = block
                    .get("input")
                    .filter(|v| !v.is_null())
                    .map_or_else(|| "{}".to_string(), Value::to_string);
                calls.push(json!({"id": field("id")?, "type": "function",
                                  "function": {"name": field("name")?, "arguments": arguments}}));
            }
            // Reasoning is the provider's own; another provider cannot use it (or its signature).
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(unsupported(
                    &param,
                    &format!("a `{other}` content block in an assistant message"),
                ))
            }
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    message.insert("content".into(), content);
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    Ok(Value::Object(message))
}
