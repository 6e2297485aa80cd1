//! Rate limits shared through a real Redis (`TOLLGATE_TEST_REDIS`, default
//! redis://127.0.0.1:6379; skipped loudly without one, a failure under CI): two limiters stand in
//! for two replicas and must together admit at most N a minute, not 2N; concurrency slots are
//! shared; a refusal by one scope takes nothing from another; settlements leave no key without
//! an expiry; an unreachable Redis falls back to local limits within the call bound. Each test
//! counts under its own key prefix and deletes its keys at the end (a failed test's keys expire
//! by themselves: windows after 2 minutes, concurrency sets after 10).

use std::time::{Duration, Instant};

use tollgate::ratelimit::{LimitKind, Limits, RateLimitConfig, RateLimiter};

fn redis_url() -> Option<String> {
    let url =
        std::env::var("TOLLGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    if url == "skip" {
        skip("TOLLGATE_TEST_REDIS=skip");
        return None;
    }
    Some(url)
}

/// Without Redis the shared tests are skipped loudly, except under CI where that fails.
fn skip(why: &str) {
    let ci = std::env::var("CI").unwrap_or_default();
    assert!(
        ci.is_empty() || ci == "false" || ci == "0",
        "Redis is required under CI ({why})"
    );
    eprintln!("#### SKIPPED: redis ({why}) ####");
}

fn config(url: &str, prefix: &str) -> RateLimitConfig {
    RateLimitConfig {
        redis_url: Some(url.to_string()),
        key_prefix: prefix.to_string(),
        redis_timeout: Duration::from_millis(200),
        ..RateLimitConfig::default()
    }
}

/// Two limiters on one Redis standing in for two replicas, under a key prefix of their own.
struct Replicas {
    a: RateLimiter,
    b: RateLimiter,
    url: String,
    prefix: String,
}

