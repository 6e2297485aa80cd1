//! Strategies for the provider-anthropic property tests: Anthropic messages, the SSE streams
//! that carry them, and edits that make a valid stream invalid (dropped, repeated, swapped,
//! split or foreign events).
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use provider_anthropic::JSON_TOOL;
use tollgate_plugin_sdk::serde_json::{json, Map, Value};
use tollgate_plugin_sdk::SseEvent;

use crate::gen::{arb_json, arb_object, arb_string};

/// Event names of Anthropic's stream, and a few others.
pub const EVENT_NAMES: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "message",
    "",
];

/// A content block of an Anthropic message, with where its stream splits it.
#[derive(Debug, Clone)]
pub enum Block {
    Text {
        text: String,
        splits: Vec<usize>,
    },
    Tool {
        id: String,
        name: String,
        input: Map<String, Value>,
        splits: Vec<usize>,
        /// How a tool without input streams: 0 `"{}"` in pieces, 1 one `""` delta, 2 no delta.
        empty_style: u8,
    },
}

/// A complete Anthropic message.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub blocks: Vec<Block>,
    pub stop_reason: Option<&'static str>,
    pub usage: [u64; 4],
    /// Whether the stream names its events (`event:`) or only types them in the data.
    pub named: bool,
    pub pings: bool,
}

fn token_count() -> BoxedStrategy<u64> {
    prop_oneof![6 => 0u64..100_000, 1 => Just(u64::MAX), 1 => any::<u64>()].boxed()
}

fn block() -> BoxedStrategy<Block> {
    let splits = || vec(any::<usize>(), 0..6);
    prop_oneof![
        (any::<String>(), splits()).prop_map(|(text, splits)| Block::Text { text, splits }),
        (
            "toolu_[a-z0-9]{1,8}",
            // Sometimes the forced JSON tool of `response_format`, which streams as content.
            prop_oneof![4 => "[a-z_]{1,10}", 1 => Just(JSON_TOOL.to_string())],
            arb_object(),
            splits(),
            0u8..3
        )
            .prop_map(|(id, name, input, splits, empty_style)| Block::Tool {
                id,
                name,
                input,
                splits,
                empty_style
            }),
    ]
    .boxed()
}

pub fn anthropic_message() -> BoxedStrategy<Message> {
    let stop = select(
        &[
            None,
            Some("end_turn"),
            Some("max_tokens"),
            Some("tool_use"),
            Some("stop_sequence"),
            Some("refusal"),
            Some("pause_turn"),
        ][..],
    );
    (
        "msg_[a-z0-9]{1,10}",
        vec(block(), 0..5),
        stop,
        [token_count(), token_count(), token_count(), token_count()],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(id, blocks, stop_reason, usage, named, pings)| Message {
            id,
            blocks,
            stop_reason,
            usage,
            named,
            pings,
        })
        .boxed()
}

/// `text` cut at `splits` (taken modulo its length, moved back to char boundaries).
fn pieces(text: &str, splits: &[usize]) -> Vec<String> {
    let mut cuts: Vec<usize> = splits
        .iter()
        .map(|s| {
            let mut at = s % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            at
        })
        .collect();
    cuts.push(0);
    cuts.push(text.len());
    cuts.sort_unstable();
    cuts.windows(2)
        .map(|w| text[w[0]..w[1]].to_string())
        .collect()
}

