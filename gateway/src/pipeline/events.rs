//! Stream events through the transform plugin: the [`EventTranslator`] the stream state
//! machine uses when the client gets what the plugin produces (canonical OpenAI chat, or a
//! same-format pass-through).

use serde::Deserialize;

use super::complete::{with_cost, Pricing};
use super::context::Request;
use super::stream::{EventTranslator, StreamFault};
use crate::api_error::{ApiError, ApiFormat};
use crate::plugins::bindings::{Charge, SseEvent, TransformCtx, Usage};
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
    /// How to price the stream's usage chunk (`usage.cost`), when the client reads chat chunks.
    pricing: Option<Pricing<'r>>,
    /// The charge shown in the stream, with the usage it was computed for.
    charged: Option<(Usage, Charge)>,
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
            pricing: None,
            charged: None,
        }
    }

    /// Prices the usage chunk of an OpenAI chat stream the client reads as it is.
    pub(super) fn priced(mut self, pricing: Pricing<'r>) -> Self {
        let req = self.req;
        if req.state.config.usage_cost_in_responses
            && req.format == ApiFormat::OpenaiChat
            && self.format == ApiFormat::OpenaiChat
        {
            self.pricing = Some(pricing);
        }
        self
    }

    /// Adds `usage.cost` to the chunks that carry usage.
    async fn add_cost(&mut self, events: &mut [SseEvent]) {
        let (Some(p), Some(usage)) = (&self.pricing, self.usage) else {
            return;
        };
        if super::outcome::usage_tokens(&usage) == 0 {
            return;
        }
        for e in events.iter_mut() {
            if !e.data.contains("\"usage\"") {
                continue;
            }
            let charge = match &self.charged {
                Some((u, c)) if *u == usage => c.clone(),
                _ => match self
                    .req
                    .decide_charge(p.who, p.provider, p.price, usage, p.byok)
                    .await
                {
                    Some(c) => c,
                    None => return,
                },
            };
            let data = std::mem::take(&mut e.data).into_bytes();
            e.data = String::from_utf8(with_cost(data, &charge)).unwrap_or_default();
            self.charged = Some((usage, charge));
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
    async fn event(&mut self, ev: SseEvent) -> Result<Vec<SseEvent>, StreamFault> {
        let req = self.req;
        let out = req
            .timed(
                Stage::Transform,
                self.plugin
                    .transform_event(&req.id, self.ctx, &self.state, &ev),
            )
            .await;
        match out {
            Ok(Ok(o)) => {
                self.state = o.state;
                if o.usage.is_some() {
                    self.usage = o.usage;
                }
                let mut events = o.events;
                if o.usage.is_some() {
                    self.add_cost(&mut events).await;
                }
                self.take(&events);
                Ok(events)
            }
            Ok(Err(reject)) => Err(StreamFault::Rejected(ApiError::from(&reject))),
            Err(e) => {
                req.plugin_failed(&e);
                Err(StreamFault::Plugin(e.class()))
            }
        }
    }

    async fn finish(&mut self) -> Vec<SseEvent> {
        let req = self.req;
        let ended = self
            .plugin
            .end_of_stream(&req.id, self.ctx, &self.state)
            .await;
        let mut events = match ended {
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

    fn charged(&self) -> Option<Charge> {
        match (&self.charged, self.usage) {
            (Some((u, c)), Some(now)) if *u == now => Some(c.clone()),
            _ => None,
        }
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
