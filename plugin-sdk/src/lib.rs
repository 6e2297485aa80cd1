//! # Tollgate plugin SDK
//!
//! A Tollgate plugin is a type implementing one stage trait ([`Auth`], `Guardrail`, [`Routing`],
//! [`Transform`], [`Billing`] or [`Logging`]) plus one [`export_plugin!`] line. Build it with the
//! project's plugin build step (`scripts/build-plugins`) into a WebAssembly component; drop the
//! `.wasm` into the gateway's plugin directory and it is loaded (and hot-reloaded) by name.
//!
//! ```ignore
//! use tollgate_plugin_sdk::{export_plugin, http, Auth, Principal, Reject, RequestHead};
//!
//! pub struct HeaderAuth;
//!
//! impl Auth for HeaderAuth {
//!     fn authenticate(head: RequestHead) -> Result<Principal, Reject> {
//!         match http::bearer_token(&head.headers) {
//!             Some("let-me-in") => Ok(Principal::new("org-1", "key-1")),
//!             _ => Err(Reject::unauthorized("missing or wrong token")),
//!         }
//!     }
//! }
//!
//! export_plugin!(auth: HeaderAuth);
//! ```
//!
//! Plugin logic compiles natively too: `cargo test` calls the trait methods directly, and the
//! host functions in [`host`] are served by [`testing::TestHost`].

#[doc(hidden)]
pub mod bindings;
pub mod host;
pub mod http;
pub mod json;
pub mod testing;
pub mod usage;

pub use serde_json;

pub use bindings::common::tollgate::plugin::host::{ApiKeyInfo, LogLevel};
pub use bindings::common::tollgate::plugin::types::{
    ApiFormat, Headers, Price, Principal, Reject, RequestHead, RequestSummary, SseEvent, Usage,
};

/// The auth stage: establishes who is calling.
pub use bindings::auth::exports::tollgate::plugin::auth::Guest as Auth;

/// The routing stage: orders candidate providers into upstream attempts.
pub use bindings::routing::exports::tollgate::plugin::routing::Guest as Routing;
pub use bindings::routing::exports::tollgate::plugin::routing::{Attempt, Candidate};

/// The transform stage: client format to provider format and back, streaming included.
pub use bindings::transform::exports::tollgate::plugin::transform::Guest as Transform;
pub use bindings::transform::exports::tollgate::plugin::transform::{
    ClientResponse, StreamOutput, TransformCtx, UpstreamRequest,
};

/// The billing stage: authorizes a request and decides its charge.
pub use bindings::billing::exports::tollgate::plugin::billing::Guest as Billing;
pub use bindings::billing::exports::tollgate::plugin::billing::{Authorization, Charge};

/// The logging stage: decides what of a finished request may be stored.
pub use bindings::logging::exports::tollgate::plugin::logging::Guest as Logging;
pub use bindings::logging::exports::tollgate::plugin::logging::{
    AttemptOutcome, RequestRecord, RetentionDecision,
};

/// The guardrail stage (since 0.2.0): checks prompts before routing and, if it wants, the
/// answer's text as it is delivered.
#[cfg(not(feature = "wit-0-1-0"))]
pub use bindings::guardrail::exports::tollgate::plugin::guardrail::Guest as Guardrail;
#[cfg(not(feature = "wit-0-1-0"))]
pub use bindings::guardrail::exports::tollgate::plugin::guardrail::{
    Message, Output, Prompt, ToolCall,
};

/// The WIT package version this SDK implements.
#[cfg(not(feature = "wit-0-1-0"))]
pub const WIT_VERSION: &str = "0.2.0";
/// The WIT package version this SDK implements.
#[cfg(feature = "wit-0-1-0")]
pub const WIT_VERSION: &str = "0.1.0";

