//! OpenAI Responses API (`POST /v1/responses`) adapter onto the canonical form (OpenAI chat
//! completions).
//!
//! - `request`: checks a `CreateResponse` body ([`parse_request`]) and builds the canonical
//!   chat request for it ([`to_canonical`]): `instructions` first, then the earlier turns the
//!   gateway stored, then this turn's input items, which `input` maps to chat messages.
//! - `response`: reads canonical answers: a `chat.completion` → a `Response`
//!   ([`response_from_canonical`]), and stream chunks for `stream`.
//! - `stream`: canonical `chat.completion.chunk`s → typed Responses stream events
//!   ([`StreamAdapter`]).
//! - `object`: the `Response` object and its output items, shared by both paths so that a
//!   stream's final `Response` is the one a non-streamed call would return.
//!
//! Conversation state (`previous_response_id`) belongs to the gateway, not to this crate: it
//! stores each turn as canonical messages ([`Canonical::turn_messages`] followed by
//! [`Finished::output_messages`]) and hands them back as `history` on the next turn. Keeping
//! them canonical means a conversation can move between providers from one turn to the next.

mod input;
mod object;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

pub use request::{parse_request, to_canonical};
pub use response::response_from_canonical;
pub use stream::StreamAdapter;

/// A checked `CreateResponse` body, with the fields the gateway routes and meters on.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesRequest {
    /// The model as the client named it (echoed in the `Response`).
    pub model: String,
    pub stream: bool,
    /// Whether the gateway should keep this turn for a later `previous_response_id` (default true).
    pub store: bool,
    pub previous_response_id: Option<String>,
    pub max_output_tokens: Option<u32>,
    /// The request declares at least one (function) tool.
    pub has_tools: bool,
    /// The whole body; [`to_canonical`] and the response builders read the rest from it.
    pub value: serde_json::Value,
}

/// The canonical chat request for one Responses turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical {
    /// `CreateChatCompletionRequest` JSON.
    pub body: Vec<u8>,
    /// This turn's input as canonical chat messages (instructions excluded: OpenAI does not
    /// carry them over to later turns), to store with the response.
    pub turn_messages: Vec<serde_json::Value>,
}

/// What the gateway decides about a response before the adapter builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMeta {
    /// `resp_…`; output item ids (`msg_…`, `fc_…`) are derived from it.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model as the client named it.
    pub model: String,
}

/// A finished (or failed) response.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The `Response` JSON.
    pub body: Vec<u8>,
    pub response: serde_json::Value,
    /// The output as canonical messages (one assistant message with content and/or
    /// `tool_calls`; none when the model produced nothing), to append to the stored
    /// conversation.
    pub output_messages: Vec<serde_json::Value>,
}
