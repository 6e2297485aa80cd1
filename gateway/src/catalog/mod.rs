//! The model catalog: which models the gateway serves, through which provider routes, at what
//! price, with what context and modalities. Built from the config; the one place a configured
//! price becomes the WIT `price`, and the source of `GET /v1/models` (OpenAI's list shape, with
//! OpenRouter's model fields: `context_length`, `architecture`, `pricing` in USD per token as
//! decimal strings, `supported_parameters`, and the provider routes).

use serde_json::{json, Value};

use crate::config::{self, Config, ModelKind};
use crate::plugins::bindings::Price;
use crate::policy::Policy;

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

/// Micro-USD per million tokens as USD per token, a plain decimal string (`2500000` →
/// `"0.0000025"`): exact, no float rounding, no exponent.
pub fn usd_per_token(micros_per_mtok: u64) -> String {
    // USD per token = micros / 10^12.
    let whole = micros_per_mtok / 1_000_000_000_000;
    let frac = micros_per_mtok % 1_000_000_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:012}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

fn pricing(p: &config::Price) -> Value {
    json!({
        "prompt": usd_per_token(p.input),
        "completion": usd_per_token(p.output),
        "input_cache_read": usd_per_token(p.cache_read),
        "input_cache_write": usd_per_token(p.cache_write),
        "request": "0",
    })
}

/// Parameters a model accepts when its config does not list them.
fn default_parameters(kind: ModelKind) -> Vec<&'static str> {
    match kind {
        ModelKind::Chat => vec![
            "max_tokens",
            "temperature",
            "top_p",
            "stop",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "response_format",
            "stream",
        ],
        ModelKind::Embedding => vec!["encoding_format", "dimensions"],
    }
}

/// One model object, or None when the catalog has no such model.
pub fn model(config: &Config, policy: &Policy, id: &str) -> Option<Value> {
    let id = policy.resolve(id);
    let routes = policy.models.get(id)?;
    let info = policy.model_info.get(id);
    let kind = info.map_or(ModelKind::Chat, |i| i.kind);
    let input = info.map_or_else(|| vec!["text".to_string()], |i| i.input_modalities.clone());
    let output = info.map_or_else(|| vec!["text".to_string()], |i| i.output_modalities.clone());
    let parameters: Vec<String> = info
        .and_then(|i| i.supported_parameters.clone())
        .unwrap_or_else(|| {
            default_parameters(kind)
                .into_iter()
                .map(String::from)
                .collect()
        });
    let providers: Vec<Value> = routes
        .iter()
        .map(|r| {
            let p = config.providers.get(&r.provider);
            json!({
                "provider": r.provider,
                "model": r.upstream_model,
                "pricing": pricing(&r.price),
                "zero_data_retention": p.is_some_and(|p| p.zero_retention),
                "trains_on_data": p.is_some_and(|p| p.trains_on_data),
                "region": p.map(|p| p.region.as_str()).filter(|r| !r.is_empty()),
                "formats": p.map(|p| p.formats.clone()).unwrap_or_default(),
            })
        })
        .collect();
    let first = routes.first();
    Some(json!({
        "id": id,
        "object": "model",
        "created": 0,
        // Anthropic's model object fields, so `anthropic` SDK clients can list models too.
        "type": "model",
        "display_name": id,
        "created_at": "1970-01-01T00:00:00Z",
        "owned_by": first.map_or("tollgate", |r| r.provider.as_str()),
        "name": id,
        "description": info.map_or("", |i| i.description.as_str()),
        "kind": match kind { ModelKind::Chat => "chat", ModelKind::Embedding => "embedding" },
        "context_length": info.and_then(|i| i.context_length),
        "architecture": {
            "modality": format!("{}->{}", input.join("+"), output.join("+")),
            "input_modalities": input,
            "output_modalities": output,
        },
        "pricing": first.map_or_else(|| pricing(&config::Price::default()), |r| pricing(&r.price)),
        "supported_parameters": parameters,
        "providers": providers,
    }))
}

/// `GET /v1/models`.
pub fn models_body(config: &Config, policy: &Policy) -> Vec<u8> {
    let data: Vec<Value> = policy
        .models
        .keys()
        .filter_map(|m| model(config, policy, m))
        .collect();
    // OpenAI's list, with Anthropic's pagination fields (one page: everything).
    let first = data.first().map(|m| m["id"].clone());
    let last = data.last().map(|m| m["id"].clone());
    json!({"object": "list", "data": data, "has_more": false, "first_id": first, "last_id": last})
        .to_string()
        .into_bytes()
}

/// `%xx` escapes decoded (a model id in a path may be escaped, e.g. `openai%2Fgpt-4o`); None
/// when the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_decimal_strings() {
        assert_eq!(usd_per_token(2_500_000), "0.0000025");
        assert_eq!(usd_per_token(150_000), "0.00000015");
        assert_eq!(usd_per_token(0), "0");
        assert_eq!(usd_per_token(1), "0.000000000001");
        assert_eq!(usd_per_token(3_000_000_000_000), "3");
    }

    #[test]
    fn decodes_escaped_ids() {
        assert_eq!(
            percent_decode("openai%2Fgpt-4o").as_deref(),
            Some("openai/gpt-4o")
        );
        assert_eq!(percent_decode("a%2").as_deref(), Some("a%2"));
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    }
}
