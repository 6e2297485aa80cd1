//! Canonical `chat.completion.chunk` stream → typed Responses stream events, one state machine
//! per stream.
//!
//! One output item is open at a time, as in OpenAI's own streams: text opens a `message` item
//! (closing whatever was open), a new tool call index opens a `function_call` item (closing the
//! message or the previous call). Items close with their `*.done` events when the next one opens
//! or in [`StreamAdapter::finish`]. The open item is therefore always the last one.

use serde_json::{json, Map, Value};

use super::object::{build, echo, finished, item_id, Item, Part, Status};
use super::response::{call_id, parse_chunk, CallDelta, Chunk};
use super::{Finished, ResponseMeta, ResponsesRequest};
use crate::{Event, FormatError, Usage};

/// Canonical chunks in, Responses events out.
#[derive(Debug)]
pub struct StreamAdapter {
    echo: Map<String, Value>,
    meta: ResponseMeta,
    ev: Emitter,
    started: bool,
    items: Vec<Item>,
    /// Output index of the item still being generated (always the last item).
    open: Option<usize>,
    /// Canonical tool-call `index` → output index, in the order the calls started.
    calls: Vec<(u64, usize)>,
    finish_reason: Option<String>,
    /// From the canonical usage chunk; the gateway's own count wins in `finish`.
    usage: Option<Usage>,
    /// Set by `finish` or `fail`: the stream is over and later calls emit nothing.
    done: Option<Finished>,
}

/// Numbers and names the events.
#[derive(Debug, Default)]
struct Emitter {
    seq: u64,
    out: Vec<Event>,
}

impl Emitter {
    fn push(&mut self, ty: &str, fields: Value) {
        let mut data = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        data.insert("type".into(), ty.into());
        data.insert("sequence_number".into(), self.seq.into());
        self.seq += 1;
        self.out.push(Event {
            event: Some(ty.to_owned()),
            data: Value::Object(data).to_string(),
        });
    }

    fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.out)
    }
}

impl StreamAdapter {
    pub fn new(req: &ResponsesRequest, meta: ResponseMeta) -> Self {
        StreamAdapter {
            echo: echo(req, &meta),
            meta,
            ev: Emitter::default(),
            started: false,
            items: Vec::new(),
            open: None,
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
            done: None,
        }
    }

    /// One canonical SSE data payload: a `chat.completion.chunk`, the usage-only chunk
    /// (`choices: []`), or `[DONE]`.
    pub fn on_event(&mut self, data: &str) -> Result<Vec<Event>, FormatError> {
        if self.done.is_some() {
            return Ok(Vec::new());
        }
        let data = data.trim();
        if data == "[DONE]" {
            self.start();
            return Ok(self.ev.take());
        }
        let chunk = parse_chunk(data)?;
        self.check_call_order(&chunk)?;
        self.start();
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if chunk.finish_reason.is_some() {
            self.finish_reason = chunk.finish_reason;
        }
        self.on_text(false, &chunk.content);
        self.on_text(true, &chunk.refusal);
        for call in chunk.calls {
            self.on_call(call);
        }
        Ok(self.ev.take())
    }

    /// Closes the open item, then `response.completed` (or `response.incomplete` when the
    /// output was cut by the token limit or a content filter) with the full `Response`.
    pub fn finish(&mut self, usage: Option<&Usage>) -> (Vec<Event>, Finished) {
        if let Some(done) = &self.done {
            return (Vec::new(), done.clone());
        }
        self.start();
        let status = Status::from_finish_reason(self.finish_reason.as_deref());
        let cut = matches!(status, Status::Incomplete(_));
        self.close_open(if cut { "incomplete" } else { "completed" });
        let usage = usage.copied().or(self.usage);
        let done = finished(&self.echo, status, &self.items, usage.as_ref(), cut);
        let ty = if cut {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.ev.push(ty, json!({"response": done.response}));
        self.done = Some(done.clone());
        (self.ev.take(), done)
    }

    /// The stream broke after it started: `response.failed`, its `Response` holding what was
    /// generated so far (the item being generated marked incomplete) and `error {code, message}`.
    pub fn fail(&mut self, code: &str, message: &str) -> Vec<Event> {
        if self.done.is_some() {
            return Vec::new();
        }
        self.start();
        let status = Status::Failed { code, message };
        let cut = self.open.take().is_some();
        let done = finished(&self.echo, status, &self.items, self.usage.as_ref(), cut);
        self.ev
            .push("response.failed", json!({"response": done.response}));
        self.done = Some(done);
        self.ev.take()
    }

    /// `response.created` and `response.in_progress`, once, before anything else: the SDKs
    /// build their snapshot from `response.created`.
    fn start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        let response = build(&self.echo, Status::InProgress, Vec::new(), None);
        self.ev
            .push("response.created", json!({"response": response}));
        self.ev
            .push("response.in_progress", json!({"response": response}));
    }

