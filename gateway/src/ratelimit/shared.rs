//! Rate limits shared by every replica through Redis, without a Redis round trip per request:
//! each replica leases blocks of a window's allowance (requests and tokens) from Redis with one
//! atomic script — `grant = max(need, (limit - used) / lease_divisor)` when it fits, nothing
//! otherwise — and spends them in memory. Redis counts what was leased, so the replicas
//! together never pass the limit; blocks shrink as the window fills, so what one replica holds
//! unused near the limit is small. Concurrency is counted in a Redis sorted set per scope (a
//! slot expires after [`SLOT_TTL`], so a crashed replica's slots come back): one round trip per
//! request, only for scopes with a concurrency limit.
//!
//! Every Redis call is bounded (`redis_timeout`); while Redis cannot be reached the process
//! limits locally (or refuses, per `on_redis_error`) and counts the errors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::ConnectionManager;

pub use super::admission::Admission;
use super::admission::{Lease, Leased, SharedState};
use super::local::LocalLimiter;
use super::scripts::{LEASE, SLOT};
use super::{window, LimitKind, Limited, Limits, OnRedisError, RateLimitConfig, Remaining};

/// How long a concurrency slot lives in Redis without being released (a replica that died
/// mid-request gives its slots back after this).
const SLOT_TTL: Duration = Duration::from_secs(600);

pub struct SharedLimiter {
    conn: Arc<Mutex<Option<ConnectionManager>>>,
    prefix: String,
    timeout: Duration,
    on_error: OnRedisError,
    divisor: u64,
    leases: Arc<Mutex<HashMap<String, Lease>>>,
    /// One refill at a time per scope: requests that find the lease empty while a refill is
    /// under way wait for it and spend its block, instead of each leasing a block of its own
    /// (which strands allowance on this replica in a burst).
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    max_scopes: usize,
    lease_script: redis::Script,
    slot_script: redis::Script,
    errors: Arc<AtomicU64>,
    /// Redis round trips made (request path and background), for the cost per request.
    calls: Arc<AtomicU64>,
    /// When the last "Redis unavailable" warning was logged (ms; one per [`WARN_EVERY_MS`]).
    last_warn: AtomicU64,
    /// While Redis cannot be reached (`on_redis_error = "local"`).
    fallback: Arc<LocalLimiter>,
}

/// At most one "Redis unavailable" warning per this interval (the counter has them all).
const WARN_EVERY_MS: u64 = 10_000;

enum Failure {
    Limited(Limited),
    Redis(String),
}

