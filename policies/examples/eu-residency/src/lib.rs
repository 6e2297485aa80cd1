//! Worked example of a custom routing plugin: EU-only data residency.
//!
//! The policy (`policies/examples/eu-residency.toml`) sends the requests of some orgs through
//! this router. It keeps only the candidates whose provider processes data in an allowed
//! region, in the order the host offered them (the route's strategy), healthy ones first, and
//! refuses the request — 403 `data_residency`, naming the model and each refused provider with
//! its region — when none is left.
//!
//! Config (JSON, from the policy route's `routing = { plugin, config }`):
//! - `regions` (required): provider name -> region (`"eu"`, `"us"`, ...). A provider not listed
//!   has an unknown region and is refused: an unknown region is not an EU region.
//! - `allow` (required): the regions allowed, e.g. `["eu"]`.
//! - `max_attempts` (optional, >= 1): at most this many attempts.
//!
//! It fails closed: a config that is missing, unparsable or malformed refuses every request
//! (403 `data_residency`, saying the config is the reason) rather than letting traffic through
//! unchecked. A residency rule that silently allows everything when misconfigured is worse than
//! none, because nobody notices.
//!
//! A provider the config does not list is judged by the region the gateway's config declares
//! for it (`region = "eu"` on the provider; a candidate carries it since WIT 0.2.0); one with
//! neither has an unknown region and is refused. (The gateway's own data policy, `tollgate orgs
//! data-policy ORG --regions eu`, reads each provider's `region` from the config file and needs
//! no plugin; this crate shows how to write such a rule yourself.)
use tollgate_plugin_sdk::serde_json::{Map, Value};
use tollgate_plugin_sdk::{
    export_plugin, host, Attempt, Candidate, Principal, Reject, RequestSummary, Routing,
};

pub struct EuResidency;

/// The refusal code of every decision of this plugin, so clients and dashboards can tell a
/// residency refusal from any other 403.
const CODE: &str = "data_residency";

/// The config, checked.
struct Residency<'a> {
    regions: &'a Map<String, Value>,
    allow: Vec<&'a str>,
    max_attempts: usize,
}

impl<'a> Residency<'a> {
    /// Reads the config, or says what is wrong with it (the caller turns that into a refusal).
    fn parse(config: &'a Value) -> Result<Self, String> {
        // `host::config_json()` is `Null` when the text did not parse, `{}` when there is none.
        let Some(config) = config.as_object() else {
            return Err("the config is not a JSON object (unparsable?)".into());
        };
        let regions = match config.get("regions") {
            Some(Value::Object(m)) if !m.is_empty() => m,
            Some(Value::Object(_)) => return Err("`regions` is empty".into()),
            Some(_) => return Err("`regions` is not a table of provider = region".into()),
            None => return Err("`regions` is missing".into()),
        };
        if let Some((provider, _)) = regions.iter().find(|(_, r)| !r.is_string()) {
            return Err(format!("`regions.{provider}` is not a string"));
        }
        let allow: Vec<&str> = match config.get("allow") {
            Some(Value::Array(list)) => {
                let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
                // A non-string or empty entry is a typo; guessing what was meant could widen it.
                if names.len() != list.len() || names.iter().any(|r| r.is_empty()) {
                    return Err("`allow` must list region names (strings)".into());
                }
                names
            }
            Some(_) => return Err("`allow` is not a list of regions".into()),
            None => return Err("`allow` is missing".into()),
        };
        if allow.is_empty() {
            return Err("`allow` is empty".into());
        }
        let max_attempts = match config.get("max_attempts") {
            None => usize::MAX,
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Err("`max_attempts` must be a whole number, at least 1".into()),
            },
        };
        Ok(Residency {
            regions,
            allow,
            max_attempts,
        })
    }

    /// The candidate's region: the router's config when it lists the provider (the operator's
    /// word wins), else the region the gateway config declares for it (WIT 0.2.0), if any.
    fn region<'c>(&self, c: &'c Candidate) -> Option<&'c str>
    where
        'a: 'c,
    {
        self.regions
            .get(&c.provider)
            .and_then(Value::as_str)
            .or((!c.region.is_empty()).then_some(c.region.as_str()))
    }

    fn allows(&self, c: &Candidate) -> bool {
        self.region(c).is_some_and(|r| self.allow.contains(&r))
    }
}

