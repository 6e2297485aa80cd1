//! Built-in transform: OpenAI chat completions in, Anthropic Messages upstream, OpenAI back out
//! (streaming included). Formats from Anthropic's public Messages API reference:
//! `POST /v1/messages`, `anthropic-version: 2023-06-01`, SSE events `message_start`,
//! `content_block_start`, `content_block_delta` (`text_delta`, `input_json_delta`),
//! `content_block_stop`, `message_delta`, `message_stop`, `ping`, `error`.
use serde::{Deserialize, Serialize};
use tollgate_plugin_sdk::serde_json::{self, json, Map, Value};
use tollgate_plugin_sdk::{
    export_plugin, host, http, usage, ApiFormat, ClientResponse, Reject, SseEvent, StreamOutput,
    Transform, TransformCtx, UpstreamRequest, Usage,
};

pub struct AnthropicProvider;

const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; used when the client gave none.
const DEFAULT_MAX_TOKENS: u64 = 4096;

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

/// OpenAI content (string or parts) -> Anthropic content blocks.
fn content_blocks(content: &Value) -> Result<Vec<Value>, Reject> {
    match content {
        Value::Null => Ok(vec![]),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part["type"].as_str() {
                Some("text") => Ok(json!({"type": "text", "text": part["text"]})),
                Some("image_url") => {
                    let url = part["image_url"]["url"].as_str().unwrap_or_default();
                    match url
                        .strip_prefix("data:")
                        .and_then(|r| r.split_once(";base64,"))
                    {
                        Some((media_type, data)) => Ok(json!({"type": "image", "source":
                            {"type": "base64", "media_type": media_type, "data": data}})),
                        None => Ok(json!({"type": "image", "source": {"type": "url", "url": url}})),
                    }
                }
                other => Err(Reject::bad_request(format!(
                    "content part type {other:?} is not supported by this provider"
                ))),
            })
            .collect(),
        _ => Err(Reject::bad_request(
            "message content must be a string or an array",
        )),
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

/// OpenAI chat request -> Anthropic Messages request.
pub fn translate_request(body: &[u8], upstream_model: &str, stream: bool) -> Result<Value, Reject> {
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| Reject::bad_request(format!("invalid JSON body: {e}")))?;
    let Some(msgs) = req["messages"].as_array() else {
        return Err(Reject::bad_request("'messages' must be an array"));
    };
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for m in msgs {
        match m["role"].as_str() {
            Some("system") | Some("developer") => system.push(text_of(&m["content"])),
            Some("user") => push_message(&mut messages, "user", content_blocks(&m["content"])?),
            Some("assistant") => {
                let mut blocks = content_blocks(&m["content"])?;
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    let args = call["function"]["arguments"].as_str().unwrap_or("{}");
                    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": call["id"],
                        "name": call["function"]["name"], "input": input}));
                }
                push_message(&mut messages, "assistant", blocks);
            }
            Some("tool") => push_message(
                &mut messages,
                "user",
                vec![
                    json!({"type": "tool_result", "tool_use_id": m["tool_call_id"],
                    "content": text_of(&m["content"])}),
                ],
            ),
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
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
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
    if let Some(tools) = req["tools"].as_array() {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({"name": t["function"]["name"], "description": t["function"]["description"],
                    "input_schema": if t["function"]["parameters"].is_null() { json!({"type": "object"}) }
                        else { t["function"]["parameters"].clone() }})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    match &req["tool_choice"] {
        Value::String(s) if s == "auto" => {
            out.insert("tool_choice".into(), json!({"type": "auto"}));
        }
        Value::String(s) if s == "required" => {
            out.insert("tool_choice".into(), json!({"type": "any"}));
        }
        Value::String(s) if s == "none" => {
            out.insert("tool_choice".into(), json!({"type": "none"}));
        }
        Value::Object(o) => {
            out.insert(
                "tool_choice".into(),
                json!({"type": "tool", "name": o.get("function").map(|f| f["name"].clone())}),
            );
        }
        _ => {}
    }
    if let Some(user) = req["user"].as_str() {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if stream {
        out.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(out))
}

fn finish_reason(stop_reason: &Value) -> Value {
    match stop_reason.as_str() {
        Some("end_turn") | Some("stop_sequence") | Some("pause_turn") => json!("stop"),
        Some("max_tokens") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some("refusal") => json!("content_filter"),
        _ => Value::Null,
    }
}

fn openai_error(status: u16, body: &[u8]) -> Vec<u8> {
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
        "param": null, "code": parsed["error"]["type"]}})
    .to_string()
    .into_bytes()
}

