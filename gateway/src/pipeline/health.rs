//! Provider health, per provider and upstream model: what strategies rank by (EWMA latency to
//! the first byte, EWMA output tokens per second, EWMA error rate) and the circuit breaker
//! routing skips by.
//!
//! Circuit: after `failures_to_open` failures in a row the route's circuit opens for
//! `cooldown`; while open it is skipped when another candidate exists. Past the cooldown it is
//! half-open: requests may try it, a success closes it, a failure opens it again at once.
//! A 429 with `Retry-After` cools the route down for that long (capped) the same way.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::policy::strategy::Standing;

/// EWMA weight of the newest sample.
const ALPHA: f64 = 0.2;
/// A `Retry-After` longer than this cools a route down for this long only.
const MAX_COOLDOWN: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    pub failures_to_open: u32,
    pub cooldown: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            failures_to_open: 3,
            cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default)]
struct Record {
    consecutive_failures: u32,
    /// Skipped until then (circuit open, or cooling down after a 429).
    closed_until: Option<Instant>,
    cooling: bool,
    latency_ms: f64,
    tokens_per_second: f64,
    error_rate: f64,
}

/// Why a route is being skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    CircuitOpen,
    CoolingDown,
}

impl Unavailable {
    pub fn reason(self) -> &'static str {
        match self {
            Unavailable::CircuitOpen => "circuit-open",
            Unavailable::CoolingDown => "cooling-down",
        }
    }
}

/// Provider -> upstream model -> record (two levels, so a lookup by `&str` allocates nothing).
type Records = HashMap<String, HashMap<String, Record>>;

#[derive(Default)]
pub struct Health {
    settings: HealthSettings,
    records: Mutex<Records>,
}

fn entry<'a>(records: &'a mut Records, provider: &str, model: &str) -> &'a mut Record {
    if !records.contains_key(provider) {
        records.insert(provider.to_string(), HashMap::new());
    }
    let models = records.get_mut(provider).expect("inserted above");
    if !models.contains_key(model) {
        models.insert(model.to_string(), Record::default());
    }
    models.get_mut(model).expect("inserted above")
}

impl Health {
    pub fn new(settings: HealthSettings) -> Health {
        Health {
            settings,
            records: Mutex::default(),
        }
    }

    /// What strategies rank by (weight and price are the caller's), and whether the route is
    /// skipped now and why — one lock, no allocation.
    pub fn snapshot(&self, provider: &str, model: &str) -> (Standing, Option<Unavailable>) {
        let records = self.records.lock();
        let Some(r) = records.get(provider).and_then(|m| m.get(model)) else {
            return (Standing::default(), None);
        };
        let standing = Standing {
            latency_ms: r.latency_ms,
            tokens_per_second: r.tokens_per_second,
            error_rate: r.error_rate,
            ..Standing::default()
        };
        let unavailable = r
            .closed_until
            .filter(|until| Instant::now() < *until)
            .map(|_| {
                if r.cooling {
                    Unavailable::CoolingDown
                } else {
                    Unavailable::CircuitOpen
                }
            });
        (standing, unavailable)
    }

    /// What strategies rank by.
    pub fn standing(&self, provider: &str, model: &str) -> Standing {
        self.snapshot(provider, model).0
    }

    /// Whether the route is skipped now, and why.
    pub fn unavailable(&self, provider: &str, model: &str) -> Option<Unavailable> {
        self.snapshot(provider, model).1
    }

    /// A successful attempt: latency to the first byte, and output tokens over the time the
    /// answer took (0 tokens: not a throughput sample).
    pub fn success(
        &self,
        provider: &str,
        model: &str,
        first_byte: Duration,
        tokens: u64,
        total: Duration,
    ) {
        let mut records = self.records.lock();
        let r = entry(&mut records, provider, model);
        r.consecutive_failures = 0;
        r.closed_until = None;
        r.cooling = false;
        r.error_rate *= 1.0 - ALPHA;
        let ms = first_byte.as_secs_f64() * 1000.0;
        r.latency_ms = ewma(r.latency_ms, ms);
        if tokens > 0 && total > Duration::ZERO {
            r.tokens_per_second = ewma(r.tokens_per_second, tokens as f64 / total.as_secs_f64());
        }
    }

    /// A failed attempt (`retry_after`: the provider said when to come back).
    pub fn failure(&self, provider: &str, model: &str, retry_after: Option<Duration>) {
        let mut records = self.records.lock();
        let r = entry(&mut records, provider, model);
        r.consecutive_failures = r.consecutive_failures.saturating_add(1);
        r.error_rate = r.error_rate * (1.0 - ALPHA) + ALPHA;
        let now = Instant::now();
        if r.consecutive_failures >= self.settings.failures_to_open {
            r.closed_until = Some(now + self.settings.cooldown);
            r.cooling = false;
        } else if let Some(wait) = retry_after.filter(|w| !w.is_zero()) {
            r.closed_until = Some(now + wait.min(MAX_COOLDOWN));
            r.cooling = true;
        }
    }
}

fn ewma(old: f64, sample: f64) -> f64 {
    if old == 0.0 {
        sample
    } else {
        old * (1.0 - ALPHA) + sample * ALPHA
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_circuit_opens_cools_down_and_closes() {
        let h = Health::new(HealthSettings {
            failures_to_open: 2,
            cooldown: Duration::from_secs(10),
        });
        h.failure("a", "m", None);
        assert_eq!(h.unavailable("a", "m"), None);
        h.failure("a", "m", None);
        assert_eq!(h.unavailable("a", "m"), Some(Unavailable::CircuitOpen));
        assert_eq!(h.unavailable("a", "other"), None, "per model");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            h.unavailable("a", "m"),
            None,
            "half-open after the cooldown"
        );
        h.failure("a", "m", None);
        assert_eq!(
            h.unavailable("a", "m"),
            Some(Unavailable::CircuitOpen),
            "one failure reopens"
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        h.success(
            "a",
            "m",
            Duration::from_millis(100),
            50,
            Duration::from_secs(1),
        );
        assert_eq!(h.unavailable("a", "m"), None);
        h.failure("a", "m", None);
        assert_eq!(
            h.unavailable("a", "m"),
            None,
            "closed again: counts from zero"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_cools_a_route_down() {
        let h = Health::default();
        h.failure("a", "m", Some(Duration::from_secs(5)));
        assert_eq!(h.unavailable("a", "m"), Some(Unavailable::CoolingDown));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(h.unavailable("a", "m"), None);
    }

    #[test]
    fn standings_follow_the_samples() {
        let h = Health::default();
        h.success(
            "a",
            "m",
            Duration::from_millis(100),
            100,
            Duration::from_secs(2),
        );
        h.success(
            "a",
            "m",
            Duration::from_millis(200),
            0,
            Duration::from_secs(1),
        );
        let s = h.standing("a", "m");
        assert!((s.latency_ms - 120.0).abs() < 1e-9, "{s:?}");
        assert!((s.tokens_per_second - 50.0).abs() < 1e-9);
        h.failure("a", "m", None);
        assert!((h.standing("a", "m").error_rate - 0.2).abs() < 1e-9);
    }
}
