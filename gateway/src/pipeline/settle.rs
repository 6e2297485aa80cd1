//! Settlement and logging, after the answer: `billing.settle` decides the charge, the logging
//! stage decides what may be kept, and the usage writer stores the record (batched, off the
//! request path). Every authenticated request ends here exactly once.

use super::context::Request;
use super::outcome::{usage_tokens, AttemptRecord, Outcome, NO_USAGE};
use crate::plugins::bindings::{
    AttemptOutcome, Charge, Price, Principal, RequestRecord, RequestSummary, Usage,
};
use crate::plugins::Stage;
use crate::retention;
use crate::store::{now_ms, ChargeEntry, UsageEvent};

impl Request<'_> {
    /// Settles an answered request: the charge, the metrics, the usage record.
    pub(super) async fn settle_and_log(
        &self,
        who: &Principal,
        summary: &RequestSummary,
        outcome: Outcome,
        records: Vec<AttemptRecord>,
    ) {
        let state = self.state;
        let charge = if outcome.charge && usage_tokens(&outcome.usage) > 0 {
            match outcome.charged.clone() {
                Some(c) => Some(c),
                None => {
                    self.decide_charge(
                        who,
                        &outcome.provider,
                        outcome.price,
                        outcome.usage,
                        outcome.byok,
                    )
                    .await
                }
            }
        } else {
            None
        };
        let cost = charge.as_ref().map_or(0, |c| c.amount_micros);
        if cost > 0 {
            state
                .services
                .debit(&who.org_id, i64::try_from(cost).unwrap_or(i64::MAX));
        }
        let label = self.model_label(&summary.model);
        let u = &outcome.usage;
        for (kind, n) in [
            ("input", u.input),
            ("output", u.output),
            ("cache_read", u.cache_read),
            ("cache_write", u.cache_write),
        ] {
            if n > 0 {
                state.metrics.tokens(label, kind, n);
            }
        }
        state.metrics.cost(label, cost);
        state.metrics.request(outcome.status, label);
        state.metrics.request_duration(self.started.elapsed());
        self.log(
            who,
            summary,
            outcome.status,
            &outcome.provider,
            outcome.usage,
            cost,
            records,
            charge,
            outcome.estimated,
        )
        .await;
    }

    /// What `usage` costs: `billing.settle` prices it; a request served with the org's own
    /// provider key (BYOK) is charged `[byok] fee_percent` of that price (0 by default).
    pub(super) async fn decide_charge(
        &self,
        who: &Principal,
        provider: &str,
        price: Price,
        usage: Usage,
        byok: bool,
    ) -> Option<Charge> {
        let (name, config) = self.billing_plugin();
        let billing = self.plugin(name, Stage::Billing).ok()?;
        let settled = self
            .timed(
                Stage::Billing,
                billing.settle(&self.id, config, who, provider, price, usage, false),
            )
            .await;
        let charge = match settled {
            Ok(c) => c,
            Err(e) => {
                self.plugin_failed(&e);
                return None;
            }
        };
        if !byok {
            return Some(charge);
        }
        let fee = self.state.config.byok.fee_percent;
        let amount =
            crate::byok::fee_micros(i64::try_from(charge.amount_micros).unwrap_or(i64::MAX), fee);
        Some(Charge {
            amount_micros: amount as u64,
            memo: format!("byok fee {fee}% {provider}"),
        })
    }

    /// Records a request that got no answer from a provider (refused, or every attempt failed):
    /// no tokens, no charge.
    pub(super) async fn record_failure(
        &self,
        who: &Principal,
        summary: &RequestSummary,
        status: u16,
        records: Vec<AttemptRecord>,
    ) {
        let provider = records
            .last()
            .map(|r| r.provider.clone())
            .unwrap_or_default();
        self.state.metrics.request_duration(self.started.elapsed());
        self.log(
            who, summary, status, &provider, NO_USAGE, 0, records, None, false,
        )
        .await;
    }

    /// The route trace as stored with the usage record: without the attempts (the `attempts`
    /// column has them), and None when it would say nothing the attempts do not — the default
    /// route offered one candidate and skipped none (measured: storing that for every request
    /// cost ~8 % of throughput at c64 on SQLite).
    fn stored_trace(&self) -> Option<String> {
        let trace = self.trace.lock();
        let t = trace.as_ref()?;
        let trivial = t.route == "default" && t.skipped.is_empty() && t.offered.len() <= 1;
        (!trivial).then(|| t.to_json())
    }

    /// The route trace with every attempt (None: the request was refused before routing).
    pub(super) fn finished_trace(
        &self,
        attempts: &[AttemptOutcome],
    ) -> Option<crate::policy::trace::RouteTrace> {
        let mut trace = self.trace.lock().clone()?;
        trace.attempts = attempts
            .iter()
            .map(|a| crate::policy::trace::Tried {
                provider: a.provider.clone(),
                model: a.upstream_model.clone(),
                status: a.status,
                error: (!a.error.is_empty()).then(|| a.error.clone()),
                latency_ms: u64::from(a.latency_ms),
            })
            .collect();
        Some(trace)
    }

    /// The logging stage, then the usage record.
    #[allow(clippy::too_many_arguments)]
    async fn log(
        &self,
        who: &Principal,
        summary: &RequestSummary,
        status: u16,
        provider: &str,
        usage: Usage,
        cost: u64,
        records: Vec<AttemptRecord>,
        charge: Option<Charge>,
        estimated: bool,
    ) {
        let state = self.state;
        // The rate limiter's token windows get what was really used; concurrency is freed.
        self.settle_rate(usage.input + usage.output);
        let latency_ms = self.started.elapsed().as_millis() as u32;
        let created_at = now_ms();
        let attempt_records: Vec<AttemptOutcome> =
            records.iter().map(AttemptOutcome::from).collect();
        let record = RequestRecord {
            request_id: self.id.clone(),
            org_id: who.org_id.clone(),
            key_id: who.key_id.clone(),
            model: summary.model.clone(),
            provider: provider.to_string(),
            usage,
            cost_micros: cost,
            latency_ms,
            status,
            attempts: attempt_records.clone(),
            client_ip: self.client_ip.clone(),
            stream: summary.stream,
            request_body: None,
            response_body: None,
            timestamp_ms: created_at as u64,
        };
        let kept = self.logging_stage(who, record).await;
        let decision = kept.decision;
        let expires_at =
            retention::expires_at(created_at, kept.policy.days, decision.retention_days);
        // A charge is always recorded: billing records are not optional (under `zero` without
        // its usage row).
        if !decision.store_event && charge.as_ref().is_none_or(|c| c.amount_micros == 0) {
            // Nothing recorded, so the usage writer will not release the hold: do it here.
            if self.held.load(std::sync::atomic::Ordering::Acquire) {
                if let Err(e) = state.store.release_hold(&self.id).await {
                    tracing::error!(error = %e, "releasing a credit hold failed (the sweep will)");
                }
            }
            return;
        }
        let attempts = serde_json::Value::Array(
            attempt_records
                .iter()
                .map(|a| {
                    serde_json::json!({"provider": a.provider, "model": a.upstream_model,
                    "status": a.status, "error": a.error, "latency_ms": a.latency_ms})
                })
                .collect(),
        );
        let event = UsageEvent {
            request_id: self.id.clone(),
            org_id: who.org_id.clone(),
            key_id: who.key_id.clone(),
            model: summary.model.clone(),
            provider: provider.to_string(),
            input_tokens: usage.input as i64,
            output_tokens: usage.output as i64,
            cache_read_tokens: usage.cache_read as i64,
            cache_write_tokens: usage.cache_write as i64,
            reasoning_tokens: usage.reasoning as i64,
            cost_micros: cost as i64,
            latency_ms: i64::from(latency_ms),
            status: i64::from(status),
            stream: summary.stream,
            attempts: attempts.to_string(),
            route: self.stored_trace(),
            client_ip: (decision.store_client_ip && !self.client_ip.is_empty())
                .then(|| self.client_ip.clone()),
            created_at,
            format: crate::api_error::format_name(summary.format).to_string(),
            estimated,
            expires_at: Some(expires_at),
            ip_expires_at: decision
                .store_client_ip
                .then(|| retention::ip_expires_at(created_at, kept.policy.ip_days, expires_at)),
            stored: decision.store_event,
            content: kept.content,
        };
        let charge = charge.filter(|c| c.amount_micros > 0).map(|c| ChargeEntry {
            org_id: who.org_id.clone(),
            key_id: who.key_id.clone(),
            request_id: self.id.clone(),
            amount_micros: c.amount_micros as i64,
            memo: c.memo,
        });
        state.usage.record(event, charge).await;
    }
}
