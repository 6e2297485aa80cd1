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

use super::local::{self, LocalLimiter};
use super::{window, LimitKind, Limited, Limits, OnRedisError, RateLimitConfig, Remaining};

/// How long a concurrency slot lives in Redis without being released (a replica that died
/// mid-request gives its slots back after this).
const SLOT_TTL: Duration = Duration::from_secs(600);

/// Leases a block of one scope's window: KEYS = requests key, tokens key; ARGV = rpm, tpm,
/// requests needed, tokens needed, divisor, ttl ms. Returns {granted requests, granted tokens,
/// used requests, used tokens} (after the grant), or {-1, 0, used, 0} / {0, -1, 0, used} when
/// requests / tokens do not fit.
const LEASE: &str = r#"
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local need_r, need_t = tonumber(ARGV[3]), tonumber(ARGV[4])
local div, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local used_r = tonumber(redis.call('GET', KEYS[1]) or '0')
local used_t = tonumber(redis.call('GET', KEYS[2]) or '0')
if rpm > 0 and rpm - used_r < need_r then return {-1, 0, used_r, 0} end
if tpm > 0 and tpm - used_t < need_t then return {0, -1, 0, used_t} end
local grant_r, grant_t = 0, 0
if rpm > 0 then
  grant_r = math.max(need_r, math.floor((rpm - used_r) / div))
  used_r = redis.call('INCRBY', KEYS[1], grant_r)
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if tpm > 0 then
  grant_t = math.max(need_t, math.floor((tpm - used_t) / div))
  used_t = redis.call('INCRBY', KEYS[2], grant_t)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {grant_r, grant_t, used_r, used_t}
"#;

/// Takes a concurrency slot: KEYS = the scope's set; ARGV = limit, now ms, expiry ms, member,
/// ttl ms. 1 taken, 0 full.
const SLOT: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"#;

/// What this replica holds of one scope's window.
#[derive(Default, Clone, Copy)]
struct Lease {
    window: u64,
    requests: u64,
    tokens: u64,
    /// What Redis said was used in the window at the last lease (for the headers).
    used_requests: u64,
    used_tokens: u64,
}

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
    /// While Redis cannot be reached (`on_redis_error = "local"`).
    fallback: Arc<LocalLimiter>,
}

/// One admitted request's shares: leased units to return if unused, slots to release.
pub struct Admission {
    limiter: Option<Arc<SharedState>>,
    /// (scope, window, tokens counted at admission)
    leased: Vec<(String, u64, u64)>,
    slots: Vec<(String, String)>,
    fallback: Option<local::Admission>,
}

/// What an admission needs after the request: the connection and the leases.
struct SharedState {
    conn: Arc<Mutex<Option<ConnectionManager>>>,
    prefix: String,
    timeout: Duration,
    errors: Arc<AtomicU64>,
    leases: Arc<Mutex<HashMap<String, Lease>>>,
}

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
            fallback,
        })
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
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
                let n = self.errors.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(1000) {
                    tracing::warn!(error = %e, errors = n + 1, "Redis rate limits unavailable");
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

    async fn admit_shared(
        &self,
        scopes: &[(&str, Limits)],
        tokens: u64,
        now_ms: u64,
    ) -> Result<(Admission, Vec<Remaining>), Failure> {
        let (win, left_ms) = window(now_ms);
        let mut admission = Admission {
            limiter: Some(self.state()),
            leased: Vec::new(),
            slots: Vec::new(),
            fallback: None,
        };
        let mut remaining = Vec::with_capacity(scopes.len());
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
                admission.leased.push((scope.to_string(), win, need_t));
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
        Ok((admission, remaining))
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

    /// Leases a new block from Redis and takes this request's share of it.
    async fn refill(
        &self,
        scope: &str,
        limits: &Limits,
        win: u64,
        need_r: u64,
        need_t: u64,
        left_ms: u64,
    ) -> Result<Lease, Failure> {
        let conn = self.conn.lock().clone();
        let Some(mut conn) = conn else {
            return Err(Failure::Redis("not connected".into()));
        };
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
        let [grant_r, grant_t, used_r, used_t] = reply[..] else {
            return Err(Failure::Redis(format!("unexpected lease reply {reply:?}")));
        };
        if grant_r < 0 || grant_t < 0 {
            let kind = if grant_r < 0 {
                LimitKind::Requests
            } else {
                LimitKind::Tokens
            };
            let held = self.leases.lock().get(scope).copied().unwrap_or_default();
            let held = if held.window == win {
                held
            } else {
                Lease::default()
            };
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
        lease.requests += grant_r as u64 - need_r;
        lease.tokens += grant_t as u64 - need_t;
        lease.used_requests = used_r as u64;
        lease.used_tokens = used_t as u64;
        Ok(*lease)
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

impl SharedState {
    /// Tokens an admission estimated but did not use go back to this replica's lease.
    fn give_back(&self, scope: &str, win: u64, tokens: u64) {
        if let Some(l) = self.leases.lock().get_mut(scope) {
            if l.window == win {
                l.tokens += tokens;
            }
        }
    }

    /// Runs a Redis command in the background, bounded, counting failures.
    fn spawn(self: &Arc<Self>, cmd: redis::Cmd) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let me = self.clone();
        rt.spawn(async move {
            let conn = me.conn.lock().clone();
            let Some(mut conn) = conn else {
                me.errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let done = tokio::time::timeout(me.timeout, cmd.query_async::<()>(&mut conn)).await;
            if !matches!(done, Ok(Ok(()))) {
                me.errors.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

impl Admission {
    /// More tokens than estimated are added to the window's count in Redis (after the fact:
    /// the next leases see them); fewer leave the difference for this replica's next requests.
    pub fn settle(mut self, actual: u64) {
        if let Some(a) = self.fallback.take() {
            a.settle(actual);
            return;
        }
        let Some(state) = self.limiter.clone() else {
            return;
        };
        for (scope, win, estimate) in &self.leased {
            if actual > *estimate {
                let mut cmd = redis::cmd("INCRBY");
                cmd.arg(format!("{}{scope}:{win}:t", state.prefix))
                    .arg(actual - estimate);
                state.spawn(cmd);
            } else {
                state.give_back(scope, *win, estimate - actual);
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let Some(state) = &self.limiter else {
            return;
        };
        for (scope, member) in &self.slots {
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(format!("{}{scope}:c", state.prefix)).arg(member);
            state.spawn(cmd);
        }
    }
}
