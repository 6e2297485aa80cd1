//! Anthropic Messages requests: checking the client's body, and translating it to a canonical
//! (OpenAI chat completions) request.

use serde_json::{json, Map, Value};

use crate::FormatError;

/// A checked Anthropic Messages request.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagesRequest {
    pub model: String,
    pub stream: bool,
    /// Always `Some` after [`parse_request`] (Anthropic requires `max_tokens`); an `Option` so a
    /// caller building a request by hand may leave it out, and [`to_canonical`] then omits it.
    pub max_tokens: Option<u32>,
    /// `tools` is a non-empty array.
    pub has_tools: bool,
    /// The whole body as the client sent it (pass-through forwards it unchanged).
    pub value: Value,
}

/// A body that is not JSON at all has no field to blame, so no `param`.
fn body_error(message: impl Into<String>) -> FormatError {
    FormatError {
        status: 400,
        code: "invalid_request_error".into(),
        message: message.into(),
        param: None,
    }
}

fn invalid(param: &str, message: impl AsRef<str>) -> FormatError {
    FormatError::invalid(param, format!("{param}: {}", message.as_ref()))
}

/// The field at `param` when it is present and not `null`.
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn require_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    param: &str,
) -> Result<&'a str, FormatError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(invalid(&format!("{param}.{key}"), "Field required")),
        Some(_) => Err(invalid(
            &format!("{param}.{key}"),
            "Input should be a valid string",
        )),
    }
}

fn as_object<'a>(v: &'a Value, param: &str) -> Result<&'a Map<String, Value>, FormatError> {
    v.as_object()
        .ok_or_else(|| invalid(param, "Input should be an object"))
}

/// Parses and checks an Anthropic Messages body: JSON object; `model` string (non-empty);
/// `max_tokens` positive integer (required by Anthropic); `messages` non-empty array of
/// `{role: user|assistant, content: string | array of blocks}`; `system` string or array of text
/// blocks; `stream` bool; `tools` array of `{name, input_schema, ...}`. Errors:
/// `FormatError::invalid(param, message)` with param like `messages[1].content`.
///
/// Blocks and tools of types this adapter does not translate are accepted here (pass-through
/// to an Anthropic provider handles them); [`to_canonical`] is the one that rejects them.
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

fn unsupported(param: &str, what: &str) -> FormatError {
    invalid(
        param,
        format!("{what} is not supported for this model (its provider does not speak the Anthropic Messages API)"),
    )
}

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

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

/// One user turn: its tool results as `tool` messages first, then the rest as one user message.
fn user_messages(content: &Value, param: &str, out: &mut Vec<Value>) -> Result<(), FormatError> {
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

fn assistant_message(content: &Value, param: &str) -> Result<Value, FormatError> {
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