/// Exports a type as the plugin's implementation of one stage world.
///
/// `export_plugin!(auth: MyAuth)`, or `guardrail:`, `routing:`, `transform:`, `billing:`, `logging:`. The type
/// must be a plain identifier in scope. Natively this expands to nothing, so the same crate
/// builds as a normal library for tests.
#[macro_export]
macro_rules! export_plugin {
    (auth: $ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::__export_auth_plugin_impl!($ty with_types_in $crate::bindings::auth);
    };
    (guardrail: $ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::__export_guardrail_plugin_impl!($ty with_types_in $crate::bindings::guardrail);
    };
    (routing: $ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::__export_routing_plugin_impl!($ty with_types_in $crate::bindings::routing);
    };
    (transform: $ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::__export_transform_plugin_impl!($ty with_types_in $crate::bindings::transform);
    };
    (billing: $ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::__export_billing_plugin_impl!($ty with_types_in $crate::bindings::billing);
    };
    (logging: $ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::__export_logging_plugin_impl!($ty with_types_in $crate::bindings::logging);
    };
}

impl Reject {
    /// A refusal with any status and code.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Reject {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }
    /// 400 `invalid_request_error`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }
    /// 401 `invalid_api_key`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "invalid_api_key", message)
    }
    /// 402 `insufficient_credits`.
    pub fn payment_required(message: impl Into<String>) -> Self {
        Self::new(402, "insufficient_credits", message)
    }
    /// 403 `permission_denied`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "permission_denied", message)
    }
    /// 404 `model_not_found`.
    pub fn model_not_found(message: impl Into<String>) -> Self {
        Self::new(404, "model_not_found", message)
    }
    /// 502 `upstream_error`: the provider answered something that cannot be translated.
    pub fn bad_upstream(message: impl Into<String>) -> Self {
        Self::new(502, "upstream_error", message)
    }
}

impl Principal {
    /// A principal with no attributes.
    pub fn new(org_id: &str, key_id: &str) -> Self {
        Principal {
            org_id: org_id.to_string(),
            key_id: key_id.to_string(),
            attributes: Vec::new(),
        }
    }
    /// The value of an attribute set by the auth stage.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Usage {
    /// No tokens.
    pub const ZERO: Usage = Usage {
        input: 0,
        output: 0,
        cache_read: 0,
        cache_write: 0,
        reasoning: 0,
    };
}

impl Price {
    /// Cost of `usage` at this price, in micro-USD, rounded up to the next micro-dollar so that
    /// a non-zero usage is never free by rounding.
    pub fn cost_micros(&self, usage: &Usage) -> u64 {
        let pico = u128::from(usage.input) * u128::from(self.input)
            + u128::from(usage.output) * u128::from(self.output)
            + u128::from(usage.cache_read) * u128::from(self.cache_read)
            + u128::from(usage.cache_write) * u128::from(self.cache_write);
        u64::try_from(pico.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

impl SseEvent {
    /// A `data:`-only event.
    pub fn data(data: impl Into<String>) -> Self {
        SseEvent {
            event: None,
            data: data.into(),
        }
    }
    /// An event with an `event:` name.
    pub fn named(event: &str, data: impl Into<String>) -> Self {
        SseEvent {
            event: Some(event.to_string()),
            data: data.into(),
        }
    }
}

impl StreamOutput {
    /// Output with the given events, no usage, and the state unchanged.
    pub fn events(events: Vec<SseEvent>, state: Vec<u8>) -> Self {
        StreamOutput {
            events,
            usage: None,
            state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_rounds_up_and_sums_kinds() {
        let price = Price {
            input: 3_000_000,
            output: 15_000_000,
            cache_read: 300_000,
            cache_write: 3_750_000,
        };
        let usage = Usage {
            input: 1000,
            output: 100,
            cache_read: 10,
            cache_write: 0,
            reasoning: 0,
        };
        // 1000*3 + 100*15 + 10*0.3 = 4503 micro-USD
        assert_eq!(price.cost_micros(&usage), 4503);
        let one = Usage {
            input: 1,
            ..Usage::ZERO
        };
        assert_eq!(price.cost_micros(&one), 3);
        let tiny = Price {
            input: 1,
            output: 0,
            cache_read: 0,
            cache_write: 0,
        };
        assert_eq!(tiny.cost_micros(&one), 1);
    }

    #[test]
    fn principal_attributes() {
        let mut p = Principal::new("o", "k");
        p.attributes.push(("tier".into(), "gold".into()));
        assert_eq!(p.attribute("tier"), Some("gold"));
        assert_eq!(p.attribute("none"), None);
    }
}
