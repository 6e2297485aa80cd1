//! The model catalog: which models the gateway serves, through which provider routes, at what
//! price. Built from the config; the one place a configured price becomes the WIT `price`.

use crate::config::{self, Config};
use crate::plugins::bindings::Price;

impl From<config::Price> for Price {
    fn from(p: config::Price) -> Self {
        Price {
            input: p.input,
            output: p.output,
            cache_read: p.cache_read,
            cache_write: p.cache_write,
        }
    }
}

/// The price of `upstream_model` at `provider` among `model`'s routes (zero when unknown: the
/// billing stage decides what an unpriced route may do).
pub fn route_price(config: &Config, model: &str, provider: &str, upstream_model: &str) -> Price {
    config
        .models
        .get(model)
        .into_iter()
        .flatten()
        .find(|r| r.provider == provider && r.upstream_model == upstream_model)
        .map(|r| r.price.into())
        .unwrap_or(Price {
            input: 0,
            output: 0,
            cache_read: 0,
            cache_write: 0,
        })
}

/// `GET /v1/models`.
pub fn models_body(config: &Config) -> Vec<u8> {
    let data: Vec<serde_json::Value> = config
        .models
        .keys()
        .map(|m| serde_json::json!({"id": m, "object": "model", "created": 0, "owned_by": "tollgate"}))
        .collect();
    serde_json::json!({"object": "list", "data": data})
        .to_string()
        .into_bytes()
}
