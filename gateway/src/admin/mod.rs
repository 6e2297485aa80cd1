//! The admin REST API, free of Pingora: [`AdminApi::handle`] takes an [`AdminRequest`] and
//! returns an [`AdminResponse`]; `proxy/admin.rs` adapts it to the admin listener, and the CLI
//! calls [`AdminApi::call`] in-process (as the `cli` actor) so both go through the same
//! validation, role checks and audit entries.
//!
//! Routes are listed once in [`ROUTES`]; `openapi.json` documents each (a test checks).
//! Responses are JSON; errors are `{"error":{"message","type"}}` (see [`AdminError`]).

mod alerts;
mod audit;
pub mod auth;
mod byok;
mod credits;
mod export;
mod keys;
mod members;
pub mod openapi;
mod orgs;
mod policy;

use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::store::{Store, StoreError};
pub use auth::{Action, Caller};
pub use byok::ByokSetup;

/// Request bodies larger than this are refused with 413 (the admin API takes small JSON).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// One admin API request, as the listener read it.
#[derive(Debug, Clone, Default)]
pub struct AdminRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl AdminRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl AdminResponse {
    pub fn json(status: u16, value: &Value) -> AdminResponse {
        AdminResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }
}

/// An error answer: HTTP status, `type` and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct AdminError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

impl AdminError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> AdminError {
        AdminError {
            status,
            kind,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> AdminError {
        AdminError::new(400, "invalid_request_error", message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> AdminError {
        AdminError::new(401, "authentication_error", message)
    }
    pub fn not_found(what: impl std::fmt::Display) -> AdminError {
        AdminError::new(404, "not_found_error", format!("{what} not found"))
    }
    pub fn conflict(message: impl Into<String>) -> AdminError {
        AdminError::new(409, "conflict_error", message)
    }

    pub fn to_response(&self) -> AdminResponse {
        AdminResponse::json(
            self.status,
            &json!({"error": {"message": self.message, "type": self.kind}}),
        )
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> AdminError {
        match e {
            StoreError::NotFound(what) => AdminError::not_found(what),
            // A uniqueness rule (a member name taken in the org): the caller can fix it.
            StoreError::Db {
                source: sqlx::Error::Database(ref d),
                ..
            } if d.is_unique_violation() => AdminError::conflict("that name is already taken"),
            other => {
                tracing::error!(error = %other, "admin API store error");
                AdminError::new(500, "server_error", "internal error; see the gateway log")
            }
        }
    }
}

pub type AdminResult<T> = std::result::Result<T, AdminError>;

/// What a handler answers: a status and a JSON body.
pub struct Reply(pub u16, pub Value);

/// Which handler a route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    OpenApi,
    Me,
    OrgsList,
    OrgsCreate,
    OrgGet,
    OrgPatch,
    OrgRetention,
    OrgDataPolicy,
    OrgDelete,
    MembersList,
    MembersAdd,
    MemberPatch,
    MemberRemove,
    MemberToken,
    KeysList,
    KeysCreate,
    KeyGet,
    KeyPatch,
    KeyRevoke,
    KeyDisable,
    KeyEnable,
    KeyRotate,
    CreditsBalance,
    CreditsGrant,
    Usage,
    UsageExport,
    Audit,
    AlertsGet,
    AlertsPut,
    ByokGet,
    ByokMode,
    ByokKeyPut,
    ByokKeyDelete,
}

/// Every route: method, path pattern (`{name}` matches one segment), handler.
pub const ROUTES: &[(&str, &str, Handler)] = &[
    ("GET", "/admin/openapi.json", Handler::OpenApi),
    ("GET", "/admin/me", Handler::Me),
    ("GET", "/admin/orgs", Handler::OrgsList),
    ("POST", "/admin/orgs", Handler::OrgsCreate),
    ("GET", "/admin/orgs/{org}", Handler::OrgGet),
    ("PATCH", "/admin/orgs/{org}", Handler::OrgPatch),
    ("DELETE", "/admin/orgs/{org}", Handler::OrgDelete),
    (
        "PATCH",
        "/admin/orgs/{org}/retention",
        Handler::OrgRetention,
    ),
    (
        "PATCH",
        "/admin/orgs/{org}/data-policy",
        Handler::OrgDataPolicy,
    ),
    ("GET", "/admin/orgs/{org}/members", Handler::MembersList),
    ("POST", "/admin/orgs/{org}/members", Handler::MembersAdd),
    (
        "PATCH",
        "/admin/orgs/{org}/members/{member}",
        Handler::MemberPatch,
    ),
    (
        "DELETE",
        "/admin/orgs/{org}/members/{member}",
        Handler::MemberRemove,
    ),
    (
        "POST",
        "/admin/orgs/{org}/members/{member}/token",
        Handler::MemberToken,
    ),
    ("GET", "/admin/orgs/{org}/keys", Handler::KeysList),
    ("POST", "/admin/orgs/{org}/keys", Handler::KeysCreate),
    ("GET", "/admin/orgs/{org}/keys/{key}", Handler::KeyGet),
    ("PATCH", "/admin/orgs/{org}/keys/{key}", Handler::KeyPatch),
    (
        "POST",
        "/admin/orgs/{org}/keys/{key}/revoke",
        Handler::KeyRevoke,
    ),
    (
        "POST",
        "/admin/orgs/{org}/keys/{key}/disable",
        Handler::KeyDisable,
    ),
    (
        "POST",
        "/admin/orgs/{org}/keys/{key}/enable",
        Handler::KeyEnable,
    ),
    (
        "POST",
        "/admin/orgs/{org}/keys/{key}/rotate",
        Handler::KeyRotate,
    ),
    ("GET", "/admin/orgs/{org}/credits", Handler::CreditsBalance),
    ("POST", "/admin/orgs/{org}/credits", Handler::CreditsGrant),
    ("GET", "/admin/orgs/{org}/usage", Handler::Usage),
    (
        "GET",
        "/admin/orgs/{org}/usage/export",
        Handler::UsageExport,
    ),
    ("GET", "/admin/orgs/{org}/audit", Handler::Audit),
    ("GET", "/admin/orgs/{org}/alerts", Handler::AlertsGet),
    ("PUT", "/admin/orgs/{org}/alerts", Handler::AlertsPut),
    ("GET", "/admin/orgs/{org}/byok", Handler::ByokGet),
    ("PUT", "/admin/orgs/{org}/byok", Handler::ByokMode),
    (
        "PUT",
        "/admin/orgs/{org}/byok/{provider}",
        Handler::ByokKeyPut,
    ),
    (
        "DELETE",
        "/admin/orgs/{org}/byok/{provider}",
        Handler::ByokKeyDelete,
    ),
];

/// Path parameters of a matched route, in order (`org`, then `member`, `key` or `provider`).
pub type Params = Vec<String>;

/// The route for `method` and `path`: Ok(handler, params); Err(405) when the path exists
/// with other methods, Err(404) when it does not.
pub fn route(method: &str, path: &str) -> AdminResult<(Handler, Params)> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut path_known = false;
    for (m, pattern, handler) in ROUTES {
        let parts: Vec<&str> = pattern.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut params = Vec::new();
        let matched = parts.iter().zip(&segments).all(|(p, s)| {
            if p.starts_with('{') {
                params.push(s.to_string());
                !s.is_empty()
            } else {
                p == s
            }
        });
        if !matched {
            continue;
        }
        if *m == method {
            return Ok((*handler, params));
        }
        path_known = true;
    }
    if path_known {
        Err(AdminError::new(
            405,
            "invalid_request_error",
            format!("method {method} not allowed on {path}"),
        ))
    } else {
        Err(AdminError::not_found(format!("route {path}")))
    }
}

/// Parses a JSON body into `T` (an empty body reads as `{}`), naming unknown or bad fields.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> AdminResult<T> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| AdminError::bad_request(format!("invalid body: {e}")))
}

/// A query parameter as a number (None when absent).
pub fn query_int(query: &str, name: &str) -> AdminResult<Option<i64>> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return v.parse().map(Some).map_err(|_| {
                AdminError::bad_request(format!("query parameter '{name}' must be an integer"))
            });
        }
    }
    Ok(None)
}