impl Message {
    /// The message as a non-streaming response body.
    pub fn to_json(&self) -> Value {
        let content: Vec<Value> = self
            .blocks
            .iter()
            .map(|b| match b {
                Block::Text { text, .. } => json!({"type": "text", "text": text}),
                Block::Tool {
                    id, name, input, ..
                } => {
                    json!({"type": "tool_use", "id": id, "name": name, "input": input})
                }
            })
            .collect();
        let [input, output, cache_read, cache_write] = self.usage;
        json!({"id": self.id, "type": "message", "role": "assistant", "model": "claude-up",
            "content": content, "stop_reason": self.stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": output,
                "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_write}})
    }

    /// The message as Anthropic streams it.
    pub fn events(&self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut push = |data: Value| {
            let name = data["type"].as_str().unwrap_or_default().to_string();
            out.push(SseEvent {
                event: self.named.then_some(name),
                data: data.to_string(),
            });
        };
        let [input, output, cache_read, cache_write] = self.usage;
        push(
            json!({"type": "message_start", "message": {"id": self.id, "type": "message",
            "role": "assistant", "model": "claude-up", "content": [], "stop_reason": null,
            "usage": {"input_tokens": input, "output_tokens": 1,
                "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_write}}}),
        );
        for (index, block) in self.blocks.iter().enumerate() {
            if self.pings {
                push(json!({"type": "ping"}));
            }
            let delta = |delta: Value| json!({"type": "content_block_delta", "index": index, "delta": delta});
            match block {
                Block::Text { text, splits } => {
                    push(json!({"type": "content_block_start", "index": index,
                        "content_block": {"type": "text", "text": ""}}));
                    for piece in pieces(text, splits) {
                        push(delta(json!({"type": "text_delta", "text": piece})));
                    }
                }
                Block::Tool {
                    id,
                    name,
                    input,
                    splits,
                    empty_style,
                } => {
                    push(json!({"type": "content_block_start", "index": index,
                        "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}));
                    let fragments = match (input.is_empty(), empty_style) {
                        (true, 1) => vec![String::new()],
                        (true, 2) => vec![],
                        _ => pieces(&Value::Object(input.clone()).to_string(), splits),
                    };
                    for piece in fragments {
                        push(delta(
                            json!({"type": "input_json_delta", "partial_json": piece}),
                        ));
                    }
                }
            }
            push(json!({"type": "content_block_stop", "index": index}));
        }
        push(
            json!({"type": "message_delta", "delta": {"stop_reason": self.stop_reason,
            "stop_sequence": null}, "usage": {"output_tokens": output}}),
        );
        push(json!({"type": "message_stop"}));
        out
    }
}

/// An edit to a stream. Positions are taken modulo the stream's length.
#[derive(Debug, Clone)]
pub enum Edit {
    Drop(usize),
    Repeat(usize),
    Swap(usize, usize),
    /// Cuts an event's data in two events at a byte offset (moved back to a char boundary).
    Split(usize, usize),
    Insert(usize, SseEvent),
}

pub fn arb_event() -> BoxedStrategy<SseEvent> {
    let name = proptest::option::of(select(EVENT_NAMES).prop_map(str::to_string));
    let data = prop_oneof![
        3 => arb_json().prop_map(|v| v.to_string()),
        1 => any::<String>(),
        1 => (select(&["overloaded_error", "rate_limit_error", "api_error", "bogus"][..]),
            arb_string()).prop_map(|(kind, message)| json!({"type": "error",
                "error": {"type": kind, "message": message}}).to_string()),
    ];
    (name, data)
        .prop_map(|(event, data)| SseEvent { event, data })
        .boxed()
}

pub fn edit() -> BoxedStrategy<Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Drop),
        any::<usize>().prop_map(Edit::Repeat),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Split(a, b)),
        (any::<usize>(), arb_event()).prop_map(|(a, e)| Edit::Insert(a, e)),
    ]
    .boxed()
}

pub fn apply(events: &mut Vec<SseEvent>, edits: &[Edit]) {
    for edit in edits {
        let len = events.len();
        if len == 0 {
            if let Edit::Insert(_, e) = edit {
                events.push(e.clone());
            }
            continue;
        }
        match edit {
            Edit::Drop(i) => {
                events.remove(i % len);
            }
            Edit::Repeat(i) => events.insert(i % len, events[i % len].clone()),
            Edit::Swap(a, b) => events.swap(a % len, b % len),
            Edit::Split(i, at) => {
                let e = events[i % len].clone();
                let mut cut = at % (e.data.len() + 1);
                while !e.data.is_char_boundary(cut) {
                    cut -= 1;
                }
                let (a, b) = e.data.split_at(cut);
                let part = |data: &str| SseEvent {
                    event: e.event.clone(),
                    data: data.to_string(),
                };
                events.splice(i % len..=i % len, [part(a), part(b)]);
            }
            Edit::Insert(i, e) => events.insert(i % (len + 1), e.clone()),
        }
    }
}
