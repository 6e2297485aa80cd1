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
use crate::config::UnpricedPolicy;
use crate::plugins::bindings::{Attempt, Candidate, Principal, RequestSummary};
use crate::plugins::Stage;
use crate::policy::trace::RouteTrace;
use crate::policy::Rule;
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

/// One candidate before ordering: the catalog route and what strategies rank it by.
struct Entry {
    candidate: Candidate,
    standing: crate::policy::strategy::Standing,
    /// Skipped by health (circuit open, cooling down): offered only when nothing else is.
    unavailable: Option<&'static str>,
}

/// Why the request's own options refuse a route: (kind, detail).
fn refused_by_options(
    o: &crate::policy::options::RouteOptions,
    route: &crate::config::Route,
    provider: &crate::config::Provider,
) -> Option<(&'static str, String)> {
    let name = &route.provider;
    if o.only.as_ref().is_some_and(|only| !only.contains(name)) {
        return Some(("request", "not in provider.only".into()));
    }
    if o.ignore.contains(name) {
        return Some(("request", "in provider.ignore".into()));
    }
    if o.zdr && !provider.zero_retention {
        return Some(("request", "provider.zdr: the provider retains data".into()));
    }
    if o.deny_data_collection && (provider.trains_on_data || !provider.zero_retention) {
        return Some((
            "request",
            "provider.data_collection = \"deny\": the provider may store or train on data".into(),
        ));
    }
    if let Some(max) = &o.max_price {
        let usd = |micros: u64| micros as f64 / 1e6;
        if let Some(p) = max.prompt.filter(|p| usd(route.price.input) > *p) {
            return Some((
                "price",
                format!("input ${} > max_price.prompt ${p}", usd(route.price.input)),
            ));
        }
        if let Some(p) = max.completion.filter(|p| usd(route.price.output) > *p) {
            return Some((
                "price",
                format!(
                    "output ${} > max_price.completion ${p}",
                    usd(route.price.output)
                ),
            ));
        }
    }
    if o.require_parameters {
        if let Some(supported) = &route.supported_parameters {
            let missing: Vec<&str> = o
                .parameters
                .iter()
                .filter(|p| !supported.contains(p))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Some((
                    "parameters",
                    format!("does not support {}", missing.join(", ")),
                ));
            }
        }
    }
    None
}