/// The admin API over a store. `admin_token`: the operator's token (None: operator calls are
/// open, as the listener is loopback-only by default). BYOK writes need [`AdminApi::with_byok`].
#[derive(Clone)]
pub struct AdminApi {
    pub store: Store,
    secret: Vec<u8>,
    admin_token: Option<String>,
    byok: ByokSetup,
}

impl AdminApi {
    pub fn new(store: Store, secret: Vec<u8>, admin_token: Option<String>) -> AdminApi {
        AdminApi {
            store,
            secret,
            admin_token,
            byok: ByokSetup::default(),
        }
    }

    /// What the BYOK routes need: the config's `[byok]` settings (where the master key is
    /// loaded from), the configured provider names, and this process's BYOK cache if it has one
    /// (the gateway's; dropped for an org after each change). Without it, storing a provider key
    /// answers 503.
    pub fn with_byok(
        mut self,
        settings: crate::config::ByokSettings,
        providers: Vec<String>,
        cache: Option<Arc<crate::byok::ByokKeys>>,
    ) -> AdminApi {
        self.byok = ByokSetup {
            settings: Some(settings),
            providers,
            cache,
        };
        self
    }

    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Answers one HTTP request: routes, authenticates, checks the role, runs the handler.
    pub async fn handle(&self, req: &AdminRequest) -> AdminResponse {
        match self.handle_inner(req).await {
            Ok(Reply(status, body)) => AdminResponse::json(status, &body),
            Err(e) => e.to_response(),
        }
    }

