//! Anthropic Messages (`POST /v1/messages`) client adapter onto the canonical form.
//!
//! Used only when the chosen provider does not speak Anthropic natively (an Anthropic provider
//! gets the client's body by pass-through, so fields canonical lacks — `thinking`,
//! `cache_control`, `top_k`, documents, server tools — survive there). Here:
//!
//! - [`parse_request`] checks a Messages body the way Anthropic would, for both paths: it accepts
//!   block and tool types it does not know, since pass-through may well support them.
//! - [`to_canonical`] translates it to an OpenAI chat request, rejecting (400, with the field's
//!   path in `param`) what canonical cannot carry rather than silently losing content.
//! - [`response_from_canonical`] and [`StreamAdapter`] translate the answer back, and
//!   [`error_from_canonical`] an error body.
//!
//! Choices made where Anthropic and OpenAI do not line up are documented on the functions; the
//! main ones: tool-call arguments that are not a JSON object become `{}` in a non-streamed
//! answer (a stream passes the model's text through as `input_json_delta`); `stop` with tool
//! calls present reports `tool_use`, since Anthropic clients loop on that stop reason.

mod blocks;
mod canonical;
mod fields;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

pub use canonical::to_canonical;
pub use request::{parse_request, MessagesRequest};
pub use response::{error_from_canonical, error_type, response_from_canonical, stream_error_event};
pub use stream::StreamAdapter;

use serde_json::{json, Value};

use crate::Usage;

/// Anthropic `stop_reason` for a canonical `finish_reason`.
///
/// OpenAI never says which stop sequence matched, so `stop` is always `end_turn` (never
/// `stop_sequence`). Some OpenAI-compatible providers finish tool calls with `stop` or with no
/// reason at all; when tool calls were made the answer is `tool_use`, the reason Anthropic
/// clients check before running tools. A refusal (OpenAI's `refusal` field) is `refusal`.
fn stop_reason(finish_reason: Option<&str>, has_tool_use: bool, refused: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("content_filter") => "refusal",
        Some("tool_calls") | Some("function_call") => "tool_use",
        _ if refused => "refusal",
        _ if has_tool_use => "tool_use",
        _ => "end_turn",
    }
}

/// Anthropic `usage` object. All four counts are always present: `input_tokens` excludes cache
/// reads and writes, as in Anthropic's own answers.
fn usage_json(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input,
        "output_tokens": usage.output,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
    })
}

/// A `tool_use` id for a canonical tool call that came without one: unique within the message
/// (derived from the message id and the call's position), so a later `tool_result` can name it.
fn synthetic_tool_id(message_id: &str, position: usize) -> String {
    let stem = message_id.strip_prefix("msg_").unwrap_or(message_id);
    format!("toolu_{stem}_{position}")
}
