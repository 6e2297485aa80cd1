//! The attempt loop: try each route the routing stage chose, in order, until one answers.
//!
//! A route is tried only while nothing has reached the client; an attempt that fails before
//! its first byte moves on to the next when the policy route's `fallback_on` names its class
//! (rate-limit: 429; server-error: 5xx or a stream refused before its first event; timeout:
//! connect, first byte, stall, the whole attempt; context-length and content-filter: a 4xx
//! saying so). Any other answer — the client's own 4xx — goes to the client as is. A 429 moves
//! on at once while another candidate is left (the provider cools down for its `Retry-After`,
//! see `health.rs`); on the last candidate, a `Retry-After` within the route's
//! `retry_after_max_ms` is waited out and the provider tried once more. A refusal by `transform.request` ends the loop: the request itself is
//! bad for that provider, which another provider does not fix.
//!
//! [`run_attempts`] is the loop alone, over an [`AttemptRunner`] that performs one attempt
//! (`chat.rs` has the real one), so its rules are unit-tested here; [`failure_error`] is what
//! the client is told when every attempt failed.

use std::time::Duration;

use super::outcome::{Answer, AttemptError, AttemptRecord};
use super::upstream::AttemptFailure;
use crate::api_error::ApiError;
use crate::plugins::bindings::Attempt;
use crate::policy::Fallback;

/// The route's rules for the loop.
#[derive(Debug, Clone, Copy)]
pub struct LoopRules {
    pub fallback: Fallback,
    pub retry_after_max: Duration,
}

impl Default for LoopRules {
    fn default() -> Self {
        LoopRules {
            fallback: Fallback::DEFAULT,
            retry_after_max: Duration::from_millis(crate::policy::DEFAULT_RETRY_AFTER_MAX_MS),
        }
    }
}

