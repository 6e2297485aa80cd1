//! What the calling key may do, checked by the host around the stages (a plugin cannot widen
//! it): the key's state (revoked, disabled, expired, a rotated-out secret) before the auth
//! stage; after it, the client API and model its scopes allow, the providers they allow (the
//! routing stage only sees those), and the key's and org's rate limits. The key's spend limit
//! is enforced by the credit reservation (`serve.rs`), atomically with the org's balance.

use std::sync::Arc;

use super::call::Call;
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
    pub(super) fn refuse_stored_key(&self, hash: &str, key: &ApiKey) -> Result<(), ApiError> {
        match key.refusal(hash, crate::store::now_ms()) {
            Some(why) => Err(ApiError::new(401, "invalid_api_key", why)),
            None => Ok(()),
        }
    }

    /// After the auth stage: the records the later checks use.
    pub(super) async fn access(&self, who: &Principal) -> Result<Access, ApiError> {
        let key = self
            .stored_key
            .get()
            .filter(|k| k.id == who.key_id && k.org_id == who.org_id)
            .cloned();
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
