//! OpenAI chat completions request -> Anthropic Messages request: system prompts, alternating
//! roles, content parts (text, images), tool calls and tool results, prompt-caching marks.
//! Tool definitions, `tool_choice` and `response_format` are in [`crate::tools`].
//!
//! `cache_control` has no place in OpenAI's own schema, but clients that target Anthropic
//! through OpenAI-compatible gateways (OpenRouter, LiteLLM) put it on content parts and on
//! whole messages; it is carried onto the Anthropic blocks so prompt caching works through
//! canonical form too.
use tollgate_plugin_sdk::serde_json::{self, json, Map, Value};
use tollgate_plugin_sdk::Reject;

use crate::tools::{self, StructuredOutputs};

/// Anthropic requires `max_tokens`; used when the client gave none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// `source`'s `cache_control` (an object such as `{"type":"ephemeral"}`), when it has one.
pub(crate) fn cache_control(source: &Value) -> Option<&Value> {
    source.get("cache_control").filter(|c| c.is_object())
}

/// `block` with `source`'s `cache_control` copied onto it.
fn marked(mut block: Value, source: &Value) -> Value {
    if let Some(cc) = cache_control(source) {
        block["cache_control"] = cc.clone();
    }
    block
}

/// A message-level `cache_control` (LiteLLM's form) marks the message's last block: Anthropic
/// caches the prefix up to and including a marked block, which is what the client meant.
fn mark_last(blocks: &mut [Value], message: &Value) {
    if let (Some(cc), Some(last)) = (cache_control(message), blocks.last_mut()) {
        last["cache_control"] = cc.clone();
    }
}

/// An OpenAI `image_url` part -> an Anthropic image block: `data:<type>;base64,<data>` URLs
/// become base64 sources, http(s) URLs become url sources; anything else is refused.
fn image_block(part: &Value) -> Result<Value, Reject> {
    // `{"image_url": {"url": ...}}` per the API; some clients send the URL as a bare string.
    let url = part["image_url"]["url"]
        .as_str()
        .or_else(|| part["image_url"].as_str())
        .ok_or_else(|| Reject::bad_request("image_url part needs an 'image_url.url' string"))?;
    if let Some(rest) = url.strip_prefix("data:") {
        return match rest.split_once(";base64,") {
            Some((media_type, data)) if !media_type.is_empty() => Ok(json!({"type": "image",
                "source": {"type": "base64", "media_type": media_type, "data": data}})),
            _ => Err(Reject::bad_request(
                "image data URLs must look like data:<media type>;base64,<data>",
            )),
        };
    }
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http") | Some("https") => {
            Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
        }
        _ => Err(Reject::bad_request(
            "image URLs must be http(s) URLs or base64 data URLs",
        )),
    }
}

/// OpenAI content (string or parts) -> Anthropic content blocks. Empty texts are left out:
/// Anthropic refuses empty text blocks (with or without `cache_control`).
fn content_blocks(content: &Value) -> Result<Vec<Value>, Reject> {
    match content {
        Value::Null => Ok(vec![]),
        Value::String(s) if s.is_empty() => Ok(vec![]),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                match part["type"].as_str() {
                    Some("text") => match part["text"].as_str() {
                        Some("") => {}
                        Some(text) => {
                            blocks.push(marked(json!({"type": "text", "text": text}), part))
                        }
                        None => return Err(Reject::bad_request("text part needs a 'text' string")),
                    },
                    Some("image_url") => blocks.push(marked(image_block(part)?, part)),
                    other => {
                        return Err(Reject::bad_request(format!(
                            "content part type {other:?} is not supported by this provider"
                        )))
                    }
                }
            }
            Ok(blocks)
        }
        _ => Err(Reject::bad_request(
            "message content must be a string or an array",
        )),
    }
}

/// A system or developer message -> Anthropic system text blocks, one per text part, each with
/// its `cache_control`. Lenient like the flattening it replaces: parts without text are skipped.
fn system_blocks(message: &Value) -> Vec<Value> {
    let mut blocks = match &message["content"] {
        Value::String(s) if !s.is_empty() => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| {
                let text = p.get("text").and_then(Value::as_str)?;
                (!text.is_empty()).then(|| marked(json!({"type": "text", "text": text}), p))
            })
            .collect(),
        _ => vec![],
    };
    mark_last(&mut blocks, message);
    blocks
}

/// The Anthropic `system` value: a plain string when it is one unmarked block (the common case,
/// and the smallest request), else the blocks themselves so their boundaries and cache marks
/// survive.
fn system_value(mut blocks: Vec<Value>) -> Option<Value> {
    match blocks.len() {
        0 => None,
        1 if cache_control(&blocks[0]).is_none() => blocks.pop().map(|b| b["text"].clone()),
        _ => Some(Value::Array(blocks)),
    }
}

