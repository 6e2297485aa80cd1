//! What an attempt and a request ended as, for settlement, logging and the usage record.
//!
//! Outcomes are enums, not strings: the string a usage record stores (`attempts[].error`) is
//! derived in one place, [`AttemptError::as_record`], so a new kind of failure cannot be
//! written two ways.

use std::fmt;
use std::time::Duration;

use super::upstream::{AttemptFailure, BodyError};
use crate::plugins::bindings::{AttemptOutcome, Charge, Price, Usage};

/// No tokens.
pub const NO_USAGE: Usage = Usage {
    input: 0,
    output: 0,
    cache_read: 0,
    cache_write: 0,
    reasoning: 0,
};

/// The usage-record status of a request whose client left before its answer was delivered
/// (nginx's convention).
pub const CLIENT_GONE: u16 = 499;

/// The usage-record status of a stream the upstream broke after the first byte.
pub const STREAM_FAILED: u16 = 502;

/// Why an attempt did not end in a complete answer, as recorded with the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    Connect,
    Timeout,
    Stall,
    /// A retryable HTTP status (429, 5xx).
    Status,
    /// The provider said the prompt is longer than its context window.
    ContextLength,
    /// The provider's content filter refused the request.
    ContentFilter,
    /// Not attempted, with why (`context-length`: no larger than one that already refused).
    Skipped(&'static str),
    /// The transform refused what the provider sent, with the refusal's code.
    Refused(String),
    /// The transform refused an answer already being delivered (no code: the client got it).
    RefusedAnswer,
    /// The upstream connection broke or its framing was unusable.
    StreamCut,
    TooLarge,
    /// The transform plugin failed (trap, deadline, memory, bad output), with its class.
    Plugin(&'static str),
    /// The route names a provider that is not configured.
    UnknownProvider,
    /// The client went away before its answer was delivered.
    ClientGone,
    Other,
}

impl AttemptError {
    /// The text stored in the usage record's `attempts[].error`.
    pub fn as_record(&self) -> String {
        match self {
            AttemptError::Connect => "connect".into(),
            AttemptError::Timeout => "timeout".into(),
            AttemptError::Stall => "stall".into(),
            AttemptError::Status => "status".into(),
            AttemptError::ContextLength => "context-length".into(),
            AttemptError::ContentFilter => "content-filter".into(),
            AttemptError::Skipped(why) => format!("skipped: {why}"),
            AttemptError::Refused(code) => format!("refused: {code}"),
            AttemptError::RefusedAnswer => "refused".into(),
            AttemptError::StreamCut => "stream-cut".into(),
            AttemptError::TooLarge => "too-large".into(),
            AttemptError::Plugin(class) => format!("plugin: {class}"),
            AttemptError::UnknownProvider => "unknown provider".into(),
            AttemptError::ClientGone => "client-gone".into(),
            AttemptError::Other => "error".into(),
        }
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_record())
    }
}

impl From<&AttemptFailure> for AttemptError {
    fn from(f: &AttemptFailure) -> Self {
        match f {
            AttemptFailure::Connect(_) => AttemptError::Connect,
            AttemptFailure::Timeout => AttemptError::Timeout,
            AttemptFailure::Stall => AttemptError::Stall,
            AttemptFailure::Status(..) => match f.fallback_class() {
                crate::policy::FailureClass::ContextLength => AttemptError::ContextLength,
                crate::policy::FailureClass::ContentFilter => AttemptError::ContentFilter,
                _ => AttemptError::Status,
            },
            AttemptFailure::Refused(_) => AttemptError::RefusedAnswer,
            AttemptFailure::Blocked(e) => AttemptError::Refused(e.code.clone()),
            AttemptFailure::Other(_) => AttemptError::Other,
        }
    }
}

impl From<&BodyError> for AttemptError {
    fn from(e: &BodyError) -> Self {
        match e {
            BodyError::Stall => AttemptError::Stall,
            BodyError::Deadline => AttemptError::Timeout,
            BodyError::Io(_) => AttemptError::StreamCut,
            BodyError::TooLarge(_) => AttemptError::TooLarge,
        }
    }
}

