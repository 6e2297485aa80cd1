//! Closed-loop load driver: a fixed number of concurrent clients, each sending its next request
//! when the previous one completed, for a warm-up and then a measured period (bounded in time
//! and in request count). Latency to the first body byte and to the end of the response go into
//! HdrHistograms; failures are counted by kind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub url: String,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub max_requests: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadResult {
    pub requests: u64,
    pub seconds: f64,
    pub rps: f64,
    pub total: Percentiles,
    pub first_byte: Percentiles,
    pub errors: BTreeMap<String, u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Runs one load and returns its figures.
pub async fn run(spec: LoadSpec) -> LoadResult {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(spec.concurrency * 2)
        .build_http();
    let started = Instant::now();
    let measure_from = started + spec.warmup;
    let stop_at = measure_from + spec.duration;
    let counted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..spec.concurrency {
        let client = client.clone();
        let spec = spec.clone();
        let counted = counted.clone();
        tasks.push(tokio::spawn(async move {
            let mut total = histogram();
            let mut first = histogram();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            loop {
                let now = Instant::now();
                if now >= stop_at || counted.load(Ordering::Relaxed) >= spec.max_requests {
                    break;
                }
                let mut builder =
                    hyper::Request::post(&spec.url).header("content-type", "application/json");
                for (k, v) in &spec.headers {
                    builder = builder.header(k, v);
                }
                let Ok(req) = builder.body(Full::new(spec.body.clone())) else {
                    break;
                };
                let t0 = Instant::now();
                let outcome = async {
                    let resp = client
                        .request(req)
                        .await
                        .map_err(|_| "connect".to_string())?;
                    let status = resp.status().as_u16();
                    let mut body = resp.into_body();
                    let mut first_at = None;
                    let mut saw_error_event = false;
                    while let Some(frame) = body.frame().await {
                        let frame = frame.map_err(|_| "body".to_string())?;
                        if let Some(data) = frame.data_ref() {
                            first_at.get_or_insert_with(Instant::now);
                            saw_error_event |= data.windows(9).any(|w| w == b"\"error\":{");
                        }
                        if body.is_end_stream() {
                            break;
                        }
                    }
                    if status != 200 {
                        return Err(format!("status_{status}"));
                    }
                    if saw_error_event {
                        return Err("error_event".into());
                    }
                    Ok(first_at.unwrap_or_else(Instant::now))
                }
                .await;
                let done = Instant::now();
                if t0 < measure_from {
                    continue;
                }
                counted.fetch_add(1, Ordering::Relaxed);
                match outcome {
                    Ok(first_at) => {
                        let _ = total.record(done.duration_since(t0).as_micros().max(1) as u64);
                        let _ = first.record(first_at.duration_since(t0).as_micros().max(1) as u64);
                    }
                    Err(kind) => *errors.entry(kind).or_default() += 1,
                }
            }
            (total, first, errors)
        }));
    }
    let mut total = histogram();
    let mut first = histogram();
    let mut errors = BTreeMap::new();
    for t in tasks {
        if let Ok((h, f, e)) = t.await {
            let _ = total.add(&h);
            let _ = first.add(&f);
            for (k, v) in e {
                *errors.entry(k).or_default() += v;
            }
        }
    }
    let seconds = Instant::now()
        .saturating_duration_since(measure_from)
        .as_secs_f64()
        .min(spec.duration.as_secs_f64())
        .max(1e-9);
    let requests = total.len();
    LoadResult {
        requests,
        seconds,
        rps: requests as f64 / seconds,
        total: Percentiles::of(&total),
        first_byte: Percentiles::of(&first),
        errors,
    }
}