/// Appends a message, merging with the previous one of the same role (Anthropic requires
/// alternating roles).
fn push_message(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut() {
        if last["role"] == role {
            if let Some(existing) = last["content"].as_array_mut() {
                existing.extend(blocks);
                return;
            }
        }
    }
    messages.push(json!({"role": role, "content": blocks}));
}

/// An OpenAI tool call's `arguments` (a JSON text) -> an Anthropic `input` object. Models
/// sometimes produce arguments that are not a JSON object; those become `{}` so a conversation
/// that echoes them back still goes through.
fn tool_input(arguments: &Value) -> Value {
    let parsed = match arguments {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    };
    if parsed.is_object() {
        parsed
    } else {
        json!({})
    }
}

/// A `tool` message -> a `tool_result` block. Its content stays a string (parts flattened);
/// a cache mark on the message or on any of its parts marks the block.
fn tool_result(m: &Value) -> Value {
    let part_mark = m["content"]
        .as_array()
        .and_then(|parts| parts.iter().rev().find_map(cache_control));
    let mut block = json!({"type": "tool_result", "tool_use_id": m["tool_call_id"],
        "content": text_of(&m["content"])});
    if let Some(cc) = cache_control(m).or(part_mark) {
        block["cache_control"] = cc.clone();
    }
    block
}

/// OpenAI chat request -> Anthropic Messages request, `response_format` handled the default
/// way ([`StructuredOutputs::Auto`]).
pub fn translate_request(body: &[u8], upstream_model: &str, stream: bool) -> Result<Value, Reject> {
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| Reject::bad_request(format!("invalid JSON body: {e}")))?;
    translate_request_value(&req, upstream_model, stream, StructuredOutputs::Auto)
}

