//! `CreateResponse` body → checks → canonical chat request.
//!
//! [`parse_request`] runs the whole translation once so that every problem surfaces as a 400
//! before the gateway routes or meters anything; [`to_canonical`] runs it again (cheap next to
//! the upstream call) rather than caching half-built state in the public request struct.

use serde_json::{json, Map, Value};

use super::input::input_messages;
use super::{Canonical, ResponsesRequest};
use crate::FormatError;

/// The parts of a request that become canonical fields.
struct Translated {
    messages: Vec<Value>,
    tools: Vec<Value>,
    tool_choice: Option<Value>,
    response_format: Option<Value>,
}

/// Parses and checks a `CreateResponse` body.
pub fn parse_request(body: &[u8]) -> Result<ResponsesRequest, FormatError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| body_error(format!("The request body is not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| body_error("The request body must be a JSON object.".into()))?;
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        None | Some(Value::Null) => return Err(missing("model")),
        _ => return Err(invalid("model", "'model' must be a non-empty string.")),
    };
    optional_str(obj, "instructions")?;
    optional_str(obj, "user")?;
    let previous_response_id = optional_str(obj, "previous_response_id")?;
    if previous_response_id == Some("") {
        return Err(invalid(
            "previous_response_id",
            "'previous_response_id' must not be empty.",
        ));
    }
    let stream = optional_bool(obj, "stream")?.unwrap_or(false);
    let store = optional_bool(obj, "store")?.unwrap_or(true);
    optional_bool(obj, "parallel_tool_calls")?;
    let max_output_tokens = match obj.get("max_output_tokens") {
        None | Some(Value::Null) => None,
        // A limit beyond u32 means "no practical limit": clamp rather than refuse.
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            _ => {
                let msg = "'max_output_tokens' must be a positive integer.";
                return Err(invalid("max_output_tokens", msg));
            }
        },
    };
    optional_number(obj, "temperature", 2.0)?;
    optional_number(obj, "top_p", 1.0)?;
    check_metadata(obj.get("metadata"))?;
    check_unsupported(obj)?;
    let has_tools = !translate(obj)?.tools.is_empty();
    Ok(ResponsesRequest {
        model,
        stream,
        store,
        previous_response_id: previous_response_id.map(str::to_owned),
        max_output_tokens,
        has_tools,
        value,
    })
}

/// The canonical chat request: `instructions` as the first system message, then `history`
/// (earlier turns, oldest first), then this turn's input.
pub fn to_canonical(req: &ResponsesRequest, history: &[Value]) -> Result<Canonical, FormatError> {
    let obj = req
        .value
        .as_object()
        .ok_or_else(|| body_error("The request body must be a JSON object.".into()))?;
    let t = translate(obj)?;
    if history.is_empty() && t.messages.is_empty() {
        let msg = "'input' has no items and there is no earlier turn to continue.";
        return Err(invalid("input", msg));
    }
    let mut messages = Vec::with_capacity(history.len() + t.messages.len() + 1);
    // An empty system message only trips up providers that refuse empty text.
    if let Some(instructions) = obj.get("instructions").and_then(Value::as_str) {
        if !instructions.is_empty() {
            messages.push(json!({"role": "system", "content": instructions}));
        }
    }
    messages.extend_from_slice(history);
    messages.extend(t.messages.iter().cloned());

    let mut body = Map::new();
    body.insert("model".into(), req.model.clone().into());
    body.insert("messages".into(), Value::Array(messages));
    if req.stream {
        body.insert("stream".into(), true.into());
        // The gateway meters on the final usage chunk, so it is always asked for.
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(n) = req.max_output_tokens {
        body.insert("max_tokens".into(), n.into());
    }
    for key in ["temperature", "top_p", "user"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            body.insert(key.into(), v.clone());
        }
    }
    // Chat completions refuses `tool_choice` and `parallel_tool_calls` without `tools`.
    if !t.tools.is_empty() {
        body.insert("tools".into(), Value::Array(t.tools));
        if let Some(choice) = t.tool_choice {
            body.insert("tool_choice".into(), choice);
        }
        if let Some(v) = obj.get("parallel_tool_calls").filter(|v| v.is_boolean()) {
            body.insert("parallel_tool_calls".into(), v.clone());
        }
    }
    if let Some(format) = t.response_format {
        body.insert("response_format".into(), format);
    }
    Ok(Canonical {
        body: Value::Object(body).to_string().into_bytes(),
        turn_messages: t.messages,
    })
}

fn translate(obj: &Map<String, Value>) -> Result<Translated, FormatError> {
    let messages = match obj.get("input") {
        None | Some(Value::Null) => return Err(missing("input")),
        Some(input) => input_messages(input)?,
    };
    let (tools, names) = function_tools(obj.get("tools"))?;
    Ok(Translated {
        messages,
        tool_choice: tool_choice(obj.get("tool_choice"), &names)?,
        tools,
        response_format: response_format(obj.get("text"))?,
    })
}

