//! The guardrail stage: each configured guardrail (`[stages] guardrails`, in order) checks the
//! prompt after auth and before routing, in the canonical form whatever API the client used;
//! the ones that ask for it also check the answer's text as it is delivered — stream events
//! through [`Guarded`], complete answers with [`Request::check_answer`].
//!
//! Nothing here runs when no guardrail is configured: the prompt is built only for them.
//! A guardrail that fails (trap, deadline) fails the request closed, like any stage.

use std::sync::Arc;

use serde_json::Value;

use super::call::Call;
use super::context::Request;
use super::stream::{EventTranslator, StreamFault};
use crate::api_error::{ApiError, ApiFormat};
use crate::plugins::bindings::{
    Charge, Message, Output, Principal, Prompt, SseEvent, ToolCall, Usage,
};
use crate::plugins::{LoadedPlugin, PluginError, Stage};

/// The prompt as guardrails see it, from the canonical (OpenAI chat) body: system first, then
/// the conversation. Embeddings requests give their inputs instead.
pub(super) fn prompt(call: &Call) -> Prompt {
    let body: Value = serde_json::from_slice(call.canonical_body()).unwrap_or(Value::Null);
    let messages = body["messages"]
        .as_array()
        .map(|list| list.iter().map(message).collect())
        .unwrap_or_default();
    let tools = body["tools"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|t| t["function"]["name"].as_str().or(t["name"].as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let inputs = match &body["input"] {
        Value::String(s) if call.format == ApiFormat::OpenaiEmbeddings => vec![s.clone()],
        Value::Array(list) if call.format == ApiFormat::OpenaiEmbeddings => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Prompt {
        summary: call.summary.clone(),
        messages,
        tools,
        inputs,
    }
}

fn message(m: &Value) -> Message {
    let mut text = String::new();
    let mut attachments = 0u32;
    match &m["content"] {
        Value::String(s) => text.push_str(s),
        Value::Array(parts) => {
            for part in parts {
                match part["text"].as_str().or(part["refusal"].as_str()) {
                    Some(t) => {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(t);
                    }
                    None => attachments = attachments.saturating_add(1),
                }
            }
        }
        _ => {}
    }
    let tool_calls = m["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| ToolCall {
                    name: c["function"]["name"].as_str().unwrap_or("").to_string(),
                    arguments: c["function"]["arguments"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    Message {
        role: m["role"].as_str().unwrap_or("").to_string(),
        text,
        tool_calls,
        attachments,
    }
}

/// The answer text one client event carries, in the client's format.
pub(super) fn event_text(format: ApiFormat, e: &SseEvent, out: &mut String) {
    if !e.data.starts_with('{') {
        return;
    }
    let relevant = match format {
        ApiFormat::AnthropicMessages => e.event.as_deref() == Some("content_block_delta"),
        ApiFormat::OpenaiResponses => e.event.as_deref() == Some("response.output_text.delta"),
        _ => true,
    };
    if !relevant {
        return;
    }
    let Ok(v) = serde_json::from_str::<Value>(&e.data) else {
        return;
    };
    match format {
        ApiFormat::AnthropicMessages => {
            if let Some(t) = v["delta"]["text"].as_str() {
                out.push_str(t);
            }
        }
        ApiFormat::OpenaiResponses => {
            if let Some(t) = v["delta"].as_str() {
                out.push_str(t);
            }
        }
        _ => {
            for c in v["choices"].as_array().into_iter().flatten() {
                if let Some(t) = c["delta"]["content"].as_str() {
                    out.push_str(t);
                }
            }
        }
    }
}

/// The whole answer text of a complete answer, in the client's format.
pub(super) fn answer_text(format: ApiFormat, body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let mut out = String::new();
    let mut push = |t: &str| {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(t);
    };
    match format {
        ApiFormat::AnthropicMessages => {
            for block in v["content"].as_array().into_iter().flatten() {
                if let Some(t) = block["text"].as_str() {
                    push(t);
                }
            }
        }
        ApiFormat::OpenaiResponses => {
            for item in v["output"].as_array().into_iter().flatten() {
                for part in item["content"].as_array().into_iter().flatten() {
                    if let Some(t) = part["text"].as_str() {
                        push(t);
                    }
                }
            }
        }
        _ => {
            for c in v["choices"].as_array().into_iter().flatten() {
                if let Some(t) = c["message"]["content"].as_str() {
                    push(t);
                }
            }
        }
    }
    out
}

impl Request<'_> {
    /// Runs every guardrail on the prompt; remembers the ones that check answers. A refusal
    /// (or a failing guardrail) is the client's error; nothing was routed or held yet.
    pub(super) async fn check_prompt(&self, who: &Principal, call: &Call) -> Result<(), ApiError> {
        let names = &self.state.config.guardrail_plugins;
        if names.is_empty() {
            return Ok(());
        }
        let prompt = prompt(call);
        let mut output = Vec::new();
        for name in names {
            let plugin = self.plugin(name, Stage::Guardrail)?;
            let checked = Box::pin(self.timed(
                Stage::Guardrail,
                plugin.check_prompt(&self.id, who, prompt.clone()),
            ))
            .await;
            if let Ok(Err(reject)) = &checked {
                tracing::info!(guardrail = %name, code = %reject.code, request = %self.id,
                    "guardrail refused the prompt");
                self.state.metrics.guardrail_refused(name, "prompt");
            }
            self.stage_result(checked)?;
            if Box::pin(plugin.checks_output()).await {
                output.push(plugin);
            }
        }
        let _ = self.output_guards.set(output);
        Ok(())
    }

    fn guards(&self) -> &[Arc<LoadedPlugin>] {
        self.output_guards.get().map_or(&[], Vec::as_slice)
    }

    /// Checks a complete answer's text; `Err` is the error the client gets instead.
    pub(super) async fn check_answer(&self, who: &Principal, body: &[u8]) -> Result<(), ApiError> {
        let guards = self.guards();
        if guards.is_empty() {
            return Ok(());
        }
        let text = answer_text(self.format, body);
        for plugin in guards {
            let output = Output {
                text: text.clone(),
                done: true,
            };
            Box::pin(self.check_piece(plugin, who, Vec::new(), output)).await?;
        }
        Ok(())
    }

    async fn check_piece(
        &self,
        plugin: &LoadedPlugin,
        who: &Principal,
        state: Vec<u8>,
        output: Output,
    ) -> Result<Vec<u8>, ApiError> {
        let checked: Result<_, PluginError> = self
            .timed(
                Stage::Guardrail,
                plugin.check_output(&self.id, who, state, output),
            )
            .await;
        if let Ok(Err(reject)) = &checked {
            tracing::info!(guardrail = %plugin.name(), code = %reject.code, request = %self.id,
                "guardrail stopped the answer");
            self.state
                .metrics
                .guardrail_refused(plugin.name(), "output");
        }
        self.stage_result(checked)
    }
}

/// A stream's events through the guardrails that check answers: each event's text is checked
/// before it is sent; a refusal ends the stream with one error event (or, before the first
/// byte, fails the attempt as a content filter would).
pub(super) struct Guarded<'r, 'a, T> {
    inner: T,
    req: &'r Request<'a>,
    who: &'r Principal,
    /// Per guardrail, its state for this stream.
    states: Vec<Vec<u8>>,
    /// Characters of text the inner translator produced but a guardrail withheld (not charged).
    withheld: u64,
}

impl<'r, 'a, T: EventTranslator> Guarded<'r, 'a, T> {
    pub(super) fn new(inner: T, req: &'r Request<'a>, who: &'r Principal) -> Self {
        let states = vec![Vec::new(); req.guards().len()];
        Guarded {
            inner,
            req,
            who,
            states,
            withheld: 0,
        }
    }

    async fn check(&mut self, events: &[SseEvent], done: bool) -> Result<(), ApiError> {
        if self.states.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for e in events {
            event_text(self.req.format, e, &mut text);
        }
        if text.is_empty() && !done {
            return Ok(());
        }
        for (plugin, state) in self.req.guards().iter().zip(self.states.iter_mut()) {
            let output = Output {
                text: text.clone(),
                done,
            };
            // Boxed: the guest call's future is large, and this one lives inside every
            // stream's relay future (a debug build's stack overflowed without it).
            match Box::pin(
                self.req
                    .check_piece(plugin, self.who, std::mem::take(state), output),
            )
            .await
            {
                Ok(next) => *state = next,
                Err(err) => {
                    self.withheld += text.chars().count() as u64;
                    return Err(err);
                }
            }
        }
        Ok(())
    }
}

impl<T: EventTranslator> EventTranslator for Guarded<'_, '_, T> {
    async fn event(&mut self, ev: SseEvent) -> Result<Vec<SseEvent>, StreamFault> {
        let events = self.inner.event(ev).await?;
        self.check(&events, false)
            .await
            .map_err(StreamFault::Blocked)?;
        Ok(events)
    }

    async fn finish(&mut self) -> Vec<SseEvent> {
        let events = self.inner.finish().await;
        match self.check(&events, true).await {
            Ok(()) => events,
            // The last piece is withheld and the stream ends with the error instead.
            Err(err) => self.inner.fail(&err),
        }
    }

    fn fail(&mut self, err: &ApiError) -> Vec<SseEvent> {
        self.inner.fail(err)
    }

    async fn before_close(&mut self) {
        self.inner.before_close().await
    }

    fn usage(&self) -> Option<Usage> {
        self.inner.usage()
    }

    fn delivered_chars(&self) -> u64 {
        self.inner.delivered_chars().saturating_sub(self.withheld)
    }

    fn charged(&self) -> Option<Charge> {
        self.inner.charged()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
        }
    }

    #[test]
    fn text_of_each_client_format() {
        let mut out = String::new();
        event_text(
            ApiFormat::OpenaiChat,
            &ev(None, r#"{"choices":[{"delta":{"content":"he"}}]}"#),
            &mut out,
        );
        event_text(
            ApiFormat::AnthropicMessages,
            &ev(
                Some("content_block_delta"),
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ll"}}"#,
            ),
            &mut out,
        );
        event_text(
            ApiFormat::OpenaiResponses,
            &ev(
                Some("response.output_text.delta"),
                r#"{"type":"response.output_text.delta","delta":"o"}"#,
            ),
            &mut out,
        );
        // Not text: ignored.
        event_text(ApiFormat::OpenaiChat, &ev(None, "[DONE]"), &mut out);
        event_text(
            ApiFormat::AnthropicMessages,
            &ev(Some("message_start"), r#"{"delta":{"text":"x"}}"#),
            &mut out,
        );
        assert_eq!(out, "hello");

        let chat = br#"{"choices":[{"message":{"role":"assistant","content":"a"}}]}"#;
        assert_eq!(answer_text(ApiFormat::OpenaiChat, chat), "a");
        let msg = br#"{"content":[{"type":"text","text":"b"},{"type":"tool_use","name":"x"},{"type":"text","text":"c"}]}"#;
        assert_eq!(answer_text(ApiFormat::AnthropicMessages, msg), "b\nc");
        let resp =
            br#"{"output":[{"type":"message","content":[{"type":"output_text","text":"d"}]}]}"#;
        assert_eq!(answer_text(ApiFormat::OpenaiResponses, resp), "d");
        assert_eq!(answer_text(ApiFormat::OpenaiChat, b"not json"), "");
    }

    #[test]
    fn messages_from_canonical_parts() {
        let m = message(&serde_json::json!({
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:..."}},
                {"type": "text", "text": "here"}
            ]
        }));
        assert_eq!(m.role, "user");
        assert_eq!(m.text, "look\nhere");
        assert_eq!(m.attachments, 1);
        let a = message(&serde_json::json!({
            "role": "assistant", "content": null,
            "tool_calls": [{"id": "1", "type": "function",
                "function": {"name": "get", "arguments": "{\"q\":1}"}}]
        }));
        assert_eq!(a.text, "");
        assert_eq!(a.tool_calls[0].name, "get");
        assert_eq!(a.tool_calls[0].arguments, "{\"q\":1}");
    }
}
