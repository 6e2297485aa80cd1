//! Responses API conversation state: the gateway keeps each stored response (the `Response`
//! object and the conversation as canonical messages) for `responses_ttl_seconds`, so a later
//! call can continue it with `previous_response_id`, and serves `GET`/`DELETE
//! /v1/responses/{id}` — for the owning org only. Expired state is deleted by the store's
//! purge task; a read past expiry finds nothing even before the purge ran.

use pingora_proxy::Session;
use serde_json::Value;
use tollgate_formats::responses::{Finished, ResponseMeta};

use super::call::Call;
use super::context::Request;
use crate::api_error::ApiError;
use crate::plugins::bindings::Principal;
use crate::store::{new_id, now_ms, ResponseState};

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "not_found",
        format!("No response with id '{id}' found (it may have expired or been deleted)."),
    )
}

impl Request<'_> {
    /// The id and time of a new response.
    pub(super) fn response_meta(&self) -> ResponseMeta {
        ResponseMeta {
            id: format!("resp_{}", &new_id("x")[2..]),
            created_at: u64::try_from(now_ms() / 1000).unwrap_or(0),
            model: String::new(),
        }
    }

    /// The conversation before this turn: the stored messages of `previous_response_id`.
    pub(super) async fn history(
        &self,
        call: &Call,
        who: &Principal,
    ) -> Result<Vec<Value>, ApiError> {
        let Some(previous) = call
            .responses
            .as_ref()
            .and_then(|r| r.request.previous_response_id.as_deref())
        else {
            return Ok(Vec::new());
        };
        let missing = || {
            ApiError::bad_request(format!(
                "Previous response with id '{previous}' not found (responses are kept for {} s, \
                 and only when stored).",
                self.state.config.responses_ttl.as_secs()
            ))
            .with_param("previous_response_id")
        };
        let state = self
            .state
            .store
            .get_response_state(previous, &who.org_id, now_ms())
            .await
            .map_err(|e| ApiError::internal(format!("reading conversation state: {e}")))?
            .ok_or_else(missing)?;
        let messages = self
            .state
            .state_key
            .open(&state.org_id, &state.id, &state.messages)
            .unwrap_or_default();
        match serde_json::from_str::<Value>(&messages) {
            Ok(Value::Array(messages)) => Ok(messages),
            _ => Err(ApiError::internal(
                "stored conversation state is unreadable",
            )),
        }
    }

    /// Stores an answered response when the client asked for it and state is kept at all.
    /// Called before the answer's last byte is sent, so a client that has the answer can read
    /// and continue it at once.
    pub(super) async fn keep_response(&self, who: &Principal, call: &Call, finished: &Finished) {
        let ttl = self.state.config.responses_ttl;
        let Some(r) = call.responses.as_ref() else {
            return;
        };
        if !r.request.store || ttl.is_zero() {
            return;
        }
        let messages: Vec<&Value> = r
            .history
            .iter()
            .chain(&r.turn_messages)
            .chain(&finished.output_messages)
            .collect();
        let now = now_ms();
        let key = &self.state.state_key;
        let state = ResponseState {
            id: r.meta.id.clone(),
            org_id: who.org_id.clone(),
            key_id: who.key_id.clone(),
            // Sealed at rest (retention/state_seal.rs): a copy of the database holds no
            // conversation text.
            response: key.seal(
                &who.org_id,
                &r.meta.id,
                &String::from_utf8_lossy(&finished.body),
            ),
            messages: key.seal(
                &who.org_id,
                &r.meta.id,
                &serde_json::to_string(&messages).unwrap_or_else(|_| "[]".into()),
            ),
            created_at: now,
            expires_at: now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
        };
        if let Err(e) = self.state.store.put_response_state(&state).await {
            tracing::error!(error = %e, "could not store the response's conversation state");
        }
    }

    /// `GET /v1/responses/{id}` and `DELETE /v1/responses/{id}`.
    pub async fn stored_response(&self, session: &mut Session, id: &str, delete: bool) {
        let who = match self.authenticate(session).await {
            Ok(w) => w,
            Err(e) => return self.respond_error(session, &e, "").await,
        };
        let store = &self.state.store;
        let answer = if delete {
            match store.delete_response_state(id, &who.org_id).await {
                Ok(true) => Ok(
                    serde_json::json!({"id": id, "object": "response", "deleted": true})
                        .to_string()
                        .into_bytes(),
                ),
                Ok(false) => Err(not_found(id)),
                Err(e) => Err(ApiError::internal(format!(
                    "deleting conversation state: {e}"
                ))),
            }
        } else {
            match store.get_response_state(id, &who.org_id, now_ms()).await {
                Ok(Some(s)) => match self.state.state_key.open(&s.org_id, &s.id, &s.response) {
                    Some(text) => Ok(text.into_bytes()),
                    None => Err(ApiError::internal(
                        "stored conversation state does not open",
                    )),
                },
                Ok(None) => Err(not_found(id)),
                Err(e) => Err(ApiError::internal(format!(
                    "reading conversation state: {e}"
                ))),
            }
        };
        match answer {
            Ok(body) => {
                self.state.metrics.request(200, crate::metrics::OTHER);
                self.respond(session, 200, "application/json", body).await;
            }
            Err(e) => self.respond_error(session, &e, "").await,
        }
    }
}
