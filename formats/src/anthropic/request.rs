//! Anthropic Messages requests: the checked request type, and [`parse_request`], which checks a
//! client's body the way Anthropic would. The translation to canonical is in `canonical.rs`.

use serde_json::Value;

use super::fields::{as_object, body_error, invalid, present, require_str};
use crate::FormatError;

/// A checked Anthropic Messages request.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagesRequest {
    pub model: String,
    pub stream: bool,
    /// Always `Some` after [`parse_request`] (Anthropic requires `max_tokens`); an `Option` so a
    /// caller building a request by hand may leave it out, and [`to_canonical`](super::to_canonical) then omits it.
    pub max_tokens: Option<u32>,
    /// `tools` is a non-empty array.
    pub has_tools: bool,
    /// The whole body as the client sent it (pass-through forwards it unchanged).
    pub value: Value,
}

/// Parses and checks an Anthropic Messages body: JSON object; `model` string (non-empty);
/// `max_tokens` positive integer (required by Anthropic); `messages` non-empty array of
/// `{role: user|assistant, content: string | array of blocks}`; `system` string or array of text
/// blocks; `stream` bool; `tools` array of `{name, input_schema, ...}`. Errors:
/// `FormatError::invalid(param, message)` with param like `messages[1].content`.
///
/// Blocks and tools of types this adapter does not translate are accepted here (pass-through
/// to an Anthropic provider handles them); [`to_canonical`](super::to_canonical) is the one that rejects them.
pub fn parse_request(body: &[u8]) -> Result<MessagesRequest, FormatError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| body_error(format!("request body is not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| body_error("request body must be a JSON object"))?;

    let model = match obj.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(invalid("model", "must not be empty")),
        None | Some(Value::Null) => return Err(invalid("model", "Field required")),
        Some(_) => return Err(invalid("model", "Input should be a valid string")),
    };

    let max_tokens = match obj.get("max_tokens") {
        None | Some(Value::Null) => return Err(invalid("max_tokens", "Field required")),
        Some(v) => match v.as_u64() {
            Some(0) | None => return Err(invalid("max_tokens", "must be a positive integer")),
            Some(n) => u32::try_from(n)
                .map_err(|_| invalid("max_tokens", format!("must be at most {}", u32::MAX)))?,
        },
    };

    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("stream", "Input should be a valid boolean")),
    };

    if let Some(system) = present(obj, "system") {
        check_system(system)?;
    }

    match obj.get("messages") {
        None | Some(Value::Null) => return Err(invalid("messages", "Field required")),
        Some(Value::Array(messages)) if messages.is_empty() => {
            return Err(invalid("messages", "at least one message is required"))
        }
        Some(Value::Array(messages)) => {
            for (i, message) in messages.iter().enumerate() {
                check_message(message, &format!("messages[{i}]"))?;
            }
        }
        Some(_) => return Err(invalid("messages", "Input should be a valid list")),
    }

    let has_tools = match present(obj, "tools") {
        None => false,
        Some(Value::Array(tools)) => {
            for (i, tool) in tools.iter().enumerate() {
                check_tool(tool, &format!("tools[{i}]"))?;
            }
            !tools.is_empty()
        }
        Some(_) => return Err(invalid("tools", "Input should be a valid list")),
    };

    if let Some(choice) = present(obj, "tool_choice") {
        check_tool_choice(choice)?;
    }
    if let Some(stops) = present(obj, "stop_sequences") {
        let ok = stops
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            return Err(invalid(
                "stop_sequences",
                "Input should be a list of strings",
            ));
        }
    }
    for key in ["temperature", "top_p"] {
        if present(obj, key).is_some_and(|v| !v.is_number()) {
            return Err(invalid(key, "Input should be a valid number"));
        }
    }
    if present(obj, "top_k").is_some_and(|v| v.as_u64().is_none()) {
        return Err(invalid("top_k", "Input should be a non-negative integer"));
    }
    if let Some(metadata) = present(obj, "metadata") {
        let metadata = as_object(metadata, "metadata")?;
        if present(metadata, "user_id").is_some_and(|v| !v.is_string()) {
            return Err(invalid(
                "metadata.user_id",
                "Input should be a valid string",
            ));
        }
    }

    Ok(MessagesRequest {
        model,
        stream,
        max_tokens: Some(max_tokens),
        has_tools,
        value,
    })
}

