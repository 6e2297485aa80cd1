//! The request path: one request through the five stages, a file per concern.
//!
//! ```text
//! account.rs GET /v1/key (the key's limits and spend), GET /v1/generation (one request)
//! access.rs  what the calling key may do: its state, scopes, rate limits (host-enforced)
//! context.rs   the request context (id, timing, client format) and stage-call helpers, auth
//! client.rs    the client side: body under limits, answers, the stream's sink
//! routes.rs    the client API routes: chat, Messages, Responses, embeddings, stored responses
//! route.rs     candidates (the policy's route, strategy, request options, health: each skip
//!              traced), routing, the BYOK plan, billing.authorize, the credit reservation
//! serve.rs     every API's stages in order: parse, routing + billing.authorize, attempts
//! call.rs      one call parsed for its API: summary, client and canonical bodies
//! adapt.rs     client-format adapters in the path (formats crate), usage estimates
//! responses.rs Responses API conversation state (previous_response_id, GET/DELETE)
//! byok.rs     whose provider key each attempt uses (the org's own, or the gateway's)
//! attempts.rs  the attempt loop with fallback; what to say when every attempt failed
//! upstream.rs  upstream I/O: connectors, per-phase bounds, how a provider's answer is classified
//! health.rs    provider health per route: EWMA latency, throughput, errors; the circuit breaker
//! complete.rs  complete responses through transform.response
//! stream.rs    the stream state machine (commit on first event, error events, client gone)
//! events.rs    stream events through transform.event
//! rate.rs     rate limits (key and org) on the request path, `x-ratelimit-*` headers
//! outcome.rs   what attempts and requests ended as (enums), usage of cut streams
//! settle.rs    billing.settle, the usage record
//! retain.rs    the retention policy, content capture, the logging stage and the mode's ceiling
//! ```
//!
//! Upstream attempts are driven here (not through Pingora's `upstream_peer` loop) so that the
//! body can be re-transformed per provider and fallback happens strictly before the first byte
//! reaches the client. `proxy/` is only the Pingora adapter that hands requests in.

mod access;
mod account;
mod adapt;
mod attempts;
mod byok;
mod call;
mod client;
mod complete;
mod context;
mod events;
mod guard;
pub mod health;
mod outcome;
mod rate;
mod responses;
mod retain;
mod route;
mod routes;
mod serve;
mod settle;
mod stream;
pub mod upstream;

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::plugins::PluginRegistry;
use crate::proxy::front_door::Connections;
use crate::services::GatewayServices;
use crate::store::{Store, UsageWriterHandle};
pub use context::Request;
use upstream::Upstreams;

/// Everything a request needs, shared by all worker threads.
pub struct AppState {
    pub config: Config,
    /// The operator's routing policy, reloaded live (`policies/*.toml`).
    pub policy: Arc<crate::policy::PolicyHandle>,
    pub registry: Arc<PluginRegistry>,
    pub services: Arc<GatewayServices>,
    /// The database (conversation state; everything billing-related goes through services).
    pub store: Store,
    pub usage: UsageWriterHandle,
    pub metrics: Metrics,
    pub upstreams: Upstreams,
    /// Open client connections on the API listener, capped by the front door.
    pub connections: Arc<Connections>,
    /// Orgs' own provider keys (BYOK), decrypted into a short-lived cache.
    pub byok: Arc<crate::byok::ByokKeys>,
    /// Requests and tokens per minute, requests at once (per key and org; shared via Redis).
    pub limiter: crate::ratelimit::RateLimiter,
    /// Seals Responses conversation state at rest.
    pub state_key: crate::retention::state_seal::StateKey,
}