/// What one attempt came to.
pub enum Tried {
    /// The client got an answer (or left while getting it).
    Answered {
        /// The upstream's HTTP status.
        status: u16,
        answer: Answer,
        latency: Duration,
    },
    /// Nothing reached the client: the next route may be tried.
    Failed {
        /// The upstream's HTTP status, 0 when there was none.
        status: u16,
        failure: AttemptFailure,
        latency: Duration,
    },
    /// The route names a provider that is not configured.
    Skipped,
    /// Not attempted, and why (e.g. its context is no larger than one that already refused).
    SkippedFor(&'static str),
}

/// Performs one attempt.
pub trait AttemptRunner {
    /// Attempt number `index` of the plan. `Err`: the request was refused outright (no
    /// further attempts).
    async fn try_once(&mut self, index: usize, attempt: &Attempt) -> Result<Tried, ApiError>;
}

/// How the attempts ended.
pub enum Attempts {
    /// Attempt `index` answered the client.
    Answered {
        index: usize,
        answer: Answer,
        records: Vec<AttemptRecord>,
    },
    /// None did; the last failure (with its attempt index) says what to tell the client.
    AllFailed {
        last: Option<(usize, AttemptFailure)>,
        records: Vec<AttemptRecord>,
    },
}

/// Tries `attempts` in order until one answers, or one fails in a way the route does not fall
/// back on.
pub async fn run_attempts<R: AttemptRunner>(
    attempts: &[Attempt],
    runner: &mut R,
    rules: LoopRules,
) -> Result<Attempts, ApiError> {
    let mut records = Vec::with_capacity(attempts.len());
    let mut last = None;
    let mut retried = false;
    let mut index = 0;
    while let Some(attempt) = attempts.get(index) {
        let record = |status, error, latency| AttemptRecord {
            provider: attempt.provider.clone(),
            upstream_model: attempt.upstream_model.clone(),
            status,
            error,
            latency,
        };
        match runner.try_once(index, attempt).await? {
            Tried::Answered {
                status,
                answer,
                latency,
            } => {
                records.push(record(status, answer.end.error(), latency));
                return Ok(Attempts::Answered {
                    index,
                    answer,
                    records,
                });
            }
            Tried::Failed {
                status,
                failure,
                latency,
            } => {
                records.push(record(status, Some(AttemptError::from(&failure)), latency));
                let class = failure.fallback_class();
                let last_one = index + 1 == attempts.len();
                if let AttemptFailure::Status(429, _, Some(wait)) = &failure {
                    if last_one && !retried && *wait <= rules.retry_after_max {
                        // Nothing else to try, and the provider said when: wait once.
                        retried = true;
                        tokio::time::sleep(*wait).await;
                        continue;
                    }
                }
                last = Some((index, failure));
                if !rules.fallback.allows(class) {
                    break;
                }
            }
            Tried::Skipped => {
                records.push(record(
                    0,
                    Some(AttemptError::UnknownProvider),
                    Duration::ZERO,
                ));
            }
            Tried::SkippedFor(why) => {
                records.push(record(0, Some(AttemptError::Skipped(why)), Duration::ZERO));
            }
        }
        retried = false;
        index += 1;
    }
    Ok(Attempts::AllFailed { last, records })
}

/// What the client is told when every attempt failed, for failures other than an upstream
/// status (whose body the transform translates: the client sees what the provider said).
pub fn failure_error(last: Option<&AttemptFailure>) -> ApiError {
    match last {
        Some(AttemptFailure::Status(status, ..)) => ApiError::new(
            *status,
            "upstream_error",
            format!("All providers failed; the last answered {status}."),
        ),
        Some(AttemptFailure::Timeout) => ApiError::new(
            504,
            "upstream_timeout",
            "All providers failed; the last one did not answer in time.",
        ),
        Some(AttemptFailure::Refused(err)) | Some(AttemptFailure::Blocked(err)) => err.clone(),
        Some(AttemptFailure::Stall) => ApiError::new(
            504,
            "upstream_timeout",
            "All providers failed; the last one stopped sending its answer.",
        ),
        Some(AttemptFailure::Connect(m)) | Some(AttemptFailure::Other(m)) => {
            ApiError::bad_gateway(format!("All providers failed; the last error: {m}"))
        }
        None => ApiError::bad_gateway("No provider could be tried for this model."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::outcome::{StreamEnd, NO_USAGE};

    fn attempt(provider: &str) -> Attempt {
        Attempt {
            provider: provider.into(),
            upstream_model: format!("{provider}-model"),
            timeout_ms: 0,
        }
    }

    /// Answers by provider name: `ok`, `gone`, `429`, `timeout`, `unknown`, `refuse`.
    struct Scripted {
        tried: Vec<String>,
    }
    impl AttemptRunner for Scripted {
        async fn try_once(&mut self, _: usize, a: &Attempt) -> Result<Tried, ApiError> {
            self.tried.push(a.provider.clone());
            let latency = Duration::from_millis(5);
            let answered = |end, status| Tried::Answered {
                status: 200,
                answer: Answer {
                    status,
                    usage: NO_USAGE,
                    charge: true,
                    end,
                    estimated: false,
                    charged: None,
                },
                latency,
            };
            Ok(match a.provider.as_str() {
                "ok" => answered(StreamEnd::Complete, 200),
                "gone" => answered(StreamEnd::ClientGone, 499),
                "429" => Tried::Failed {
                    status: 429,
                    failure: AttemptFailure::Status(429, b"{}".to_vec(), None),
                    latency,
                },
                "timeout" => Tried::Failed {
                    status: 0,
                    failure: AttemptFailure::Timeout,
                    latency,
                },
                "429ra" => Tried::Failed {
                    status: 429,
                    failure: AttemptFailure::Status(
                        429,
                        b"{}".to_vec(),
                        Some(Duration::from_secs(1)),
                    ),
                    latency,
                },
                "500" => Tried::Failed {
                    status: 500,
                    failure: AttemptFailure::Status(500, b"{}".to_vec(), None),
                    latency,
                },
                "refuse" => return Err(ApiError::bad_request("bad for this provider")),
                _ => Tried::Skipped,
            })
        }
    }

    fn run(names: &[&str]) -> (Result<Attempts, ApiError>, Vec<String>) {
        run_with(names, LoopRules::default())
    }

    fn run_with(names: &[&str], rules: LoopRules) -> (Result<Attempts, ApiError>, Vec<String>) {
        let attempts: Vec<Attempt> = names.iter().map(|n| attempt(n)).collect();
        let mut runner = Scripted { tried: vec![] };
        // A paused clock: waits (Retry-After) take no real time.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        let out = rt.block_on(run_attempts(&attempts, &mut runner, rules));
        (out, runner.tried)
    }

    #[test]
    fn a_429_moves_on_unless_it_is_the_last_candidate() {
        let (_, tried) = run(&["429ra", "ok"]);
        assert_eq!(
            tried,
            ["429ra", "ok"],
            "another candidate: no wait, no retry"
        );
        let (out, tried) = run(&["500", "429ra"]);
        assert_eq!(
            tried,
            ["500", "429ra", "429ra"],
            "the last one: waited out once"
        );
        let Ok(Attempts::AllFailed { records, .. }) = out else {
            panic!("expected all failed")
        };
        assert_eq!(records.len(), 3);
        let short = LoopRules {
            retry_after_max: Duration::from_millis(500),
            ..LoopRules::default()
        };
        let (_, tried) = run_with(&["429ra"], short);
        assert_eq!(tried, ["429ra"], "Retry-After over the cap: not waited");
    }

    #[test]
    fn a_class_the_route_does_not_fall_back_on_ends_the_loop() {
        use crate::policy::FailureClass;
        let rules = LoopRules {
            fallback: Fallback::of(&[FailureClass::Timeout]),
            ..LoopRules::default()
        };
        let (out, tried) = run_with(&["500", "ok"], rules);
        assert_eq!(tried, ["500"]);
        let Ok(Attempts::AllFailed {
            last: Some((0, f)), ..
        }) = out
        else {
            panic!("expected the 500 to end it")
        };
        assert_eq!(failure_error(Some(&f)).status, 500);
        let (_, tried) = run_with(&["timeout", "ok"], rules);
        assert_eq!(tried, ["timeout", "ok"]);
    }

    #[test]
    fn falls_back_in_order_until_one_answers() {
        let (out, tried) = run(&["unknown", "429", "timeout", "ok", "never"]);
        assert_eq!(tried, ["unknown", "429", "timeout", "ok"]);
        let Ok(Attempts::Answered { index, records, .. }) = out else {
            panic!("expected an answer")
        };
        assert_eq!(index, 3);
        let errors: Vec<_> = records.iter().map(|r| r.error.clone()).collect();
        assert_eq!(
            errors,
            [
                Some(AttemptError::UnknownProvider),
                Some(AttemptError::Status),
                Some(AttemptError::Timeout),
                None
            ]
        );
        assert_eq!(records[1].status, 429);
    }

    #[test]
    fn a_client_that_left_ends_the_loop_too() {
        let (out, tried) = run(&["gone", "ok"]);
        assert_eq!(tried, ["gone"]);
        let Ok(Attempts::Answered { records, .. }) = out else {
            panic!("expected an answer")
        };
        assert_eq!(records[0].error, Some(AttemptError::ClientGone));
    }

    #[test]
    fn all_failed_keeps_the_last_failure() {
        let (out, _) = run(&["timeout", "429"]);
        let Ok(Attempts::AllFailed { last, records }) = out else {
            panic!("expected all failed")
        };
        assert_eq!(records.len(), 2);
        let (index, failure) = last.expect("a failure");
        assert_eq!(index, 1);
        assert_eq!(failure_error(Some(&failure)).status, 429);
        let (out, _) = run(&["unknown"]);
        let Ok(Attempts::AllFailed { last: None, .. }) = out else {
            panic!("expected nothing tried")
        };
        assert_eq!(failure_error(None).status, 502);
    }

    #[test]
    fn a_refused_request_stops_the_loop() {
        let (out, tried) = run(&["refuse", "ok"]);
        assert_eq!(tried, ["refuse"]);
        assert_eq!(out.err().map(|e| e.status), Some(400));
    }

    #[test]
    fn failure_errors_say_what_happened() {
        assert_eq!(failure_error(Some(&AttemptFailure::Timeout)).status, 504);
        assert_eq!(failure_error(Some(&AttemptFailure::Stall)).status, 504);
        let e = failure_error(Some(&AttemptFailure::Connect("refused".into())));
        assert_eq!((e.status, e.message.contains("refused")), (502, true));
        let refused = ApiError::new(529, "overloaded", "busy");
        assert_eq!(
            failure_error(Some(&AttemptFailure::Refused(refused.clone()))),
            refused
        );
    }
}
