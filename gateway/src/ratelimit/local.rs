//! Exact rate limits in this process: per scope the current minute's requests and tokens and the
//! requests in flight, in sharded maps behind short synchronous locks (never held across an
//! await). An admission locks the shards of all its scopes at once, in shard order, so it is
//! all or nothing without deadlock. Idle scopes are evicted when a shard grows past its share of
//! `max_scopes`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{window, LimitKind, Limited, Limits, Remaining};

const SHARDS: usize = 16;

#[derive(Default, Clone, Copy)]
struct Scope {
    window: u64,
    requests: u64,
    tokens: u64,
    /// Requests admitted and not yet finished (whatever the window).
    concurrent: u64,
}

pub struct LocalLimiter {
    shards: Vec<Mutex<HashMap<String, Scope>>>,
    hasher: std::collections::hash_map::RandomState,
    max_per_shard: usize,
}

/// One admitted request's share of each scope.
pub struct Admission {
    limiter: Arc<LocalLimiter>,
    /// (scope, window admitted in, tokens counted at admission)
    scopes: Vec<(String, u64, u64)>,
}

impl LocalLimiter {
    pub fn new(max_scopes: usize) -> Self {
        LocalLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            max_per_shard: (max_scopes / SHARDS).max(16),
        }
    }

    fn shard(&self, scope: &str) -> usize {
        (self.hasher.hash_one(scope) as usize) % SHARDS
    }

    /// Scopes held in memory (tests, metrics).
    pub fn scopes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Admits against every scope or none.
    pub(crate) fn admit(
        self: &Arc<Self>,
        scopes: &[(&str, Limits)],
        tokens: u64,
        now_ms: u64,
    ) -> Result<(Admission, Vec<Remaining>), Limited> {
        let (win, left_ms) = window(now_ms);
        let mut order: Vec<usize> = scopes.iter().map(|(s, _)| self.shard(s)).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<(usize, parking_lot::MutexGuard<'_, HashMap<String, Scope>>)> =
            order.iter().map(|&i| (i, self.shards[i].lock())).collect();
        let map_of = |scope: &str| -> usize {
            let i = self.shard(scope);
            guards.iter().position(|(j, _)| *j == i).unwrap_or(0)
        };
        // Check every scope first.
        let positions: Vec<usize> = scopes.iter().map(|(s, _)| map_of(s)).collect();
        for ((scope, limits), &g) in scopes.iter().zip(&positions) {
            let current = guards[g].1.get(*scope).copied().unwrap_or_default();
            let (requests, used) = if current.window == win {
                (current.requests, current.tokens)
            } else {
                (0, 0)
            };
            let refuse = |kind, retry_after_ms, remaining: Remaining| Limited {
                scope: scope.to_string(),
                kind,
                retry_after_ms,
                headers: super::headers(&[remaining]),
            };
            let remaining = Remaining {
                limits: *limits,
                requests: limits.rpm.saturating_sub(requests),
                tokens: limits.tpm.saturating_sub(used),
                reset_ms: left_ms,
            };
            if limits.rpm > 0 && requests >= limits.rpm {
                return Err(refuse(LimitKind::Requests, left_ms, remaining));
            }
            if limits.tpm > 0 && used.saturating_add(tokens) > limits.tpm {
                return Err(refuse(LimitKind::Tokens, left_ms, remaining));
            }
            if limits.concurrent > 0 && current.concurrent >= limits.concurrent {
                return Err(refuse(LimitKind::Concurrency, 1000, remaining));
            }
        }
        // Then count the request in each.
        let mut remaining = Vec::with_capacity(scopes.len());
        let mut held = Vec::with_capacity(scopes.len());
        for ((scope, limits), &g) in scopes.iter().zip(&positions) {
            let map = &mut guards[g].1;
            let entry = map.entry(scope.to_string()).or_default();
            if entry.window != win {
                entry.window = win;
                entry.requests = 0;
                entry.tokens = 0;
            }
            entry.requests += 1;
            entry.tokens = entry.tokens.saturating_add(tokens);
            entry.concurrent += 1;
            remaining.push(Remaining {
                limits: *limits,
                requests: limits.rpm.saturating_sub(entry.requests),
                tokens: limits.tpm.saturating_sub(entry.tokens),
                reset_ms: left_ms,
            });
            held.push((scope.to_string(), win, tokens));
        }
        for (_, map) in guards.iter_mut() {
            if map.len() > self.max_per_shard {
                // Idle scopes of past windows go first; scopes with requests in flight stay.
                map.retain(|_, s| s.window >= win || s.concurrent > 0);
            }
        }
        drop(guards);
        Ok((
            Admission {
                limiter: self.clone(),
                scopes: held,
            },
            remaining,
        ))
    }

    fn with_scope(&self, scope: &str, f: impl FnOnce(&mut Scope)) {
        let mut map = self.shards[self.shard(scope)].lock();
        if let Some(s) = map.get_mut(scope) {
            f(s);
        }
    }
}

