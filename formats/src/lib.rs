//! Client API adapters onto Tollgate's canonical form.
//!
//! Tollgate avoids N client formats × M providers translators: every provider plugin translates
//! between its own wire format and one canonical form — OpenAI chat completions (request,
//! `chat.completion` response, `chat.completion.chunk` stream events ending in `[DONE]`) — and
//! every other client API is an adapter onto that form, in this crate:
//!
//! - [`anthropic`]: Anthropic Messages (`POST /v1/messages`) in, canonical out, and back.
//! - [`responses`]: OpenAI Responses (`POST /v1/responses`) in, canonical out, and back.
//!
//! When the client and the provider speak the same format (Anthropic in, Anthropic provider)
//! the gateway skips the adapter and the provider plugin patches the request instead, so every
//! field survives. The crate is plain Rust with no I/O: the gateway calls it on the request path
//! and `benches/` measures it.

pub mod anthropic;
pub mod estimate;
pub mod responses;
#[cfg(test)]
mod test_support;

use serde::{Deserialize, Serialize};

/// Token usage by kind, as the gateway accounts it (the WIT `usage` record).
///
/// `input` excludes cached tokens; `reasoning` is a subset of `output`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

impl Usage {
    /// Reads a canonical (OpenAI chat) `usage` object, for when the gateway passes no exact
    /// usage: `prompt_tokens` includes cached tokens, which come apart in
    /// `prompt_tokens_details.cached_tokens`. Canonical has no cache-write count, so
    /// `cache_write` is 0. Negative or non-numeric counts read as 0; floats are truncated.
    pub fn from_canonical(usage: &serde_json::Value) -> Usage {
        fn count(v: &serde_json::Value, path: &[&str]) -> u64 {
            let mut cur = v;
            for key in path {
                match cur.get(key) {
                    Some(next) => cur = next,
                    None => return 0,
                }
            }
            cur.as_u64()
                // `as` saturates, so a huge float becomes u64::MAX rather than wrapping.
                .or_else(|| cur.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .unwrap_or(0)
        }
        let prompt = count(usage, &["prompt_tokens"]);
        let cached = count(usage, &["prompt_tokens_details", "cached_tokens"]);
        Usage {
            input: prompt.saturating_sub(cached),
            output: count(usage, &["completion_tokens"]),
            cache_read: cached,
            cache_write: 0,
            reasoning: count(usage, &["completion_tokens_details", "reasoning_tokens"]),
        }
    }
}

/// One server-sent event to send to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field (Anthropic and Responses streams name every event).
    pub event: Option<String>,
    /// The `data:` field.
    pub data: String,
}

impl Event {
    /// A named event whose data is `value` serialised.
    pub fn named(name: &str, value: &serde_json::Value) -> Self {
        Event {
            event: Some(name.to_string()),
            data: value.to_string(),
        }
    }
}

/// A request the adapter cannot translate: the client gets it as an error in its own format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FormatError {
    /// HTTP status (400 for a malformed request, 502 for an unusable upstream answer).
    pub status: u16,
    /// Machine-readable code, e.g. `invalid_request_error`.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one (e.g. `messages[2].content`).
    pub param: Option<String>,
}

impl FormatError {
    /// A malformed or unsupported client request (400).
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        FormatError {
            status: 400,
            code: "invalid_request_error".into(),
            message: message.into(),
            param: Some(param.into()),
        }
    }

    /// An upstream answer (already in canonical form) that cannot be translated (502).
    pub fn upstream(message: impl Into<String>) -> Self {
        FormatError {
            status: 502,
            code: "upstream_error".into(),
            message: message.into(),
            param: None,
        }
    }
}
