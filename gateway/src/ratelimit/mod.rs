//! Rate limits: requests per minute, tokens per minute and requests at once, per scope (an API
//! key, an org). The pipeline admits each request against every scope that applies, all or
//! nothing, holds the admission for the request's life (concurrency), and settles the tokens it
//! really used.
//!
//! Windows are fixed minutes (epoch-aligned): "N per minute" means at most N in any such minute,
//! which is what can be shared exactly across replicas without a round trip per request. On one
//! node ([`local`]) counting is exact, in memory. With Redis ([`shared`]) each replica leases a
//! block of the window's allowance from Redis atomically and spends it locally; blocks shrink as
//! the window fills, so the total never passes N and little is stranded. `docs/rate-limits.md`
//! has the design, the measured costs and the choice.

mod admission;
mod local;
mod scripts;
mod shared;

use std::sync::Arc;
use std::time::Duration;

pub use local::LocalLimiter;
pub use shared::SharedLimiter;

/// Limits for one scope; 0 = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: u64,
    pub tpm: u64,
    pub concurrent: u64,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.rpm == 0 && self.tpm == 0 && self.concurrent == 0
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
    Concurrency,
}

/// The length of a window.
pub const WINDOW_MS: u64 = 60_000;

/// The window containing `now_ms`, and the ms left in it.
pub fn window(now_ms: u64) -> (u64, u64) {
    (now_ms / WINDOW_MS, WINDOW_MS - now_ms % WINDOW_MS)
}

/// A refusal: the scope and limit, when to retry, and the headers to send.
#[derive(Debug, Clone)]
pub struct Limited {
    pub scope: String,
    pub kind: LimitKind,
    pub retry_after_ms: u64,
    pub headers: Vec<(&'static str, String)>,
}

/// What one scope had left after an admission, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Remaining {
    pub limits: Limits,
    pub requests: u64,
    pub tokens: u64,
    pub reset_ms: u64,
}

/// OpenAI's headers for the tightest of `remaining` (the scope with the least share of its
/// requests left; then of its tokens). Only the headers for limits that are set.
pub(crate) fn headers(remaining: &[Remaining]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let share = |left: u64, limit: u64| left as f64 / limit.max(1) as f64;
    if let Some(r) = remaining
        .iter()
        .filter(|r| r.limits.rpm > 0)
        .min_by(|a, b| share(a.requests, a.limits.rpm).total_cmp(&share(b.requests, b.limits.rpm)))
    {
        out.push(("x-ratelimit-limit-requests", r.limits.rpm.to_string()));
        out.push(("x-ratelimit-remaining-requests", r.requests.to_string()));
        out.push(("x-ratelimit-reset-requests", reset_text(r.reset_ms)));
    }
    if let Some(r) = remaining
        .iter()
        .filter(|r| r.limits.tpm > 0)
        .min_by(|a, b| share(a.tokens, a.limits.tpm).total_cmp(&share(b.tokens, b.limits.tpm)))
    {
        out.push(("x-ratelimit-limit-tokens", r.limits.tpm.to_string()));
        out.push(("x-ratelimit-remaining-tokens", r.tokens.to_string()));
        out.push(("x-ratelimit-reset-tokens", reset_text(r.reset_ms)));
    }
    out
}

/// A duration as OpenAI writes its reset headers: `120ms`, `1s`, `6m0s`, `1.5s`.
pub fn reset_text(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let minutes = ms / 60_000;
    let rest = ms % 60_000;
    let seconds = if rest.is_multiple_of(1000) {
        format!("{}s", rest / 1000)
    } else {
        format!("{}s", rest as f64 / 1000.0)
    };
    if minutes > 0 {
        format!("{minutes}m{seconds}")
    } else {
        seconds
    }
}

/// The limiter the pipeline holds: local, or shared through Redis.
#[derive(Clone)]
pub enum RateLimiter {
    Local(Arc<LocalLimiter>),
    Shared(Arc<SharedLimiter>),
}

/// A request's admission: frees its concurrency slots when dropped; [`Admitted::settle_tokens`]
/// counts the tokens it really used.
pub struct Admitted {
    headers: Vec<(&'static str, String)>,
    inner: AdmittedInner,
}

enum AdmittedInner {
    Local(local::Admission),
    Shared(shared::Admission),
}

impl Admitted {
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.headers.clone()
    }

    /// The tokens the request really used (input + output) replace its estimate in each
    /// scope's token window; concurrency slots are freed.
    pub fn settle_tokens(self, actual: u64) {
        match self.inner {
            AdmittedInner::Local(a) => a.settle(actual),
            AdmittedInner::Shared(a) => a.settle(actual),
        }
    }
}

