//! This turn's `input` items → canonical chat messages: messages (developer → system), function
//! calls (merged into one assistant message, as chat completions carries parallel calls) and
//! their outputs (tool messages). Reasoning items are dropped; items the canonical form cannot
//! express are refused with the offending parameter named.

use serde_json::{json, Map, Value};

use super::request::{invalid, missing, required_str, unsupported};
use crate::FormatError;

/// `input` (a string, or an array of items) → canonical chat messages.
pub(super) fn input_messages(input: &Value) -> Result<Vec<Value>, FormatError> {
    let items = match input {
        Value::String(s) => return Ok(vec![json!({"role": "user", "content": s})]),
        Value::Array(items) => items,
        _ => {
            let msg = "'input' must be a string or an array of input items.";
            return Err(invalid("input", msg));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("input[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| invalid(&p, "Each input item must be an object."))?;
        let ty = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            // `type` may be left out of messages (EasyInputMessage) and item references.
            None | Some(Value::Null) if obj.contains_key("role") => "message",
            None | Some(Value::Null) if obj.contains_key("id") => "item_reference",
            None | Some(Value::Null) => return Err(missing(&format!("{p}.role"))),
            Some(_) => return Err(invalid(format!("{p}.type"), "'type' must be a string.")),
        };
        match ty {
            "message" => out.push(message(obj, &p)?),
            "function_call" => push_function_call(&mut out, obj, &p)?,
            "function_call_output" => out.push(function_call_output(obj, &p)?),
            // Reasoning cannot be replayed to another provider: the canonical form has no slot.
            "reasoning" => {}
            "item_reference" => {
                let what = "item references (stored items by id)";
                return Err(unsupported(format!("{p}.type"), what));
            }
            other => {
                let what = format!("input items of type '{other}'");
                return Err(unsupported(format!("{p}.type"), &what));
            }
        }
    }
    Ok(out)
}

fn message(obj: &Map<String, Value>, p: &str) -> Result<Value, FormatError> {
    let role = match obj.get("role").and_then(Value::as_str) {
        Some(r @ ("user" | "assistant" | "system" | "developer")) => r,
        Some(_) => {
            let msg = "'role' must be one of user, assistant, system, developer.";
            return Err(invalid(format!("{p}.role"), msg));
        }
        None => return Err(missing(&format!("{p}.role"))),
    };
    let pc = format!("{p}.content");
    let content = match obj.get("content") {
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Array(parts)) => {
            let parts = content_parts(parts, role, &pc)?;
            if role == "assistant" {
                // Assistant turns go back as plain text, the shape every provider plugin reads.
                let texts = parts.iter().filter_map(|p| p["text"].as_str());
                Value::String(texts.collect())
            } else {
                Value::Array(parts)
            }
        }
        None | Some(Value::Null) => return Err(missing(&pc)),
        Some(_) => {
            let msg = "'content' must be a string or an array of content parts.";
            return Err(invalid(pc, msg));
        }
    };
    let role = if role == "developer" { "system" } else { role };
    Ok(json!({"role": role, "content": content}))
}

fn content_parts(parts: &[Value], role: &str, pc: &str) -> Result<Vec<Value>, FormatError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let pj = format!("{pc}[{j}]");
        let ty = part["type"]
            .as_str()
            .ok_or_else(|| missing(&format!("{pj}.type")))?;
        match ty {
            "input_text" | "output_text" => {
                let text = required_str(part, "text", &pj)?;
                out.push(json!({"type": "text", "text": text}));
            }
            // A refusal replayed as input is what the assistant said.
            "refusal" => {
                let text = required_str(part, "refusal", &pj)?;
                out.push(json!({"type": "text", "text": text}));
            }
            "input_image" => out.push(image_part(part, role, &pj)?),
            "input_file" => return Err(unsupported(format!("{pj}.type"), "file inputs")),
            _ => {
                let msg = format!("Unknown content part type '{ty}'.");
                return Err(invalid(format!("{pj}.type"), msg));
            }
        }
    }
    Ok(out)
}

fn image_part(part: &Value, role: &str, pj: &str) -> Result<Value, FormatError> {
    if role != "user" {
        return Err(invalid(pj, "Images are only supported in user messages."));
    }
    let url = match part.get("image_url") {
        Some(Value::String(u)) if !u.is_empty() => u,
        _ if part.get("file_id").is_some_and(|f| !f.is_null()) => {
            return Err(unsupported(format!("{pj}.file_id"), "images by file_id"));
        }
        _ => return Err(missing(&format!("{pj}.image_url"))),
    };
    let mut image = json!({"url": url});
    // Chat completions knows auto/low/high; anything else ("original") falls back to its default.
    if let Some(d @ ("auto" | "low" | "high")) = part["detail"].as_str() {
        image["detail"] = d.into();
    }
    Ok(json!({"type": "image_url", "image_url": image}))
}

/// A `function_call` item joins the assistant message right before it (text, or earlier calls
/// of the same turn): chat completions carries parallel calls in one assistant message.
fn push_function_call(
    out: &mut Vec<Value>,
    obj: &Map<String, Value>,
    p: &str,
) -> Result<(), FormatError> {
    let field = |key: &str| {
        obj.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| missing(&format!("{p}.{key}")))
    };
    let (call_id, name, arguments) = (field("call_id")?, field("name")?, field("arguments")?);
    if call_id.is_empty() || name.is_empty() {
        let msg = "'call_id' and 'name' must not be empty.";
        return Err(invalid(format!("{p}.call_id"), msg));
    }
    let call = json!({"id": call_id, "type": "function",
        "function": {"name": name, "arguments": arguments}});
    if let Some(Value::Object(last)) = out.last_mut() {
        if last.get("role").and_then(Value::as_str) == Some("assistant") {
            let calls = last.entry("tool_calls").or_insert_with(|| json!([]));
            if let Value::Array(calls) = calls {
                calls.push(call);
                return Ok(());
            }
        }
    }
    out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
    Ok(())
}

fn function_call_output(obj: &Map<String, Value>, p: &str) -> Result<Value, FormatError> {
    let call_id = match obj.get("call_id") {
        Some(Value::String(id)) if !id.is_empty() => id,
        _ => return Err(missing(&format!("{p}.call_id"))),
    };
    let content = match obj.get("output") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (k, part) in parts.iter().enumerate() {
                let pk = format!("{p}.output[{k}]");
                match part["type"].as_str() {
                    Some("input_text") => text.push_str(required_str(part, "text", &pk)?),
                    Some("input_image" | "input_file") => {
                        let what = "images and files in function call outputs";
                        return Err(unsupported(format!("{pk}.type"), what));
                    }
                    _ => return Err(invalid(format!("{pk}.type"), "Unknown output part type.")),
                }
            }
            text
        }
        None | Some(Value::Null) => return Err(missing(&format!("{p}.output"))),
        Some(_) => {
            let msg = "'output' must be a string or an array of content parts.";
            return Err(invalid(format!("{p}.output"), msg));
        }
    };
    Ok(json!({"role": "tool", "tool_call_id": call_id, "content": content}))
}
