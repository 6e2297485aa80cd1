//! Strategies: the order a route's candidates are tried in. The host orders them before the
//! routing stage sees them, so the built-in router (which keeps the order it is given) applies
//! the policy as written, and a custom router starts from it.

use rand::Rng;

/// How a route orders its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// As listed (`providers`, else the model's routes).
    Ordered,
    /// A random order drawn by weight: with weights 3 and 1 the first provider goes first
    /// three times in four. Providers without a weight come after the weighted ones.
    Weighted,
    /// Lowest price first (input + output per million tokens).
    Cheapest,
    /// Lowest recent latency first (EWMA of time to the first byte); unmeasured ones first,
    /// so they get measured.
    Fastest,
    /// Highest recent throughput first (EWMA output tokens per second; OpenRouter's
    /// `sort: "throughput"` and `:nitro`).
    Throughput,
    /// Lowest recent error rate first (EWMA over attempts).
    LeastErrors,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        Some(match s {
            "ordered" => Strategy::Ordered,
            "weighted" => Strategy::Weighted,
            "cheapest" => Strategy::Cheapest,
            "fastest" => Strategy::Fastest,
            "throughput" => Strategy::Throughput,
            "least-errors" => Strategy::LeastErrors,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Ordered => "ordered",
            Strategy::Weighted => "weighted",
            Strategy::Cheapest => "cheapest",
            Strategy::Fastest => "fastest",
            Strategy::Throughput => "throughput",
            Strategy::LeastErrors => "least-errors",
        }
    }
}

/// What a strategy knows of one candidate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Standing {
    /// Input + output micro-USD per million tokens.
    pub price: u64,
    /// EWMA latency to the first byte in ms (0 = not measured).
    pub latency_ms: f64,
    /// EWMA output tokens per second (0 = not measured).
    pub tokens_per_second: f64,
    /// EWMA share of failed attempts, 0..=1.
    pub error_rate: f64,
    pub weight: u32,
}

/// The order to try `standings` in, as indexes into it (stable: ties keep the given order).
pub fn order(strategy: Strategy, standings: &[Standing], rng: &mut impl Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..standings.len()).collect();
    let s = standings;
    match strategy {
        Strategy::Ordered => {}
        Strategy::Cheapest => idx.sort_by_key(|&i| s[i].price),
        Strategy::Fastest => idx.sort_by(|&a, &b| s[a].latency_ms.total_cmp(&s[b].latency_ms)),
        Strategy::Throughput => idx.sort_by(|&a, &b| {
            // Unmeasured first (so they get measured), then fastest.
            let key = |i: usize| {
                if s[i].tokens_per_second == 0.0 {
                    f64::INFINITY
                } else {
                    s[i].tokens_per_second
                }
            };
            key(b).total_cmp(&key(a))
        }),
        Strategy::LeastErrors => idx.sort_by(|&a, &b| s[a].error_rate.total_cmp(&s[b].error_rate)),
        Strategy::Weighted => {
            let mut pool: Vec<usize> = idx.iter().copied().filter(|&i| s[i].weight > 0).collect();
            let rest: Vec<usize> = idx.iter().copied().filter(|&i| s[i].weight == 0).collect();
            let mut out = Vec::with_capacity(idx.len());
            while !pool.is_empty() {
                let total: u64 = pool.iter().map(|&i| u64::from(s[i].weight)).sum();
                let mut pick = rng.gen_range(0..total);
                let at = pool
                    .iter()
                    .position(|&i| {
                        let w = u64::from(s[i].weight);
                        if pick < w {
                            true
                        } else {
                            pick -= w;
                            false
                        }
                    })
                    .unwrap_or(0);
                out.push(pool.remove(at));
            }
            out.extend(rest);
            idx = out;
        }
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn st(price: u64, latency: f64, tps: f64, err: f64, weight: u32) -> Standing {
        Standing {
            price,
            latency_ms: latency,
            tokens_per_second: tps,
            error_rate: err,
            weight,
        }
    }

    #[test]
    fn each_strategy_orders_as_documented() {
        let s = [
            st(30, 50.0, 10.0, 0.5, 0),
            st(10, 200.0, 90.0, 0.0, 0),
            st(20, 0.0, 0.0, 0.1, 0),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(order(Strategy::Ordered, &s, &mut rng), [0, 1, 2]);
        assert_eq!(order(Strategy::Cheapest, &s, &mut rng), [1, 2, 0]);
        assert_eq!(order(Strategy::Fastest, &s, &mut rng), [2, 0, 1]);
        assert_eq!(order(Strategy::Throughput, &s, &mut rng), [2, 1, 0]);
        assert_eq!(order(Strategy::LeastErrors, &s, &mut rng), [1, 2, 0]);
    }

    #[test]
    fn weighted_draws_in_proportion() {
        let s = [
            st(0, 0.0, 0.0, 0.0, 3),
            st(0, 0.0, 0.0, 0.0, 1),
            st(0, 0.0, 0.0, 0.0, 0),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut first = [0u32; 3];
        for _ in 0..4000 {
            let o = order(Strategy::Weighted, &s, &mut rng);
            assert_eq!(o.len(), 3);
            assert_eq!(o[2], 2, "unweighted last");
            first[o[0]] += 1;
        }
        // 3:1 within a few percent.
        assert!((2800..3200).contains(&first[0]), "{first:?}");
        assert_eq!(first[2], 0);
    }
}
