//! Routing and authorization, between parsing and the attempts: the candidates the routing
//! stage sees (the call's API, the key's provider scopes, the unpriced-route policy, the org's
//! data policy), routing (which may only choose among the candidates offered),
//! the BYOK plan, `billing.authorize`, and the reservation of the worst-case cost against the
//! org's balance and the key's spend limit.

use std::time::Instant;

use super::access::Access;
use super::adapt::mode;
use super::byok::Plan;
use super::call::Call;
use super::context::Request;
use crate::api_error::ApiError;
use crate::catalog;
use crate::config::UnpricedPolicy;
use crate::plugins::bindings::{Attempt, Candidate, Principal, RequestSummary};
use crate::plugins::Stage;
use crate::store::{KeyLimit, Reservation, SpendPeriod};

/// Why the org's data policy refuses `provider` (None: allowed, or no policy).
fn refused_by_policy(access: &Access, provider: &crate::config::Provider) -> Option<String> {
    let policy = &access.org.as_ref()?.data_policy;
    if policy.is_open() {
        return None;
    }
    policy.refuses(
        provider.zero_retention,
        provider.trains_on_data,
        &provider.region,
    )
}

impl Request<'_> {
    /// When the org's data policy is what left no candidate: the refusal naming the policy and
    /// each provider it refused, with why.
    fn data_policy_refusal(&self, access: &Access, call: &Call) -> Option<ApiError> {
        let state = self.state;
        let refused: Vec<String> = state
            .config
            .models
            .get(&call.summary.model)?
            .iter()
            .filter_map(|route| {
                let provider = state.config.providers.get(&route.provider)?;
                mode(call, provider)?;
                let why = refused_by_policy(access, provider)?;
                Some(format!("{} ({why})", route.provider))
            })
            .collect();
        if refused.is_empty() {
            return None;
        }
        self.state.metrics.data_policy_refused();
        Some(ApiError::new(
            403,
            "data_policy",
            format!(
                "No provider serving '{}' satisfies this organization's data policy: {}.",
                call.summary.model,
                refused.join("; ")
            ),
        ))
    }

    /// The routes the catalog offers for the call's model, as the routing stage sees them
    /// (only providers that can serve the call's API).
    pub(super) fn candidates(&self, access: &Access, call: &Call) -> Vec<Candidate> {
        let state = self.state;
        state
            .config
            .models
            .get(&call.summary.model)
            .into_iter()
            .flatten()
            .filter_map(|route| {
                let provider = state.config.providers.get(&route.provider)?;
                mode(call, provider)?;
                if route.unpriced && state.config.unpriced_models == UnpricedPolicy::Refuse {
                    return None;
                }
                if let Some(key) = &access.key {
                    if !key.scopes.allows_provider(&route.provider) {
                        return None;
                    }
                }
                if refused_by_policy(access, provider).is_some() {
                    return None;
                }
                Some(Candidate {
                    provider: route.provider.clone(),
                    upstream_model: route.upstream_model.clone(),
                    price: route.price.into(),
                    healthy: state.upstreams.health.healthy(&route.provider),
                    zero_retention: provider.zero_retention,
                    latency_ms: state.upstreams.health.latency_ms(&route.provider),
                })
            })
            .collect()
    }

    /// Routing, then billing.authorize for the first route: the attempts to make.
    pub(super) async fn route_and_authorize(
        &self,
        who: &Principal,
        access: &Access,
        call: &Call,
    ) -> Result<Plan, ApiError> {
        let state = self.state;
        let summary = &call.summary;
        let candidates = self.candidates(access, call);
        let routes = state.config.models.get(&summary.model);
        if candidates.is_empty()
            && state.config.unpriced_models == UnpricedPolicy::Refuse
            && routes.is_some_and(|r| !r.is_empty() && r.iter().all(|r| r.unpriced))
        {
            return Err(ApiError::new(
                403,
                "model_unpriced",
                format!(
                    "The model '{}' has no price configured, and this gateway refuses unpriced \
                     models (limits.unpriced_models = \"refuse\"; mark a free route `free = true`).",
                    summary.model
                ),
            ));
        }
        if candidates.is_empty() && routes.is_some() {
            if let Some(key) = access
                .key
                .as_ref()
                .filter(|k| !k.scopes.providers.is_empty())
            {
                return Err(ApiError::new(
                    403,
                    "permission_denied",
                    format!(
                        "This API key may not use any provider serving '{}' (its scopes allow: {}).",
                        summary.model,
                        key.scopes.providers.join(", ")
                    ),
                ));
            }
        }
        if candidates.is_empty() {
            if let Some(e) = self.data_policy_refusal(access, call) {
                return Err(e);
            }
        }
        let routing = self.plugin(&state.config.routing_plugin, Stage::Routing)?;
        let mut attempts = self.stage_result(self.timed(Stage::Routing, || {
            routing.route(&self.id, who, summary, &candidates)
        }))?;
        // A routing plugin chooses among what it was offered: a provider outside the key's
        // scopes or the org's data policy is never attempted, whatever the plugin returns.
        attempts.retain(|a| {
            let offered = candidates.iter().any(|c| c.provider == a.provider);
            if !offered {
                tracing::warn!(provider = %a.provider, request = %self.id,
                    "the routing stage chose a provider it was not offered; skipped");
            }
            offered
        });
        if attempts.is_empty() {
            return Err(ApiError::new(
                404,
                "model_not_found",
                format!(
                    "The model '{}' does not exist or you do not have access to it.",
                    summary.model
                ),
            ));
        }
        let plan = self.byok_plan(who, attempts).await?;
        let Some(first) = plan.attempts.first() else {
            return Err(ApiError::new(
                404,
                "model_not_found",
                format!(
                    "The model '{}' does not exist or you do not have access to it.",
                    summary.model
                ),
            ));
        };
        // Served only with the org's own keys and no fee: nothing can be charged, so billing
        // has nothing to authorize (a BYOK org needs no credits).
        if plan.all_byok() && plan.fee_percent() <= 0.0 {
            return Ok(plan);
        }
        state
            .services
            .prefetch_balance(&who.org_id)
            .await
            .map_err(|e| ApiError::internal(format!("balance lookup failed: {e}")))?;
        let billing = self.plugin(&state.config.billing_plugin, Stage::Billing)?;
        let price = catalog::route_price(
            &state.config,
            &summary.model,
            &first.provider,
            &first.upstream_model,
        );
        let authorization = self.stage_result(self.timed(Stage::Billing, || {
            billing.authorize(&self.id, who, summary, &first.provider, price)
        }))?;
        // Served only with the org's own keys: only the BYOK fee can be charged.
        let hold = if plan.all_byok() {
            plan.fee_share(authorization.hold_micros)
        } else {
            authorization.hold_micros
        };
        self.reserve(who, access, hold).await?;
        Ok(plan)
    }

    /// Holds the request's worst-case cost against the org's balance and the key's spend limit,
    /// atomically in the database (402 when it does not fit).
    async fn reserve(
        &self,
        who: &Principal,
        access: &Access,
        hold_micros: u64,
    ) -> Result<(), ApiError> {
        if !self.state.config.reserve_credits || hold_micros == 0 {
            return Ok(());
        }
        let amount = i64::try_from(hold_micros).unwrap_or(i64::MAX);
        let key_limit = access
            .key
            .as_ref()
            .filter(|k| k.spend_limit_micros > 0)
            .map(|k| KeyLimit {
                key_id: k.id.clone(),
                limit_micros: k.spend_limit_micros,
                period: k.spend_period,
            });
        let now = crate::store::now_ms();
        let t = Instant::now();
        let reserved = self
            .state
            .store
            .reserve_for(&who.org_id, key_limit.as_ref(), &self.id, amount, now)
            .await;
        self.state.metrics.stage("reserve", t.elapsed());
        match reserved.map_err(|e| ApiError::internal(format!("reserving credits failed: {e}")))? {
            Reservation::Held => {
                self.held.store(true, std::sync::atomic::Ordering::Release);
                Ok(())
            }
            Reservation::Insufficient { available_micros } => Err(ApiError::new(
                402,
                "insufficient_credits",
                format!(
                    "Insufficient credits: this request may cost up to ${:.6} and ${:.6} is \
                     available (after requests in flight). Add credits or lower max_tokens.",
                    amount as f64 / 1e6,
                    available_micros as f64 / 1e6
                ),
            )),
            Reservation::KeyLimit { remaining_micros } => {
                let period = key_limit.as_ref().map_or(SpendPeriod::Total, |k| k.period);
                let resets = match period.end(now) {
                    Some(end) => format!(" It resets in {} s.", (end - now + 999) / 1000),
                    None => String::new(),
                };
                Err(ApiError::new(
                    402,
                    "key_limit_exceeded",
                    format!(
                        "This API key's {} spend limit is reached: this request may cost up to \
                         ${:.6} and ${:.6} of the limit is left.{resets}",
                        period.as_str(),
                        amount as f64 / 1e6,
                        remaining_micros as f64 / 1e6
                    ),
                ))
            }
        }
    }

    /// Whether `attempt` went through a route with no price (only possible under `alert`).
    pub(super) fn unpriced_route(&self, summary: &RequestSummary, attempt: &Attempt) -> bool {
        self.state
            .config
            .models
            .get(&summary.model)
            .into_iter()
            .flatten()
            .any(|r| {
                r.unpriced
                    && r.provider == attempt.provider
                    && r.upstream_model == attempt.upstream_model
            })
    }
}
