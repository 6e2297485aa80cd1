//! OpenRouter's request routing options, read from a chat request body, as OpenRouter documents
//! them (https://openrouter.ai/docs/features/provider-routing,
//! https://openrouter.ai/docs/features/model-routing):
//!
//! - `models: [...]` — models to try, in order, when the first one's providers all fail;
//! - `provider: {order, only, ignore, allow_fallbacks, require_parameters, data_collection, zdr,
//!   sort, max_price}`;
//! - model suffixes `:nitro` (= `sort: "throughput"`) and `:floor` (= `sort: "price"`).
//!
//! A request may narrow routing this way, never widen it: the options only filter and order the
//! candidates the key's scopes, the org's data policy and the operator's route already allow.
//! The gateway takes these fields out of the body before it goes upstream.

use serde_json::{Map, Value};

use super::Strategy;
use crate::api_error::ApiError;

/// Most models a `models` list may name.
pub const MAX_MODELS: usize = 8;

/// `provider.max_price`, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MaxPrice {
    pub prompt: Option<f64>,
    pub completion: Option<f64>,
}

/// The options of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteOptions {
    /// Models after the requested one, tried in order when it fails.
    pub fallback_models: Vec<String>,
    /// Providers to try first, in this order.
    pub order: Vec<String>,
    /// Only these providers (None: any).
    pub only: Option<Vec<String>>,
    pub ignore: Vec<String>,
    /// false: only the providers in `order` (or the first provider) are tried.
    pub allow_fallbacks: bool,
    /// Only providers whose routes accept every parameter the request uses.
    pub require_parameters: bool,
    /// `data_collection: "deny"`: only providers that do not train on or keep data.
    pub deny_data_collection: bool,
    /// Only zero-data-retention providers.
    pub zdr: bool,
    pub sort: Option<Strategy>,
    pub max_price: Option<MaxPrice>,
    /// The request's top-level parameter names (for `require_parameters`).
    pub parameters: Vec<String>,
}

impl Default for RouteOptions {
    fn default() -> Self {
        RouteOptions {
            fallback_models: Vec::new(),
            order: Vec::new(),
            only: None,
            ignore: Vec::new(),
            allow_fallbacks: true,
            require_parameters: false,
            deny_data_collection: false,
            zdr: false,
            sort: None,
            max_price: None,
            parameters: Vec::new(),
        }
    }
}

/// Fields of a chat body that are not request parameters a provider must support.
const NOT_PARAMETERS: [&str; 6] = [
    "model",
    "messages",
    "models",
    "provider",
    "stream_options",
    "user",
];

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message.into()).with_param(param)
}

fn strings(v: &Value, param: &str) -> Result<Vec<String>, ApiError> {
    let arr = v
        .as_array()
        .ok_or_else(|| bad(param, format!("{param} must be an array of strings.")))?;
    if arr.len() > 64 {
        return Err(bad(param, format!("{param}: at most 64 entries.")));
    }
    arr.iter()
        .map(|s| {
            s.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(param, format!("{param} must be an array of strings.")))
        })
        .collect()
}

fn boolean(v: &Value, param: &str) -> Result<bool, ApiError> {
    v.as_bool()
        .ok_or_else(|| bad(param, format!("{param} must be true or false.")))
}

fn price(v: &Value, param: &str) -> Result<Option<f64>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x >= 0.0 && x.is_finite() => Ok(Some(x)),
            _ => Err(bad(
                param,
                format!("{param} must be a non-negative number (USD per million tokens)."),
            )),
        },
        // OpenRouter's schema also allows a decimal string.
        Value::String(s) => match s.trim().parse::<f64>() {
            Ok(x) if x >= 0.0 && x.is_finite() => Ok(Some(x)),
            _ => Err(bad(
                param,
                format!("{param} must be a non-negative number (USD per million tokens)."),
            )),
        },
        _ => Err(bad(
            param,
            format!("{param} must be a number (USD per million tokens)."),
        )),
    }
}

