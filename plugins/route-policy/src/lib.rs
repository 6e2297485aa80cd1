//! Built-in router. The host hands over the candidates for the requested model in the policy's
//! order; this plugin filters and orders them into upstream attempts.
//!
//! Config (JSON, all optional):
//! - `sort`: `"order"` (policy order, default), `"price"` (cheapest first), `"latency"`
//! - `zero_retention_only`: keep only providers that promise not to retain data
//! - `max_attempts`: cap on attempts (default: all)
//! - `timeout_ms`: per-attempt timeout (default: the gateway's)
//!
//! Unhealthy providers go last rather than away: if every healthy one fails, trying them is
//! better than failing outright.
use tollgate_plugin_sdk::{
    export_plugin, host, Attempt, Candidate, Principal, Reject, RequestSummary, Routing,
};

pub struct PolicyRouter;

/// Price of a typical request (as many tokens in as out) per million tokens: a sort key only.
fn typical_cost(c: &Candidate) -> u64 {
    c.price.input.saturating_add(c.price.output)
}

/// The routing decision, separated from the export for native tests.
pub fn route(
    config: &tollgate_plugin_sdk::serde_json::Value,
    summary: &RequestSummary,
    mut candidates: Vec<Candidate>,
) -> Result<Vec<Attempt>, Reject> {
    if candidates.is_empty() {
        return Err(Reject::model_not_found(format!(
            "The model '{}' does not exist or you do not have access to it.",
            summary.model
        )));
    }
    if config["zero_retention_only"].as_bool() == Some(true) {
        candidates.retain(|c| c.zero_retention);
        if candidates.is_empty() {
            return Err(Reject::new(
                404,
                "no_provider_matches_policy",
                format!(
                    "No provider of '{}' satisfies the zero-retention data policy.",
                    summary.model
                ),
            ));
        }
    }
    match config["sort"].as_str().unwrap_or("order") {
        "price" => candidates.sort_by_key(typical_cost),
        "latency" => candidates.sort_by_key(|c| {
            if c.latency_ms == 0 {
                u32::MAX
            } else {
                c.latency_ms
            }
        }),
        _ => {}
    }
    // Stable: healthy first, each group keeping the order chosen above.
    candidates.sort_by_key(|c| !c.healthy);
    let max = config["max_attempts"].as_u64().unwrap_or(u64::MAX) as usize;
    let timeout_ms = config["timeout_ms"].as_u64().unwrap_or(0) as u32;
    Ok(candidates
        .into_iter()
        .take(max.max(1))
        .map(|c| Attempt {
            provider: c.provider,
            upstream_model: c.upstream_model,
            timeout_ms,
        })
        .collect())
}

impl Routing for PolicyRouter {
    fn route(
        _who: Principal,
        summary: RequestSummary,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Attempt>, Reject> {
        route(&host::config_json(), &summary, candidates)
    }
}

export_plugin!(routing: PolicyRouter);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_plugin_sdk::serde_json::json;
    use tollgate_plugin_sdk::{ApiFormat, Price};

    fn cand(name: &str, input: u64, healthy: bool, zdr: bool, latency: u32) -> Candidate {
        Candidate {
            provider: name.into(),
            upstream_model: format!("{name}-m"),
            price: Price {
                input,
                output: input,
                cache_read: 0,
                cache_write: 0,
            },
            healthy,
            zero_retention: zdr,
            latency_ms: latency,
            region: String::new(),
        }
    }

    fn summary() -> RequestSummary {
        RequestSummary {
            format: ApiFormat::OpenaiChat,
            model: "m".into(),
            stream: false,
            max_tokens: None,
            has_tools: false,
            body_bytes: 0,
        }
    }

    fn names(a: &[Attempt]) -> Vec<&str> {
        a.iter().map(|a| a.provider.as_str()).collect()
    }

    #[test]
    fn order_price_latency_health() {
        let cands = vec![
            cand("a", 30, true, false, 50),
            cand("b", 10, false, true, 10),
            cand("c", 20, true, true, 0),
        ];
        assert_eq!(
            names(&route(&json!({}), &summary(), cands.clone()).unwrap()),
            ["a", "c", "b"]
        );
        assert_eq!(
            names(&route(&json!({"sort":"price"}), &summary(), cands.clone()).unwrap()),
            ["c", "a", "b"]
        );
        assert_eq!(
            names(&route(&json!({"sort":"latency"}), &summary(), cands.clone()).unwrap()),
            ["a", "c", "b"]
        );
        assert_eq!(
            names(
                &route(
                    &json!({"zero_retention_only":true}),
                    &summary(),
                    cands.clone()
                )
                .unwrap()
            ),
            ["c", "b"]
        );
        assert_eq!(
            names(&route(&json!({"max_attempts":1}), &summary(), cands).unwrap()),
            ["a"]
        );
    }

    #[test]
    fn no_candidates_is_model_not_found() {
        let err = route(&json!({}), &summary(), vec![]).unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (404, "model_not_found"));
    }
}
