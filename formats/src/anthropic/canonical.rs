//! Translation of a checked Anthropic Messages request to a canonical (OpenAI chat completions)
//! request: [`to_canonical`] and the request-level fields (system prompt, tools, tool choice).
//! The mapping of each message's content blocks is in `blocks.rs`.

use serde_json::{json, Map, Value};

use super::blocks::{assistant_message, user_messages};
use super::fields::{as_object, body_error, invalid, present, unsupported};
use super::request::MessagesRequest;
use crate::FormatError;

/// Canonical (OpenAI chat completions) request body for it. Always sets
/// `stream_options: {"include_usage": true}` when streaming.
///
/// Mapping: `system` → a first `system` message (a string, or text parts); user `text` and
/// `image` blocks → content parts; each `tool_result` → its own `tool` message, placed before
/// the rest of that user turn (OpenAI wants tool answers right after the assistant's calls),
/// its text blocks joined with newlines and prefixed `Error: ` when `is_error`; assistant text
/// blocks → `content` (concatenated), `tool_use` → `tool_calls`, `thinking` and
/// `redacted_thinking` dropped; custom tools → function tools; `tool_choice` auto/any/tool/none
/// → auto/required/function/none (sent only with tools, as OpenAI requires);
/// `disable_parallel_tool_use` → `parallel_tool_calls: false`; `stop_sequences` → `stop`;
/// `metadata.user_id` → `user`; `output_format` / `output_config.format` JSON schema →
/// `response_format`. Dropped: `top_k`, `thinking`, `cache_control`, `service_tier` and other
/// Anthropic-only fields. Rejected (400): documents, images given by file id, images inside
/// tool results, server tools and other block types canonical cannot carry.
pub fn to_canonical(req: &MessagesRequest) -> Result<Vec<u8>, FormatError> {
    // `value` is public, so it is read defensively rather than trusted to be checked.
    let obj = req
        .value
        .as_object()
        .ok_or_else(|| body_error("request body must be a JSON object"))?;
    let mut out = Map::new();
    out.insert("model".into(), json!(req.model));

    let mut messages = Vec::new();
    if let Some(system) = present(obj, "system") {
        if let Some(message) = system_message(system)? {
            messages.push(message);
        }
    }
    let empty = Vec::new();
    let input = obj
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for (i, message) in input.iter().enumerate() {
        let param = format!("messages[{i}]");
        let message = as_object(message, &param)?;
        let content = message.get("content").unwrap_or(&Value::Null);
        match message.get("role").and_then(Value::as_str) {
            Some("assistant") => messages.push(assistant_message(content, &param)?),
            _ => user_messages(content, &param, &mut messages)?,
        }
    }
    out.insert("messages".into(), Value::Array(messages));

    if let Some(max_tokens) = req.max_tokens {
        out.insert("max_tokens".into(), json!(max_tokens));
    }
    if req.stream {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = present(obj, key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(stops) = present(obj, "stop_sequences").and_then(Value::as_array) {
        if !stops.is_empty() {
            out.insert("stop".into(), Value::Array(stops.clone()));
        }
    }
    if let Some(user) = obj
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), json!(user));
    }

    let tools = match present(obj, "tools").and_then(Value::as_array) {
        Some(tools) => tools
            .iter()
            .enumerate()
            .map(|(i, t)| function_tool(t, &format!("tools[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = present(obj, "tool_choice") {
            if let Some(mapped) = tool_choice(choice) {
                out.insert("tool_choice".into(), mapped);
            }
            if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
                out.insert("parallel_tool_calls".into(), json!(false));
            }
        }
    }

    let format = present(obj, "output_format")
        .or_else(|| obj.get("output_config").and_then(|c| c.get("format")));
    if let Some(format) = format {
        if format.get("type").and_then(Value::as_str) == Some("json_schema") {
            if let Some(schema) = format.get("schema").filter(|s| s.is_object()) {
                out.insert(
                    "response_format".into(),
                    json!({"type": "json_schema",
                           "json_schema": {"name": "output", "schema": schema, "strict": true}}),
                );
            }
        }
    }

    serde_json::to_vec(&Value::Object(out)).map_err(|e| body_error(e.to_string()))
}

fn system_message(system: &Value) -> Result<Option<Value>, FormatError> {
    match system {
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(json!({"role": "system", "content": s}))),
        Value::Array(blocks) => {
            let mut parts = Vec::new();
            for (i, block) in blocks.iter().enumerate() {
                match block.get("text").and_then(Value::as_str) {
                    Some(text) => parts.push(json!({"type": "text", "text": text})),
                    None => {
                        return Err(unsupported(
                            &format!("system[{i}]"),
                            "a non-text system block",
                        ))
                    }
                }
            }
            Ok((!parts.is_empty()).then(|| json!({"role": "system", "content": parts})))
        }
        _ => Err(invalid(
            "system",
            "Input should be a string or a list of text blocks",
        )),
    }
}

fn function_tool(tool: &Value, param: &str) -> Result<Value, FormatError> {
    match tool.get("type").and_then(Value::as_str) {
        None | Some("custom") => {}
        Some(other) => return Err(unsupported(param, &format!("the server tool `{other}`"))),
    }
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("{param}.name"), "Field required"))?;
    let mut function = Map::new();
    function.insert("name".into(), json!(name));
    if let Some(description) = tool.get("description").and_then(Value::as_str) {
        function.insert("description".into(), json!(description));
    }
    let schema = tool
        .get("input_schema")
        .filter(|s| s.is_object())
        .ok_or_else(|| {
            invalid(
                &format!("{param}.input_schema"),
                "Field required (an object)",
            )
        })?;
    function.insert("parameters".into(), schema.clone());
    if let Some(strict) = tool.get("strict").filter(|v| v.is_boolean()) {
        function.insert("strict".into(), strict.clone());
    }
    Ok(json!({"type": "function", "function": function}))
}

fn tool_choice(choice: &Value) -> Option<Value> {
    match choice.get("type").and_then(Value::as_str)? {
        "auto" => Some(json!("auto")),
        "any" => Some(json!("required")),
        "none" => Some(json!("none")),
        "tool" => {
            let name = choice.get("name").and_then(Value::as_str)?;
            Some(json!({"type": "function", "function": {"name": name}}))
        }
        _ => None,
    }
}
