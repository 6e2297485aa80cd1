//! Tollgate: a programmable LLM API gateway. Every request passes five WebAssembly plugin
//! stages (auth, routing, transform, billing, logging) run by the plugin host in [`plugins`].
//! The request path is [`pipeline`]; [`proxy`] is the Pingora adapter in front of it,
//! [`server`] wires them up; state lives in [`store`], models and prices in [`catalog`].

// The proxy's request future nests the pipeline's, which nest each stage call's (a versioned
// instance method inside an owned guest-call future): deeper than rustc's default 128 when it
// computes the layout.
#![recursion_limit = "256"]

pub mod admin;
pub mod alerts;
pub mod api_error;
pub mod byok;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod keys;
pub mod metrics;
pub mod pipeline;
pub mod plugins;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod retention;
pub mod server;
pub mod services;
pub mod sse;
pub mod store;
pub mod util;
pub mod validate;
