//! Tollgate: a programmable LLM API gateway. Every request passes five WebAssembly plugin
//! stages (auth, routing, transform, billing, logging) run by the plugin host in [`plugins`].
//! The request path is [`pipeline`]; [`proxy`] is the Pingora adapter in front of it,
//! [`server`] wires them up; state lives in [`store`], models and prices in [`catalog`].

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