/// The routing decision, separate from the export so it is tested natively.
pub fn route(
    config: &Value,
    summary: &RequestSummary,
    candidates: Vec<Candidate>,
) -> Result<Vec<Attempt>, Reject> {
    // Config first: a broken residency config must be noticed on every request, whatever the
    // model.
    let rules = Residency::parse(config).map_err(|why| {
        Reject::new(
            403,
            CODE,
            format!(
                "Refused: the data-residency router's config is incomplete or invalid ({why}), \
                 so no provider of '{}' can be shown to process data in an allowed region. \
                 It fails closed: fix the route's `routing.config` in the policy.",
                summary.model
            ),
        )
    })?;
    if candidates.is_empty() {
        // Nothing was refused for residency: the host offered nothing (an unknown model, or
        // one this caller may not use). Answer as the built-in router does.
        return Err(Reject::model_not_found(format!(
            "The model '{}' does not exist or you do not have access to it.",
            summary.model
        )));
    }
    let (mut kept, refused): (Vec<Candidate>, Vec<Candidate>) =
        candidates.into_iter().partition(|c| rules.allows(c));
    if kept.is_empty() {
        // Each provider once, in the order offered (one provider may serve several models).
        let mut why: Vec<String> = Vec::new();
        for c in &refused {
            let line = match rules.region(c) {
                Some(r) => format!("{} (region {r})", c.provider),
                None => format!("{} (region unknown)", c.provider),
            };
            if !why.contains(&line) {
                why.push(line);
            }
        }
        return Err(Reject::new(
            403,
            CODE,
            format!(
                "No provider of '{}' processes data in an allowed region ({}): {}.",
                summary.model,
                rules.allow.join(", "),
                why.join("; ")
            ),
        ));
    }
    // Stable: healthy first, each group in the order the host offered (the route's strategy,
    // which this plugin has no reason to second-guess).
    kept.sort_by_key(|c| !c.healthy);
    Ok(kept
        .into_iter()
        .take(rules.max_attempts)
        .map(|c| Attempt {
            provider: c.provider,
            upstream_model: c.upstream_model,
            // 0: the route's `timeout_ms`, else the gateway's default. Residency is about
            // where, not how long.
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
        // Which orgs this applies to is the policy route's business (`orgs = [...]`), so the
        // principal is not needed here.
        route(&host::config_json(), &summary, candidates)
    }
}

export_plugin!(routing: EuResidency);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_plugin_sdk::serde_json::json;
    use tollgate_plugin_sdk::testing::TestHost;
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
            region: String::new(),
        }
    }

    fn summary() -> RequestSummary {
        RequestSummary {
            format: ApiFormat::OpenaiChat,
            model: "gpt-4o".into(),
            stream: false,
            max_tokens: None,
            has_tools: false,
            body_bytes: 0,
        }
    }

    /// The config of `policies/examples/eu-residency.toml`, as the host hands it over.
    fn config() -> Value {
        json!({
            "regions": {"mistral": "eu", "openai-eu": "eu", "openai": "us", "anthropic": "us"},
            "allow": ["eu"]
        })
    }

    fn names(a: &[Attempt]) -> Vec<&str> {
        a.iter().map(|a| a.provider.as_str()).collect()
    }

    #[test]
    fn an_unlisted_provider_is_judged_by_its_declared_region() {
        let mut declared_eu = cand("scaleway", true);
        declared_eu.region = "eu".into();
        let mut listed_us = cand("openai", true);
        listed_us.region = "eu".into(); // the router's config says us: the config wins
        let attempts = route(
            &config(),
            &summary(),
            vec![listed_us, declared_eu, cand("unknown", true)],
        )
        .unwrap();
        let names: Vec<_> = attempts.iter().map(|a| a.provider.as_str()).collect();
        assert_eq!(names, ["scaleway"]);
    }

    #[test]
    fn keeps_only_allowed_regions_in_offered_order() {
        let cands = vec![
            cand("openai", true),
            cand("openai-eu", true),
            cand("anthropic", true),
            cand("mistral", true),
        ];
        let out = route(&config(), &summary(), cands).unwrap();
        assert_eq!(names(&out), ["openai-eu", "mistral"]);
        assert_eq!(out[0].upstream_model, "openai-eu-m");
    }

    #[test]
    fn a_provider_missing_from_regions_is_refused() {
        let cands = vec![cand("unlisted", true), cand("mistral", true)];
        let out = route(&config(), &summary(), cands).unwrap();
        assert_eq!(names(&out), ["mistral"]);
    }

    #[test]
    fn healthy_first_stable() {
        let cands = vec![
            cand("openai-eu", false),
            cand("mistral", true),
            cand("eu-2", false),
            cand("eu-3", true),
        ];
        let mut c = config();
        c["regions"]["eu-2"] = json!("eu");
        c["regions"]["eu-3"] = json!("eu");
        let out = route(&c, &summary(), cands).unwrap();
        assert_eq!(names(&out), ["mistral", "eu-3", "openai-eu", "eu-2"]);
    }

    #[test]
    fn several_allowed_regions() {
        let mut c = config();
        c["allow"] = json!(["eu", "ch"]);
        c["regions"]["swiss"] = json!("ch");
        let cands = vec![
            cand("swiss", true),
            cand("openai", true),
            cand("mistral", true),
        ];
        assert_eq!(
            names(&route(&c, &summary(), cands).unwrap()),
            ["swiss", "mistral"]
        );
    }

    #[test]
    fn max_attempts_caps_after_filtering() {
        let cands = vec![
            cand("openai", true),
            cand("mistral", true),
            cand("openai-eu", true),
        ];
        let mut c = config();
        c["max_attempts"] = json!(1);
        assert_eq!(names(&route(&c, &summary(), cands).unwrap()), ["mistral"]);
    }

    #[test]
    fn attempts_leave_the_timeout_to_the_route_or_gateway() {
        let out = route(&config(), &summary(), vec![cand("mistral", true)]).unwrap();
        assert_eq!(out[0].timeout_ms, 0);
    }

    #[test]
    fn none_left_is_403_naming_the_model_and_each_provider_with_its_region() {
        let cands = vec![
            cand("openai", true),
            cand("anthropic", false),
            cand("x", true),
            cand("openai", true), // the same provider for a fallback model: named once
        ];
        let err = route(&config(), &summary(), cands).unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (403, "data_residency"));
        assert_eq!(
            err.message,
            "No provider of 'gpt-4o' processes data in an allowed region (eu): \
             openai (region us); anthropic (region us); x (region unknown)."
        );
    }

    #[test]
    fn an_empty_or_invalid_config_fails_closed() {
        let cases = [
            (json!(null), "not a JSON object"),
            (json!({}), "`regions` is missing"),
            (json!({"regions": {"mistral": "eu"}}), "`allow` is missing"),
            (
                json!({"regions": {"mistral": "eu"}, "allow": []}),
                "`allow` is empty",
            ),
            (
                json!({"regions": {"mistral": "eu"}, "allow": "eu"}),
                "`allow` is not a list",
            ),
            (
                json!({"regions": {"mistral": "eu"}, "allow": [1]}),
                "must list region names",
            ),
            (
                json!({"regions": {"mistral": "eu"}, "allow": [""]}),
                "must list region names",
            ),
            (
                json!({"regions": {}, "allow": ["eu"]}),
                "`regions` is empty",
            ),
            (
                json!({"regions": ["mistral"], "allow": ["eu"]}),
                "`regions` is not a table",
            ),
            (
                json!({"regions": {"mistral": 1}, "allow": ["eu"]}),
                "`regions.mistral`",
            ),
            (
                json!({"regions": {"mistral": "eu"}, "allow": ["eu"], "max_attempts": 0}),
                "`max_attempts`",
            ),
            (
                json!({"regions": {"mistral": "eu"}, "allow": ["eu"], "max_attempts": "2"}),
                "`max_attempts`",
            ),
        ];
        for (c, why) in cases {
            // An EU provider is offered: a fail-open plugin would let it through.
            let err = route(&c, &summary(), vec![cand("mistral", true)]).unwrap_err();
            assert_eq!(
                (err.status, err.code.as_str()),
                (403, "data_residency"),
                "{c}"
            );
            assert!(err.message.contains(why), "{c}: {}", err.message);
            assert!(err.message.contains("fails closed"), "{}", err.message);
            assert!(err.message.contains("'gpt-4o'"), "{}", err.message);
        }
    }

    #[test]
    fn no_candidates_is_model_not_found() {
        let err = route(&config(), &summary(), vec![]).unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (404, "model_not_found"));
    }

    #[test]
    fn the_export_reads_the_config_from_the_host() {
        // Through the `Routing` trait, as the gateway calls it, with the config the test host
        // serves to `host::config_json()`.
        TestHost::install(TestHost {
            config: config().to_string(),
            ..TestHost::default()
        });
        let who = Principal::new("org_eu_customer", "key_1");
        let out = EuResidency::route(
            who.clone(),
            summary(),
            vec![cand("openai", true), cand("mistral", true)],
        )
        .unwrap();
        assert_eq!(names(&out), ["mistral"]);
        // An unparsable config reaches the plugin as `Null`: refused.
        TestHost::install(TestHost {
            config: "{not json".into(),
            ..TestHost::default()
        });
        let err = EuResidency::route(who, summary(), vec![cand("mistral", true)]).unwrap_err();
        assert_eq!(err.status, 403);
    }
}
