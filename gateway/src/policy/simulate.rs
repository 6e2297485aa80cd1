//! Dry run of a candidate policy over recorded traffic (`tollgate policy simulate`): for each
//! recorded request, which provider the candidate policy would have tried first, and what the
//! request would have cost and taken there.
//!
//! What it knows is what the usage records say: model, org, key, tokens, cost, latency and
//! every attempt (provider, upstream model, status, latency). Provider statistics for the
//! strategies (EWMA-like means of latency, throughput and error rate) are computed from those
//! attempts; a provider the records never saw has none (it ranks as unmeasured). Not replayed:
//! key scopes, org data policies, request options, circuit state, and custom routing plugins
//! (a route that names one is simulated by its strategy and counted in `plugin_routes`).

use std::collections::{BTreeMap, HashMap};

use rand::SeedableRng;
use serde::Serialize;

use super::strategy::{order, Standing};
use super::Policy;
use crate::store::UsageEvent;

/// What the records say of one provider route.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    attempts: u64,
    failures: u64,
    ok_latency_ms_sum: f64,
    ok: u64,
    output_tokens: f64,
    seconds: f64,
}

/// Per model: where requests went, where they would go, and at what cost and latency.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelReport {
    pub requests: u64,
    /// Requests whose first choice differs from the provider that served them.
    pub changed: u64,
    pub actual_providers: BTreeMap<String, u64>,
    pub simulated_providers: BTreeMap<String, u64>,
    pub actual_cost_micros: i64,
    pub simulated_cost_micros: i64,
    pub actual_latency_ms: f64,
    /// Mean latency at the simulated provider, where the records measured it.
    pub simulated_latency_ms: f64,
    /// Requests whose simulated provider has no recorded latency (their actual latency is used).
    pub latency_unknown: u64,
}

/// The whole report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub requests: u64,
    /// Requests not simulated: failed ones, or models the candidate policy does not serve.
    pub skipped: u64,
    pub changed: u64,
    pub actual_cost_micros: i64,
    pub simulated_cost_micros: i64,
    pub actual_latency_ms: f64,
    pub simulated_latency_ms: f64,
    /// Requests whose route names a routing plugin (simulated by its strategy only).
    pub plugin_routes: u64,
    pub models: BTreeMap<String, ModelReport>,
}

#[derive(serde::Deserialize)]
struct RecordedAttempt {
    provider: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    status: u16,
    #[serde(default)]
    error: String,
    #[serde(default)]
    latency_ms: u64,
}

fn attempts(e: &UsageEvent) -> Vec<RecordedAttempt> {
    serde_json::from_str(&e.attempts).unwrap_or_default()
}

