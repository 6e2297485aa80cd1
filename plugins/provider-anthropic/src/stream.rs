//! Anthropic Messages SSE events -> OpenAI `chat.completion.chunk` events, with the per-stream
//! state carried between events (serialised by the plugin between calls).
//!
//! Events may arrive out of the documented order, twice, or not at all (a cut or misbehaving
//! upstream): each is handled on its own, nothing panics, and once `message_stop` has closed the
//! stream further events are ignored. An `error` event ends the stream with a [`Reject`].
//! The forced JSON tool of `response_format` ([`JSON_TOOL`]) streams as message content.
use serde::{Deserialize, Serialize};
use tollgate_plugin_sdk::serde_json::{self, json, Value};
use tollgate_plugin_sdk::{usage, Reject, SseEvent, Usage};

use crate::response::{finish_reason, stream_error};
use crate::tools::JSON_TOOL;

/// Per-stream state carried between events.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct StreamState {
    id: String,
    model: String,
    created: u64,
    wants_usage: bool,
    /// `message_start` was seen (a repeated one is ignored).
    started: bool,
    /// `message_stop` was seen and `[DONE]` sent: the rest of the stream is ignored.
    done: bool,
    usage: Option<UsageState>,
    tools: Vec<ToolBlock>,
    finish: Option<String>,
}

/// A `tool_use` content block being streamed as an OpenAI tool call.
#[derive(Serialize, Deserialize, Default, Debug, Clone, Copy, PartialEq)]
struct ToolBlock {
    /// Anthropic content block index.
    block: u64,
    /// OpenAI tool call index.
    index: u64,
    /// Some argument text was sent for it. A tool without parameters may stream no argument
    /// text at all; it is given `{}` when its block ends, so clients always get parsable JSON.
    has_args: bool,
    /// The forced JSON tool: its input streams as content, and it has no tool call index.
    #[serde(default)]
    json: bool,
}

/// [`Usage`] in a serialisable form, for the stream state.
#[derive(Serialize, Deserialize, Default, Debug, Clone, Copy, PartialEq)]
pub(crate) struct UsageState {
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
    /// The state a stream starts with: the model to name until `message_start` names one, the
    /// `created` timestamp of every chunk, and whether the client asked for a usage chunk.
    pub fn new(model: &str, created: u64, wants_usage: bool) -> Self {
        StreamState {
            model: model.to_string(),
            created,
            wants_usage,
            ..StreamState::default()
        }
    }

    /// Reads a state saved by [`StreamState::to_bytes`]; anything else is a fresh state.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    /// The state as bytes, for the host to hand back with the next event.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

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

    /// `{}` as the arguments of tool calls (all, or the one of content block `block`) that got
    /// no argument text.
    fn close_tools(&mut self, block: Option<u64>, out: &mut Vec<SseEvent>) {
        for i in 0..self.tools.len() {
            let tool = self.tools[i];
            if tool.has_args || block.is_some_and(|b| b != tool.block) {
                continue;
            }
            self.tools[i].has_args = true;
            let delta = if tool.json {
                json!({"content": "{}"})
            } else {
                json!({"tool_calls": [{"index": tool.index, "function": {"arguments": "{}"}}]})
            };
            out.push(self.chunk(delta, Value::Null));
        }
    }
}

/// Overwrites the counts an Anthropic usage object carries (they are cumulative).
pub(crate) fn update_usage(u: &mut UsageState, reported: &Value) {
    let present = |key: &str| reported.get(key).is_some_and(|v| !v.is_null());
    let read = usage::from_anthropic(reported);
    if present("input_tokens") {
        u.input = read.input;
    }
    if present("output_tokens") {
        u.output = read.output;
    }
    if present("cache_read_input_tokens") {
        u.cache_read = read.cache_read;
    }
    if present("cache_creation_input_tokens") {
        u.cache_write = read.cache_write;
    }
}

