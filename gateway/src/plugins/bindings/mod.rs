//! Host-side bindings generated from `wit/tollgate.wit` (`tollgate:plugin@0.2.0`, the latest).
//! The rest of the gateway speaks only these types; plugins built for an older version are
//! called through that version's adapter module ([`v0_1_0`]), which converts into them
//! (one module per WIT version, as Zed's extension host does).
//!
//! `types` and `host` are generated once (from the `sdk-common` world) and shared by every stage
//! world, so a `Usage` or `Reject` is one Rust type throughout the gateway. Stage exports are
//! async (guest calls are futures that yield at epoch ticks); host imports stay synchronous:
//! they answer from memory and never wait.

pub mod common {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sdk-common",
        additional_derives: [PartialEq],
    });
}

pub use common::tollgate::plugin::host::{self as host_api, ApiKeyInfo, LogLevel};
pub use common::tollgate::plugin::types::{
    ApiFormat, Price, Principal, Reject, RequestHead, RequestSummary, SseEvent, Usage,
};

macro_rules! stage_world {
    ($module:ident, $world:literal) => {
        pub mod $module {
            wasmtime::component::bindgen!({
                path: "../wit",
                world: $world,
                additional_derives: [PartialEq],
                exports: { default: async },
                with: {
                    "tollgate:plugin/types": super::common::tollgate::plugin::types,
                    "tollgate:plugin/host": super::common::tollgate::plugin::host,
                },
            });
        }
    };
}

stage_world!(auth, "auth-plugin");
stage_world!(routing, "routing-plugin");
stage_world!(transform, "transform-plugin");
stage_world!(billing, "billing-plugin");
stage_world!(logging, "logging-plugin");
stage_world!(guardrail, "guardrail-plugin");

pub mod v0_1_0;

pub use auth::{AuthPlugin, AuthPluginPre};
pub use billing::exports::tollgate::plugin::billing::{Authorization, Charge};
pub use billing::{BillingPlugin, BillingPluginPre};
pub use guardrail::exports::tollgate::plugin::guardrail::{Message, Output, Prompt, ToolCall};
pub use guardrail::{GuardrailPlugin, GuardrailPluginPre};
pub use logging::exports::tollgate::plugin::logging::{
    AttemptOutcome, RequestRecord, RetentionDecision,
};
pub use logging::{LoggingPlugin, LoggingPluginPre};
pub use routing::exports::tollgate::plugin::routing::{Attempt, Candidate};
pub use routing::{RoutingPlugin, RoutingPluginPre};
pub use transform::exports::tollgate::plugin::transform::{
    ClientResponse, StreamOutput, TransformCtx, UpstreamRequest,
};
pub use transform::{TransformPlugin, TransformPluginPre};