impl Request<'_> {
    /// When the org's data policy is what left no candidate: the refusal naming the policy and
    /// each provider it refused, with why.
    fn data_policy_refusal(&self, access: &Access, call: &Call) -> Option<ApiError> {
        let state = self.state;
        let refused: Vec<String> = self
            .policy
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

    /// The candidates the routing stage is offered, in the order to try them: the routes of
    /// the call's model (then of its `models` fallbacks) that can serve the call's API, within
    /// the key's scopes, the unpriced-route policy, the org's data policy, the policy route's
    /// providers and the request's options; ordered by the route's strategy (or the request's
    /// sort), with routes whose circuit is open last — or not at all when others remain.
    /// Every route left out is in the trace, with why.
    fn candidates(
        &self,
        access: &Access,
        call: &Call,
        rule: &Rule,
        trace: &mut RouteTrace,
    ) -> Vec<Candidate> {
        let state = self.state;
        let policy = &self.policy;
        let options = call.options.as_ref();
        let mut models = vec![call.summary.model.as_str()];
        if let Some(o) = options {
            models.extend(o.fallback_models.iter().map(String::as_str));
        }
        let mut out = Vec::new();
        let mut rng = rand::thread_rng();
        for (group, model) in models.into_iter().enumerate() {
            let Some(routes) = policy.models.get(model) else {
                trace.skip("", model, "unknown-model", "not in the catalog");
                continue;
            };
            if group > 0 {
                if let Some(key) = &access.key {
                    if !key.scopes.allows_model(model) {
                        trace.skip("", model, "scope", "the key may not use this model");
                        continue;
                    }
                }
                if policy
                    .model_info
                    .get(model)
                    .is_some_and(|i| i.kind != call.wants())
                {
                    trace.skip("", model, "api", "not a model for this API");
                    continue;
                }
            }
            let mut entries: Vec<Entry> = Vec::new();
            for route in routes {
                let skip = |trace: &mut RouteTrace, reason, detail: String| {
                    trace.skip(&route.provider, &route.upstream_model, reason, detail)
                };
                let Some(provider) = state.config.providers.get(&route.provider) else {
                    skip(trace, "unknown-provider", String::new());
                    continue;
                };
                if mode(call, provider).is_none() {
                    skip(trace, "api", "the provider does not serve this API".into());
                    continue;
                }
                if route.unpriced && state.config.unpriced_models == UnpricedPolicy::Refuse {
                    skip(
                        trace,
                        "unpriced",
                        "limits.unpriced_models = \"refuse\"".into(),
                    );
                    continue;
                }
                if let Some(key) = &access.key {
                    if !key.scopes.allows_provider(&route.provider) {
                        skip(trace, "scope", "the key may not use this provider".into());
                        continue;
                    }
                }
                if let Some(why) = refused_by_policy(access, provider) {
                    skip(trace, "data-policy", why);
                    continue;
                }
                if let Some(list) = &rule.providers {
                    if !list.contains(&route.provider) {
                        skip(trace, "route", format!("not in route '{}'", rule.name));
                        continue;
                    }
                }
                if call.pinned.as_ref().is_some_and(|p| p != &route.provider) {
                    skip(
                        trace,
                        "request",
                        "the request named another provider".into(),
                    );
                    continue;
                }
                if let Some(o) = options {
                    if let Some(why) = refused_by_options(o, route, provider) {
                        let reason = match why.0 {
                            "price" => "price",
                            "parameters" => "parameters",
                            _ => "request",
                        };
                        skip(trace, reason, why.1);
                        continue;
                    }
                }
                let mut standing = state
                    .upstreams
                    .health
                    .standing(&route.provider, &route.upstream_model);
                standing.price = route.price.input.saturating_add(route.price.output);
                standing.weight = rule.weights.get(&route.provider).copied().unwrap_or(0);
                let unavailable = state
                    .upstreams
                    .health
                    .unavailable(&route.provider, &route.upstream_model)
                    .map(|u| u.reason());
                entries.push(Entry {
                    candidate: Candidate {
                        provider: route.provider.clone(),
                        upstream_model: route.upstream_model.clone(),
                        price: route.price.into(),
                        healthy: unavailable.is_none(),
                        zero_retention: provider.zero_retention,
                        latency_ms: standing.latency_ms.round() as u32,
                        region: provider.region.clone(),
                    },
                    standing,
                    unavailable,
                });
            }
            // The route's provider list orders first; then the strategy (stable), then the
            // request's `order`.
            if let Some(list) = &rule.providers {
                entries.sort_by_key(|e| list.iter().position(|p| *p == e.candidate.provider));
            }
            let strategy = options.and_then(|o| o.sort).unwrap_or(rule.strategy);
            let standings: Vec<_> = entries.iter().map(|e| e.standing).collect();
            let order = crate::policy::strategy::order(strategy, &standings, &mut rng);
            let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
            let mut entries: Vec<Entry> =
                order.into_iter().filter_map(|i| slots[i].take()).collect();
            if let Some(o) = options.filter(|o| !o.order.is_empty()) {
                entries.sort_by_key(|e| {
                    o.order
                        .iter()
                        .position(|p| *p == e.candidate.provider)
                        .unwrap_or(usize::MAX)
                });
                if !o.allow_fallbacks {
                    entries.retain(|e| {
                        let listed = o.order.contains(&e.candidate.provider);
                        if !listed {
                            trace.skip(
                                &e.candidate.provider,
                                &e.candidate.upstream_model,
                                "request",
                                "provider.allow_fallbacks = false",
                            );
                        }
                        listed
                    });
                }
            } else if options.is_some_and(|o| !o.allow_fallbacks) {
                entries.truncate(1);
            }
            // Open circuits: last, and only when nothing else is left.
            let any_available = entries.iter().any(|e| e.unavailable.is_none()) || !out.is_empty();
            for e in entries {
                match e.unavailable {
                    Some(reason) if any_available => {
                        trace.skip(
                            &e.candidate.provider,
                            &e.candidate.upstream_model,
                            reason,
                            String::new(),
                        );
                    }
                    _ => out.push(e.candidate),
                }
            }
        }
        if let Some(max) = rule.max_attempts {
            for c in out.iter().skip(max) {
                trace.skip(
                    &c.provider,
                    &c.upstream_model,
                    "max-attempts",
                    format!("route '{}' makes at most {max}", rule.name),
                );
            }
            out.truncate(max);
        }
        trace.strategy = call
            .options
            .as_ref()
            .and_then(|o| o.sort)
            .unwrap_or(rule.strategy)
            .as_str();
        out
    }

    /// Routing, then billing.authorize for the first route: the attempts to make.
    pub(super) async fn route_and_authorize(
        &self,
        who: &Principal,
        access: &Access,
        call: &Call,
    ) -> Result<Plan, ApiError> {
        let summary = &call.summary;
        let key_id = access
            .key
            .as_ref()
            .map_or(who.key_id.as_str(), |k| k.id.as_str());
        // Borrowed from the request's own policy version: no copy per request.
        let rule = self.policy.rule_for(&summary.model, &who.org_id, key_id);
        let mut trace = RouteTrace {
            route: rule.name.clone(),
            source: rule.source.clone(),
            ..RouteTrace::default()
        };
        if let Some(max) = rule.max_output_tokens {
            if summary.max_tokens.is_some_and(|n| u64::from(n) > max) {
                return Err(ApiError::bad_request(format!(
                    "max_tokens: at most {max} output tokens may be asked for on this route ('{}').",
                    rule.name
                ))
                .with_param("max_tokens"));
            }
        }
        if rule.trace || self.policy.traced(&who.org_id, key_id) {
            self.trace_header
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let _ = self.billing.set(rule.billing.clone());
        let candidates = self.candidates(access, call, rule, &mut trace);
        trace.offered = candidates.iter().map(|c| c.provider.clone()).collect();
        let result = self
            .route_with(who, access, call, rule, candidates, &mut trace)
            .await;
        *self.trace.lock() = Some(trace);
        result
    }

    async fn route_with(
        &self,
        who: &Principal,
        access: &Access,
        call: &Call,
        rule: &Rule,
        candidates: Vec<Candidate>,
        trace: &mut RouteTrace,
    ) -> Result<Plan, ApiError> {
        let state = self.state;
        let summary = &call.summary;
        let routes = self.policy.models.get(&summary.model);
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
            // Routes exist but the route, the request's options or health left none: say which
            // and why, rather than "no such model".
            if routes.is_some_and(|r| !r.is_empty()) && !trace.skipped.is_empty() {
                let why: Vec<String> = trace
                    .skipped
                    .iter()
                    .map(|s| match s.detail.is_empty() {
                        true => format!("{} ({})", s.provider, s.reason),
                        false => format!("{} ({}: {})", s.provider, s.reason, s.detail),
                    })
                    .collect();
                return Err(ApiError::new(
                    404,
                    "no_provider_available",
                    format!(
                        "No provider of '{}' is available for this request: {}.",
                        summary.model,
                        why.join("; ")
                    ),
                ));
            }
        }
        let (plugin, config) = match &rule.routing {
            Some(choice) => (choice.plugin.as_str(), Some(&choice.config)),
            None => (state.config.routing_plugin.as_str(), None),
        };
        let routing = self.plugin(plugin, Stage::Routing)?;
        let mut attempts = self.stage_result(
            self.timed(
                Stage::Routing,
                routing.route_with(&self.id, config, who, summary, &candidates),
            )
            .await,
        )?;
        // A routing plugin chooses among what it was offered: a provider outside the key's
        // scopes or the org's data policy is never attempted, whatever the plugin returns.
        attempts.retain(|a| {
            let offered = candidates
                .iter()
                .any(|c| c.provider == a.provider && c.upstream_model == a.upstream_model);
            if !offered {
                tracing::warn!(provider = %a.provider, request = %self.id,
                    "the routing stage chose a provider it was not offered; skipped");
            }
            offered
        });
        for c in &candidates {
            if !attempts
                .iter()
                .any(|a| a.provider == c.provider && a.upstream_model == c.upstream_model)
            {
                trace.skip(
                    &c.provider,
                    &c.upstream_model,
                    "router",
                    format!("not chosen by {plugin}"),
                );
            }
        }
        if rule.timeout_ms > 0 {
            for a in attempts.iter_mut().filter(|a| a.timeout_ms == 0) {
                a.timeout_ms = rule.timeout_ms;
            }
        }
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
        let mut plan = self.byok_plan(who, attempts).await?;
        plan.rules = super::attempts::LoopRules {
            fallback: rule.fallback,
            retry_after_max: rule.retry_after_max,
        };
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
        let (billing_name, billing_config) = self.billing_plugin();
        let billing = self.plugin(billing_name, Stage::Billing)?;
        let price = self
            .policy
            .route_price(&summary.model, &first.provider, &first.upstream_model);
        let authorization = self.stage_result(
            self.timed(
                Stage::Billing,
                billing.authorize(
                    &self.id,
                    billing_config,
                    who,
                    summary,
                    &first.provider,
                    price,
                ),
            )
            .await,
        )?;
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
        self.policy
            .find_route(&summary.model, &attempt.provider, &attempt.upstream_model)
            .is_some_and(|r| r.unpriced)
    }
}
