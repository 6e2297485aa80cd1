//! Rate limits on the request path: the key's and the org's requests and tokens per minute and
//! concurrent requests, through the shared limiter (`ratelimit/`); `x-ratelimit-*` headers on
//! every answer, 429 with `Retry-After` when over.

use super::access::Access;
use super::call::Call;
use super::context::Request;
use crate::api_error::ApiError;
use crate::ratelimit::{LimitKind, Limits};

impl Request<'_> {
    /// Admits the call against the key's and the org's rate limits (429 with `Retry-After`
    /// when over). The admission is held until the request ends (concurrency), and its
    /// `x-ratelimit-*` headers go on the answer.
    pub(super) async fn admit(&self, access: &Access, call: &Call) -> Result<(), ApiError> {
        let defaults = &self.state.config.rate_limits;
        let mut scopes: Vec<(String, Limits)> = Vec::with_capacity(2);
        if let Some(key) = &access.key {
            let limits = Limits {
                rpm: positive_or(key.rpm_limit, defaults.default_key.rpm),
                tpm: positive_or(key.tpm_limit, defaults.default_key.tpm),
                concurrent: positive_or(key.concurrency_limit, defaults.default_key.concurrent),
            };
            if !limits.is_unlimited() {
                scopes.push((format!("key:{}", key.id), limits));
            }
        }
        if let Some(org) = &access.org {
            let limits = Limits {
                rpm: positive_or(org.rpm_limit, defaults.default_org.rpm),
                tpm: positive_or(org.tpm_limit, defaults.default_org.tpm),
                concurrent: positive_or(org.concurrency_limit, defaults.default_org.concurrent),
            };
            if !limits.is_unlimited() {
                scopes.push((format!("org:{}", org.id), limits));
            }
        }
        if scopes.is_empty() {
            return Ok(());
        }
        // What the request may use, as OpenAI counts it against a token limit: its size at ~4
        // bytes a token plus the output it may ask for. Replaced by the real count when the
        // request settles; cheap (the tokenizer would cost a thread hop and ~25 µs a request).
        let tokens = u64::from(call.summary.body_bytes) / 4
            + u64::from(call.summary.max_tokens.unwrap_or(0));
        let refs: Vec<(&str, Limits)> = scopes.iter().map(|(s, l)| (s.as_str(), *l)).collect();
        let now = u64::try_from(crate::store::now_ms()).unwrap_or(0);
        match self.state.limiter.admit(&refs, tokens, now).await {
            Ok(admitted) => {
                self.extra_headers.lock().extend(admitted.headers());
                *self.admitted.lock() = Some(admitted);
                Ok(())
            }
            Err(limited) => {
                self.state.metrics.rate_limited(
                    match (limited.scope.starts_with("org:"), limited.kind) {
                        (false, LimitKind::Requests) => "key_requests",
                        (false, LimitKind::Tokens) => "key_tokens",
                        (false, LimitKind::Concurrency) => "key_concurrency",
                        (true, LimitKind::Requests) => "org_requests",
                        (true, LimitKind::Tokens) => "org_tokens",
                        (true, LimitKind::Concurrency) => "org_concurrency",
                    },
                );
                let retry_after = limited.retry_after_ms.div_ceil(1000).max(1);
                {
                    let mut headers = self.extra_headers.lock();
                    headers.extend(limited.headers.iter().cloned());
                    headers.push(("retry-after", retry_after.to_string()));
                }
                let what = match limited.kind {
                    LimitKind::Requests => "requests per minute",
                    LimitKind::Tokens => "tokens per minute",
                    LimitKind::Concurrency => "concurrent requests",
                };
                let whose = if limited.scope.starts_with("org:") {
                    "your organization"
                } else {
                    "this API key"
                };
                Err(ApiError::new(
                    429,
                    "rate_limit_exceeded",
                    format!(
                        "Rate limit reached for {whose}: {what}. Try again in {retry_after} s."
                    ),
                ))
            }
        }
    }

    /// After the request: its real tokens go to the token-per-minute windows, and its
    /// concurrency slots are freed.
    pub(super) fn settle_rate(&self, tokens: u64) {
        if let Some(admitted) = self.admitted.lock().take() {
            admitted.settle_tokens(tokens);
        }
    }
}

fn positive_or(own: i64, default: u64) -> u64 {
    if own > 0 {
        own as u64
    } else {
        default
    }
}
