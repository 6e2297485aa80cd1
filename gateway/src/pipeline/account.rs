//! What a key can ask about itself: `GET /v1/key` (its limits, what it spent, what is left; the
//! shape of OpenRouter's `/api/v1/key`, amounts in USD) and `GET /v1/generation?id=` (one of
//! its org's requests: tokens, cost, provider, latency, as OpenRouter's `/api/v1/generation`).

use pingora_proxy::Session;
use serde_json::{json, Value};

use super::context::Request;
use crate::api_error::ApiError;
use crate::store::{now_ms, SpendPeriod};

fn usd(micros: i64) -> f64 {
    micros as f64 / 1e6
}

impl Request<'_> {
    /// `GET /v1/key`.
    pub async fn key_info(self, session: &mut Session) {
        let who = match self.authenticate(session).await {
            Ok(w) => w,
            Err(e) => return self.respond_error(session, &e, "").await,
        };
        match self.key_body(&who.key_id).await {
            Ok(body) => {
                self.respond(
                    session,
                    200,
                    "application/json",
                    body.to_string().into_bytes(),
                )
                .await;
            }
            Err(e) => self.respond_error(session, &e, "").await,
        }
    }

    async fn key_body(&self, key_id: &str) -> Result<Value, ApiError> {
        let key = self
            .stored_key
            .get()
            .filter(|k| k.id == key_id)
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found("This caller was not authenticated with a stored API key.")
            })?;
        let store = &self.state.store;
        let now = now_ms();
        let failed =
            |e: crate::store::StoreError| ApiError::internal(format!("reading spend: {e}"));
        let spent = |period| store.key_spent(&key.id, period, now);
        let usage = spent(SpendPeriod::Total).await.map_err(failed)?;
        let daily = spent(SpendPeriod::Daily).await.map_err(failed)?;
        let weekly = spent(SpendPeriod::Weekly).await.map_err(failed)?;
        let monthly = spent(SpendPeriod::Monthly).await.map_err(failed)?;
        let in_period = match key.spend_period {
            SpendPeriod::Total => usage,
            SpendPeriod::Daily => daily,
            SpendPeriod::Weekly => weekly,
            SpendPeriod::Monthly => monthly,
        };
        let limited = key.spend_limit_micros > 0;
        let balance = store
            .balance(&key.org_id)
            .await
            .map_err(|e| ApiError::internal(format!("reading the balance: {e}")))?;
        Ok(json!({
            "data": {
                "id": key.id,
                "label": key.name,
                "prefix": key.prefix,
                "usage": usd(usage),
                "usage_daily": usd(daily),
                "usage_weekly": usd(weekly),
                "usage_monthly": usd(monthly),
                "limit": limited.then(|| usd(key.spend_limit_micros)),
                "limit_remaining": limited.then(|| usd((key.spend_limit_micros - in_period).max(0))),
                "limit_reset": (limited && key.spend_period != SpendPeriod::Total)
                    .then(|| key.spend_period.as_str()),
                "limit_resets_at_ms": if limited { key.spend_period.end(now) } else { None },
                "expires_at_ms": (key.expires_at > 0).then_some(key.expires_at),
                "scopes": key.scopes,
                "rate_limit": {
                    "requests_per_minute": (key.rpm_limit > 0).then_some(key.rpm_limit),
                    "tokens_per_minute": (key.tpm_limit > 0).then_some(key.tpm_limit),
                    "concurrent_requests": (key.concurrency_limit > 0).then_some(key.concurrency_limit),
                },
                "org_balance": balance.map(usd),
                "is_free_tier": false,
            }
        }))
    }

    /// `GET /v1/generation?id=req_...`: one request of the caller's org.
    pub async fn generation(self, session: &mut Session) {
        let who = match self.authenticate(session).await {
            Ok(w) => w,
            Err(e) => return self.respond_error(session, &e, "").await,
        };
        let id = session
            .req_header()
            .uri
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("id="))
            .and_then(crate::catalog::percent_decode)
            .filter(|id| !id.is_empty());
        let Some(id) = id else {
            let err = ApiError::bad_request("Missing query parameter 'id'.").with_param("id");
            return self.respond_error(session, &err, "").await;
        };
        let event = match self.state.store.usage_event(&id).await {
            Ok(e) => e.filter(|e| e.org_id == who.org_id),
            Err(e) => {
                let err = ApiError::internal(format!("reading the usage record: {e}"));
                return self.respond_error(session, &err, "").await;
            }
        };
        let Some(e) = event else {
            let err = ApiError::not_found(format!(
                "No generation with id '{id}' (records are written within {} ms of the answer).",
                self.state.config.usage_flush.as_millis()
            ));
            return self.respond_error(session, &err, "").await;
        };
        let attempts: Value = serde_json::from_str(&e.attempts).unwrap_or(Value::Null);
        let body = json!({
            "data": {
                "id": e.request_id,
                "model": e.model,
                "provider_name": e.provider,
                "api": e.format,
                "created_at_ms": e.created_at,
                "streamed": e.stream,
                "status": e.status,
                "latency": e.latency_ms,
                "total_cost": usd(e.cost_micros),
                "tokens_prompt": e.input_tokens,
                "tokens_completion": e.output_tokens,
                "native_tokens_prompt": e.input_tokens,
                "native_tokens_completion": e.output_tokens,
                "native_tokens_reasoning": e.reasoning_tokens,
                "native_tokens_cached": e.cache_read_tokens,
                "native_tokens_cache_write": e.cache_write_tokens,
                "tokens_estimated": e.estimated,
                "api_key_id": e.key_id,
                "attempts": attempts,
            }
        });
        self.respond(
            session,
            200,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await;
    }
}