    /// A tool call's arguments cannot continue once a later item opened (its `done` events are
    /// out): such a chunk is refused before it changes anything.
    fn check_call_order(&self, chunk: &Chunk) -> Result<(), FormatError> {
        let mut current = self.open_call_index();
        if !chunk.content.is_empty() || !chunk.refusal.is_empty() {
            current = None;
        }
        let mut started: Vec<u64> = Vec::new();
        for call in &chunk.calls {
            let known =
                self.calls.iter().any(|c| c.0 == call.index) || started.contains(&call.index);
            if !known {
                started.push(call.index);
                current = Some(call.index);
            } else if current != Some(call.index) && !call.arguments.is_empty() {
                let msg = format!(
                    "Tool call {} continued after a later output item.",
                    call.index
                );
                return Err(FormatError::upstream(msg));
            }
        }
        Ok(())
    }

    fn open_call_index(&self) -> Option<u64> {
        let open = self.open?;
        self.calls.iter().find(|c| c.1 == open).map(|c| c.0)
    }

    /// A text (or refusal) piece goes to the open message item, opened if needed.
    fn on_text(&mut self, refusal: bool, piece: &str) {
        if piece.is_empty() {
            return;
        }
        let i = match self.open {
            Some(i) if matches!(self.items.get(i), Some(Item::Message { .. })) => i,
            _ => {
                self.close_open("completed");
                let i = self.items.len();
                let item = Item::Message {
                    id: item_id(&self.meta, "msg", i),
                    parts: Vec::new(),
                };
                let added = json!({"output_index": i, "item": item.to_json("in_progress")});
                self.ev.push("response.output_item.added", added);
                self.items.push(item);
                self.open = Some(i);
                i
            }
        };
        let Some(Item::Message { id, parts }) = self.items.get_mut(i) else {
            return;
        };
        // A switch between text and refusal closes the current part and opens the other kind.
        if parts.last().map(|p| p.refusal) != Some(refusal) {
            if let Some(last) = parts.last() {
                close_part(&mut self.ev, id, i, parts.len() - 1, last);
            }
            let part = Part {
                refusal,
                text: String::new(),
            };
            let added = json!({"item_id": id, "output_index": i, "content_index": parts.len(),
                "part": part.to_json()});
            self.ev.push("response.content_part.added", added);
            parts.push(part);
        }
        let k = parts.len() - 1;
        let Some(part) = parts.last_mut() else {
            return;
        };
        part.text.push_str(piece);
        let mut delta =
            json!({"item_id": id, "output_index": i, "content_index": k, "delta": piece});
        if refusal {
            self.ev.push("response.refusal.delta", delta);
        } else {
            delta["logprobs"] = json!([]);
            self.ev.push("response.output_text.delta", delta);
        }
    }

    /// A tool call delta: a new index opens a `function_call` item; argument pieces of the
    /// open call become `function_call_arguments.delta` events.
    fn on_call(&mut self, call: CallDelta) {
        let known = self.calls.iter().find(|c| c.0 == call.index).map(|c| c.1);
        let i = match known {
            Some(i) => i,
            None => {
                self.close_open("completed");
                let i = self.items.len();
                let item = Item::Call {
                    id: item_id(&self.meta, "fc", i),
                    call_id: call_id(&self.meta, i, &call.id),
                    name: call.name.clone().unwrap_or_default(),
                    arguments: String::new(),
                };
                let added = json!({"output_index": i, "item": item.to_json("in_progress")});
                self.ev.push("response.output_item.added", added);
                self.items.push(item);
                self.open = Some(i);
                self.calls.push((call.index, i));
                i
            }
        };
        // Deltas for a closed call can only be empty here (see check_call_order).
        if self.open != Some(i) {
            return;
        }
        let Some(Item::Call {
            id,
            name,
            arguments,
            ..
        }) = self.items.get_mut(i)
        else {
            return;
        };
        // Some providers repeat the name on every delta: the first one stands.
        if name.is_empty() {
            *name = call.name.unwrap_or_default();
        }
        if !call.arguments.is_empty() {
            arguments.push_str(&call.arguments);
            let delta = json!({"item_id": id, "output_index": i, "delta": call.arguments});
            self.ev
                .push("response.function_call_arguments.delta", delta);
        }
    }

    /// The open item's `*.done` events, its status being `status`.
    fn close_open(&mut self, status: &str) {
        let Some(i) = self.open.take() else {
            return;
        };
        let Some(item) = self.items.get(i) else {
            return;
        };
        match item {
            Item::Message { id, parts } => {
                if let Some(last) = parts.last() {
                    close_part(&mut self.ev, id, i, parts.len() - 1, last);
                }
            }
            Item::Call {
                id,
                name,
                arguments,
                ..
            } => {
                let done = json!({"item_id": id, "output_index": i, "name": name,
                    "arguments": arguments});
                self.ev.push("response.function_call_arguments.done", done);
            }
        }
        let done = json!({"output_index": i, "item": item.to_json(status)});
        self.ev.push("response.output_item.done", done);
    }
}

fn close_part(ev: &mut Emitter, item_id: &str, i: usize, k: usize, part: &Part) {
    let at = json!({"item_id": item_id, "output_index": i, "content_index": k});
    let mut done = at.clone();
    if part.refusal {
        done["refusal"] = part.text.clone().into();
        ev.push("response.refusal.done", done);
    } else {
        done["text"] = part.text.clone().into();
        done["logprobs"] = json!([]);
        ev.push("response.output_text.done", done);
    }
    let mut done = at;
    done["part"] = part.to_json();
    ev.push("response.content_part.done", done);
}