/// [`translate_request`] on an already parsed body, with the configured structured-output mode.
pub fn translate_request_value(
    req: &Value,
    upstream_model: &str,
    stream: bool,
    structured: StructuredOutputs,
) -> Result<Value, Reject> {
    let Some(msgs) = req["messages"].as_array() else {
        return Err(Reject::bad_request("'messages' must be an array"));
    };
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for m in msgs {
        match m["role"].as_str() {
            Some("system") | Some("developer") => system.extend(system_blocks(m)),
            Some("user") => {
                let mut blocks = content_blocks(&m["content"])?;
                mark_last(&mut blocks, m);
                push_message(&mut messages, "user", blocks);
            }
            Some("assistant") => {
                let mut blocks = content_blocks(&m["content"])?;
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    blocks.push(json!({"type": "tool_use", "id": call["id"],
                        "name": call["function"]["name"],
                        "input": tool_input(&call["function"]["arguments"])}));
                }
                mark_last(&mut blocks, m);
                push_message(&mut messages, "assistant", blocks);
            }
            Some("tool") => push_message(&mut messages, "user", vec![tool_result(m)]),
            other => {
                return Err(Reject::bad_request(format!(
                    "unsupported message role {other:?}"
                )))
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("messages".into(), Value::Array(messages));
    if let Some(system) = system_value(system) {
        out.insert("system".into(), system);
    }
    let max_tokens = req["max_completion_tokens"]
        .as_u64()
        .or_else(|| req["max_tokens"].as_u64())
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max_tokens));
    for key in ["temperature", "top_p"] {
        if !req[key].is_null() {
            out.insert(key.into(), req[key].clone());
        }
    }
    match &req["stop"] {
        Value::String(s) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Value::Array(a) => {
            out.insert("stop_sequences".into(), json!(a));
        }
        _ => {}
    }
    tools::translate_tools(req, &mut out, structured)?;
    if let Some(user) = req["user"].as_str() {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if stream {
        out.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<Value, Reject> {
        translate_request(body.to_string().as_bytes(), "claude-up", false)
    }

    #[test]
    fn request_translation() {
        let body = json!({
            "model": "claude-x", "max_tokens": 50, "temperature": 0.3, "stop": "END",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What's the weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "user", "content": [{"type": "text", "text": "thanks"}]}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required"
        });
        let out = translate_request(body.to_string().as_bytes(), "claude-up", true).unwrap();
        assert_eq!(out["model"], "claude-up");
        assert_eq!(out["system"], "Be brief.");
        assert_eq!(out["max_tokens"], 50);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["stream"], true);
        assert_eq!(out["tool_choice"], json!({"type": "any"}));
        let msgs = out["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
        assert_eq!(msgs[1]["content"][0]["input"]["city"], "Paris");
        // tool result and the next user text merge into one user turn
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][1]["text"], "thanks");
        assert_eq!(out["tools"][0]["input_schema"]["type"], "object");
    }

    #[test]
    fn system_parts_and_messages_become_blocks_with_their_cache_marks() {
        let eph = json!({"type": "ephemeral"});
        let out = translate(json!({"messages": [
            {"role": "system", "content": [
                {"type": "text", "text": "You are a librarian."},
                {"type": "text", "text": "<the whole catalogue>", "cache_control": eph},
                {"type": "text", "text": ""}]},
            {"role": "developer", "content": "Answer in French."},
            {"role": "system", "content": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"role": "user", "content": "hi"},
        ]}))
        .unwrap();
        assert_eq!(
            out["system"],
            json!([
                {"type": "text", "text": "You are a librarian."},
                {"type": "text", "text": "<the whole catalogue>", "cache_control": eph},
                {"type": "text", "text": "Answer in French."},
                {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            ])
        );
        // Several unmarked system messages stay apart too; one unmarked block stays a string.
        let out = translate(json!({"messages": [{"role": "system", "content": "a"},
            {"role": "system", "content": [{"type": "text", "text": "b"}]}]}))
        .unwrap();
        assert_eq!(
            out["system"],
            json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
        );
        let out = translate(
            json!({"messages": [{"role": "system", "content": [{"type": "text", "text": "a"}]}]}),
        )
        .unwrap();
        assert_eq!(out["system"], "a");
    }

    #[test]
    fn cache_control_on_parts_and_messages_reaches_the_blocks() {
        let eph = json!({"type": "ephemeral"});
        let out = translate(json!({"messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "long document", "cache_control": eph},
                {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}, "cache_control": eph},
                {"type": "text", "text": "plain"}]},
            {"role": "assistant", "content": "ok", "cache_control": eph},
            {"role": "user", "content": "next", "cache_control": eph},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "big result",
                "cache_control": eph}]},
        ]}))
        .unwrap();
        let msgs = &out["messages"];
        assert_eq!(msgs[0]["content"][0]["cache_control"], eph);
        assert_eq!(msgs[0]["content"][1]["type"], "image");
        assert_eq!(msgs[0]["content"][1]["cache_control"], eph);
        assert!(msgs[0]["content"][2].get("cache_control").is_none());
        assert_eq!(msgs[1]["content"][0]["cache_control"], eph);
        assert_eq!(msgs[2]["content"][0]["cache_control"], eph);
        assert!(msgs[3]["content"][0].get("cache_control").is_none());
        assert_eq!(
            msgs[4]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "c1", "content": "big result",
                "cache_control": eph})
        );
        // A cache_control that is not an object is not passed on.
        let out = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "x", "cache_control": "yes"}]}]}))
        .unwrap();
        assert!(out["messages"][0]["content"][0]
            .get("cache_control")
            .is_none());
    }

    #[test]
    fn images_become_base64_or_url_sources() {
        let out = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
            {"type": "image_url", "image_url": "HTTP://example.com/dog.gif"},
        ]}]}))
        .unwrap();
        let blocks = &out["messages"][0]["content"];
        assert_eq!(
            blocks[1],
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                "data": "iVBORw0KGgo="}})
        );
        assert_eq!(
            blocks[2],
            json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}})
        );
        assert_eq!(blocks[3]["source"]["url"], "HTTP://example.com/dog.gif");
    }

    #[test]
    fn unusable_image_urls_are_a_400() {
        for url in [
            json!("data:text/plain,hello"),
            json!("data:;base64,AAAA"),
            json!("ftp://example.com/x.png"),
            json!("cat.png"),
            json!(42),
        ] {
            let err = translate(json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}]}]}))
            .unwrap_err();
            assert_eq!(err.status, 400, "{url}: {err:?}");
        }
    }

    #[test]
    fn empty_texts_are_left_out_and_odd_arguments_become_empty_objects() {
        let out = translate(json!({"messages": [
            {"role": "system", "content": ""},
            {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "a", "function": {"name": "f", "arguments": "[1,2]"}},
                {"id": "b", "function": {"name": "g", "arguments": "{not json"}},
                {"id": "c", "function": {"name": "h", "arguments": {"already": "an object"}}}]},
        ]}))
        .unwrap();
        assert!(out.get("system").is_none());
        assert_eq!(
            out["messages"][0]["content"],
            json!([{"type": "text", "text": "hi"}])
        );
        let calls = &out["messages"][1]["content"];
        assert_eq!(
            calls.as_array().unwrap().len(),
            3,
            "no empty text block: {calls}"
        );
        assert_eq!(calls[0]["input"], json!({}));
        assert_eq!(calls[1]["input"], json!({}));
        assert_eq!(calls[2]["input"], json!({"already": "an object"}));
    }

    #[test]
    fn malformed_requests_are_400s() {
        for body in [
            json!({}),
            json!([1]),
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            json!({"messages": [{"role": "user", "content": 5}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}),
        ] {
            assert_eq!(translate(body).unwrap_err().status, 400);
        }
        assert_eq!(
            translate_request(b"\xff{", "m", false).unwrap_err().status,
            400
        );
    }
}
