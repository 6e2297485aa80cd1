//! BYOK on the request path: the routing stage's attempts become a plan in which each attempt
//! says whose provider key it uses — the org's own (decrypted by the host, injected into the
//! upstream request header only) or the gateway's. The org's mode orders them: `prefer` (own
//! key first, then the gateway's for the same route), `fallback` (the gateway's first), `only`
//! (own key only, for providers it has one for).

use super::context::Request;
use crate::api_error::ApiError;
use crate::byok::ByokMode;
use crate::plugins::bindings::{Attempt, Principal};

pub use crate::byok::Secret as Credential;

/// The attempts to make and, per attempt, the org's key to use (None: the gateway's).
pub struct Plan {
    pub attempts: Vec<Attempt>,
    pub credentials: Vec<Option<Credential>>,
    /// Percent of the cost charged for BYOK requests.
    fee_percent: f64,
    /// The policy route's fallback rules for the attempt loop.
    pub rules: super::attempts::LoopRules,
}

impl Plan {
    /// Percent of the cost a BYOK request is charged.
    pub fn fee_percent(&self) -> f64 {
        self.fee_percent
    }

    /// Every attempt uses the org's own key.
    pub fn all_byok(&self) -> bool {
        !self.credentials.is_empty() && self.credentials.iter().all(Option::is_some)
    }

    /// The share of a hold that the BYOK fee can reach.
    pub fn fee_share(&self, hold_micros: u64) -> u64 {
        crate::byok::fee_micros(
            i64::try_from(hold_micros).unwrap_or(i64::MAX),
            self.fee_percent,
        ) as u64
    }
}

impl Request<'_> {
    /// The plan for the routing stage's attempts: each attempt whose provider the org has a
    /// key for is made with it, before or after the gateway's key per the org's mode (or
    /// alone, under `only`).
    pub(super) async fn byok_plan(
        &self,
        who: &Principal,
        attempts: Vec<Attempt>,
    ) -> Result<Plan, ApiError> {
        let fee_percent = self.state.config.byok.fee_percent;
        let org = self
            .state
            .byok
            .prefetch(&who.org_id)
            .await
            .map_err(|e| ApiError::internal(format!("reading BYOK keys failed: {e}")))?;
        let mut planned = Vec::with_capacity(attempts.len());
        let mut credentials = Vec::with_capacity(attempts.len());
        let mut unusable = None;
        for attempt in attempts {
            let own = org.secret(&attempt.provider);
            if own.is_none() && org.has_key(&attempt.provider) {
                // Stored but not usable (sealed under another master key): said once in the
                // log by the cache; under `only` this provider cannot be used at all.
                let why = org
                    .fault(&attempt.provider)
                    .unwrap_or_else(|| "unusable".into());
                if org.mode() == ByokMode::Only {
                    unusable = Some(format!(
                        "your organization's key for provider '{}' cannot be used ({why})",
                        attempt.provider
                    ));
                    continue;
                }
            }
            let Some(own) = own else {
                planned.push(attempt);
                credentials.push(None);
                continue;
            };
            match org.mode() {
                ByokMode::Prefer => {
                    planned.push(attempt.clone());
                    credentials.push(Some(own));
                    planned.push(attempt);
                    credentials.push(None);
                }
                ByokMode::Fallback => {
                    planned.push(attempt.clone());
                    credentials.push(None);
                    planned.push(attempt);
                    credentials.push(Some(own));
                }
                ByokMode::Only => {
                    planned.push(attempt);
                    credentials.push(Some(own));
                }
            }
        }
        if planned.is_empty() {
            if let Some(why) = unusable {
                return Err(ApiError::new(
                    502,
                    "byok_key_unusable",
                    format!("No provider can serve this request: {why}."),
                ));
            }
        }
        Ok(Plan {
            rules: Default::default(),
            attempts: planned,
            credentials,
            fee_percent,
        })
    }
}
