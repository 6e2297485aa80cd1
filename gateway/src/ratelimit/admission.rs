//! What a request admitted through the shared limiter holds until it ends: the units it took
//! from this replica's leases (given back when another scope refuses, or when it used fewer
//! tokens than estimated), its concurrency slots in Redis (released in the background when it
//! drops), or its local admission while Redis was unreachable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::ConnectionManager;

use super::local;

/// What this replica holds of one scope's window.
#[derive(Default, Clone, Copy)]
pub(super) struct Lease {
    pub(super) window: u64,
    pub(super) requests: u64,
    pub(super) tokens: u64,
    /// What Redis said was used in the window at the last lease (for the headers).
    pub(super) used_requests: u64,
    pub(super) used_tokens: u64,
}

/// What one admission took from this replica's lease of one scope's window: given back if
/// another scope refuses (all or nothing), and the tokens settled after the request.
pub(super) struct Leased {
    pub(super) scope: String,
    pub(super) window: u64,
    pub(super) requests: u64,
    pub(super) tokens: u64,
    /// The scope has a token limit (only then are tokens settled in Redis).
    pub(super) tpm: bool,
}

/// One admitted request's shares: leased units to return if unused, slots to release.
pub struct Admission {
    pub(super) limiter: Option<Arc<SharedState>>,
    pub(super) leased: Vec<Leased>,
    pub(super) slots: Vec<(String, String)>,
    pub(super) fallback: Option<local::Admission>,
}

/// What an admission needs after the request: the connection and the leases.
pub(super) struct SharedState {
    pub(super) conn: Arc<Mutex<Option<ConnectionManager>>>,
    pub(super) prefix: String,
    pub(super) timeout: Duration,
    pub(super) errors: Arc<AtomicU64>,
    pub(super) calls: Arc<AtomicU64>,
    pub(super) leases: Arc<Mutex<HashMap<String, Lease>>>,
}

impl SharedState {
    /// Units taken from this replica's lease and not used (a refused admission; tokens
    /// estimated but not used) go back to it, if its window is still the current one.
    pub(super) fn give_back(&self, scope: &str, win: u64, requests: u64, tokens: u64) {
        if let Some(l) = self.leases.lock().get_mut(scope) {
            if l.window == win {
                l.requests += requests;
                l.tokens += tokens;
            }
        }
    }

    /// Takes up to `tokens` from this replica's lease of the window (what it already leased
    /// from Redis, so counted there); returns how many it took.
    pub(super) fn take_tokens(&self, scope: &str, win: u64, tokens: u64) -> u64 {
        match self.leases.lock().get_mut(scope) {
            Some(l) if l.window == win => {
                let taken = l.tokens.min(tokens);
                l.tokens -= taken;
                taken
            }
            _ => 0,
        }
    }

    /// Runs Redis commands in the background, bounded, counting failures.
    pub(super) fn spawn(self: &Arc<Self>, cmd: redis::Pipeline) {
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
            me.calls.fetch_add(1, Ordering::Relaxed);
            let done = tokio::time::timeout(me.timeout, cmd.query_async::<()>(&mut conn)).await;
            if !matches!(done, Ok(Ok(()))) {
                me.errors.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

impl Admission {
    /// More tokens than estimated are added to the window's count in Redis (after the fact:
    /// the next leases see them; with an expiry, as the lease script sets, so a settlement
    /// never leaves a key behind); fewer leave the difference for this replica's next requests.
    /// Scopes without a token limit have nothing to settle.
    pub fn settle(mut self, actual: u64) {
        if let Some(a) = self.fallback.take() {
            a.settle(actual);
            return;
        }
        let Some(state) = self.limiter.clone() else {
            return;
        };
        for l in self.leased.iter().filter(|l| l.tpm) {
            // Tokens past the estimate come out of this replica's lease first (already counted
            // in Redis); only what the lease cannot cover is added to Redis, in the background.
            let over = actual
                .saturating_sub(l.tokens)
                .saturating_sub(state.take_tokens(
                    &l.scope,
                    l.window,
                    actual.saturating_sub(l.tokens),
                ));
            if over > 0 {
                let key = format!("{}{}:{}:t", state.prefix, l.scope, l.window);
                let mut cmd = redis::pipe();
                cmd.atomic()
                    .cmd("INCRBY")
                    .arg(&key)
                    .arg(over)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(super::WINDOW_MS * 2)
                    .ignore();
                state.spawn(cmd);
            } else if actual < l.tokens {
                state.give_back(&l.scope, l.window, 0, l.tokens - actual);
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
            let mut cmd = redis::pipe();
            cmd.cmd("ZREM")
                .arg(format!("{}{scope}:c", state.prefix))
                .arg(member)
                .ignore();
            state.spawn(cmd);
        }
    }
}
