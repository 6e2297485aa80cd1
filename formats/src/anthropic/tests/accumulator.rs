//! A test double of the official Anthropic SDK's stream accumulation: it rebuilds the message
//! from a stream's events and asserts the event-ordering rules clients rely on.

use serde_json::{json, Value};

use crate::Event;

/// Reassembles Anthropic stream events as the official Python SDK's `accumulate_event` does,
/// and checks the ordering rules it (and Anthropic's other SDKs) rely on.
#[derive(Default)]
pub(super) struct Accumulator {
    message: Option<Value>,
    json_bufs: Vec<String>,
    open: Option<usize>,
    stopped: bool,
}

impl Accumulator {
    pub(super) fn feed(&mut self, events: &[Event]) {
        for ev in events {
            let data: Value = serde_json::from_str(&ev.data).expect("event data is JSON");
            let kind = data["type"].as_str().expect("type").to_string();
            assert_eq!(
                ev.event.as_deref(),
                Some(kind.as_str()),
                "event name matches data type"
            );
            assert!(!self.stopped, "event after message_stop: {kind}");
            if kind == "message_start" {
                assert!(self.message.is_none(), "second message_start");
                self.message = Some(data["message"].clone());
                continue;
            }
            let message = self.message.as_mut().expect("message_start comes first");
            match kind.as_str() {
                "content_block_start" => {
                    assert!(self.open.is_none(), "block started while another is open");
                    let content = message["content"].as_array_mut().unwrap();
                    assert_eq!(data["index"], content.len(), "consecutive block indexes");
                    content.push(data["content_block"].clone());
                    self.json_bufs.push(String::new());
                    self.open = Some(content.len() - 1);
                }
                "content_block_delta" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    assert_eq!(self.open, Some(index), "delta to the open block");
                    let block = &mut message["content"][index];
                    match data["delta"]["type"].as_str().unwrap() {
                        "text_delta" => {
                            assert_eq!(block["type"], "text");
                            let text = format!(
                                "{}{}",
                                block["text"].as_str().unwrap(),
                                data["delta"]["text"].as_str().unwrap()
                            );
                            block["text"] = json!(text);
                        }
                        "input_json_delta" => {
                            assert_eq!(block["type"], "tool_use");
                            self.json_bufs[index]
                                .push_str(data["delta"]["partial_json"].as_str().unwrap());
                        }
                        other => panic!("unexpected delta {other}"),
                    }
                }
                "content_block_stop" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    assert_eq!(self.open, Some(index), "stop of the open block");
                    self.open = None;
                    if !self.json_bufs[index].is_empty() {
                        message["content"][index]["input"] =
                            serde_json::from_str(&self.json_bufs[index]).expect("tool input JSON");
                    }
                }
                "message_delta" => {
                    assert!(self.open.is_none(), "message_delta with a block open");
                    message["stop_reason"] = data["delta"]["stop_reason"].clone();
                    message["stop_sequence"] = data["delta"]["stop_sequence"].clone();
                    let usage = data["usage"].as_object().unwrap();
                    assert!(usage.contains_key("output_tokens"));
                    for (k, v) in usage {
                        message["usage"][k] = v.clone();
                    }
                }
                "message_stop" => self.stopped = true,
                other => panic!("unexpected event {other}"),
            }
        }
    }

    pub(super) fn done(self) -> Value {
        assert!(self.stopped, "stream ended with message_stop");
        self.message.unwrap()
    }
}