impl SharedLimiter {
    /// Parses the URL and connects in the background (a Redis down at start is handled as one
    /// that goes down later: local limits meanwhile).
    pub fn new(
        url: &str,
        cfg: &RateLimitConfig,
        fallback: Arc<LocalLimiter>,
    ) -> Result<SharedLimiter, String> {
        let client = redis::Client::open(url).map_err(|e| format!("rate_limits.redis_url: {e}"))?;
        let conn: Arc<Mutex<Option<ConnectionManager>>> = Arc::default();
        let slot = conn.clone();
        let timeout = cfg.redis_timeout;
        let errors = Arc::new(AtomicU64::new(0));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Duration::from_secs(1))
                    .set_response_timeout(timeout)
                    .set_number_of_retries(3)
                    .set_max_delay(2000);
                loop {
                    match ConnectionManager::new_with_config(client.clone(), config.clone()).await
                    {
                        Ok(c) => {
                            *slot.lock() = Some(c);
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Redis for rate limits unreachable; limiting locally meanwhile");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            });
        }
        Ok(SharedLimiter {
            conn,
            prefix: cfg.key_prefix.clone(),
            timeout,
            on_error: cfg.on_redis_error,
            divisor: cfg.lease_divisor.max(1),
            leases: Arc::default(),
            gates: Mutex::new(HashMap::new()),
            max_scopes: cfg.max_scopes,
            lease_script: redis::Script::new(LEASE),
            slot_script: redis::Script::new(SLOT),
            errors,
            calls: Arc::default(),
            last_warn: AtomicU64::new(0),
            fallback,
        })
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Redis round trips made so far (leases, concurrency slots, settlements, releases).
    pub fn redis_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Whether the connection to Redis is up (tests wait for it).
    pub fn connected(&self) -> bool {
        self.conn.lock().is_some()
    }

    fn state(&self) -> Arc<SharedState> {
        Arc::new(SharedState {
            conn: self.conn.clone(),
            prefix: self.prefix.clone(),
            timeout: self.timeout,
            errors: self.errors.clone(),
            calls: self.calls.clone(),
            leases: self.leases.clone(),
        })
    }

    pub(crate) async fn admit(
        &self,
        scopes: &[(&str, Limits)],
        tokens: u64,
        now_ms: u64,
    ) -> Result<(Admission, Vec<Remaining>), Limited> {
        match self.admit_shared(scopes, tokens, now_ms).await {
            Ok(ok) => Ok(ok),
            Err(Failure::Limited(l)) => Err(l),
            Err(Failure::Redis(e)) => {
                let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
                let last = self.last_warn.load(Ordering::Relaxed);
                if (n == 1 || now_ms.saturating_sub(last) >= WARN_EVERY_MS)
                    && self
                        .last_warn
                        .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::warn!(error = %e, errors = n, "Redis rate limits unavailable");
                }
                match self.on_error {
                    OnRedisError::Local => {
                        let (a, remaining) = self.fallback.admit(scopes, tokens, now_ms)?;
                        Ok((
                            Admission {
                                limiter: None,
                                leased: Vec::new(),
                                slots: Vec::new(),
                                fallback: Some(a),
                            },
                            remaining,
                        ))
                    }
                    OnRedisError::Deny => Err(Limited {
                        scope: scopes
                            .first()
                            .map(|(s, _)| s.to_string())
                            .unwrap_or_default(),
                        kind: LimitKind::Requests,
                        retry_after_ms: 1000,
                        headers: Vec::new(),
                    }),
                }
            }
        }
    }

    /// All scopes or none: when one refuses (or Redis fails), what the others took from their
    /// leases goes back to them, and their slots are released when the admission drops.
    async fn admit_shared(
        &self,
        scopes: &[(&str, Limits)],
        tokens: u64,
        now_ms: u64,
    ) -> Result<(Admission, Vec<Remaining>), Failure> {
        let state = self.state();
        let mut admission = Admission {
            limiter: Some(state.clone()),
            leased: Vec::new(),
            slots: Vec::new(),
            fallback: None,
        };
        let mut remaining = Vec::with_capacity(scopes.len());
        match self
            .admit_each(scopes, tokens, now_ms, &mut admission, &mut remaining)
            .await
        {
            Ok(()) => Ok((admission, remaining)),
            Err(e) => {
                for l in admission.leased.drain(..) {
                    state.give_back(&l.scope, l.window, l.requests, l.tokens);
                }
                Err(e)
            }
        }
    }

    async fn admit_each(
        &self,
        scopes: &[(&str, Limits)],
        tokens: u64,
        now_ms: u64,
        admission: &mut Admission,
        remaining: &mut Vec<Remaining>,
    ) -> Result<(), Failure> {
        let (win, left_ms) = window(now_ms);
        for (scope, limits) in scopes {
            let need_r = u64::from(limits.rpm > 0);
            let need_t = if limits.tpm > 0 { tokens } else { 0 };
            if need_r > 0 || limits.tpm > 0 {
                let lease = match self.take(scope, win, need_r, need_t) {
                    Some(l) => l,
                    None => {
                        let gate = self.gate(scope);
                        let _turn = gate.lock().await;
                        match self.take(scope, win, need_r, need_t) {
                            Some(l) => l,
                            None => {
                                self.refill(scope, limits, win, need_r, need_t, left_ms)
                                    .await?
                            }
                        }
                    }
                };
                admission.leased.push(Leased {
                    scope: scope.to_string(),
                    window: win,
                    requests: need_r,
                    tokens: need_t,
                    tpm: limits.tpm > 0,
                });
                remaining.push(Remaining {
                    limits: *limits,
                    requests: limits.rpm.saturating_sub(lease.used_requests) + lease.requests,
                    tokens: limits.tpm.saturating_sub(lease.used_tokens) + lease.tokens,
                    reset_ms: left_ms,
                });
            } else {
                remaining.push(Remaining {
                    limits: *limits,
                    reset_ms: left_ms,
                    ..Remaining::default()
                });
            }
            if limits.concurrent > 0 {
                let member = crate::store::new_id("slot");
                if !self.slot(scope, limits.concurrent, now_ms, &member).await? {
                    return Err(Failure::Limited(Limited {
                        scope: scope.to_string(),
                        kind: LimitKind::Concurrency,
                        retry_after_ms: 1000,
                        headers: super::headers(&remaining[remaining.len() - 1..]),
                    }));
                }
                admission.slots.push((scope.to_string(), member));
            }
        }
        Ok(())
    }

    /// The scope's refill gate.
    fn gate(&self, scope: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self.gates.lock();
        if gates.len() >= self.max_scopes {
            // Gates nobody waits on can go.
            gates.retain(|_, g| Arc::strong_count(g) > 1);
        }
        gates.entry(scope.to_string()).or_default().clone()
    }

    /// Takes from this replica's lease, if it holds enough.
    fn take(&self, scope: &str, win: u64, need_r: u64, need_t: u64) -> Option<Lease> {
        let mut leases = self.leases.lock();
        let lease = leases.get_mut(scope)?;
        if lease.window != win || lease.requests < need_r || lease.tokens < need_t {
            return None;
        }
        lease.requests -= need_r;
        lease.tokens -= need_t;
        Some(*lease)
    }

    /// Leases a new block from Redis and takes this request's share of it. Only the shortfall
    /// is asked of Redis: what this replica still holds of the window counts toward the need,
    /// so one replica alone can spend its scope's allowance to the last unit. (Requests that
    /// take from the lease without the gate may spend the block first: then lease again.)
    async fn refill(
        &self,
        scope: &str,
        limits: &Limits,
        win: u64,
        need_r: u64,
        need_t: u64,
        left_ms: u64,
    ) -> Result<Lease, Failure> {
        for _ in 0..16 {
            let held = self.held(scope, win);
            let short_r = need_r.saturating_sub(held.requests);
            let short_t = need_t.saturating_sub(held.tokens);
            let (grant_r, grant_t, used_r, used_t) =
                self.lease(scope, limits, win, short_r, short_t).await?;
            if grant_r < 0 || grant_t < 0 {
                let kind = if grant_r < 0 {
                    LimitKind::Requests
                } else {
                    LimitKind::Tokens
                };
                let held = self.held(scope, win);
                let remaining = Remaining {
                    limits: *limits,
                    requests: limits.rpm.saturating_sub(used_r.max(0) as u64) + held.requests,
                    tokens: limits.tpm.saturating_sub(used_t.max(0) as u64) + held.tokens,
                    reset_ms: left_ms,
                };
                return Err(Failure::Limited(Limited {
                    scope: scope.to_string(),
                    kind,
                    retry_after_ms: left_ms,
                    headers: super::headers(&[remaining]),
                }));
            }
            let mut leases = self.leases.lock();
            if leases.len() >= self.max_scopes {
                leases.retain(|_, l| l.window >= win);
            }
            let lease = leases.entry(scope.to_string()).or_default();
            if lease.window != win {
                *lease = Lease {
                    window: win,
                    ..Lease::default()
                };
            }
            lease.requests += grant_r as u64;
            lease.tokens += grant_t as u64;
            lease.used_requests = used_r as u64;
            lease.used_tokens = used_t as u64;
            if lease.requests >= need_r && lease.tokens >= need_t {
                lease.requests -= need_r;
                lease.tokens -= need_t;
                return Ok(*lease);
            }
        }
        Err(Failure::Redis(format!(
            "lease of {scope} spent by others 16 times over"
        )))
    }

    /// What this replica holds of the scope's window.
    fn held(&self, scope: &str, win: u64) -> Lease {
        match self.leases.lock().get(scope) {
            Some(l) if l.window == win => *l,
            _ => Lease::default(),
        }
    }

    /// One run of the lease script: (granted requests, granted tokens, used requests, used
    /// tokens), a grant of -1 when that need does not fit.
    async fn lease(
        &self,
        scope: &str,
        limits: &Limits,
        win: u64,
        need_r: u64,
        need_t: u64,
    ) -> Result<(i64, i64, i64, i64), Failure> {
        let conn = self.conn.lock().clone();
        let Some(mut conn) = conn else {
            return Err(Failure::Redis("not connected".into()));
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let base = format!("{}{scope}:{win}", self.prefix);
        let mut call = self.lease_script.prepare_invoke();
        call.key(format!("{base}:r"))
            .key(format!("{base}:t"))
            .arg(limits.rpm)
            .arg(limits.tpm)
            .arg(need_r)
            .arg(need_t)
            .arg(self.divisor)
            .arg(super::WINDOW_MS * 2);
        let reply: Vec<i64> = tokio::time::timeout(self.timeout, call.invoke_async(&mut conn))
            .await
            .map_err(|_| Failure::Redis("timed out".into()))?
            .map_err(|e| Failure::Redis(e.to_string()))?;
        match reply[..] {
            [grant_r, grant_t, used_r, used_t] => Ok((grant_r, grant_t, used_r, used_t)),
            _ => Err(Failure::Redis(format!("unexpected lease reply {reply:?}"))),
        }
    }

    async fn slot(
        &self,
        scope: &str,
        limit: u64,
        now_ms: u64,
        member: &str,
    ) -> Result<bool, Failure> {
        let conn = self.conn.lock().clone();
        let Some(mut conn) = conn else {
            return Err(Failure::Redis("not connected".into()));
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let ttl = SLOT_TTL.as_millis() as u64;
        let mut call = self.slot_script.prepare_invoke();
        call.key(format!("{}{scope}:c", self.prefix))
            .arg(limit)
            .arg(now_ms)
            .arg(now_ms + ttl)
            .arg(member)
            .arg(ttl);
        let taken: i64 = tokio::time::timeout(self.timeout, call.invoke_async(&mut conn))
            .await
            .map_err(|_| Failure::Redis("timed out".into()))?
            .map_err(|e| Failure::Redis(e.to_string()))?;
        Ok(taken == 1)
    }
}
