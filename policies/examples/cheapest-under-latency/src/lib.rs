//! Worked example of a custom routing plugin: the cheapest provider whose recent latency is
//! under a ceiling.
//!
//! Candidates whose `latency-ms` (the host's EWMA of recent successful attempts' time to the
//! first byte; 0 = not measured yet) is within `max_latency_ms`, or unmeasured, are tried
//! first, cheapest first (input + output price; ties keep the host's order). Those over the
//! ceiling follow as fallbacks, fastest first. Unhealthy candidates (circuit half-open) go last
//! within each group.
//!
//! Config (JSON, from the policy route's `routing = { plugin, config }`):
//! - `max_latency_ms` (required): the ceiling. Missing: the request fails with 500
//!   `plugin_config` naming the field — a silent default would hide a broken policy.
//! - `max_attempts` (optional): at most this many attempts.
//! - `timeout_ms` (optional): per-attempt bound (0 / absent: the route's or the gateway's).
use tollgate_plugin_sdk::serde_json::Value;
use tollgate_plugin_sdk::{
    export_plugin, host, Attempt, Candidate, Principal, Reject, RequestSummary, Routing,
};

pub struct CheapestUnderLatency;

fn price(c: &Candidate) -> u64 {
    c.price.input.saturating_add(c.price.output)
}

/// The routing decision, separate from the export so it is tested natively.
pub fn route(
    config: &Value,
    summary: &RequestSummary,
    candidates: Vec<Candidate>,
) -> Result<Vec<Attempt>, Reject> {
    let Some(ceiling) = config["max_latency_ms"].as_u64() else {
        return Err(Reject::new(
            500,
            "plugin_config",
            "cheapest-under-latency: config field `max_latency_ms` (a number of ms) is missing \
             or not a number.",
        ));
    };
    if candidates.is_empty() {
        return Err(Reject::model_not_found(format!(
            "The model '{}' does not exist or you do not have access to it.",
            summary.model
        )));
    }
    let within = |c: &Candidate| c.latency_ms == 0 || u64::from(c.latency_ms) <= ceiling;
    let (mut fast, mut slow): (Vec<Candidate>, Vec<Candidate>) =
        candidates.into_iter().partition(within);
    fast.sort_by_key(|c| (!c.healthy, price(c)));
    slow.sort_by_key(|c| (!c.healthy, c.latency_ms));
    let max = config["max_attempts"]
        .as_u64()
        .map_or(usize::MAX, |n| n.max(1) as usize);
    let timeout_ms = config["timeout_ms"]
        .as_u64()
        .unwrap_or(0)
        .min(u64::from(u32::MAX)) as u32;
    Ok(fast
        .into_iter()
        .chain(slow)
        .take(max)
        .map(|c| Attempt {
            provider: c.provider,
            upstream_model: c.upstream_model,
            timeout_ms,
        })
        .collect())
}

impl Routing for CheapestUnderLatency {
    fn route(
        _who: Principal,
        summary: RequestSummary,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Attempt>, Reject> {
        route(&host::config_json(), &summary, candidates)
    }
}

export_plugin!(routing: CheapestUnderLatency);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_plugin_sdk::serde_json::json;
    use tollgate_plugin_sdk::{ApiFormat, Price};

    fn cand(name: &str, price: u64, latency: u32, healthy: bool) -> Candidate {
        Candidate {
            provider: name.into(),
            upstream_model: format!("{name}-m"),
            price: Price {
                input: price,
                output: price,
                cache_read: 0,
                cache_write: 0,
            },
            healthy,
            zero_retention: false,
            latency_ms: latency,
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
    fn cheapest_within_the_ceiling_then_the_rest_fastest_first() {
        let cands = vec![
            cand("cheap-slow", 1, 2000, true),
            cand("mid", 5, 300, true),
            cand("dear", 9, 100, true),
            cand("new", 7, 0, true),
            cand("slower", 2, 5000, true),
        ];
        let out = route(&json!({"max_latency_ms": 800}), &summary(), cands).unwrap();
        assert_eq!(names(&out), ["mid", "new", "dear", "cheap-slow", "slower"]);
    }

    #[test]
    fn unhealthy_last_in_each_group() {
        let cands = vec![cand("a", 1, 100, false), cand("b", 5, 100, true)];
        let out = route(&json!({"max_latency_ms": 800}), &summary(), cands).unwrap();
        assert_eq!(names(&out), ["b", "a"]);
    }

    #[test]
    fn max_attempts_and_timeout() {
        let cands = vec![cand("a", 1, 100, true), cand("b", 2, 100, true)];
        let out = route(
            &json!({"max_latency_ms": 800, "max_attempts": 1, "timeout_ms": 1500}),
            &summary(),
            cands,
        )
        .unwrap();
        assert_eq!(names(&out), ["a"]);
        assert_eq!(out[0].timeout_ms, 1500);
    }

    #[test]
    fn a_missing_ceiling_is_a_config_error() {
        let err = route(&json!({}), &summary(), vec![cand("a", 1, 1, true)]).unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (500, "plugin_config"));
        assert!(err.message.contains("max_latency_ms"));
    }

    #[test]
    fn no_candidates_is_model_not_found() {
        let err = route(&json!({"max_latency_ms": 1}), &summary(), vec![]).unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (404, "model_not_found"));
    }
}
