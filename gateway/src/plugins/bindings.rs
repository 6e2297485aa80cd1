//! Host-side bindings generated from `wit/tollgate.wit`.
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

pub use auth::{AuthPlugin, AuthPluginPre};
pub use billing::exports::tollgate::plugin::billing::{Authorization, Charge};
pub use billing::{BillingPlugin, BillingPluginPre};
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