/// Replays `events` (any order) through `policy`. `seed` makes weighted draws repeatable.
pub fn simulate(policy: &Policy, events: &[UsageEvent], seed: u64) -> Report {
    let mut seen: HashMap<(String, String), Seen> = HashMap::new();
    for e in events {
        for a in attempts(e) {
            let s = seen.entry((a.provider, a.model)).or_default();
            s.attempts += 1;
            if a.error.is_empty() && (200..300).contains(&a.status) {
                s.ok += 1;
                s.ok_latency_ms_sum += a.latency_ms as f64;
                s.output_tokens += e.output_tokens as f64;
                s.seconds += e.latency_ms as f64 / 1000.0;
            } else if !a.error.starts_with("skipped") {
                s.failures += 1;
            }
        }
    }
    let mean_latency = |k: &(String, String)| {
        seen.get(k)
            .filter(|s| s.ok > 0)
            .map(|s| s.ok_latency_ms_sum / s.ok as f64)
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut report = Report::default();
    for e in events {
        report.requests += 1;
        let model = policy.resolve(&e.model).to_string();
        let routes = match policy.models.get(&model) {
            Some(r) if (200..300).contains(&e.status) => r,
            _ => {
                report.skipped += 1;
                continue;
            }
        };
        let rule = policy.rule_for(&model, &e.org_id, &e.key_id);
        if rule.routing.is_some() {
            report.plugin_routes += 1;
        }
        let mut candidates: Vec<&crate::config::Route> = routes
            .iter()
            .filter(|r| {
                rule.providers
                    .as_ref()
                    .is_none_or(|p| p.contains(&r.provider))
            })
            .collect();
        if let Some(list) = &rule.providers {
            candidates.sort_by_key(|r| list.iter().position(|p| *p == r.provider));
        }
        let standings: Vec<Standing> = candidates
            .iter()
            .map(|r| {
                let key = (r.provider.clone(), r.upstream_model.clone());
                let s = seen.get(&key).copied().unwrap_or_default();
                Standing {
                    price: r.price.input.saturating_add(r.price.output),
                    latency_ms: mean_latency(&key).unwrap_or(0.0),
                    tokens_per_second: if s.seconds > 0.0 {
                        s.output_tokens / s.seconds
                    } else {
                        0.0
                    },
                    error_rate: if s.attempts > 0 {
                        s.failures as f64 / s.attempts as f64
                    } else {
                        0.0
                    },
                    weight: rule.weights.get(&r.provider).copied().unwrap_or(0),
                }
            })
            .collect();
        let Some(&first) = order(rule.strategy, &standings, &mut rng).first() else {
            report.skipped += 1;
            continue;
        };
        let chosen = candidates[first];
        let cost = (e.input_tokens as i128 * chosen.price.input as i128
            + e.output_tokens as i128 * chosen.price.output as i128)
            / 1_000_000;
        let cost = i64::try_from(cost).unwrap_or(i64::MAX);
        let latency = mean_latency(&(chosen.provider.clone(), chosen.upstream_model.clone()));
        let m = report.models.entry(model).or_default();
        m.requests += 1;
        *m.actual_providers.entry(e.provider.clone()).or_default() += 1;
        *m.simulated_providers
            .entry(chosen.provider.clone())
            .or_default() += 1;
        if chosen.provider != e.provider {
            m.changed += 1;
        }
        m.actual_cost_micros += e.cost_micros;
        m.simulated_cost_micros += cost;
        m.actual_latency_ms += e.latency_ms as f64;
        match latency {
            Some(l) => m.simulated_latency_ms += l,
            None => {
                m.latency_unknown += 1;
                m.simulated_latency_ms += e.latency_ms as f64;
            }
        }
    }
    for m in report.models.values_mut() {
        report.changed += m.changed;
        report.actual_cost_micros += m.actual_cost_micros;
        report.simulated_cost_micros += m.simulated_cost_micros;
        report.actual_latency_ms += m.actual_latency_ms;
        report.simulated_latency_ms += m.simulated_latency_ms;
        if m.requests > 0 {
            m.actual_latency_ms /= m.requests as f64;
            m.simulated_latency_ms /= m.requests as f64;
        }
    }
    let simulated = report.requests - report.skipped;
    if simulated > 0 {
        report.actual_latency_ms /= simulated as f64;
        report.simulated_latency_ms /= simulated as f64;
    }
    report
}

/// A duration like `24h`, `30m`, `7d`, `90s`, or milliseconds, in ms.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().ok()?;
    let ms = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn policy(text: &str) -> Policy {
        let config = Config::from_toml(
            r#"
[providers.a]
base_url = "http://127.0.0.1:1"
transform = "provider-openai"
[providers.b]
base_url = "http://127.0.0.1:2"
transform = "provider-openai"
[[models]]
name = "m"
routes = [{ provider = "a", input_per_mtok = 2, output_per_mtok = 2 }, { provider = "b", input_per_mtok = 1, output_per_mtok = 1 }]
"#,
        )
        .expect("config");
        super::super::file::compile(&[("p.toml".into(), text.into())], &config, None)
            .expect("policy")
    }

    fn event(provider: &str, latency: i64, cost: i64) -> UsageEvent {
        UsageEvent {
            request_id: "r".into(),
            org_id: "o".into(),
            key_id: "k".into(),
            model: "m".into(),
            provider: provider.into(),
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            cost_micros: cost,
            latency_ms: latency,
            status: 200,
            stream: false,
            attempts: format!(
                r#"[{{"provider":"{provider}","model":"m","status":200,"error":"","latency_ms":{latency}}}]"#
            ),
            route: None,
            client_ip: None,
            created_at: 0,
            format: "openai-chat".into(),
            estimated: false,
            expires_at: None,
            ip_expires_at: None,
            stored: true,
            content: None,
        }
    }

    #[test]
    fn cheapest_moves_traffic_and_reports_the_difference() {
        // Recorded: all on `a` (4 USD each), 100 ms; `b` was seen once at 300 ms.
        let mut events: Vec<UsageEvent> = (0..3).map(|_| event("a", 100, 4_000_000)).collect();
        events.push(event("b", 300, 2_000_000));
        let r = simulate(
            &policy("[[routes]]\nname = \"c\"\nstrategy = \"cheapest\"\n"),
            &events,
            1,
        );
        let m = &r.models["m"];
        assert_eq!((r.requests, r.skipped, r.changed), (4, 0, 3));
        assert_eq!(m.simulated_providers.get("b"), Some(&4));
        assert_eq!(
            (r.actual_cost_micros, r.simulated_cost_micros),
            (14_000_000, 8_000_000)
        );
        assert!((m.simulated_latency_ms - 300.0).abs() < 1e-9);
        // The default policy (ordered) keeps `a` first: no change for `a`'s requests.
        let r = simulate(&policy(""), &events, 1);
        assert_eq!(r.changed, 1);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Some(86_400_000));
        assert_eq!(parse_duration("30m"), Some(1_800_000));
        assert_eq!(parse_duration("1500"), Some(1500));
        assert_eq!(parse_duration("2w"), None);
        assert_eq!(parse_duration("h"), None);
    }
}