    async fn handle_inner(&self, req: &AdminRequest) -> AdminResult<Reply> {
        if req.body.len() > MAX_BODY_BYTES {
            return Err(AdminError::new(
                413,
                "invalid_request_error",
                format!("request body over {MAX_BODY_BYTES} bytes"),
            ));
        }
        let (handler, params) = route(&req.method, &req.path)?;
        // The API's own description is public: it says what exists, never what is stored.
        if handler == Handler::OpenApi {
            return Ok(Reply(200, openapi::document().clone()));
        }
        let caller = auth::authenticate(self, req.header("authorization")).await?;
        self.dispatch(&caller, handler, &params, &req.query, &req.body)
            .await
    }

    /// Runs `method path` as `caller` (the CLI's way in, with [`Caller::Cli`]); `body` is JSON
    /// (`null`: none).
    pub async fn call(
        &self,
        caller: &Caller,
        method: &str,
        path: &str,
        query: &str,
        body: &Value,
    ) -> AdminResult<Value> {
        let (handler, params) = route(method, path)?;
        // No body (`null`) reads as an empty one, as over HTTP.
        let bytes = match body {
            Value::Null => Vec::new(),
            other => serde_json::to_vec(other).unwrap_or_default(),
        };
        self.dispatch(caller, handler, &params, query, &bytes)
            .await
            .map(|Reply(_, v)| v)
    }

    async fn dispatch(
        &self,
        caller: &Caller,
        handler: Handler,
        params: &[String],
        query: &str,
        body: &[u8],
    ) -> AdminResult<Reply> {
        let p = |i: usize| params.get(i).map(String::as_str).unwrap_or_default();
        match handler {
            Handler::OpenApi => Ok(Reply(200, openapi::document().clone())),
            Handler::Me => Ok(Reply(200, auth::describe(caller))),
            Handler::OrgsList => orgs::list(self, caller).await,
            Handler::OrgsCreate => orgs::create(self, caller, body).await,
            Handler::OrgGet => orgs::get(self, caller, p(0)).await,
            Handler::OrgPatch => orgs::patch(self, caller, p(0), body).await,
            Handler::OrgRetention => policy::retention(self, caller, p(0), body).await,
            Handler::OrgDataPolicy => policy::data_policy(self, caller, p(0), body).await,
            Handler::OrgDelete => policy::delete(self, caller, p(0)).await,
            Handler::MembersList => members::list(self, caller, p(0)).await,
            Handler::MembersAdd => members::add(self, caller, p(0), body).await,
            Handler::MemberPatch => members::patch(self, caller, p(0), p(1), body).await,
            Handler::MemberRemove => members::remove(self, caller, p(0), p(1)).await,
            Handler::MemberToken => members::token(self, caller, p(0), p(1)).await,
            Handler::KeysList => keys::list(self, caller, p(0)).await,
            Handler::KeysCreate => keys::create(self, caller, p(0), body).await,
            Handler::KeyGet => keys::get(self, caller, p(0), p(1)).await,
            Handler::KeyPatch => keys::patch(self, caller, p(0), p(1), body).await,
            Handler::KeyRevoke => keys::revoke(self, caller, p(0), p(1), body).await,
            Handler::KeyDisable => keys::disable(self, caller, p(0), p(1), true, body).await,
            Handler::KeyEnable => keys::disable(self, caller, p(0), p(1), false, body).await,
            Handler::KeyRotate => keys::rotate(self, caller, p(0), p(1), body).await,
            Handler::CreditsBalance => credits::balance(self, caller, p(0)).await,
            Handler::CreditsGrant => credits::grant(self, caller, p(0), body).await,
            Handler::Usage => credits::usage(self, caller, p(0), query).await,
            Handler::UsageExport => {
                // An export is a stream, which only the admin listener serves (the CLI has
                // `tollgate usage export`).
                auth::org_for(self, caller, p(0), Action::UsageRead).await?;
                Err(AdminError::bad_request(
                    "the export is streamed by the admin listener (GET over HTTP) or written by                      `tollgate usage export`",
                ))
            }
            Handler::Audit => audit::list(self, caller, p(0), query).await,
            Handler::AlertsGet => alerts::get(self, caller, p(0)).await,
            Handler::AlertsPut => alerts::put(self, caller, p(0), body).await,
            Handler::ByokGet => byok::get(self, caller, p(0)).await,
            Handler::ByokMode => byok::set_mode(self, caller, p(0), body).await,
            Handler::ByokKeyPut => byok::put_key(self, caller, p(0), p(1), body).await,
            Handler::ByokKeyDelete => byok::delete_key(self, caller, p(0), p(1)).await,
        }
    }
}

#[cfg(test)]
mod tests;