/// Anthropic message -> OpenAI chat completion.
pub fn translate_response(msg: &Value, created: u64) -> (Value, Usage) {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in msg["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => tool_calls.push(json!({"id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()}})),
            _ => {}
        }
    }
    let used = usage::from_anthropic(&msg["usage"]);
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
            "finish_reason": finish_reason(&msg["stop_reason"])}],
        "usage": usage::to_openai(&used),
    });
    (out, used)
}

/// Per-stream state carried between events.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct StreamState {
    id: String,
    model: String,
    created: u64,
    wants_usage: bool,
    usage: Option<UsageState>,
    /// (Anthropic content block index, OpenAI tool call index).
    tools: Vec<(u64, u64)>,
    finish: Option<String>,
}

/// [`Usage`] in a serialisable form, for the stream state.
#[derive(Serialize, Deserialize, Default, Debug, Clone, Copy)]
struct UsageState {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
}

impl From<Usage> for UsageState {
    fn from(u: Usage) -> Self {
        UsageState {
            input: u.input,
            output: u.output,
            cache_read: u.cache_read,
            cache_write: u.cache_write,
        }
    }
}

impl From<UsageState> for Usage {
    fn from(u: UsageState) -> Self {
        Usage {
            input: u.input,
            output: u.output,
            cache_read: u.cache_read,
            cache_write: u.cache_write,
            reasoning: 0,
        }
    }
}

impl StreamState {
    /// Usage reported so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage.map(Usage::from)
    }

    fn chunk(&self, delta: Value, finish: Value) -> SseEvent {
        SseEvent::data(
            json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": null,
                "finish_reason": finish}]})
            .to_string(),
        )
    }
}

fn usage_value(u: &Usage) -> Value {
    usage::to_openai(u)
}

/// One Anthropic stream event -> OpenAI chunks.
pub fn translate_event(state: &mut StreamState, event: &SseEvent) -> Result<Vec<SseEvent>, Reject> {
    let data: Value = match serde_json::from_str(&event.data) {
        Ok(v) => v,
        Err(_) => return Ok(vec![]),
    };
    let kind = event
        .event
        .as_deref()
        .or_else(|| data["type"].as_str())
        .unwrap_or_default();
    let mut out = Vec::new();
    match kind {
        "message_start" => {
            let msg = &data["message"];
            state.id = format!("chatcmpl-{}", msg["id"].as_str().unwrap_or_default());
            if let Some(m) = msg["model"].as_str() {
                state.model = m.to_string();
            }
            state.usage = Some(usage::from_anthropic(&msg["usage"]).into());
            out.push(state.chunk(json!({"role": "assistant", "content": ""}), Value::Null));
        }
        "content_block_start" => {
            let block = &data["content_block"];
            if block["type"] == "tool_use" {
                let idx = data["index"].as_u64().unwrap_or(0);
                let tool_index = state.tools.len() as u64;
                state.tools.push((idx, tool_index));
                out.push(state.chunk(
                    json!({"tool_calls": [{"index": tool_index, "id": block["id"], "type": "function",
                        "function": {"name": block["name"], "arguments": ""}}]}),
                    Value::Null,
                ));
            }
        }
        "content_block_delta" => {
            let delta = &data["delta"];
            match delta["type"].as_str() {
                Some("text_delta") => {
                    out.push(state.chunk(json!({"content": delta["text"]}), Value::Null))
                }
                Some("input_json_delta") => {
                    let idx = data["index"].as_u64().unwrap_or(0);
                    if let Some((_, tool_index)) = state.tools.iter().find(|(b, _)| *b == idx) {
                        out.push(state.chunk(
                            json!({"tool_calls": [{"index": tool_index,
                                "function": {"arguments": delta["partial_json"]}}]}),
                            Value::Null,
                        ));
                    }
                }
                _ => {}
            }
        }
        "message_delta" => {
            let mut u = state.usage.unwrap_or_default();
            let du = &data["usage"];
            if let Some(o) = du["output_tokens"].as_u64() {
                u.output = o;
            }
            if let Some(i) = du["input_tokens"].as_u64() {
                u.input = i;
            }
            state.usage = Some(u);
            let finish = finish_reason(&data["delta"]["stop_reason"]);
            state.finish = finish.as_str().map(str::to_string);
            out.push(state.chunk(json!({}), finish));
        }
        "message_stop" => {
            if state.wants_usage {
                let u: Usage = state.usage.unwrap_or_default().into();
                out.push(SseEvent::data(
                    json!({"id": state.id, "object": "chat.completion.chunk", "created": state.created,
                        "model": state.model, "choices": [], "usage": usage_value(&u)})
                    .to_string(),
                ));
            }
            out.push(SseEvent::data("[DONE]"));
        }
        "error" => {
            let status = match data["error"]["type"].as_str() {
                Some("overloaded_error") => 529,
                Some("rate_limit_error") => 429,
                _ => 500,
            };
            let body = openai_error(status, event.data.as_bytes());
            out.push(SseEvent::data(String::from_utf8_lossy(&body).into_owned()));
        }
        _ => {} // ping, content_block_stop, unknown future events
    }
    Ok(out)
}

