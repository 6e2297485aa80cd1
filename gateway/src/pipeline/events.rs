//! Stream events through the transform plugin: the [`EventTranslator`] the stream state
//! machine uses when the client gets what the plugin produces (canonical OpenAI chat, or a
//! same-format pass-through).

use serde::Deserialize;

use super::context::Request;
use super::stream::{EventTranslator, StreamFault};
use crate::api_error::{ApiError, ApiFormat};
use crate::plugins::bindings::{SseEvent, TransformCtx, Usage};
use crate::plugins::{LoadedPlugin, Stage};

/// One OpenAI stream chunk, for counting delivered text when usage never arrives.
#[derive(Deserialize)]
struct ChunkPeek<'a> {
    #[serde(borrow)]
    choices: Option<Vec<ChoicePeek<'a>>>,
}
#[derive(Deserialize)]
struct ChoicePeek<'a> {
    #[serde(borrow)]
    delta: Option<DeltaPeek<'a>>,
}
#[derive(Deserialize)]
struct DeltaPeek<'a> {
    #[serde(borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
}

/// Characters of assistant text in one OpenAI chunk (for usage estimates on cut streams).
pub(super) fn content_chars(data: &str) -> u64 {
    if !data.starts_with('{') {
        return 0;
    }
    serde_json::from_str::<ChunkPeek>(data)
        .ok()
        .and_then(|c| c.choices)
        .map(|choices| {
            choices
                .iter()
                .filter_map(|c| c.delta.as_ref()?.content.as_ref())
                .map(|s| s.chars().count() as u64)
                .sum()
        })
        .unwrap_or(0)
}

/// Events through one transform plugin, with the plugin's per-stream state.
pub(super) struct PluginEvents<'r, 'a> {
    req: &'r Request<'a>,
    plugin: &'r LoadedPlugin,
    ctx: &'r TransformCtx,
    state: Vec<u8>,
    usage: Option<Usage>,
    delivered_chars: u64,
    saw_done: bool,
    /// The format of the events the plugin produces (its error events take that shape).
    format: ApiFormat,
}

impl<'r, 'a> PluginEvents<'r, 'a> {
    pub(super) fn new(
        req: &'r Request<'a>,
        plugin: &'r LoadedPlugin,
        ctx: &'r TransformCtx,
        state: Vec<u8>,
    ) -> Self {
        PluginEvents {
            req,
            plugin,
            ctx,
            state,
            usage: None,
            delivered_chars: 0,
            saw_done: false,
            format: ctx.client_format,
        }
    }

    /// The request this stream belongs to.
    pub(super) fn request(&self) -> &'r Request<'a> {
        self.req
    }

    fn take(&mut self, events: &[SseEvent]) {
        for e in events {
            self.saw_done |= e.data == "[DONE]";
            self.delivered_chars += content_chars(&e.data);
        }
    }
}

impl EventTranslator for PluginEvents<'_, '_> {
    fn event(&mut self, ev: SseEvent) -> Result<Vec<SseEvent>, StreamFault> {
        let req = self.req;
        match req.timed(Stage::Transform, || {
            self.plugin
                .transform_event(&req.id, self.ctx, &self.state, &ev)
        }) {
            Ok(Ok(o)) => {
                self.state = o.state;
                if o.usage.is_some() {
                    self.usage = o.usage;
                }
                self.take(&o.events);
                Ok(o.events)
            }
            Ok(Err(reject)) => Err(StreamFault::Rejected(ApiError::from(&reject))),
            Err(e) => {
                req.plugin_failed(&e);
                Err(StreamFault::Plugin(e.class()))
            }
        }
    }

    fn finish(&mut self) -> Vec<SseEvent> {
        let req = self.req;
        let mut events = match self.plugin.end_of_stream(&req.id, self.ctx, &self.state) {
            Ok(Ok(o)) => {
                if o.usage.is_some() {
                    self.usage = o.usage;
                }
                o.events
            }
            Ok(Err(reject)) => {
                tracing::warn!(message = %reject.message, "transform refused the end of the stream");
                Vec::new()
            }
            Err(e) => {
                req.plugin_failed(&e);
                Vec::new()
            }
        };
        self.take(&events);
        // OpenAI chat streams end with `[DONE]`; other formats close themselves.
        if self.format == ApiFormat::OpenaiChat && !self.saw_done {
            events.push(SseEvent {
                event: None,
                data: "[DONE]".into(),
            });
        }
        events
    }

    fn fail(&mut self, err: &ApiError) -> Vec<SseEvent> {
        // OpenAI SDKs raise on a `{"error": ...}` data event; Anthropic's on `event: error`.
        let event = (self.format == ApiFormat::AnthropicMessages).then(|| "error".to_string());
        vec![SseEvent {
            event,
            data: String::from_utf8_lossy(&err.body(self.format)).into_owned(),
        }]
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn delivered_chars(&self) -> u64 {
        self.delivered_chars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_delivered_content() {
        assert_eq!(
            content_chars(r#"{"choices":[{"index":0,"delta":{"content":"héllo"}}]}"#),
            5
        );
        assert_eq!(
            content_chars(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#),
            0
        );
        assert_eq!(content_chars("[DONE]"), 0);
    }
}
