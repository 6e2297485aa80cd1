//! The admin listener (loopback by default): `GET /metrics` (Prometheus), `GET /admin/plugins`
//! (loaded versions, hashes, load times, last errors, call counts), `GET /health`. When an
//! admin token is configured, `/admin/*` requires `Authorization: Bearer <token>`.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use super::AppState;

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

#[async_trait]
impl ServeHttp for AdminApp {
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
            p if p.starts_with("/admin/") && !authorized => unauthorized(),
            "/admin/plugins" => {
                let list = self.state.registry.list();
                let body = serde_json::to_vec(&list).unwrap_or_default();
                reply(200, "application/json", body)
            }
            _ => reply(
                404,
                "application/json",
                b"{\"error\":{\"message\":\"not found\",\"type\":\"invalid_request_error\"}}"
                    .to_vec(),
            ),
        }
    }
}

/// Compares without an early exit, so response timing does not reveal how much of a guessed
/// token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
