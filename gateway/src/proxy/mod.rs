//! The Pingora adapter: the public API service (routes handed to [`crate::pipeline`]) and the
//! admin service (metrics, plugin status), both behind the front door, sharing one
//! [`AppState`].

mod admin;
pub mod front_door;

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_proxy::{ProxyHttp, Session};

use crate::api_error::{ApiError, ApiFormat};
use crate::catalog;
use crate::pipeline::{AppState, Request};
use front_door::{Connections, FrontDoor};
use tracing::Instrument;

/// The public API, as a Pingora `ProxyHttp` whose `request_filter` answers every request (see
/// `pipeline` for why attempts are driven there).
pub struct Gateway {
    pub state: Arc<AppState>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut Self::CTX) -> Result<bool> {
        let request = Request::new(&self.state, session);
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        // The span is attached to the future (never entered across an await), so every line a
        // request logs carries its own id and no other. It is an error-level span so that it
        // is enabled whatever the log filter lets through: a warning without its request id
        // is no use.
        let span = tracing::error_span!("request", request_id = %request.id, %method, %path);
        self.route(request, session, method, path)
            .instrument(span)
            .await;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        // Never reached: request_filter answers every request.
        Err(Error::explain(
            ErrorType::InternalError,
            "requests are answered in request_filter",
        ))
    }
}

impl Gateway {
    async fn route(
        &self,
        request: Request<'_>,
        session: &mut Session,
        method: http::Method,
        path: String,
    ) {
        let path = path.trim_end_matches('/');
        match (method.as_str(), path) {
            ("POST", "/v1/chat/completions") => request.chat(session).await,
            ("POST", "/v1/messages") => request.messages(session).await,
            ("POST", "/v1/responses") => request.responses(session).await,
            ("POST", "/v1/embeddings") => request.embeddings(session).await,
            ("GET", "/v1/models") => self.models(request, session, None).await,
            ("GET", "/v1/key") => request.key_info(session).await,
            ("GET", "/v1/generation") => request.generation(session).await,
            ("GET", p) if p.starts_with("/v1/models/") => {
                let id = &p["/v1/models/".len()..];
                self.models(request, session, Some(id)).await
            }
            ("GET" | "DELETE", p) if p.starts_with("/v1/responses/") => {
                let id = p["/v1/responses/".len()..].to_string();
                request
                    .with_format(ApiFormat::OpenaiResponses)
                    .stored_response(session, &id, method == http::Method::DELETE)
                    .await
            }
            ("GET", "/health") => {
                request
                    .respond(
                        session,
                        200,
                        "application/json",
                        b"{\"status\":\"ok\"}".to_vec(),
                    )
                    .await;
            }
            (_, "/v1/chat/completions" | "/v1/messages" | "/v1/responses" | "/v1/embeddings") => {
                let format = if path == "/v1/messages" {
                    ApiFormat::AnthropicMessages
                } else {
                    ApiFormat::OpenaiChat
                };
                let err = ApiError::new(
                    405,
                    "method_not_allowed",
                    format!("{method} is not allowed here; use POST."),
                );
                request
                    .with_format(format)
                    .respond_error(session, &err, "")
                    .await
            }
            _ => {
                let err = ApiError::not_found(format!("Unknown endpoint: {method} {path}"));
                request.respond_error(session, &err, "").await
            }
        }
    }

    /// `GET /v1/models` and `GET /v1/models/{id}` (authenticated, as OpenAI's are).
    async fn models(&self, request: Request<'_>, session: &mut Session, id: Option<&str>) {
        if let Err(e) = request.authenticate(session).await {
            return request.respond_error(session, &e, "").await;
        }
        let config = &self.state.config;
        let policy = self.state.policy.current();
        let body = match id {
            None => Some(catalog::models_body(config, &policy)),
            Some(raw) => catalog::percent_decode(raw)
                .and_then(|id| catalog::model(config, &policy, &id))
                .map(|m| m.to_string().into_bytes()),
        };
        match body {
            Some(body) => {
                request
                    .respond(session, 200, "application/json", body)
                    .await;
            }
            None => {
                let err = ApiError::new(
                    404,
                    "model_not_found",
                    format!(
                        "The model '{}' does not exist.",
                        id.and_then(catalog::percent_decode).unwrap_or_default()
                    ),
                )
                .with_param("model");
                request.respond_error(session, &err, "").await
            }
        }
    }
}

/// Builds the Pingora server with the API and admin services. Call `run_forever` on it.
pub fn build_server(state: Arc<AppState>) -> anyhow::Result<Server> {
    let conf = ServerConf {
        threads: state.config.threads,
        grace_period_seconds: Some(state.config.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(Opt::default()), conf);
    server.bootstrap();
    let proxy = pingora_proxy::http_proxy(
        &server.configuration,
        Gateway {
            state: state.clone(),
        },
    );
    let mut api = pingora_core::services::listening::Service::new(
        "tollgate-api".to_string(),
        FrontDoor {
            app: Arc::new(proxy),
            limits: state.config.downstream.clone(),
            connections: state.connections.clone(),
            state: state.clone(),
        },
    );
    api.add_tcp(&state.config.listen);
    // The admin listener gets the same header, body and connection bounds, with a connection
    // table of its own so an API flood cannot lock operators out (nor the reverse).
    let admin_connections = Arc::new(Connections::new(
        state.config.downstream.max_connections,
        state.config.downstream.max_connections_per_ip,
    ));
    let mut admin = pingora_core::services::listening::Service::new(
        "tollgate-admin".to_string(),
        FrontDoor {
            app: Arc::new(admin::AdminApp {
                state: state.clone(),
            }),
            limits: state.config.downstream.clone(),
            connections: admin_connections,
            state: state.clone(),
        },
    );
    admin.add_tcp(&state.config.admin_listen);
    server.add_service(api);
    server.add_service(admin);
    Ok(server)
}
