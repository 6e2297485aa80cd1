//! The admin listener (loopback by default): `GET /metrics` (Prometheus), `GET /admin/plugins`
//! (loaded versions, hashes, load times, last errors, call counts), `GET /health`, and the
//! admin REST API (`/admin/*`, see [`crate::admin`]), whose request body this adapter reads
//! under [`crate::admin::MAX_BODY_BYTES`]. When an admin token is configured, `/metrics` (if
//! so configured) and `/admin/plugins` require `Authorization: Bearer <token>`; the admin API
//! authenticates its callers itself (operator token or member token).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::Response;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_http::ResponseHeader;

use super::AppState;
use crate::admin::auth::constant_time_eq;
use crate::admin::{AdminApi, AdminError, AdminRequest, AdminResponse, MAX_BODY_BYTES};

pub struct AdminApp {
    pub state: Arc<AppState>,
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

fn unauthorized() -> Response<Vec<u8>> {
    reply(
        401,
        "application/json",
        b"{\"error\":{\"message\":\"admin token required\",\"type\":\"authentication_error\"}}"
            .to_vec(),
    )
}

fn from_admin(r: AdminResponse) -> Response<Vec<u8>> {
    let mut builder = Response::builder()
        .status(r.status)
        .header("content-length", r.body.len());
    for (k, v) in &r.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder
        .body(r.body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

/// The admin API's view of a request read by the listener.
fn admin_request(head: &pingora_http::RequestHeader, body: Bytes) -> AdminRequest {
    AdminRequest {
        method: head.method.as_str().to_string(),
        path: head.uri.path().to_string(),
        query: head.uri.query().unwrap_or_default().to_string(),
        headers: head
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body,
    }
}

/// The request body, or None when it is larger than `cap` (the rest is left unread: the
/// answer closes the connection).
async fn read_body(session: &mut ServerSession, cap: usize) -> Result<Option<Bytes>, String> {
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Ok(None);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Some(body.freeze())),
            Err(e) => return Err(e.to_string()),
        }
    }
}

impl AdminApp {
    /// The admin API over this gateway's store. The key secret is the one the gateway hashes
    /// API keys with (`Config::key_secret`, read once: it was created at startup if missing).
    /// BYOK changes drop the org from this gateway's BYOK cache (`AppState::byok`).
    fn api(&self) -> Result<AdminApi, String> {
        static SECRET: OnceLock<Vec<u8>> = OnceLock::new();
        let secret = match SECRET.get() {
            Some(s) => s.clone(),
            None => {
                let s = self.state.config.key_secret().map_err(|e| e.to_string())?;
                SECRET.get_or_init(|| s).clone()
            }
        };
        let config = &self.state.config;
        Ok(
            AdminApi::new(self.state.store.clone(), secret, config.admin_token.clone()).with_byok(
                config.byok.clone(),
                config.providers.keys().cloned().collect(),
                Some(self.state.byok.clone()),
            ),
        )
    }

    async fn admin_api(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = match read_body(session, MAX_BODY_BYTES).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                session.set_keepalive(None);
                let mut r = AdminError::new(
                    413,
                    "invalid_request_error",
                    format!("request body over {MAX_BODY_BYTES} bytes"),
                )
                .to_response();
                r.headers.push(("connection".into(), "close".into()));
                return from_admin(r);
            }
            Err(e) => {
                return from_admin(
                    AdminError::bad_request(format!("reading the request body: {e}")).to_response(),
                )
            }
        };
        let request = admin_request(session.req_header(), body);
        match self.api() {
            Ok(api) => from_admin(api.handle(&request).await),
            Err(e) => {
                tracing::error!(error = %e, "admin API: no key secret");
                from_admin(
                    AdminError::new(500, "server_error", "key secret unavailable").to_response(),
                )
            }
        }
    }
}

#[async_trait]
impl HttpServerApp for AdminApp {
    /// One request (as Pingora's `ServeHttp` adapter would serve it), except that the usage
    /// export is streamed: its body is written a page at a time, never held whole.
    async fn process_new_http(
        self: &Arc<Self>,
        mut http: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match http.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "admin listener: reading a request failed");
                return None;
            }
        }
        http.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        let head = http.req_header();
        let streamed =
            head.method == http::Method::GET && head.uri.path().ends_with("/usage/export");
        if streamed {
            if !self.stream_export(&mut http).await {
                return None; // cut mid-stream: the connection cannot be reused
            }
        } else {
            let (parts, body) = self.response(&mut http).await.into_parts();
            let header: ResponseHeader = parts.into();
            if http.write_response_header(Box::new(header)).await.is_err() {
                return None;
            }
            if !body.is_empty() && http.write_response_body(body.into(), true).await.is_err() {
                return None;
            }
        }
        let settings = HttpPersistentSettings::for_session(&http);
        match http.finish().await {
            Ok(c) => c.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(_) => None,
        }
    }
}

