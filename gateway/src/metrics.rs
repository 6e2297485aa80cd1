//! Prometheus metrics, rendered in the text exposition format on the admin listener.
//! Families are small maps keyed by label values; updates take a short lock.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use parking_lot::Mutex;

/// Histogram buckets in seconds: 50 µs to 60 s, covering plugin calls and whole requests.
const BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    5.0, 60.0,
];

/// Cumulative bucket counts, count and sum of one series.
#[derive(Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

type Labels = Vec<(&'static str, String)>;

pub struct Family<T> {
    name: &'static str,
    help: &'static str,
    series: Mutex<BTreeMap<Labels, T>>,
}

impl<T: Default> Family<T> {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            series: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Family<u64> {
    pub fn inc_by(&self, labels: &[(&'static str, &str)], n: u64) {
        let key: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        *self.series.lock().entry(key).or_default() += n;
    }
}

impl Family<Histogram> {
    pub fn observe(&self, labels: &[(&'static str, &str)], d: Duration) {
        let secs = d.as_secs_f64();
        let key: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let mut series = self.series.lock();
        let h = series.entry(key).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }
}

fn label_text(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

pub struct Metrics {
    pub requests: Family<u64>,
    pub request_duration: Family<Histogram>,
    pub stage_duration: Family<Histogram>,
    pub upstream_duration: Family<Histogram>,
    pub upstream_attempts: Family<u64>,
    pub tokens: Family<u64>,
    pub cost_micros: Family<u64>,
    pub plugin_failures: Family<u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::new(
                "tollgate_requests_total",
                "Requests answered, by status and model.",
            ),
            request_duration: Family::new(
                "tollgate_request_duration_seconds",
                "Time from request to the end of the response.",
            ),
            stage_duration: Family::new(
                "tollgate_stage_duration_seconds",
                "Time spent in each plugin stage.",
            ),
            upstream_duration: Family::new(
                "tollgate_upstream_duration_seconds",
                "Upstream attempt time, by provider.",
            ),
            upstream_attempts: Family::new(
                "tollgate_upstream_attempts_total",
                "Upstream attempts, by provider and outcome.",
            ),
            tokens: Family::new("tollgate_tokens_total", "Tokens used, by kind and model."),
            cost_micros: Family::new(
                "tollgate_cost_micros_total",
                "Cost charged in micro-USD, by model.",
            ),
            plugin_failures: Family::new(
                "tollgate_plugin_failures_total",
                "Plugin calls that failed, by plugin and class.",
            ),
        }
    }
}

impl Metrics {
    /// The text exposition of every family, plus plugin-defined counters.
    pub fn render(&self, plugin_counters: &[((String, String), i64)]) -> String {
        let mut out = String::new();
        for f in [
            &self.requests,
            &self.upstream_attempts,
            &self.tokens,
            &self.cost_micros,
            &self.plugin_failures,
        ] {
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} counter",
                f.name, f.help, f.name
            );
            for (labels, v) in f.series.lock().iter() {
                let _ = writeln!(out, "{}{} {v}", f.name, label_text(labels, None));
            }
        }
        for f in [
            &self.request_duration,
            &self.stage_duration,
            &self.upstream_duration,
        ] {
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} histogram",
                f.name, f.help, f.name
            );
            for (labels, h) in f.series.lock().iter() {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let l = label_text(labels, Some(("le", b.to_string())));
                    let _ = writeln!(out, "{}_bucket{l} {}", f.name, h.counts[i]);
                }
                let l = label_text(labels, Some(("le", "+Inf".into())));
                let _ = writeln!(out, "{}_bucket{l} {}", f.name, h.count);
                let _ = writeln!(out, "{}_sum{} {}", f.name, label_text(labels, None), h.sum);
                let _ = writeln!(
                    out,
                    "{}_count{} {}",
                    f.name,
                    label_text(labels, None),
                    h.count
                );
            }
        }
        let _ = writeln!(out, "# HELP tollgate_plugin_counter Counters plugins keep through host.counter-add.\n# TYPE tollgate_plugin_counter gauge");
        for ((plugin, name), v) in plugin_counters {
            let labels: Labels = vec![("plugin", plugin.clone()), ("name", name.clone())];
            let _ = writeln!(
                out,
                "tollgate_plugin_counter{} {v}",
                label_text(&labels, None)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.requests
            .inc_by(&[("status", "200"), ("model", "m\"x")], 2);
        m.stage_duration
            .observe(&[("stage", "auth")], Duration::from_micros(80));
        let text = m.render(&[(("p".into(), "hits".into()), 3)]);
        assert!(
            text.contains("tollgate_requests_total{status=\"200\",model=\"m\\\"x\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("tollgate_stage_duration_seconds_bucket{stage=\"auth\",le=\"0.0001\"} 1")
        );
        assert!(text
            .contains("tollgate_stage_duration_seconds_bucket{stage=\"auth\",le=\"0.00005\"} 0"));
        assert!(text.contains("tollgate_plugin_counter{plugin=\"p\",name=\"hits\"} 3"));
    }
}
