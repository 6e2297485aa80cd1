//! Canonical `chat.completion.chunk` stream → Anthropic Messages stream events.
//!
//! Anthropic streams content as numbered blocks, one open at a time: `content_block_start`,
//! its deltas, `content_block_stop`, then the next index. OpenAI streams text and tool calls as
//! pieces keyed by tool-call `index`. The adapter keeps one block open, closes it when a piece
//! of a different kind or a different tool call arrives, and numbers blocks from 0 without gaps
//! (the Anthropic SDKs index their accumulated `content` by the event's `index`).

use serde_json::{json, Value};

use super::{stop_reason, synthetic_tool_id, usage_json};
use crate::{Event, FormatError, Usage};

/// One canonical tool call being streamed.
#[derive(Debug)]
struct ToolCall {
    /// Its canonical `index`, when the provider sent one.
    key: Option<u64>,
    id: Option<String>,
    name: String,
    /// Argument pieces that arrived before the name, held until the block can start.
    pending: String,
    /// The Anthropic block index once its `content_block_start` went out.
    block: Option<usize>,
}

/// The block currently open, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(usize),
    /// Position in `tools`.
    Tool(usize),
}

/// Per-stream state machine: canonical chunks in, Anthropic SSE events out.
#[derive(Debug)]
pub struct StreamAdapter {
    message_id: String,
    model: String,
    started: bool,
    finished: bool,
    next_block: usize,
    open: Option<Open>,
    tools: Vec<ToolCall>,
    finish_reason: Option<String>,
    refused: bool,
    /// Usage from the stream's usage chunk (or any chunk carrying `usage`).
    usage: Option<Usage>,
}

fn event(value: Value) -> Event {
    let name = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Event {
        event: Some(name),
        data: value.to_string(),
    }
}

impl StreamAdapter {
    pub fn new(message_id: &str, client_model: &str) -> Self {
        StreamAdapter {
            message_id: message_id.to_string(),
            model: client_model.to_string(),
            started: false,
            finished: false,
            next_block: 0,
            open: None,
            tools: Vec::new(),
            finish_reason: None,
            refused: false,
            usage: None,
        }
    }

    /// One canonical SSE data payload (a `chat.completion.chunk` JSON, the usage-only chunk with
    /// `choices: []`, or `[DONE]`) → zero or more Anthropic events (`Event.event` = the type,
    /// `data` = JSON with the same `"type"`). `message_start` comes before anything else, on the
    /// first payload.
    ///
    /// Malformed chunk (not JSON, not an object, `choices` not an array, an `error` object, a
    /// tool call resumed after another block started) → `Err(FormatError::upstream(..))`; the
    /// adapter's state is then unspecified and the stream should end with an error event. Only
    /// choice 0 is translated. Payloads after [`finish`](Self::finish) produce nothing.
    pub fn on_event(&mut self, data: &str) -> Result<Vec<Event>, FormatError> {
        if self.finished {
            return Ok(Vec::new());
        }
        let data = data.trim();
        let chunk = if data == "[DONE]" {
            None
        } else {
            // Checked before any event goes out, so a bad first chunk leaves no half-started
            // message behind.
            let chunk: Value = serde_json::from_str(data)
                .map_err(|e| FormatError::upstream(format!("unreadable stream chunk: {e}")))?;
            if !chunk.is_object() {
                return Err(FormatError::upstream("stream chunk is not a JSON object"));
            }
            if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .or_else(|| error.as_str())
                    .unwrap_or("upstream stream error");
                return Err(FormatError::upstream(message));
            }
            match chunk.get("choices") {
                None | Some(Value::Null) | Some(Value::Array(_)) => {}
                Some(_) => {
                    return Err(FormatError::upstream(
                        "stream chunk's choices is not a list",
                    ))
                }
            }
            Some(chunk)
        };

