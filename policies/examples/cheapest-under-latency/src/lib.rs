//! Worked example of a custom routing plugin: the cheapest provider whose recent latency is
//! under a ceiling.
//!
//! Candidates whose `latency-ms` (the host's EWMA of recent successful attempts' time to the
//! first byte; 0 = not measured yet) is within `max_latency_ms`, or unmeasured, are tried
//! first, cheapest first (input + output price per million tokens; ties keep the host's order).
//! Those over the ceiling follow as fallbacks, fastest first: a slow answer beats none.
//! Unhealthy candidates go last within each group.
//!
//! Unmeasured candidates count as within the ceiling so that a new provider gets traffic and
//! hence a measurement; otherwise it would stay unmeasured, and untried, forever.
//!
//! Config (JSON, from the policy route's `routing = { plugin, config }`):
//! - `max_latency_ms` (required): the ceiling. Missing: the request fails with 500
//!   `plugin_config` naming the field — a silent default would hide a broken policy.
//! - `max_attempts` (optional, >= 1): at most this many attempts.
//! - `timeout_ms` (optional): per-attempt bound (0 / absent: the route's `timeout_ms`, else the
//!   gateway's).
use tollgate_plugin_sdk::serde_json::Value;
use tollgate_plugin_sdk::{
    export_plugin, host, Attempt, Candidate, Principal, Reject, RequestSummary, Routing,
};

pub struct CheapestUnderLatency;

/// Price of a typical request (as many tokens in as out), per million tokens: a sort key only.
fn price(c: &Candidate) -> u64 {
    c.price.input.saturating_add(c.price.output)
}

/// A config mistake: 500 `plugin_config`, naming the field. A 500 rather than a 4xx because the
/// client did nothing wrong; the operator's policy did.
fn config_error(field: &str, what: &str) -> Reject {
    Reject::new(
        500,
        "plugin_config",
        format!("cheapest-under-latency: config field `{field}` {what}."),
    )
}

/// The config, checked.
struct Settings {
    ceiling_ms: u64,
    max_attempts: usize,
    timeout_ms: u32,
}

impl Settings {
    fn parse(config: &Value) -> Result<Self, Reject> {
        let ceiling_ms = match &config["max_latency_ms"] {
            Value::Null => {
                return Err(config_error(
                    "max_latency_ms",
                    "is missing (the latency ceiling, in ms)",
                ))
            }
            v => v
                .as_u64()
                .ok_or_else(|| config_error("max_latency_ms", "must be a whole number of ms"))?,
        };
        let max_attempts = match &config["max_attempts"] {
            Value::Null => usize::MAX,
            v => match v.as_u64() {
                Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => {
                    return Err(config_error(
                        "max_attempts",
                        "must be a whole number, at least 1",
                    ))
                }
            },
        };
        let timeout_ms = match &config["timeout_ms"] {
            Value::Null => 0,
            v => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| config_error("timeout_ms", "must be a whole number of ms"))?,
        };
        Ok(Settings {
            ceiling_ms,
            max_attempts,
            timeout_ms,
        })
    }

    fn within(&self, c: &Candidate) -> bool {
        c.latency_ms == 0 || u64::from(c.latency_ms) <= self.ceiling_ms
    }
}