fn check_system(system: &Value) -> Result<(), FormatError> {
    match system {
        Value::String(_) => Ok(()),
        Value::Array(blocks) => {
            for (i, block) in blocks.iter().enumerate() {
                let param = format!("system[{i}]");
                let block = as_object(block, &param)?;
                if block.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(invalid(
                        &format!("{param}.type"),
                        "system blocks must be of type `text`",
                    ));
                }
                require_str(block, "text", &param)?;
            }
            Ok(())
        }
        _ => Err(invalid(
            "system",
            "Input should be a string or a list of text blocks",
        )),
    }
}

fn check_message(message: &Value, param: &str) -> Result<(), FormatError> {
    let message = as_object(message, param)?;
    match message.get("role").and_then(Value::as_str) {
        Some("user") | Some("assistant") => {}
        _ => {
            return Err(invalid(
                &format!("{param}.role"),
                "Input should be 'user' or 'assistant'",
            ))
        }
    }
    let param = format!("{param}.content");
    match message.get("content") {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(blocks)) => {
            for (j, block) in blocks.iter().enumerate() {
                check_block(block, &format!("{param}[{j}]"))?;
            }
            Ok(())
        }
        None | Some(Value::Null) => Err(invalid(&param, "Field required")),
        Some(_) => Err(invalid(
            &param,
            "Input should be a string or a list of content blocks",
        )),
    }
}

/// Checks the fields of the block types this adapter translates; other types only need a
/// `type`.
fn check_block(block: &Value, param: &str) -> Result<(), FormatError> {
    let block = as_object(block, param)?;
    let kind = require_str(block, "type", param)?;
    match kind {
        "text" => {
            require_str(block, "text", param)?;
        }
        "image" => {
            let source_param = format!("{param}.source");
            let source = block
                .get("source")
                .ok_or_else(|| invalid(&source_param, "Field required"))?;
            let source = as_object(source, &source_param)?;
            match require_str(source, "type", &source_param)? {
                "base64" => {
                    require_str(source, "media_type", &source_param)?;
                    require_str(source, "data", &source_param)?;
                }
                "url" => {
                    require_str(source, "url", &source_param)?;
                }
                _ => {}
            }
        }
        "tool_use" => {
            require_str(block, "id", param)?;
            require_str(block, "name", param)?;
            if !block.get("input").is_some_and(Value::is_object) {
                return Err(invalid(
                    &format!("{param}.input"),
                    "Input should be an object",
                ));
            }
        }
        "tool_result" => {
            require_str(block, "tool_use_id", param)?;
            match present(block, "content") {
                None | Some(Value::String(_)) => {}
                Some(Value::Array(parts)) => {
                    for (k, part) in parts.iter().enumerate() {
                        check_block(part, &format!("{param}.content[{k}]"))?;
                    }
                }
                Some(_) => {
                    return Err(invalid(
                        &format!("{param}.content"),
                        "Input should be a string or a list of content blocks",
                    ))
                }
            }
            if present(block, "is_error").is_some_and(|v| !v.is_boolean()) {
                return Err(invalid(
                    &format!("{param}.is_error"),
                    "Input should be a valid boolean",
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_tool(tool: &Value, param: &str) -> Result<(), FormatError> {
    let tool = as_object(tool, param)?;
    let name = require_str(tool, "name", param)?;
    if name.is_empty() {
        return Err(invalid(&format!("{param}.name"), "must not be empty"));
    }
    // Server tools (`web_search_20250305`, ...) have a `type` and no schema.
    let custom = matches!(
        tool.get("type").and_then(Value::as_str),
        None | Some("custom")
    );
    if custom && !tool.get("input_schema").is_some_and(Value::is_object) {
        return Err(invalid(
            &format!("{param}.input_schema"),
            "Field required (an object)",
        ));
    }
    Ok(())
}

fn check_tool_choice(choice: &Value) -> Result<(), FormatError> {
    let choice = as_object(choice, "tool_choice")?;
    match require_str(choice, "type", "tool_choice")? {
        "auto" | "any" | "none" => {}
        "tool" => {
            require_str(choice, "name", "tool_choice")?;
        }
        _ => {
            return Err(invalid(
                "tool_choice.type",
                "Input should be 'auto', 'any', 'tool' or 'none'",
            ))
        }
    }
    if present(choice, "disable_parallel_tool_use").is_some_and(|v| !v.is_boolean()) {
        return Err(invalid(
            "tool_choice.disable_parallel_tool_use",
            "Input should be a valid boolean",
        ));
    }
    Ok(())
}
