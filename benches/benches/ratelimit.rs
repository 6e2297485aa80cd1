//! Cost of one rate-limit admission (admit, then settle the tokens used) on the request path:
//! in memory on one node, and shared through Redis either by leasing blocks of each minute's
//! allowance (the default) or with one Lua check per request (a lease of exactly the need:
//! `lease_divisor` larger than any limit), with and without a concurrency limit (a Redis slot
//! per request). Prints the Redis round trips per admission of each shared variant.
//!
//! The injected clock advances 6 ms per admission, so a limit of 10,000 a minute is used up
//! exactly as the minutes turn and leases are taken at the rate a busy key would take them.
//! Needs Redis at `TOLLGATE_TEST_REDIS` (default redis://127.0.0.1:6379) for the shared
//! variants; without it they are skipped, loudly. Keys live under a prefix of their own and
//! expire by themselves (two minutes).
//!
//! `cargo bench -p benches --bench ratelimit`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::ratelimit::{Limits, RateLimitConfig, RateLimiter};

/// Limits of the key and the org: generous enough never to refuse at one admission per 6 ms.
const KEY: Limits = Limits {
    rpm: 10_000,
    tpm: 10_000_000,
    concurrent: 0,
};
const ORG: Limits = Limits {
    rpm: 100_000,
    tpm: 100_000_000,
    concurrent: 0,
};
const TOKENS: u64 = 500;

/// One limiter under test, with its own clock and admission count.
struct Subject {
    name: &'static str,
    limiter: RateLimiter,
    clock: AtomicU64,
    admitted: AtomicU64,
    concurrent: u64,
}

impl Subject {
    fn new(name: &'static str, limiter: RateLimiter, concurrent: u64) -> Self {
        let now = u64::try_from(tollgate::store::now_ms()).unwrap_or(0);
        Subject {
            name,
            limiter,
            clock: AtomicU64::new(now - now % 60_000),
            admitted: AtomicU64::new(0),
            concurrent,
        }
    }

    /// `iters` admissions one after another (a request's own latency), each settled.
    async fn run(&self, iters: u64) -> Duration {
        let key = Limits {
            concurrent: self.concurrent,
            ..KEY
        };
        let scopes = [("key:bench", key), ("org:bench", ORG)];
        let start = Instant::now();
        for _ in 0..iters {
            let now = self.clock.fetch_add(6, Ordering::Relaxed);
            match self.limiter.admit(&scopes, TOKENS, now).await {
                Ok(admitted) => {
                    std::hint::black_box(admitted.headers());
                    admitted.settle_tokens(TOKENS);
                    self.admitted.fetch_add(1, Ordering::Relaxed);
                }
                // A refusal here means the bench's limits are wrong, not a slow path.
                Err(limited) => panic!("refused: {} {:?}", limited.scope, limited.kind),
            }
        }
        start.elapsed()
    }
}

fn shared(url: &str, prefix: &str, divisor: u64) -> RateLimiter {
    let cfg = RateLimitConfig {
        redis_url: Some(url.to_string()),
        key_prefix: prefix.to_string(),
        redis_timeout: Duration::from_millis(200),
        lease_divisor: divisor,
        ..RateLimitConfig::default()
    };
    match RateLimiter::from_config(&cfg) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    }
}

/// Whether the limiter reached Redis within a few seconds.
async fn connected(l: &RateLimiter) -> bool {
    let RateLimiter::Shared(s) = l else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while !s.connected() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

fn bench(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let url =
        std::env::var("TOLLGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("tollgate-bench-{}:", std::process::id());
    let mut subjects = Vec::new();
    let local = rt.block_on(async {
        RateLimiter::from_config(&RateLimitConfig::default()).map_err(|e| e.to_string())
    });
    match local {
        Ok(l) => subjects.push(Subject::new("local", l, 0)),
        Err(e) => panic!("{e}"),
    }
    let shared_subjects = rt.block_on(async {
        let lease = shared(&url, &format!("{prefix}lease:"), 8);
        if !connected(&lease).await {
            return Vec::new();
        }
        vec![
            Subject::new("redis-lease", lease, 0),
            Subject::new(
                "redis-per-request",
                shared(&url, &format!("{prefix}each:"), u64::MAX),
                0,
            ),
            Subject::new(
                "redis-lease+concurrency",
                shared(&url, &format!("{prefix}slot:"), 8),
                1_000,
            ),
        ]
    });
    if shared_subjects.is_empty() {
        eprintln!("#### SKIPPED: redis ({url} unreachable): only the local limiter measured ####");
    }
    for s in &shared_subjects {
        // The per-request limiter connects in the background like the others.
        rt.block_on(connected(&s.limiter));
    }
    subjects.extend(shared_subjects);

    let mut group = c.benchmark_group("ratelimit_admit");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for s in &subjects {
        group.bench_function(s.name, |b| b.iter_custom(|iters| rt.block_on(s.run(iters))));
    }
    group.finish();
    for s in &subjects {
        let admitted = s.admitted.load(Ordering::Relaxed).max(1);
        eprintln!(
            "{}: {} admissions, {:.4} Redis round trips per admission, {} Redis errors",
            s.name,
            admitted,
            s.limiter.redis_calls() as f64 / admitted as f64,
            s.limiter.redis_errors()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