impl AdminApp {
    /// Streams `GET /admin/orgs/{org}/usage/export`: an error (auth, role, query) is answered
    /// whole; the export's chunks are written as each page is read. False when the stream was
    /// cut (the database failed mid-way, or the client left): the body ends incomplete, so the
    /// client sees a failed transfer rather than a short file it could take for complete.
    async fn stream_export(&self, http: &mut ServerSession) -> bool {
        let request = admin_request(http.req_header(), Bytes::new());
        let started = match self.api() {
            Ok(api) => api.export(&request).await.map_err(|e| e.to_response()),
            Err(_) => {
                Err(AdminError::new(500, "server_error", "key secret unavailable").to_response())
            }
        };
        let (mut exporter, format) = match started {
            Ok(s) => s,
            Err(answer) => {
                let (parts, body) = from_admin(answer).into_parts();
                let header: ResponseHeader = parts.into();
                return http.write_response_header(Box::new(header)).await.is_ok()
                    && http.write_response_body(body.into(), true).await.is_ok();
            }
        };
        let Ok(mut header) = ResponseHeader::build(200, Some(3)) else {
            return false;
        };
        let _ = header.insert_header("content-type", format.content_type());
        let _ = header.insert_header("transfer-encoding", "chunked");
        if http.write_response_header(Box::new(header)).await.is_err() {
            return false;
        }
        loop {
            match exporter.next_chunk().await {
                Ok(Some(chunk)) => {
                    if http.write_response_body(chunk.into(), false).await.is_err() {
                        return false;
                    }
                }
                Ok(None) => return http.finish_body().await.is_ok(),
                Err(e) => {
                    tracing::error!(error = %e, rows = exporter.rows, "usage export failed mid-stream");
                    http.set_keepalive(None);
                    return false;
                }
            }
        }
    }

    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let authorized = match &self.state.config.admin_token {
            None => true,
            Some(token) => session
                .req_header()
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes())),
        };
        match path.as_str() {
            "/health" => reply(200, "application/json", b"{\"status\":\"ok\"}".to_vec()),
            "/metrics" if authorized || !self.state.config.metrics_require_token => {
                let counters = self.state.registry.host_context().counters();
                let text = self
                    .state
                    .metrics
                    .render(&counters, self.state.connections.open());
                reply(200, crate::metrics::CONTENT_TYPE, text.into_bytes())
            }
            "/metrics" => unauthorized(),
            "/admin/plugins" if !authorized => unauthorized(),
            "/admin/plugins" => {
                let list = self.state.registry.list();
                let body = serde_json::to_vec(&list).unwrap_or_default();
                reply(200, "application/json", body)
            }
            "/admin/policy" | "/admin/policy/reload" if !authorized => unauthorized(),
            "/admin/policy" => {
                let body = serde_json::to_vec(&self.state.policy.status()).unwrap_or_default();
                reply(200, "application/json", body)
            }
            "/admin/policy/reload" if session.req_header().method == http::Method::POST => {
                // Re-reads the directory now (as SIGHUP does); 422 with the error when the
                // files are invalid (the previous policy keeps serving).
                let policy = self.state.policy.clone();
                let outcome = tokio::task::spawn_blocking(move || policy.reload()).await;
                let status = self.state.policy.status();
                let (code, body) = match outcome {
                    Ok(Ok(changed)) => (
                        200,
                        serde_json::json!({"reloaded": changed, "policy": status}),
                    ),
                    Ok(Err(e)) => (
                        422,
                        serde_json::json!({"error": {"message": e.to_string(),
                        "type": "invalid_request_error", "file": e.file, "line": e.line, "field": e.field},
                        "policy": status}),
                    ),
                    Err(e) => (
                        500,
                        serde_json::json!({"error": {"message": e.to_string(), "type": "server_error"}}),
                    ),
                };
                reply(code, "application/json", body.to_string().into_bytes())
            }
            p if p.starts_with("/admin/") => self.admin_api(session).await,
            _ => reply(
                404,
                "application/json",
                b"{\"error\":{\"message\":\"not found\",\"type\":\"invalid_request_error\"}}"
                    .to_vec(),
            ),
        }
    }
}