        let mut out = Vec::new();
        self.start(&mut out);
        let Some(chunk) = chunk else {
            return Ok(out);
        };
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(Usage::from_canonical(usage));
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.get("delta") {
                self.on_delta(delta, &mut out)?;
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(reason.to_string());
            }
        }
        Ok(out)
    }

    fn on_delta(&mut self, delta: &Value, out: &mut Vec<Event>) -> Result<(), FormatError> {
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.text(text, out);
        }
        // OpenAI's refusal streams as text of its own; Anthropic shows it as text.
        if let Some(text) = delta.get("refusal").and_then(Value::as_str) {
            if !text.is_empty() {
                self.refused = true;
                self.text(text, out);
            }
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                self.tool_piece(call, out)?;
            }
        }
        Ok(())
    }

    fn text(&mut self, text: &str, out: &mut Vec<Event>) {
        if text.is_empty() {
            return;
        }
        let index = match self.open {
            Some(Open::Text(index)) => index,
            _ => {
                self.close(out);
                let index = self.next_block;
                self.next_block += 1;
                self.open = Some(Open::Text(index));
                out.push(event(json!({"type": "content_block_start", "index": index,
                                      "content_block": {"type": "text", "text": ""}})));
                index
            }
        };
        out.push(event(json!({"type": "content_block_delta", "index": index,
                              "delta": {"type": "text_delta", "text": text}})));
    }

    /// Finds the tool call a piece belongs to, or starts a new one.
    fn tool_for(&mut self, key: Option<u64>, id: Option<&str>, name: Option<&str>) -> usize {
        let found = match (key, id) {
            // Some providers number every call 0 and tell them apart by id only.
            (Some(key), _) => self.tools.iter().rposition(|t| {
                t.key == Some(key) && !(id.is_some() && t.id.is_some() && t.id.as_deref() != id)
            }),
            (None, Some(id)) => self.tools.iter().rposition(|t| t.id.as_deref() == Some(id)),
            // No index and no id: a continuation of the latest call, unless it names a new
            // function while the latest already has its name (whole calls sent one per piece).
            (None, None) => self
                .tools
                .len()
                .checked_sub(1)
                .filter(|&last| name.is_none() || self.tools[last].name.is_empty()),
        };
        found.unwrap_or_else(|| {
            self.tools.push(ToolCall {
                key,
                id: None,
                name: String::new(),
                pending: String::new(),
                block: None,
            });
            self.tools.len() - 1
        })
    }

    fn tool_piece(&mut self, call: &Value, out: &mut Vec<Event>) -> Result<(), FormatError> {
        let key = call.get("index").and_then(Value::as_u64);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let function = call.get("function").unwrap_or(&Value::Null);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        let arguments = function
            .get("arguments")
            .and_then(Value::as_str)
            .unwrap_or("");

        let position = self.tool_for(key, id, name);
        let tool = &mut self.tools[position];
        if tool.id.is_none() {
            tool.id = id.map(str::to_string);
        }
        // The name comes whole in the first piece; later repeats are ignored, not appended.
        if tool.name.is_empty() {
            if let Some(name) = name {
                tool.name = name.to_string();
            }
        }
        match tool.block {
            None => {
                tool.pending.push_str(arguments);
                if !tool.name.is_empty() {
                    self.start_tool(position, out);
                }
            }
            Some(index) => {
                if self.open != Some(Open::Tool(position)) {
                    return Err(FormatError::upstream(
                        "a streamed tool call continued after another content block started",
                    ));
                }
                if !arguments.is_empty() {
                    out.push(input_delta(index, arguments));
                }
            }
        }
        Ok(())
    }

    fn start_tool(&mut self, position: usize, out: &mut Vec<Event>) {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some(Open::Tool(position));
        let fallback_id = synthetic_tool_id(&self.message_id, position);
        let tool = &mut self.tools[position];
        tool.block = Some(index);
        let id = tool.id.clone().unwrap_or(fallback_id);
        out.push(event(json!({"type": "content_block_start", "index": index,
                              "content_block": {"type": "tool_use", "id": id,
                                                "name": tool.name, "input": {}}})));
        let pending = std::mem::take(&mut tool.pending);
        if !pending.is_empty() {
            out.push(input_delta(index, &pending));
        }
    }

    fn close(&mut self, out: &mut Vec<Event>) {
        let index = match self.open.take() {
            Some(Open::Text(index)) => Some(index),
            Some(Open::Tool(position)) => self.tools.get(position).and_then(|t| t.block),
            None => None,
        };
        if let Some(index) = index {
            out.push(event(json!({"type": "content_block_stop", "index": index})));
        }
    }

    fn start(&mut self, out: &mut Vec<Event>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(event(json!({"type": "message_start", "message": {
            "id": self.message_id, "type": "message", "role": "assistant", "content": [],
            "model": self.model, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }})));
    }

    /// End of the canonical stream: closes open content blocks, then `message_delta`
    /// (`stop_reason` from the last `finish_reason`; usage with `input_tokens`,
    /// `output_tokens`, `cache_creation_input_tokens`, `cache_read_input_tokens` — from `usage`
    /// if given, else from the usage chunk seen, else zeros) and `message_stop`. A stream that
    /// produced nothing still gets its `message_start` first; tool calls whose name never came
    /// are started with an empty name rather than lost. Idempotent (a second call returns
    /// nothing).
    pub fn finish(&mut self, usage: Option<&Usage>) -> Vec<Event> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let mut out = Vec::new();
        self.start(&mut out);
        for position in 0..self.tools.len() {
            if self.tools[position].block.is_none() {
                self.start_tool(position, &mut out);
            }
        }
        self.close(&mut out);
        let usage = usage.copied().or(self.usage).unwrap_or_default();
        let reason = stop_reason(
            self.finish_reason.as_deref(),
            !self.tools.is_empty(),
            self.refused,
        );
        out.push(event(json!({"type": "message_delta",
                              "delta": {"stop_reason": reason, "stop_sequence": null},
                              "usage": usage_json(&usage)})));
        out.push(event(json!({"type": "message_stop"})));
        out
    }
}

fn input_delta(index: usize, partial_json: &str) -> Event {
    event(json!({"type": "content_block_delta", "index": index,
                 "delta": {"type": "input_json_delta", "partial_json": partial_json}}))
}
