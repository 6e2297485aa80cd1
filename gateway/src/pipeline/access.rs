//! What the calling key may do, checked by the host around the stages (a plugin cannot widen
//! it): the key's state (revoked, disabled, expired, a rotated-out secret) before the auth
//! stage; after it, the client API and model its scopes allow, the providers they allow (the
//! routing stage only sees those), and the key's and org's rate limits. The key's spend limit
//! is enforced by the credit reservation (`serve.rs`), atomically with the org's balance.

use std::sync::Arc;

use pingora_proxy::Session;

use super::call::Call;
use super::client::presented_key;
use super::context::Request;
use crate::api_error::{format_name, ApiError};
use crate::plugins::bindings::Principal;
use crate::store::{ApiKey, Org};

/// The calling key's record (when the auth stage authenticated a stored key) and its org's.
#[derive(Default)]
pub(super) struct Access {
    pub key: Option<Arc<ApiKey>>,
    pub org: Option<Arc<Org>>,
}

impl Request<'_> {
    /// Before the auth stage: a presented key the store refuses (revoked, disabled, expired,
    /// rotated out) is refused here with the reason, whatever the auth plugin would say.
    pub(super) fn refuse_stored_key(&self, session: &Session) -> Result<(), ApiError> {
        let Some(presented) = presented_key(session.req_header()) else {
            return Ok(());
        };
        if let Some((hash, key)) = self.state.services.key_record(presented) {
            if let Some(why) = key.refusal(&hash, crate::store::now_ms()) {
                return Err(ApiError::new(401, "invalid_api_key", why));
            }
        }
        Ok(())
    }

    /// After the auth stage: the records the later checks use.
    pub(super) async fn access(
        &self,
        session: &Session,
        who: &Principal,
    ) -> Result<Access, ApiError> {
        let key = presented_key(session.req_header())
            .and_then(|p| self.state.services.key_record(p))
            .map(|(_, k)| k)
            .filter(|k| k.id == who.key_id && k.org_id == who.org_id);
        let org = self
            .state
            .services
            .org(&who.org_id)
            .await
            .map_err(|e| ApiError::internal(format!("org lookup failed: {e}")))?;
        let access = Access { key, org };
        if let Some(key) = &access.key {
            let api = format_name(self.format);
            if !key.scopes.allows_api(api) {
                return Err(forbidden(format!(
                    "This API key may not use the {api} API (its scopes allow: {}).",
                    key.scopes.apis.join(", ")
                )));
            }
        }
        Ok(access)
    }

    /// The call's model against the key's scopes.
    pub(super) fn check_model_scope(&self, access: &Access, call: &Call) -> Result<(), ApiError> {
        let Some(key) = &access.key else {
            return Ok(());
        };
        let model = &call.summary.model;
        if key.scopes.allows_model(model) {
            return Ok(());
        }
        Err(forbidden(format!("This API key may not use the model '{model}'.")).with_param("model"))
    }
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(403, "permission_denied", message)
}