/// How the limiter is set up (`[rate_limits]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Redis URL: limits shared by every replica using it. None: this process alone.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (tests and several gateways on one Redis).
    pub key_prefix: String,
    /// Bound on each Redis call.
    pub redis_timeout: Duration,
    /// What to do while Redis cannot be reached: limit locally, or refuse.
    pub on_redis_error: OnRedisError,
    /// Largest share of what is left of a window one replica leases at once (1/8 by default):
    /// larger means fewer round trips, more possibly stranded on one replica near the limit.
    pub lease_divisor: u64,
    /// Scopes kept in memory at most (idle ones are evicted first).
    pub max_scopes: usize,
    pub default_key: Limits,
    pub default_org: Limits,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            redis_url: None,
            key_prefix: "tollgate:rl:".into(),
            redis_timeout: Duration::from_millis(50),
            on_redis_error: OnRedisError::Local,
            lease_divisor: 8,
            max_scopes: 100_000,
            default_key: Limits::default(),
            default_org: Limits::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    /// Count in this process alone (a replica may then admit up to the full limit itself).
    Local,
    /// Refuse requests that have a limit (429) until Redis answers again.
    Deny,
}

impl RateLimiter {
    /// Local, or shared when a Redis URL is configured (connecting in the background: a Redis
    /// that is down at start is handled like one that goes down later).
    pub fn from_config(cfg: &RateLimitConfig) -> Result<RateLimiter, String> {
        let local = Arc::new(LocalLimiter::new(cfg.max_scopes));
        match &cfg.redis_url {
            None => Ok(RateLimiter::Local(local)),
            Some(url) => Ok(RateLimiter::Shared(Arc::new(SharedLimiter::new(
                url, cfg, local,
            )?))),
        }
    }

    /// Admits one request against every scope given (all must pass; nothing is counted in any
    /// scope when one refuses). `tokens` is the request's estimated input.
    pub async fn admit(
        &self,
        scopes: &[(&str, Limits)],
        tokens: u64,
        now_ms: u64,
    ) -> Result<Admitted, Limited> {
        match self {
            RateLimiter::Local(l) => {
                let (admission, remaining) = l.admit(scopes, tokens, now_ms)?;
                Ok(Admitted {
                    headers: headers(&remaining),
                    inner: AdmittedInner::Local(admission),
                })
            }
            RateLimiter::Shared(s) => {
                let (admission, remaining) = s.admit(scopes, tokens, now_ms).await?;
                Ok(Admitted {
                    headers: headers(&remaining),
                    inner: AdmittedInner::Shared(admission),
                })
            }
        }
    }

    /// Redis calls that failed or timed out since start (0 when local).
    pub fn redis_errors(&self) -> u64 {
        match self {
            RateLimiter::Local(_) => 0,
            RateLimiter::Shared(s) => s.errors(),
        }
    }

    /// Redis round trips made since start (0 when local): with [`RateLimiter::redis_errors`],
    /// what sharing costs per request.
    pub fn redis_calls(&self) -> u64 {
        match self {
            RateLimiter::Local(_) => 0,
            RateLimiter::Shared(s) => s.redis_calls(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_text_is_openais() {
        assert_eq!(reset_text(120), "120ms");
        assert_eq!(reset_text(1000), "1s");
        assert_eq!(reset_text(1500), "1.5s");
        assert_eq!(reset_text(360_000), "6m0s");
        assert_eq!(reset_text(61_000), "1m1s");
    }

    #[test]
    fn headers_name_the_tightest_scope() {
        let key = Remaining {
            limits: Limits {
                rpm: 10,
                tpm: 0,
                concurrent: 0,
            },
            requests: 9,
            tokens: 0,
            reset_ms: 1000,
        };
        let org = Remaining {
            limits: Limits {
                rpm: 100,
                tpm: 1000,
                concurrent: 0,
            },
            requests: 5,
            tokens: 900,
            reset_ms: 1000,
        };
        let h = headers(&[key, org]);
        assert!(h.contains(&("x-ratelimit-limit-requests", "100".into())));
        assert!(h.contains(&("x-ratelimit-remaining-requests", "5".into())));
        assert!(h.contains(&("x-ratelimit-limit-tokens", "1000".into())));
        assert!(h.contains(&("x-ratelimit-remaining-tokens", "900".into())));
        assert!(h.contains(&("x-ratelimit-reset-requests", "1s".into())));
        assert!(headers(&[]).is_empty());
    }
}