/// One Anthropic stream event -> OpenAI chunks.
pub fn translate_event(state: &mut StreamState, event: &SseEvent) -> Result<Vec<SseEvent>, Reject> {
    if state.done {
        return Ok(vec![]);
    }
    let data: Value = match serde_json::from_str(&event.data) {
        Ok(v) => v,
        Err(_) if event.event.as_deref() == Some("error") => return Err(stream_error(&event.data)),
        Err(_) => return Ok(vec![]),
    };
    let kind = event
        .event
        .as_deref()
        .or_else(|| data["type"].as_str())
        .unwrap_or_default();
    let mut out = Vec::new();
    match kind {
        "message_start" if !state.started => {
            state.started = true;
            let msg = &data["message"];
            state.id = format!("chatcmpl-{}", msg["id"].as_str().unwrap_or_default());
            if let Some(m) = msg["model"].as_str() {
                state.model = m.to_string();
            }
            let mut u = state.usage.unwrap_or_default();
            update_usage(&mut u, &msg["usage"]);
            state.usage = Some(u);
            out.push(state.chunk(json!({"role": "assistant", "content": ""}), Value::Null));
        }
        "content_block_start" => {
            let block = &data["content_block"];
            let idx = data["index"].as_u64().unwrap_or(0);
            let known = state.tools.iter().any(|t| t.block == idx);
            if block["type"] == "tool_use" && !known && block["name"] == JSON_TOOL {
                state.tools.push(ToolBlock {
                    block: idx,
                    json: true,
                    ..ToolBlock::default()
                });
            } else if block["type"] == "tool_use" && !known {
                let tool_index = state.tools.iter().filter(|t| !t.json).count() as u64;
                state.tools.push(ToolBlock {
                    block: idx,
                    index: tool_index,
                    has_args: false,
                    json: false,
                });
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
                Some("text_delta") => match delta["text"].as_str() {
                    Some(text) if !text.is_empty() => {
                        out.push(state.chunk(json!({"content": text}), Value::Null))
                    }
                    _ => {}
                },
                Some("input_json_delta") => {
                    let idx = data["index"].as_u64().unwrap_or(0);
                    let fragment = delta["partial_json"].as_str().unwrap_or_default();
                    let tool = state.tools.iter_mut().find(|t| t.block == idx);
                    if let Some(tool) = tool.filter(|_| !fragment.is_empty()) {
                        tool.has_args = true;
                        let delta = if tool.json {
                            json!({"content": fragment})
                        } else {
                            json!({"tool_calls": [{"index": tool.index,
                                "function": {"arguments": fragment}}]})
                        };
                        out.push(state.chunk(delta, Value::Null));
                    }
                }
                _ => {}
            }
        }
        "content_block_stop" => {
            let idx = data["index"].as_u64().unwrap_or(0);
            state.close_tools(Some(idx), &mut out);
        }
        "message_delta" => {
            state.close_tools(None, &mut out);
            let mut u = state.usage.unwrap_or_default();
            update_usage(&mut u, &data["usage"]);
            state.usage = Some(u);
            let mut finish = finish_reason(&data["delta"]["stop_reason"]);
            if finish == "tool_calls" && state.tools.iter().all(|t| t.json) {
                // No tool call reached the client (the JSON answer is content): it is complete.
                finish = json!("stop");
            }
            state.finish = finish.as_str().map(str::to_string);
            out.push(state.chunk(json!({}), finish));
        }
        "message_stop" => {
            state.done = true;
            if state.wants_usage {
                let u: Usage = state.usage.unwrap_or_default().into();
                out.push(SseEvent::data(
                    json!({"id": state.id, "object": "chat.completion.chunk", "created": state.created,
                        "model": state.model, "choices": [], "usage": usage::to_openai(&u)})
                    .to_string(),
                ));
            }
            out.push(SseEvent::data("[DONE]"));
        }
        "error" => return Err(stream_error(&event.data)),
        _ => {} // ping, a repeated message_start, unknown future events
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, data: Value) -> SseEvent {
        SseEvent::named(name, data.to_string())
    }

    fn run(st: &mut StreamState, events: &[SseEvent]) -> Vec<Value> {
        let mut all = Vec::new();
        for e in events {
            for out in translate_event(st, e).unwrap() {
                all.push(serde_json::from_str(&out.data).unwrap_or(json!(out.data)));
            }
        }
        all
    }

    fn start() -> SseEvent {
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "m1", "model": "c",
                "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        )
    }

    #[test]
    fn stream_translation() {
        let mut st = StreamState::new("c", 0, true);
        let all = run(
            &mut st,
            &[
                start(),
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
            ],
        );
        let texts: Vec<&str> = all
            .iter()
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(texts.concat(), "Hello");
        assert_eq!(all.last().unwrap(), "[DONE]");
        let usage_chunk = &all[all.len() - 2];
        assert_eq!(usage_chunk["usage"]["completion_tokens"], 5);
        assert_eq!(usage_chunk["usage"]["prompt_tokens"], 10);
        assert_eq!(st.usage().unwrap().output, 5);
    }

    #[test]
    fn streamed_tool_use_becomes_tool_call_deltas() {
        let mut st = StreamState::new("c", 0, false);
        let delta = |index: u64, partial: &str| {
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": partial}}),
            )
        };
        let tool_start = |index: u64, id: &str, name: &str| {
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
            )
        };
        let stop = |index: u64| ev("content_block_stop", json!({"index": index}));
        let all = run(
            &mut st,
            &[
                start(),
                tool_start(1, "toolu_1", "weather"),
                delta(1, ""),
                delta(1, "{\"city\":"),
                delta(1, " \"Paris\"}"),
                stop(1),
                tool_start(2, "toolu_2", "now"),
                delta(2, ""),
                stop(2),
                ev(
                    "message_delta",
                    json!({"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
                ),
                ev("message_stop", json!({})),
            ],
        );
        let calls: Vec<&Value> = all
            .iter()
            .filter_map(|v| v["choices"][0]["delta"]["tool_calls"].get(0))
            .collect();
        assert_eq!(
            *calls[0],
            json!({"index": 0, "id": "toolu_1", "type": "function",
                "function": {"name": "weather", "arguments": ""}})
        );
        assert_eq!(
            *calls[1],
            json!({"index": 0, "function": {"arguments": "{\"city\":"}})
        );
        assert_eq!(
            *calls[2],
            json!({"index": 0, "function": {"arguments": " \"Paris\"}"}})
        );
        assert_eq!(calls[3]["index"], 1);
        assert_eq!(calls[3]["id"], "toolu_2");
        assert_eq!(calls[3]["function"]["name"], "now");
        // A tool without parameters streams no arguments: it gets "{}" when its block ends.
        assert_eq!(
            *calls[4],
            json!({"index": 1, "function": {"arguments": "{}"}})
        );
        assert_eq!(calls.len(), 5);
        let finish: Vec<&Value> = all
            .iter()
            .map(|v| &v["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, [&json!("tool_calls")]);
    }

    #[test]
    fn error_event_is_a_reject() {
        let mut st = StreamState::new("c", 0, false);
        run(&mut st, &[start()]);
        let err = translate_event(
            &mut st,
            &ev(
                "error",
                json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
            ),
        )
        .unwrap_err();
        assert_eq!(err.status, 503);
        assert_eq!(err.code, "overloaded_error");
        assert_eq!(err.message, "Anthropic stream error: Overloaded");
        // Unnamed (type only) and non-JSON error events end the stream too.
        let unnamed = SseEvent::data(r#"{"type":"error","error":{"type":"api_error"}}"#);
        assert_eq!(translate_event(&mut st, &unnamed).unwrap_err().status, 500);
        let garbage = SseEvent::named("error", "oops");
        assert_eq!(translate_event(&mut st, &garbage).unwrap_err().status, 502);
    }

    #[test]
    fn repeated_and_late_events_are_ignored() {
        let mut st = StreamState::new("c", 0, false);
        let stop = ev("message_stop", json!({}));
        let all = run(&mut st, &[start(), start(), stop.clone(), stop, start()]);
        assert_eq!(all.len(), 2, "{all:?}"); // one role chunk, one [DONE]
        assert_eq!(all[1], "[DONE]");
    }

    #[test]
    fn state_bytes_round_trip() {
        let mut st = StreamState::new("c", 5, true);
        run(&mut st, &[start()]);
        assert_eq!(StreamState::from_bytes(&st.to_bytes()), st);
        assert_eq!(StreamState::from_bytes(b"junk"), StreamState::default());
    }
}
