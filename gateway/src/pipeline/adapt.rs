//! Client-format adapters in the request path: how a call reaches a provider (its own body to
//! a provider that speaks its format, else the canonical body), and the canonical answer turned
//! back into the client's format — complete ([`Adapting::complete`]) or streamed
//! ([`AdaptedEvents`], wrapping the transform plugin's events).
//!
//! The translations themselves are in the `tollgate-formats` crate; this file only plugs them
//! into the pipeline.

use serde_json::Value;
use tollgate_formats::{anthropic, responses, Event};

use super::call::Call;
use super::events::PluginEvents;
use super::stream::{EventTranslator, StreamFault};
use crate::api_error::{format_name, ApiError, ApiFormat};
use crate::config::Provider;
use crate::plugins::bindings::{Principal, SseEvent, Usage};

/// The formats crate's usage for the host's.
pub fn usage_out(u: &Usage) -> tollgate_formats::Usage {
    tollgate_formats::Usage {
        input: u.input,
        output: u.output,
        cache_read: u.cache_read,
        cache_write: u.cache_write,
        reasoning: u.reasoning,
    }
}

fn sse(e: Event) -> SseEvent {
    SseEvent {
        event: e.event,
        data: e.data,
    }
}

/// How one call reaches one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The provider gets the client's own body (canonical chat, or a format it speaks natively).
    Native,
    /// The provider gets the canonical body; the answer goes back through the adapter.
    Adapted,
}

/// How `call` reaches `provider`; None when it cannot (embeddings from a provider without them).
pub fn mode(call: &Call, provider: &Provider) -> Option<Mode> {
    match call.format {
        ApiFormat::OpenaiChat => Some(Mode::Native),
        ApiFormat::OpenaiEmbeddings => provider
            .speaks(format_name(ApiFormat::OpenaiEmbeddings))
            .then_some(Mode::Native),
        // Responses state is kept by the gateway, so Responses always goes through canonical.
        ApiFormat::OpenaiResponses => Some(Mode::Adapted),
        f if provider.speaks(format_name(f)) => Some(Mode::Native),
        _ => Some(Mode::Adapted),
    }
}

/// An adapted attempt's client side: converts answers, keeps the finished Responses object.
pub struct Adapting<'c> {
    pub call: &'c Call,
    /// Whose call it is (the owner of stored Responses state).
    pub who: &'c Principal,
    /// The Responses object of an answered call (stored as conversation state).
    pub finished: Option<responses::Finished>,
}

impl<'c> Adapting<'c> {
    pub fn new(call: &'c Call, who: &'c Principal) -> Self {
        Adapting {
            call,
            who,
            finished: None,
        }
    }

    /// A complete canonical answer in the client's format.
    pub fn complete(
        &mut self,
        status: u16,
        body: &[u8],
        usage: Option<&Usage>,
    ) -> Result<Vec<u8>, ApiError> {
        let usage = usage.map(usage_out);
        let ok = (200..300).contains(&status);
        match self.call.format {
            ApiFormat::AnthropicMessages if ok => Ok(anthropic::response_from_canonical(
                body,
                &self.call.message_id,
                &self.call.summary.model,
                usage.as_ref(),
            )?),
            ApiFormat::AnthropicMessages => Ok(anthropic::error_from_canonical(status, body)),
            ApiFormat::OpenaiResponses if ok => {
                let Some(r) = self.call.responses.as_ref() else {
                    return Err(ApiError::internal("responses call without its request"));
                };
                let finished =
                    responses::response_from_canonical(&r.request, &r.meta, body, usage.as_ref())?;
                let out = finished.body.clone();
                self.finished = Some(finished);
                Ok(out)
            }
            // OpenAI-shaped errors are already the Responses API's error shape.
            _ => Ok(body.to_vec()),
        }
    }

