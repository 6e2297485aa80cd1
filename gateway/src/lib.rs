//! Tollgate: a programmable LLM API gateway. Every request passes five WebAssembly plugin
//! stages (auth, routing, transform, billing, logging) run by the plugin host in [`plugins`],
//! on a Pingora server in [`proxy`], with state in [`store`].

pub mod api_error;
pub mod cli;
pub mod config;
pub mod keys;
pub mod metrics;
pub mod plugins;
pub mod proxy;
pub mod services;
pub mod sse;
pub mod store;
pub mod util;
pub mod validate;
