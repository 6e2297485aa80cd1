//! The route trace: which route and strategy served a request, every candidate the model had —
//! offered to the routing stage or skipped, and why — and what each attempt came to. Stored
//! with the usage record (`route` column, JSON, next to its `attempts`; left out when the
//! default route had one candidate and skipped none) and, when a key, org or route opts in,
//! sent as the `x-tollgate-route` response header.

use serde::Serialize;

/// Why a candidate was not offered (or not attempted).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Skip {
    pub provider: String,
    pub model: String,
    /// `scope`, `data-policy`, `unpriced`, `api`, `route`, `request`, `circuit-open`,
    /// `cooling-down`, `price`, `parameters`, `context-length`, `router`, `max-attempts`.
    pub reason: &'static str,
    /// Detail for people (`provider.ignore`, `max_price.prompt 2.5 > 1`, ...).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// One attempt as the trace shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Tried {
    pub provider: String,
    pub model: String,
    /// The upstream's status (0: none).
    pub status: u16,
    /// The failure class (`timeout`, `status`, `context-length`, ...), None when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// The whole trace of one request.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct RouteTrace {
    /// The policy route that applied (`default` when none matched) and where it is written.
    pub route: String,
    pub source: String,
    pub strategy: &'static str,
    /// Candidates offered to the routing stage, in the order offered.
    pub offered: Vec<String>,
    pub skipped: Vec<Skip>,
    /// Filled for the header; the stored trace leaves them to the record's `attempts`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Tried>,
}

impl RouteTrace {
    pub fn skip(
        &mut self,
        provider: &str,
        model: &str,
        reason: &'static str,
        detail: impl Into<String>,
    ) {
        self.skipped.push(Skip {
            provider: provider.to_string(),
            model: model.to_string(),
            reason,
            detail: detail.into(),
        });
    }

    /// JSON for the usage record.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The `x-tollgate-route` header: short, ASCII, one line.
    /// `route=NAME; strategy=S; tried=a:500:12ms,b:timeout:5001ms,c:200:40ms; skipped=d:circuit-open`
    pub fn header(&self) -> String {
        let tried: Vec<String> = self
            .attempts
            .iter()
            .map(|t| {
                let outcome = match &t.error {
                    Some(e) if t.status != 0 => format!("{}-{e}", t.status),
                    Some(e) => e.clone(),
                    None => t.status.to_string(),
                };
                format!("{}:{outcome}:{}ms", t.provider, t.latency_ms)
            })
            .collect();
        let skipped: Vec<String> = self
            .skipped
            .iter()
            .map(|s| format!("{}:{}", s.provider, s.reason))
            .collect();
        let mut h = format!(
            "route={}; strategy={}; tried={}",
            self.route,
            self.strategy,
            tried.join(",")
        );
        if !skipped.is_empty() {
            h.push_str("; skipped=");
            h.push_str(&skipped.join(","));
        }
        // Header values must be visible ASCII: names come from config and requests.
        h.retain(|c| c.is_ascii_graphic() || c == ' ');
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lists_attempts_and_skips() {
        let mut t = RouteTrace {
            route: "three".into(),
            strategy: "ordered",
            ..Default::default()
        };
        let tried = |p: &str, status, error: Option<&str>, ms| Tried {
            provider: p.into(),
            model: "m".into(),
            status,
            error: error.map(String::from),
            latency_ms: ms,
        };
        t.attempts = vec![
            tried("a", 500, Some("status"), 12),
            tried("b", 0, Some("timeout"), 5001),
            tried("c", 200, None, 40),
        ];
        t.skip("d", "m", "circuit-open", "");
        assert_eq!(
            t.header(),
            "route=three; strategy=ordered; tried=a:500-status:12ms,b:timeout:5001ms,c:200:40ms; skipped=d:circuit-open"
        );
        assert!(t.to_json().contains("\"reason\":\"circuit-open\""));
    }
}