impl Admission {
    /// The real tokens replace the estimate in the window the request was admitted in (or are
    /// added to the scope's newer window, if the minute turned meanwhile).
    pub fn settle(self, actual: u64) {
        for (scope, win, estimate) in &self.scopes {
            self.limiter.with_scope(scope, |s| {
                if s.window == *win {
                    s.tokens = s.tokens.saturating_sub(*estimate).saturating_add(actual);
                } else if s.window > *win {
                    s.tokens = s.tokens.saturating_add(actual);
                }
            });
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        for (scope, _, _) in &self.scopes {
            self.limiter
                .with_scope(scope, |s| s.concurrent = s.concurrent.saturating_sub(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000; // a minute boundary

    fn lim(rpm: u64, tpm: u64, concurrent: u64) -> Limits {
        Limits {
            rpm,
            tpm,
            concurrent,
        }
    }

    #[test]
    fn exact_under_concurrency() {
        let l = Arc::new(LocalLimiter::new(1000));
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..25 {
                        if let Ok((a, _)) = l.admit(&[("key:a", lim(50, 0, 0))], 0, T0 + 5) {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            drop(a);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 50);
        // The next minute starts again.
        assert!(l.admit(&[("key:a", lim(50, 0, 0))], 0, T0 + 60_000).is_ok());
    }

    #[test]
    fn all_or_nothing_across_scopes() {
        let l = Arc::new(LocalLimiter::new(1000));
        let scopes = [("key:a", lim(10, 0, 0)), ("org:o", lim(2, 0, 0))];
        let _a = l.admit(&scopes, 0, T0).unwrap();
        let _b = l.admit(&scopes, 0, T0).unwrap();
        let err = l.admit(&scopes, 0, T0 + 10_000).err().unwrap();
        assert_eq!(
            (err.scope.as_str(), err.kind),
            ("org:o", LimitKind::Requests)
        );
        assert_eq!(err.retry_after_ms, 50_000);
        // The refused request was not counted against the key.
        let (_, rem) = l.admit(&[("key:a", lim(10, 0, 0))], 0, T0).unwrap();
        assert_eq!(rem[0].requests, 7);
    }

    #[test]
    fn tokens_are_settled_and_concurrency_freed() {
        let l = Arc::new(LocalLimiter::new(1000));
        let s = [("key:t", lim(0, 100, 1))];
        let (a, _) = l.admit(&s, 60, T0).unwrap();
        // One at a time.
        assert_eq!(
            l.admit(&s, 1, T0).err().unwrap().kind,
            LimitKind::Concurrency
        );
        a.settle(30); // used 30, not the 60 estimated; the slot is free again
        let (b, rem) = l.admit(&s, 50, T0).unwrap();
        assert_eq!(rem[0].tokens, 20);
        drop(b);
        assert_eq!(l.admit(&s, 21, T0).err().unwrap().kind, LimitKind::Tokens);
        assert!(l.admit(&s, 21, T0 + 60_000).is_ok());
    }

    #[test]
    fn idle_scopes_are_evicted() {
        let l = Arc::new(LocalLimiter::new(16 * 16));
        for i in 0..5_000 {
            let scope = format!("key:{i}");
            let _ = l.admit(
                &[(scope.as_str(), lim(5, 0, 0))],
                0,
                T0 + (i as u64) * 60_000,
            );
        }
        assert!(l.scopes() <= 16 * 17, "{} scopes kept", l.scopes());
    }
}