fn load_state(bytes: &[u8]) -> StreamState {
    serde_json::from_slice(bytes).unwrap_or_default()
}

fn save_state(state: &StreamState) -> Vec<u8> {
    serde_json::to_vec(state).unwrap_or_default()
}

impl Transform for AnthropicProvider {
    fn transform_request(ctx: TransformCtx, body: Vec<u8>) -> Result<UpstreamRequest, Reject> {
        if ctx.client_format != ApiFormat::OpenaiChat {
            return Err(Reject::bad_request(
                "this provider accepts OpenAI chat completions requests",
            ));
        }
        let translated = translate_request(&body, &ctx.upstream_model, ctx.stream)?;
        let client: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let state = StreamState {
            model: ctx.upstream_model.clone(),
            created: host::now_ms() / 1000,
            wants_usage: client["stream_options"]["include_usage"] == json!(true),
            ..StreamState::default()
        };
        Ok(UpstreamRequest {
            method: "POST".into(),
            path: "/v1/messages".into(),
            headers: vec![
                http::json_content_type(),
                ("anthropic-version".into(), ANTHROPIC_VERSION.into()),
            ],
            body: serde_json::to_vec(&translated).unwrap_or_default(),
            stream_state: if ctx.stream {
                save_state(&state)
            } else {
                Vec::new()
            },
        })
    }

    fn transform_response(
        _ctx: TransformCtx,
        status: u16,
        body: Vec<u8>,
    ) -> Result<ClientResponse, Reject> {
        let headers = vec![http::json_content_type()];
        if !(200..300).contains(&status) {
            return Ok(ClientResponse {
                status,
                headers,
                body: openai_error(status, &body),
                usage: None,
            });
        }
        let msg: Value = serde_json::from_slice(&body)
            .map_err(|e| Reject::bad_upstream(format!("upstream sent invalid JSON: {e}")))?;
        let (out, used) = translate_response(&msg, host::now_ms() / 1000);
        Ok(ClientResponse {
            status,
            headers,
            body: out.to_string().into_bytes(),
            usage: Some(used),
        })
    }

    fn transform_event(
        _ctx: TransformCtx,
        state: Vec<u8>,
        event: SseEvent,
    ) -> Result<StreamOutput, Reject> {
        let mut st = load_state(&state);
        let events = translate_event(&mut st, &event)?;
        Ok(StreamOutput {
            events,
            usage: st.usage(),
            state: save_state(&st),
        })
    }

    fn end_of_stream(_ctx: TransformCtx, state: Vec<u8>) -> Result<StreamOutput, Reject> {
        let st = load_state(&state);
        Ok(StreamOutput {
            events: Vec::new(),
            usage: st.usage(),
            state,
        })
    }
}

export_plugin!(transform: AnthropicProvider);

#[cfg(test)]
mod tests {
    use super::*;

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
    fn stream_translation() {
        let mut st = StreamState {
            wants_usage: true,
            ..Default::default()
        };
        let ev = |name: &str, data: Value| SseEvent::named(name, data.to_string());
        let mut all = Vec::new();
        for e in [
            ev(
                "message_start",
                json!({"type": "message_start", "message": {"id": "m1", "model": "c",
                "usage": {"input_tokens": 10, "output_tokens": 1}}}),
            ),
            ev("ping", json!({"type": "ping"})),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": "Hel"}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": "lo"}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 5}}),
            ),
            ev("message_stop", json!({"type": "message_stop"})),
        ] {
            all.extend(translate_event(&mut st, &e).unwrap());
        }
        let texts: Vec<String> = all
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(texts.concat(), "Hello");
        assert_eq!(all.last().unwrap().data, "[DONE]");
        let usage_chunk: Value = serde_json::from_str(&all[all.len() - 2].data).unwrap();
        assert_eq!(usage_chunk["usage"]["completion_tokens"], 5);
        assert_eq!(usage_chunk["usage"]["prompt_tokens"], 10);
        assert_eq!(st.usage().unwrap().output, 5);
    }
}