/// The routing decision, separate from the export so it is tested natively.
pub fn route(
    config: &Value,
    summary: &RequestSummary,
    candidates: Vec<Candidate>,
) -> Result<Vec<Attempt>, Reject> {
    // Config first: a broken policy should show on every request, not only on some.
    let settings = Settings::parse(config)?;
    if candidates.is_empty() {
        return Err(Reject::model_not_found(format!(
            "The model '{}' does not exist or you do not have access to it.",
            summary.model
        )));
    }
    let (mut fast, mut slow): (Vec<Candidate>, Vec<Candidate>) =
        candidates.into_iter().partition(|c| settings.within(c));
    // Both sorts are stable: equal keys keep the host's order (the route's strategy).
    fast.sort_by_key(|c| (!c.healthy, price(c)));
    slow.sort_by_key(|c| (!c.healthy, c.latency_ms));
    Ok(fast
        .into_iter()
        .chain(slow)
        .take(settings.max_attempts)
        .map(|c| Attempt {
            provider: c.provider,
            upstream_model: c.upstream_model,
            timeout_ms: settings.timeout_ms,
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
    use tollgate_plugin_sdk::testing::TestHost;
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
            region: String::new(),
        }
    }

    fn summary() -> RequestSummary {
        RequestSummary {
            format: ApiFormat::OpenaiChat,
            model: "gpt-4o-mini".into(),
            stream: false,
            max_tokens: None,
            has_tools: false,
            body_bytes: 0,
        }
    }

    /// The config of `policies/examples/cheapest-under-latency.toml`.
    fn config() -> Value {
        json!({"max_latency_ms": 800})
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
        let out = route(&config(), &summary(), cands).unwrap();
        assert_eq!(names(&out), ["mid", "new", "dear", "cheap-slow", "slower"]);
        assert_eq!(out[0].upstream_model, "mid-m");
    }

    #[test]
    fn the_ceiling_is_inclusive() {
        let cands = vec![cand("over", 1, 801, true), cand("at", 9, 800, true)];
        assert_eq!(
            names(&route(&config(), &summary(), cands).unwrap()),
            ["at", "over"]
        );
    }

    #[test]
    fn the_price_is_input_plus_output() {
        let mut in_heavy = cand("in-heavy", 0, 100, true);
        in_heavy.price.input = 10;
        in_heavy.price.output = 1; // 11
        let mut out_heavy = cand("out-heavy", 0, 100, true);
        out_heavy.price.input = 1;
        out_heavy.price.output = 5; // 6
        let out = route(&config(), &summary(), vec![in_heavy, out_heavy]).unwrap();
        assert_eq!(names(&out), ["out-heavy", "in-heavy"]);
    }

    #[test]
    fn ties_keep_the_host_order() {
        let cands = vec![
            cand("b", 3, 100, true),
            cand("a", 3, 200, true),
            cand("z-slow", 1, 900, true),
            cand("y-slow", 1, 900, true),
        ];
        let out = route(&config(), &summary(), cands).unwrap();
        assert_eq!(names(&out), ["b", "a", "z-slow", "y-slow"]);
    }

    #[test]
    fn unhealthy_last_in_each_group() {
        let cands = vec![
            cand("cheap-sick", 1, 100, false),
            cand("dear", 5, 100, true),
            cand("fast-sick", 1, 900, false),
            cand("slow", 1, 3000, true),
        ];
        let out = route(&config(), &summary(), cands).unwrap();
        assert_eq!(names(&out), ["dear", "cheap-sick", "slow", "fast-sick"]);
    }

    #[test]
    fn max_attempts_caps_after_ordering() {
        let cands = vec![
            cand("slow", 1, 5000, true),
            cand("b", 2, 100, true),
            cand("a", 1, 100, true),
        ];
        let c = json!({"max_latency_ms": 800, "max_attempts": 2});
        assert_eq!(names(&route(&c, &summary(), cands).unwrap()), ["a", "b"]);
    }

    #[test]
    fn timeout_is_set_on_every_attempt_or_left_to_the_host() {
        let cands = vec![cand("a", 1, 100, true), cand("b", 2, 5000, true)];
        let c = json!({"max_latency_ms": 800, "timeout_ms": 1500});
        let out = route(&c, &summary(), cands.clone()).unwrap();
        assert!(out.iter().all(|a| a.timeout_ms == 1500), "{out:?}");
        // Absent: 0, meaning the route's `timeout_ms`, else the gateway's default.
        let out = route(&config(), &summary(), cands).unwrap();
        assert!(out.iter().all(|a| a.timeout_ms == 0), "{out:?}");
    }

    #[test]
    fn a_missing_ceiling_is_a_config_error_naming_the_field() {
        for c in [json!({}), json!(null), json!({"max_attempts": 2})] {
            let err = route(&c, &summary(), vec![cand("a", 1, 1, true)]).unwrap_err();
            assert_eq!(
                (err.status, err.code.as_str()),
                (500, "plugin_config"),
                "{c}"
            );
            assert!(err.message.contains("`max_latency_ms`"), "{}", err.message);
        }
    }

    #[test]
    fn invalid_fields_are_config_errors_naming_the_field() {
        let cases = [
            (json!({"max_latency_ms": "800"}), "max_latency_ms"),
            (json!({"max_latency_ms": -1}), "max_latency_ms"),
            (json!({"max_latency_ms": 800.5}), "max_latency_ms"),
            (
                json!({"max_latency_ms": 800, "max_attempts": 0}),
                "max_attempts",
            ),
            (
                json!({"max_latency_ms": 800, "max_attempts": "3"}),
                "max_attempts",
            ),
            (
                json!({"max_latency_ms": 800, "timeout_ms": -5}),
                "timeout_ms",
            ),
            (
                json!({"max_latency_ms": 800, "timeout_ms": 5_000_000_000u64}),
                "timeout_ms",
            ),
        ];
        for (c, field) in cases {
            let err = route(&c, &summary(), vec![cand("a", 1, 1, true)]).unwrap_err();
            assert_eq!(
                (err.status, err.code.as_str()),
                (500, "plugin_config"),
                "{c}"
            );
            assert!(
                err.message.contains(&format!("`{field}`")),
                "{c}: {}",
                err.message
            );
        }
    }

    #[test]
    fn no_candidates_is_model_not_found() {
        let err = route(&config(), &summary(), vec![]).unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (404, "model_not_found"));
        assert!(err.message.contains("'gpt-4o-mini'"), "{}", err.message);
    }

    #[test]
    fn the_export_reads_the_config_from_the_host() {
        TestHost::install(TestHost {
            config: r#"{"max_latency_ms": 100}"#.into(),
            ..TestHost::default()
        });
        let cands = vec![cand("cheap-slow", 1, 300, true), cand("fast", 5, 50, true)];
        let out = CheapestUnderLatency::route(Principal::new("o", "k"), summary(), cands).unwrap();
        assert_eq!(names(&out), ["fast", "cheap-slow"]);
    }
}