/// Cheap test before parsing: whether the body can hold routing options at all.
pub fn may_have_options(body: &[u8], model: &str) -> bool {
    model.ends_with(":nitro")
        || model.ends_with(":floor")
        || memchr::memmem::find(body, b"\"models\"").is_some()
        || memchr::memmem::find(body, b"\"provider\"").is_some()
}

/// What [`parse`] found: the model without its suffix, the options, and the body to send
/// upstream (the options removed; None when the body had none and is unchanged).
pub type Parsed = (String, Option<RouteOptions>, Option<Vec<u8>>);

/// The options in `body` (a JSON object).
pub fn parse(model: &str, body: &[u8]) -> Result<Parsed, ApiError> {
    let (base, suffix_sort) = match model.rsplit_once(':') {
        Some((base, "nitro")) => (base, Some(Strategy::Throughput)),
        Some((base, "floor")) => (base, Some(Strategy::Cheapest)),
        _ => (model, None),
    };
    let mut obj: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        _ => return Ok((model.to_string(), None, None)), // validation already refused it
    };
    let models = obj.remove("models");
    let provider = obj.remove("provider");
    if models.is_none() && provider.is_none() && suffix_sort.is_none() {
        return Ok((model.to_string(), None, None));
    }
    let mut o = RouteOptions {
        sort: suffix_sort,
        parameters: obj
            .keys()
            .filter(|k| !NOT_PARAMETERS.contains(&k.as_str()))
            .cloned()
            .collect(),
        ..RouteOptions::default()
    };
    if let Some(v) = &models {
        let list = strings(v, "models")?;
        if list.len() > MAX_MODELS {
            return Err(bad(
                "models",
                format!("models: at most {MAX_MODELS} models."),
            ));
        }
        // OpenRouter: `model` is tried first, then `models` in order (a `models` list without
        // `model` starts with its first entry; here `model` is required by validation).
        o.fallback_models = list.into_iter().filter(|m| m != base).collect();
        o.fallback_models.dedup();
    }
    if let Some(p) = &provider {
        let p = p
            .as_object()
            .ok_or_else(|| bad("provider", "provider must be an object."))?;
        for (k, v) in p {
            let param = format!("provider.{k}");
            match k.as_str() {
                "order" => o.order = strings(v, &param)?,
                "only" => o.only = Some(strings(v, &param)?),
                "ignore" => o.ignore = strings(v, &param)?,
                "allow_fallbacks" => o.allow_fallbacks = boolean(v, &param)?,
                "require_parameters" => o.require_parameters = boolean(v, &param)?,
                "zdr" => o.zdr = boolean(v, &param)?,
                "data_collection" => {
                    o.deny_data_collection = match v.as_str() {
                        Some("allow") => false,
                        Some("deny") => true,
                        _ => {
                            return Err(bad(
                                &param,
                                "provider.data_collection must be \"allow\" or \"deny\".",
                            ))
                        }
                    }
                }
                "sort" => {
                    // A string, or OpenRouter's object form `{by: "..."}`.
                    let by = v.as_str().or_else(|| v.get("by").and_then(Value::as_str));
                    o.sort = Some(match by {
                        Some("price") => Strategy::Cheapest,
                        Some("throughput") => Strategy::Throughput,
                        Some("latency") => Strategy::Fastest,
                        _ => {
                            return Err(bad(
                                &param,
                                format!("provider.sort must be \"price\", \"throughput\" or \"latency\" (got {v})."),
                            ))
                        }
                    });
                }
                "max_price" => {
                    let m = v
                        .as_object()
                        .ok_or_else(|| bad(&param, "provider.max_price must be an object."))?;
                    let mut mp = MaxPrice::default();
                    for (pk, pv) in m {
                        let pparam = format!("provider.max_price.{pk}");
                        match pk.as_str() {
                            "prompt" => mp.prompt = price(pv, &pparam)?,
                            "completion" => mp.completion = price(pv, &pparam)?,
                            // Per-request and per-image prices: this gateway prices tokens only,
                            // so no route exceeds them.
                            "request" | "image" => {
                                price(pv, &pparam)?;
                            }
                            _ => return Err(bad(&pparam, format!("{pparam} is not a known price (prompt, completion, request, image)."))),
                        }
                    }
                    o.max_price = Some(mp);
                }
                // Accepted and not applicable here: Tollgate's catalog has no quantization or
                // distillation metadata, and no endpoint is excluded by them.
                "quantizations"
                | "enforce_distillable_text"
                | "preferred_min_throughput"
                | "preferred_max_latency" => {}
                _ => {
                    return Err(bad(
                        &param,
                        format!("{param} is not a provider routing option."),
                    ))
                }
            }
        }
    }
    if base != model {
        obj.insert("model".into(), Value::String(base.to_string()));
    }
    let body = serde_json::to_vec(&Value::Object(obj))
        .map_err(|e| ApiError::internal(format!("re-encoding the request: {e}")))?;
    Ok((base.to_string(), Some(o), Some(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(model: &str, body: &str) -> Result<Parsed, ApiError> {
        parse(model, body.as_bytes())
    }

    #[test]
    fn reads_every_documented_field() {
        let (model, o, body) = opts(
            "m",
            r#"{"model":"m","messages":[],"temperature":0.2,"models":["m","n","k"],
               "provider":{"order":["a","b"],"only":["a","b","c"],"ignore":["d"],"allow_fallbacks":false,
               "require_parameters":true,"data_collection":"deny","zdr":true,"sort":"latency",
               "max_price":{"prompt":1,"completion":"2.5"}}}"#,
        )
        .unwrap();
        let o = o.unwrap();
        assert_eq!(model, "m");
        assert_eq!(o.fallback_models, ["n", "k"]);
        assert_eq!(o.order, ["a", "b"]);
        assert_eq!(
            o.only.as_deref(),
            Some(&["a".to_string(), "b".into(), "c".into()][..])
        );
        assert_eq!(o.ignore, ["d"]);
        assert!(!o.allow_fallbacks && o.require_parameters && o.deny_data_collection && o.zdr);
        assert_eq!(o.sort, Some(Strategy::Fastest));
        assert_eq!(
            o.max_price,
            Some(MaxPrice {
                prompt: Some(1.0),
                completion: Some(2.5)
            })
        );
        assert_eq!(o.parameters, ["temperature"]);
        let sent: Value = serde_json::from_slice(&body.unwrap()).unwrap();
        assert!(sent.get("provider").is_none() && sent.get("models").is_none());
        assert_eq!(sent["temperature"], 0.2);
    }

    #[test]
    fn suffixes_sort_and_leave_the_model() {
        let (model, o, body) = opts("m:nitro", r#"{"model":"m:nitro","messages":[]}"#).unwrap();
        assert_eq!(
            (model.as_str(), o.unwrap().sort),
            ("m", Some(Strategy::Throughput))
        );
        let sent: Value = serde_json::from_slice(&body.unwrap()).unwrap();
        assert_eq!(sent["model"], "m");
        let (model, o, _) = opts("m:floor", r#"{"model":"m:floor","messages":[]}"#).unwrap();
        assert_eq!(
            (model.as_str(), o.unwrap().sort),
            ("m", Some(Strategy::Cheapest))
        );
        // Nothing to do: nothing changed.
        let (model, o, body) = opts("m", r#"{"model":"m","messages":[]}"#).unwrap();
        assert_eq!((model.as_str(), o, body), ("m", None, None));
    }

    #[test]
    fn bad_options_are_400_naming_the_field() {
        for (body, param) in [
            (r#"{"provider":{"sort":"prize"}}"#, "provider.sort"),
            (r#"{"provider":{"order":"a"}}"#, "provider.order"),
            (
                r#"{"provider":{"data_collection":"maybe"}}"#,
                "provider.data_collection",
            ),
            (
                r#"{"provider":{"max_price":{"prompt":-1}}}"#,
                "provider.max_price.prompt",
            ),
            (r#"{"provider":{"colour":1}}"#, "provider.colour"),
            (r#"{"provider":[]}"#, "provider"),
            (r#"{"models":[1]}"#, "models"),
            (
                r#"{"models":["a","b","c","d","e","f","g","h","i"]}"#,
                "models",
            ),
        ] {
            let e = opts("m", body).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(param)), "{body}");
        }
    }
}