/// Function tools → canonical tools, and their names (for `tool_choice`).
fn function_tools(tools: Option<&Value>) -> Result<(Vec<Value>, Vec<String>), FormatError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok((vec![], vec![])),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(invalid("tools", "'tools' must be an array.")),
    };
    let (mut out, mut names) = (Vec::with_capacity(tools.len()), Vec::new());
    for (i, tool) in tools.iter().enumerate() {
        let p = format!("tools[{i}]");
        match tool["type"].as_str() {
            Some("function") => {}
            Some(other) => {
                let what = format!("tools of type '{other}' (only function tools are)");
                return Err(unsupported(format!("{p}.type"), &what));
            }
            None => return Err(missing(&format!("{p}.type"))),
        }
        let name = match tool.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n,
            _ => return Err(missing(&format!("{p}.name"))),
        };
        let mut function = json!({"name": name});
        for (key, ok) in [
            ("description", tool["description"].is_string()),
            ("parameters", tool["parameters"].is_object()),
            ("strict", tool["strict"].is_boolean()),
        ] {
            match tool.get(key) {
                None | Some(Value::Null) => {}
                Some(v) if ok => function[key] = v.clone(),
                Some(_) => return Err(invalid(format!("{p}.{key}"), "Wrong type.")),
            }
        }
        names.push(name.clone());
        out.push(json!({"type": "function", "function": function}));
    }
    Ok((out, names))
}

fn tool_choice(choice: Option<&Value>, names: &[String]) -> Result<Option<Value>, FormatError> {
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if matches!(s.as_str(), "none" | "auto" | "required") => {
            Ok(Some(Value::String(s.clone())))
        }
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("function") => match o.get("name").and_then(Value::as_str) {
                Some(name) if names.iter().any(|n| n == name) => Ok(Some(
                    json!({"type": "function", "function": {"name": name}}),
                )),
                _ => {
                    let msg = "'tool_choice.name' must name one of the declared function tools.";
                    Err(invalid("tool_choice.name", msg))
                }
            },
            Some(other) => {
                let what = format!("tool_choice of type '{other}'");
                Err(unsupported("tool_choice.type", &what))
            }
            None => Err(missing("tool_choice.type")),
        },
        Some(_) => {
            let msg =
                "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"name\"}.";
            Err(invalid("tool_choice", msg))
        }
    }
}

/// `text.format` → canonical `response_format` (plain text needs none).
fn response_format(text: Option<&Value>) -> Result<Option<Value>, FormatError> {
    let format = match text {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(t)) => match t.get("format") {
            None | Some(Value::Null) => return Ok(None),
            Some(f) if f.is_object() => f,
            Some(_) => return Err(invalid("text.format", "'text.format' must be an object.")),
        },
        Some(_) => return Err(invalid("text", "'text' must be an object.")),
    };
    match format["type"].as_str() {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let name = required_str(format, "name", "text.format")?;
            if !format["schema"].is_object() {
                return Err(missing("text.format.schema"));
            }
            let mut schema = json!({"name": name, "schema": format["schema"]});
            if let Some(strict) = format["strict"].as_bool() {
                schema["strict"] = strict.into();
            }
            if let Some(description) = format["description"].as_str() {
                schema["description"] = description.into();
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => {
            let msg = "'text.format.type' must be text, json_object or json_schema.";
            Err(invalid("text.format.type", msg))
        }
    }
}

/// Features the gateway cannot honour through chat completions: refusing them beats silently
/// answering something else.
fn check_unsupported(obj: &Map<String, Value>) -> Result<(), FormatError> {
    if obj.get("background") == Some(&Value::Bool(true)) {
        return Err(unsupported("background", "background responses"));
    }
    for (key, what) in [
        ("conversation", "conversations"),
        ("prompt", "prompt templates"),
    ] {
        if obj.get(key).is_some_and(|v| !v.is_null()) {
            return Err(unsupported(key, what));
        }
    }
    Ok(())
}

/// At most 16 pairs, keys ≤ 64 and values ≤ 512 characters, as OpenAI documents.
fn check_metadata(metadata: Option<&Value>) -> Result<(), FormatError> {
    let map = match metadata {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(invalid("metadata", "'metadata' must be an object.")),
    };
    if map.len() > 16 {
        return Err(invalid("metadata", "'metadata' holds at most 16 pairs."));
    }
    for (k, v) in map {
        let ok = k.chars().count() <= 64 && v.as_str().is_some_and(|v| v.chars().count() <= 512);
        if !ok {
            let msg = "metadata keys are strings of at most 64 characters, values at most 512.";
            return Err(invalid(format!("metadata.{k}"), msg));
        }
    }
    Ok(())
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, FormatError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(key, format!("'{key}' must be a string."))),
    }
}

fn optional_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, FormatError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(key, format!("'{key}' must be a boolean."))),
    }
}

fn optional_number(obj: &Map<String, Value>, key: &str, max: f64) -> Result<(), FormatError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_f64().is_some_and(|n| (0.0..=max).contains(&n)) => Ok(()),
        Some(_) => Err(invalid(
            key,
            format!("'{key}' must be a number from 0 to {max}."),
        )),
    }
}

pub(super) fn required_str<'a>(v: &'a Value, key: &str, p: &str) -> Result<&'a str, FormatError> {
    v[key]
        .as_str()
        .ok_or_else(|| missing(&format!("{p}.{key}")))
}

pub(super) fn invalid(param: impl Into<String>, message: impl Into<String>) -> FormatError {
    FormatError::invalid(param, message)
}

pub(super) fn missing(param: &str) -> FormatError {
    let name = param.rsplit('.').next().unwrap_or(param);
    FormatError::invalid(param, format!("Missing or invalid parameter: '{name}'."))
}

pub(super) fn unsupported(param: impl Into<String>, what: &str) -> FormatError {
    FormatError::invalid(param, format!("Not supported by this gateway: {what}."))
}

/// The body as a whole is at fault: no parameter to name.
fn body_error(message: String) -> FormatError {
    FormatError {
        param: None,
        ..FormatError::invalid("", message)
    }
}