    /// The stream translator: the plugin's canonical events through the client adapter.
    pub fn events<'r, 'a>(&'r self, inner: PluginEvents<'r, 'a>) -> AdaptedEvents<'r, 'a> {
        let client = match (&self.call.format, self.call.responses.as_ref()) {
            (ApiFormat::OpenaiResponses, Some(r)) => ClientStream::Responses(Box::new(
                responses::StreamAdapter::new(&r.request, r.meta.clone()),
            )),
            _ => ClientStream::Anthropic(Box::new(anthropic::StreamAdapter::new(
                &self.call.message_id,
                &self.call.summary.model,
            ))),
        };
        AdaptedEvents {
            inner,
            client,
            call: self.call,
            who: self.who,
            finished: None,
        }
    }
}

enum ClientStream {
    Anthropic(Box<anthropic::StreamAdapter>),
    Responses(Box<responses::StreamAdapter>),
}

/// Stream events: the transform plugin (canonical out), then the client adapter.
pub struct AdaptedEvents<'r, 'a> {
    inner: PluginEvents<'r, 'a>,
    client: ClientStream,
    call: &'r Call,
    who: &'r Principal,
    /// The Responses object once the stream finished.
    pub finished: Option<responses::Finished>,
}

impl AdaptedEvents<'_, '_> {
    fn on(&mut self, data: &str) -> Result<Vec<SseEvent>, StreamFault> {
        let events = match &mut self.client {
            ClientStream::Anthropic(a) => a.on_event(data),
            ClientStream::Responses(r) => r.on_event(data),
        }
        .map_err(|e| StreamFault::Rejected(ApiError::from(e)))?;
        Ok(events.into_iter().map(sse).collect())
    }
}

impl EventTranslator for AdaptedEvents<'_, '_> {
    async fn event(&mut self, ev: SseEvent) -> Result<Vec<SseEvent>, StreamFault> {
        let mut out = Vec::new();
        for e in self.inner.event(ev).await? {
            out.extend(self.on(&e.data)?);
        }
        Ok(out)
    }

    async fn finish(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for e in self.inner.finish().await {
            match self.on(&e.data) {
                Ok(events) => out.extend(events),
                Err(_) => tracing::warn!("adapter refused a closing event of the stream"),
            }
        }
        let usage = self.inner.usage().map(|u| usage_out(&u));
        match &mut self.client {
            ClientStream::Anthropic(a) => out.extend(a.finish(usage.as_ref()).into_iter().map(sse)),
            ClientStream::Responses(r) => {
                let (events, finished) = r.finish(usage.as_ref());
                out.extend(events.into_iter().map(sse));
                self.finished = Some(finished);
            }
        }
        out
    }

    fn fail(&mut self, err: &ApiError) -> Vec<SseEvent> {
        match &mut self.client {
            ClientStream::Anthropic(_) => vec![sse(anthropic::stream_error_event(
                err.status,
                &err.body(ApiFormat::OpenaiChat),
            ))],
            ClientStream::Responses(r) => r
                .fail(&err.code, &err.message)
                .into_iter()
                .map(sse)
                .collect(),
        }
    }

    async fn before_close(&mut self) {
        // A stored response must be readable (and continuable) by the time the client has its
        // last event: store it before that event is sent.
        if let Some(finished) = &self.finished {
            self.inner
                .request()
                .keep_response(self.who, self.call, finished)
                .await;
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.inner.usage()
    }

    fn delivered_chars(&self) -> u64 {
        self.inner.delivered_chars()
    }
}

/// Output tokens of an answer whose provider reported no usage: the tokenizer over the answer's
/// text (message content, text blocks, tool arguments), whatever the format.
pub fn estimate_output(body: &[u8]) -> u64 {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("content" | "text" | "arguments" | "refusal", Value::String(s)) => {
                            out.push_str(s);
                            out.push(' ');
                        }
                        (_, v) => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    let mut text = String::new();
    walk(&v, &mut text);
    tollgate_formats::estimate::text_tokens(&text)
}

/// Input tokens of a request whose provider reported no usage, from its canonical body (the
/// client's own, for embeddings).
pub fn estimate_input(format: ApiFormat, canonical: &[u8]) -> u64 {
    let Ok(v) = serde_json::from_slice::<Value>(canonical) else {
        return 0;
    };
    if format == ApiFormat::OpenaiEmbeddings {
        tollgate_formats::estimate::embeddings_input_tokens(&v)
    } else {
        tollgate_formats::estimate::canonical_input_tokens(&v)
    }
}