/// How an answer ended once its first byte had reached the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    Complete,
    /// The client went away: only what it received is charged.
    ClientGone,
    /// The upstream failed (cut, stall, deadline, refusal): the client got an error.
    Failed(AttemptError),
}

impl StreamEnd {
    /// The error recorded with the attempt (None when it completed).
    pub fn error(&self) -> Option<AttemptError> {
        match self {
            StreamEnd::Complete => None,
            StreamEnd::ClientGone => Some(AttemptError::ClientGone),
            StreamEnd::Failed(why) => Some(why.clone()),
        }
    }
}

/// An attempt that reached the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The status recorded (499 when the client left, 502 for a broken stream).
    pub status: u16,
    pub usage: Usage,
    /// Whether `usage` is charged.
    pub charge: bool,
    pub end: StreamEnd,
    /// The provider reported no usage: `usage` is the gateway's estimate (input tokens are
    /// added from the request at settlement).
    pub estimated: bool,
    /// The charge, when decided before the answer was sent (`usage.cost` in it).
    pub charged: Option<Charge>,
}

impl Answer {
    /// The client left: charged for what it received (`usage` says how much that was).
    pub fn client_gone(usage: Usage) -> Self {
        Answer {
            status: CLIENT_GONE,
            usage,
            charge: true,
            end: StreamEnd::ClientGone,
            estimated: false,
            charged: None,
        }
    }
}

/// Everything recorded about an attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub provider: String,
    pub upstream_model: String,
    /// HTTP status from upstream, 0 when there was none.
    pub status: u16,
    pub error: Option<AttemptError>,
    pub latency: Duration,
}

impl From<&AttemptRecord> for AttemptOutcome {
    fn from(r: &AttemptRecord) -> Self {
        AttemptOutcome {
            provider: r.provider.clone(),
            upstream_model: r.upstream_model.clone(),
            status: r.status,
            error: r.error.as_ref().map(|e| e.as_record()).unwrap_or_default(),
            latency_ms: r.latency.as_millis() as u32,
        }
    }
}

/// What happened to the request, for settlement and logging.
pub struct Outcome {
    pub status: u16,
    pub provider: String,
    pub price: Price,
    /// Tokens used, as far as known.
    pub usage: Usage,
    /// Whether `usage` is charged: false when the client never received the answer.
    pub charge: bool,
    /// `usage` is an estimate (the provider reported none).
    pub estimated: bool,
    /// Served with the org's own provider key (BYOK): billing charges at most its fee.
    pub byok: bool,
    /// The charge, when it was decided before the answer was sent (to show it in the answer).
    pub charged: Option<Charge>,
}

/// Usage of a stream that did not complete: what the provider reported so far, with output at
/// least the delivered text at ~4 characters a token.
pub fn cut_usage(reported: Option<Usage>, delivered_chars: u64) -> Usage {
    let u = reported.unwrap_or(NO_USAGE);
    Usage {
        output: u.output.max(delivered_chars.div_ceil(4)),
        ..u
    }
}

pub fn usage_tokens(u: &Usage) -> u64 {
    u.input + u.output + u.cache_read + u.cache_write
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_strings_are_stable() {
        // The usage record's `attempts[].error` is read by operators and tests: keep it stable.
        assert_eq!(AttemptError::ClientGone.as_record(), "client-gone");
        assert_eq!(AttemptError::StreamCut.as_record(), "stream-cut");
        assert_eq!(
            AttemptError::Refused("overloaded".into()).as_record(),
            "refused: overloaded"
        );
        assert_eq!(
            AttemptError::Plugin("timeout").as_record(),
            "plugin: timeout"
        );
        assert_eq!(
            AttemptError::from(&BodyError::Deadline),
            AttemptError::Timeout
        );
    }

    #[test]
    fn cut_usage_counts_delivered_text() {
        let u = cut_usage(None, 9);
        assert_eq!(u.output, 3);
        let reported = Usage {
            input: 5,
            output: 10,
            ..NO_USAGE
        };
        assert_eq!(cut_usage(Some(reported), 9).output, 10);
        assert_eq!(cut_usage(Some(reported), 9).input, 5);
    }
}
