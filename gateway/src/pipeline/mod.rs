//! The request path: one request through the five stages, a file per concern.
//!
//! ```text
//! context.rs   the request context (id, timing, client format) and stage-call helpers, auth
//! client.rs    the client side: body under limits, answers, the stream's sink
//! chat.rs      POST /v1/chat/completions: the stages in order, routing + billing.authorize
//! attempts.rs  the attempt loop with fallback; what to say when every attempt failed
//! upstream.rs  upstream I/O: connectors, per-phase bounds, provider health
//! complete.rs  complete responses through transform.response
//! stream.rs    the stream state machine (commit on first event, error events, client gone)
//! events.rs    stream events through transform.event
//! outcome.rs   what attempts and requests ended as (enums), usage of cut streams
//! settle.rs    billing.settle, logging stage, usage record
//! ```
//!
//! Upstream attempts are driven here (not through Pingora's `upstream_peer` loop) so that the
//! body can be re-transformed per provider and fallback happens strictly before the first byte
//! reaches the client. `proxy/` is only the Pingora adapter that hands requests in.

mod attempts;
mod chat;
mod client;
mod complete;
mod context;
mod events;
mod outcome;
mod settle;
mod stream;
pub mod upstream;

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::plugins::PluginRegistry;
use crate::proxy::front_door::Connections;
use crate::services::GatewayServices;
use crate::store::UsageWriterHandle;
pub use context::Request;
use upstream::Upstreams;

/// Everything a request needs, shared by all worker threads.
pub struct AppState {
    pub config: Config,
    pub registry: Arc<PluginRegistry>,
    pub services: Arc<GatewayServices>,
    pub usage: UsageWriterHandle,
    pub metrics: Metrics,
    pub upstreams: Upstreams,
    /// Open client connections on the API listener, capped by the front door.
    pub connections: Arc<Connections>,
}
