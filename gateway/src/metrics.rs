//! Prometheus metrics (the `prometheus-client` crate: atomic series, escaping and the text
//! exposition are the library's), served on the admin listener.
//!
//! Label values never come from a client: models are the catalog's names (anything else is
//! counted as `other`), providers and plugins are the config's, stages and outcomes are fixed
//! strings. So a client can neither inject lines into `/metrics` nor grow it without bound.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Histogram buckets in seconds: 50 µs to 60 s, covering plugin calls and whole requests.
const BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    5.0, 60.0,
];

/// The label for a model the catalog does not know.
pub const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusModel {
    status: u16,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelOnly {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindModel {
    kind: &'static str,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderOutcome {
    provider: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuardrailPhase {
    plugin: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginClass {
    plugin: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCounter {
    plugin: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    requests: Family<StatusModel, Counter>,
    request_duration: Histogram,
    stage_duration: HistogramFamily<StageLabel>,
    upstream_duration: HistogramFamily<ProviderLabel>,
    upstream_attempts: Family<ProviderOutcome, Counter>,
    tokens: Family<KindModel, Counter>,
    cost_micros: Family<ModelOnly, Counter>,
    plugin_failures: Family<PluginClass, Counter>,
    plugin_counters: Family<PluginCounter, Gauge>,
    connections_refused: Family<Reason, Counter>,
    connections_open: Gauge,
    unpriced: Family<ModelOnly, Counter>,
    rate_limited: Family<Reason, Counter>,
    data_policy_refused: Counter,
    guardrail_refused: Family<GuardrailPhase, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::default();
        registry.register(
            "tollgate_requests",
            "Requests answered, by status and model",
            Family::clone(&requests),
        );
        let request_duration = histogram();
        registry.register(
            "tollgate_request_duration_seconds",
            "Time from request to the end of the response",
            request_duration.clone(),
        );
        let stage_duration = HistogramFamily::new_with_constructor(histogram as fn() -> _);
        registry.register(
            "tollgate_stage_duration_seconds",
            "Time spent in each plugin stage",
            stage_duration.clone(),
        );
        let upstream_duration = HistogramFamily::new_with_constructor(histogram as fn() -> _);
        registry.register(
            "tollgate_upstream_duration_seconds",
            "Upstream attempt time (to the response header), by provider",
            upstream_duration.clone(),
        );
        let upstream_attempts = Family::default();
        registry.register(
            "tollgate_upstream_attempts",
            "Upstream attempts, by provider and outcome",
            Family::clone(&upstream_attempts),
        );
        let tokens = Family::default();
        registry.register(
            "tollgate_tokens",
            "Tokens used, by kind and model",
            Family::clone(&tokens),
        );
        let cost_micros = Family::default();
        registry.register(
            "tollgate_cost_micros",
            "Cost charged in micro-USD, by model",
            Family::clone(&cost_micros),
        );
        let plugin_failures = Family::default();
        registry.register(
            "tollgate_plugin_failures",
            "Plugin calls that failed, by plugin and class",
            Family::clone(&plugin_failures),
        );
        let plugin_counters = Family::default();
        registry.register(
            "tollgate_plugin_counter",
            "Counters plugins keep through host.counter-add",
            Family::clone(&plugin_counters),
        );
        let connections_refused = Family::default();
        registry.register(
            "tollgate_connections_refused",
            "Client connections refused or closed by the front door, by reason",
            Family::clone(&connections_refused),
        );
        let connections_open = Gauge::default();
        registry.register(
            "tollgate_connections_open",
            "Open client connections",
            connections_open.clone(),
        );
        let unpriced = Family::default();
        registry.register(
            "tollgate_unpriced_requests",
            "Requests served by a route with no price (limits.unpriced_models = \"alert\"), by model",
            Family::clone(&unpriced),
        );
        let rate_limited = Family::default();
        registry.register(
            "tollgate_rate_limited",
            "Requests refused by a rate limit, by which limit",
            Family::clone(&rate_limited),
        );
        let data_policy_refused = Counter::default();
        registry.register(
            "tollgate_data_policy_refused",
            "Requests refused because no provider satisfied the org's data policy",
            data_policy_refused.clone(),
        );
        let guardrail_refused = Family::default();
        registry.register(
            "tollgate_guardrail_refused",
            "Prompts refused and answers stopped by a guardrail, by plugin and phase",
            Family::clone(&guardrail_refused),
        );
        Metrics {
            guardrail_refused,
            unpriced,
            rate_limited,
            data_policy_refused,
            registry,
            requests,
            request_duration,
            stage_duration,
            upstream_duration,
            upstream_attempts,
            tokens,
            cost_micros,
            plugin_failures,
            plugin_counters,
            connections_refused,
            connections_open,
        }
    }
}

impl Metrics {
    /// A request answered. `model` must be a catalog name or [`OTHER`].
    pub fn request(&self, status: u16, model: &str) {
        self.requests
            .get_or_create(&StatusModel {
                status,
                model: model.to_string(),
            })
            .inc();
    }

    pub fn request_duration(&self, d: Duration) {
        self.request_duration.observe(d.as_secs_f64());
    }

    pub fn stage(&self, stage: &'static str, d: Duration) {
        self.stage_duration
            .get_or_create(&StageLabel { stage })
            .observe(d.as_secs_f64());
    }

    /// An upstream attempt's outcome and its time to the response header.
    pub fn upstream(&self, provider: &str, outcome: &'static str, d: Duration) {
        self.upstream_duration
            .get_or_create(&ProviderLabel {
                provider: provider.to_string(),
            })
            .observe(d.as_secs_f64());
        self.upstream_attempts
            .get_or_create(&ProviderOutcome {
                provider: provider.to_string(),
                outcome,
            })
            .inc();
    }

    pub fn tokens(&self, model: &str, kind: &'static str, n: u64) {
        self.tokens
            .get_or_create(&KindModel {
                kind,
                model: model.to_string(),
            })
            .inc_by(n);
    }

    pub fn cost(&self, model: &str, micros: u64) {
        self.cost_micros
            .get_or_create(&ModelOnly {
                model: model.to_string(),
            })
            .inc_by(micros);
    }

    pub fn plugin_failure(&self, plugin: &str, class: &'static str) {
        self.plugin_failures
            .get_or_create(&PluginClass {
                plugin: plugin.to_string(),
                class,
            })
            .inc();
    }

    /// A guardrail refused a prompt (`phase` = `prompt`) or stopped an answer (`output`).
    pub fn guardrail_refused(&self, plugin: &str, phase: &'static str) {
        self.guardrail_refused
            .get_or_create(&GuardrailPhase {
                plugin: plugin.to_string(),
                phase,
            })
            .inc();
    }

    /// A request served by an unpriced route (`model`: a catalog name).
    pub fn unpriced(&self, model: &str) {
        self.unpriced
            .get_or_create(&ModelOnly {
                model: model.to_string(),
            })
            .inc();
    }

    /// A request refused because the org's data policy left no provider.
    pub fn data_policy_refused(&self) {
        self.data_policy_refused.inc();
    }

    /// A request refused by a rate limit (`reason`: e.g. `key_requests`, `org_tokens`).
    pub fn rate_limited(&self, reason: &'static str) {
        self.rate_limited.get_or_create(&Reason { reason }).inc();
    }

    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&Reason { reason })
            .inc();
    }

    /// The text exposition (OpenMetrics), with the current plugin counters and open connections.
    pub fn render(
        &self,
        plugin_counters: &[((String, String), i64)],
        open_connections: usize,
    ) -> String {
        self.plugin_counters.clear();
        for ((plugin, name), v) in plugin_counters {
            self.plugin_counters
                .get_or_create(&PluginCounter {
                    plugin: plugin.clone(),
                    name: name.clone(),
                })
                .set(*v);
        }
        self.connections_open
            .set(i64::try_from(open_connections).unwrap_or(i64::MAX));
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_with_escaped_labels() {
        let m = Metrics::default();
        m.request(200, "m");
        m.request(200, "m");
        m.stage("auth", Duration::from_micros(80));
        m.plugin_failure("p\"x\n", "trap");
        let text = m.render(&[(("p".into(), "hits\"} 1\nfake 1".into()), 3)], 7);
        assert!(
            text.contains("tollgate_requests_total{status=\"200\",model=\"m\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("tollgate_stage_duration_seconds_bucket{le=\"0.0001\",stage=\"auth\"} 1"),
            "{text}"
        );
        assert!(text.contains("tollgate_connections_open 7"), "{text}");
        // No label value can start a line of its own.
        assert!(!text.lines().any(|l| l.starts_with("fake")), "{text}");
        assert!(text.contains(r#"plugin="p\"x\n""#), "{text}");
    }
}