/// Two connected limiters, or None (skipped) when Redis is not reachable outside CI.
async fn replicas() -> Option<Replicas> {
    let url = redis_url()?;
    let prefix = format!("tollgate-test-{}:", &tollgate::store::new_id("t")[2..14]);
    let a = RateLimiter::from_config(&config(&url, &prefix)).unwrap();
    let b = RateLimiter::from_config(&config(&url, &prefix)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    for l in [&a, &b] {
        let RateLimiter::Shared(s) = l else {
            panic!("not shared")
        };
        while !s.connected() {
            if Instant::now() > deadline {
                skip(&format!("{url} did not connect within 5 s"));
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Some(Replicas { a, b, url, prefix })
}

impl Replicas {
    async fn redis(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }

    /// The keys the test left, with their expiry (ms; -1 none).
    async fn keys(&self) -> Vec<(String, i64)> {
        let mut conn = self.redis().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut out = Vec::new();
        for k in keys {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .unwrap();
            out.push((k, ttl));
        }
        out
    }

    async fn cleanup(self) {
        let keys: Vec<String> = self.keys().await.into_iter().map(|(k, _)| k).collect();
        if !keys.is_empty() {
            let mut conn = self.redis().await;
            let _: () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
}

fn minute_start() -> u64 {
    let now = tollgate::store::now_ms() as u64;
    now - now % 60_000 + 1_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_admit_at_most_n_per_minute_together() {
    let Some(r) = replicas().await else { return };
    let (a, b) = (r.a.clone(), r.b.clone());
    let now = minute_start();
    let limits = Limits {
        rpm: 60,
        tpm: 0,
        concurrent: 0,
    };
    let mut tasks = Vec::new();
    for i in 0..200 {
        let l = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            l.admit(&[("key:k", limits)], 0, now)
                .await
                .map(drop)
                .is_ok()
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    eprintln!("two replicas admitted {admitted} of 200 against 60 per minute");
    assert!(
        admitted <= 60,
        "{admitted} admitted: the limit multiplied across replicas"
    );
    assert!(
        admitted >= 55,
        "only {admitted} of 60 admitted: too much stranded in leases"
    );
    // The next minute starts again; the refusal said when.
    let err = a
        .admit(&[("key:k", limits)], 0, now + 5_000)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, LimitKind::Requests);
    assert_eq!(err.retry_after_ms, 54_000);
    assert!(b.admit(&[("key:k", limits)], 0, now + 60_000).await.is_ok());
    r.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_per_minute_are_shared_and_settled() {
    let Some(r) = replicas().await else { return };
    let (a, b) = (r.a.clone(), r.b.clone());
    let now = minute_start();
    let limits = Limits {
        rpm: 0,
        tpm: 1_000,
        concurrent: 0,
    };
    // 400 estimated on each replica; one used 600 in the end: 1,000 spent.
    let x = a.admit(&[("org:o", limits)], 400, now).await.unwrap();
    let y = b.admit(&[("org:o", limits)], 400, now).await.unwrap();
    x.settle_tokens(600);
    y.settle_tokens(400);
    tokio::time::sleep(Duration::from_millis(200)).await; // the excess is added in the background
    let err = b.admit(&[("org:o", limits)], 1, now).await.err();
    let err = err.expect("1,000 of 1,000 tokens used: refused");
    assert_eq!(err.kind, LimitKind::Tokens);
    assert!(err
        .headers
        .contains(&("x-ratelimit-limit-tokens", "1000".into())));
    r.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_slots_are_shared_and_given_back() {
    let Some(r) = replicas().await else { return };
    let (a, b) = (r.a.clone(), r.b.clone());
    let now = minute_start();
    let limits = Limits {
        rpm: 0,
        tpm: 0,
        concurrent: 2,
    };
    let one = a.admit(&[("key:c", limits)], 0, now).await.unwrap();
    let _two = b.admit(&[("key:c", limits)], 0, now).await.unwrap();
    let err = a.admit(&[("key:c", limits)], 0, now).await.err().unwrap();
    assert_eq!(err.kind, LimitKind::Concurrency);
    drop(one);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if b.admit(&[("key:c", limits)], 0, now).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a released slot did not come back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_falls_back_to_local_limits_within_the_bound() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    let l = RateLimiter::from_config(&config(&url, "x:")).unwrap();
    let limits = Limits {
        rpm: 3,
        tpm: 0,
        concurrent: 0,
    };
    let now = minute_start();
    let t = Instant::now();
    let mut admitted = 0;
    for _ in 0..5 {
        admitted += usize::from(l.admit(&[("key:f", limits)], 0, now).await.is_ok());
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "waited on a Redis that is not there"
    );
    assert_eq!(admitted, 3, "local limits apply while Redis is unreachable");
    assert_eq!(l.redis_errors(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_one_scope_takes_nothing_from_the_other() {
    let Some(r) = replicas().await else { return };
    let now = minute_start();
    let key = Limits {
        rpm: 10,
        tpm: 1_000,
        concurrent: 0,
    };
    let org = Limits {
        rpm: 2,
        tpm: 0,
        concurrent: 0,
    };
    let both = [("key:k", key), ("org:o", org)];
    for _ in 0..2 {
        r.a.admit(&both, 100, now).await.unwrap().settle_tokens(100);
    }
    let err = r.a.admit(&both, 100, now).await.err().unwrap();
    assert_eq!(
        (err.scope.as_str(), err.kind),
        ("org:o", LimitKind::Requests)
    );
    // The key gave the refused request nothing: 8 requests and 800 tokens are left.
    let mut admitted = 0;
    for _ in 0..12 {
        if let Ok(a) = r.a.admit(&[("key:k", key)], 100, now).await {
            a.settle_tokens(100);
            admitted += 1;
        }
    }
    assert_eq!(
        admitted, 8,
        "the refused request was counted against the key"
    );
    r.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_save_round_trips_and_settlements_leave_no_key_forever() {
    let Some(r) = replicas().await else { return };
    let now = minute_start();
    let limits = Limits {
        rpm: 100_000,
        tpm: 0,
        concurrent: 0,
    };
    for _ in 0..1_000 {
        // No token limit: the tokens used have nothing to settle in Redis.
        r.a.admit(&[("key:busy", limits)], 50, now)
            .await
            .unwrap()
            .settle_tokens(500);
    }
    let calls = r.a.redis_calls();
    eprintln!("1000 admits against 100000 a minute: {calls} Redis round trips");
    assert!(calls <= 10, "{calls} Redis round trips for 1000 admits");
    let with_tokens = Limits {
        rpm: 0,
        tpm: 1_000_000,
        concurrent: 0,
    };
    r.b.admit(&[("org:t", with_tokens)], 10, now)
        .await
        .unwrap()
        .settle_tokens(300_000);
    tokio::time::sleep(Duration::from_millis(300)).await; // settled in the background
    let keys = r.keys().await;
    assert!(!keys.is_empty());
    for (k, ttl) in &keys {
        assert!(*ttl > 0, "{k} has no expiry ({ttl})");
        assert!(
            !k.contains("key:busy") || k.ends_with(":r"),
            "{k} was written"
        );
    }
    assert_eq!(r.a.redis_errors() + r.b.redis_errors(), 0);
    r.cleanup().await;
}
