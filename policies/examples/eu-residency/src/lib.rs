//! Worked example of a custom routing plugin: EU-only data residency.
//!
//! The policy (`policies/examples/eu-residency.toml`) sends the requests of some orgs through
//! this router; it keeps only the candidates whose provider processes data in an allowed
//! region, in the order the host offered them (healthy first), and refuses the request — 403
//! `data_residency`, naming each provider and its region — when none is left.
//!
//! Config (JSON, from the policy route's `routing = { plugin, config }`):
//! - `regions`: provider name -> region (`"eu"`, `"us"`, ...). A provider not listed has an
//!   unknown region and is refused: residency fails closed.
//! - `allow`: the regions allowed (e.g. `["eu"]`). Missing or empty: every request is refused,
//!   saying the config is incomplete — never "allow everything".
//! - `max_attempts` (optional): at most this many attempts.
//!
//! (The region comes from config because WIT 0.1.0's `candidate` carries none; the gateway's
//! own data policy, `tollgate orgs data-policy --regions`, reads the providers' `region` and
//! needs no plugin. This plugin shows how to write such a rule yourself.)
use tollgate_plugin_sdk::serde_json::Value;
use tollgate_plugin_sdk::{
    export_plugin, host, Attempt, Candidate, Principal, Reject, RequestSummary, Routing,
};

pub struct EuResidency;

/// The routing decision, separate from the export so it is tested natively.
pub fn route(
    config: &Value,
    summary: &RequestSummary,
    candidates: Vec<Candidate>,
) -> Result<Vec<Attempt>, Reject> {
    let allow: Vec<&str> = config["allow"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if allow.is_empty() {
        return Err(Reject::new(
            403,
            "data_residency",
            "Refused: the data-residency router has no allowed regions configured (`allow`), \
             so no provider can be shown to comply.",
        ));
    }
    let region = |provider: &str| config["regions"][provider].as_str().map(str::to_string);
    let (mut kept, refused): (Vec<Candidate>, Vec<Candidate>) = candidates
        .into_iter()
        .partition(|c| region(&c.provider).is_some_and(|r| allow.contains(&r.as_str())));
    if kept.is_empty() {
        let why: Vec<String> = refused
            .iter()
            .map(|c| match region(&c.provider) {
                Some(r) => format!("{} (region {r})", c.provider),
                None => format!("{} (region unknown)", c.provider),
            })
            .collect();
        return Err(Reject::new(
            403,
            "data_residency",
            format!(
                "No provider of '{}' processes data in an allowed region ({}): {}.",
                summary.model,
                allow.join(", "),
                if why.is_empty() {
                    "none offered".to_string()
                } else {
                    why.join("; ")
                }
            ),
        ));
    }
    // Stable: healthy first, each group in the order the host offered (the policy's strategy).
    kept.sort_by_key(|c| !c.healthy);
    let max = config["max_attempts"]
        .as_u64()
        .map_or(usize::MAX, |n| n.max(1) as usize);
    Ok(kept
        .into_iter()
        .take(max)
        .map(|c| Attempt {
            provider: c.provider,
            upstream_model: c.upstream_model,
            timeout_ms: 0,
        })
        .collect())
}

impl Routing for EuResidency {
    fn route(
        _who: Principal,
        summary: RequestSummary,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Attempt>, Reject> {
        route(&host::config_json(), &summary, candidates)
    }
}

export_plugin!(routing: EuResidency);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_plugin_sdk::serde_json::json;
    use tollgate_plugin_sdk::{ApiFormat, Price};

    fn cand(name: &str, healthy: bool) -> Candidate {
        Candidate {
            provider: name.into(),
            upstream_model: format!("{name}-m"),
            price: Price {
                input: 1,
                output: 1,
                cache_read: 0,
                cache_write: 0,
            },
            healthy,
            zero_retention: false,
            latency_ms: 0,
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

    fn config() -> Value {
        json!({"regions": {"mistral": "eu", "openai-eu": "eu", "openai": "us"}, "allow": ["eu"]})
    }

    fn names(a: &[Attempt]) -> Vec<&str> {
        a.iter().map(|a| a.provider.as_str()).collect()
    }

    #[test]
    fn keeps_only_allowed_regions_in_offered_order_healthy_first() {
        let cands = vec![
            cand("openai", true),
            cand("openai-eu", false),
            cand("mistral", true),
            cand("unknown", true),
        ];
        let out = route(&config(), &summary(), cands).unwrap();
        assert_eq!(names(&out), ["mistral", "openai-eu"]);
    }

    #[test]
    fn max_attempts_caps() {
        let cands = vec![cand("mistral", true), cand("openai-eu", true)];
        let mut c = config();
        c["max_attempts"] = json!(1);
        assert_eq!(names(&route(&c, &summary(), cands).unwrap()), ["mistral"]);
    }

    #[test]
    fn nothing_allowed_is_403_naming_each_provider_and_region() {
        let err = route(
            &config(),
            &summary(),
            vec![cand("openai", true), cand("x", true)],
        )
        .unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (403, "data_residency"));
        assert!(
            err.message.contains("openai (region us)"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("x (region unknown)"),
            "{}",
            err.message
        );
    }

    #[test]
    fn an_incomplete_config_fails_closed() {
        for c in [
            json!({}),
            json!({"allow": []}),
            json!(null),
            json!({"regions": {"mistral": "eu"}}),
        ] {
            let err = route(&c, &summary(), vec![cand("mistral", true)]).unwrap_err();
            assert_eq!(err.status, 403, "{c}");
        }
    }

    #[test]
    fn no_candidates_is_403_too() {
        let err = route(&config(), &summary(), vec![]).unwrap_err();
        assert!(err.message.contains("none offered"));
    }
}
