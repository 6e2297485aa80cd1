//! The request context: one [`Request`] per client request, carrying its id, start time,
//! client format and address, with the helpers every stage call goes through (plugin lookup,
//! timing into the metrics, a refusal or plugin failure turned into the client's error).

use std::sync::Arc;
use std::time::Instant;

use pingora_proxy::Session;

use super::client::presented_key;
use super::AppState;
use crate::api_error::{ApiError, ApiFormat};
use crate::plugins::bindings::{Principal, Reject, RequestHead};
use crate::plugins::{LoadedPlugin, PluginError, Stage};
use crate::store::new_id;

pub struct Request<'a> {
    pub(super) state: &'a AppState,
    pub id: String,
    pub(super) started: Instant,
    /// The client's API format: errors and answers are given in it.
    pub(super) format: ApiFormat,
    pub(super) client_ip: String,
    /// Credits are held for this request (released when its usage is recorded).
    pub(super) held: std::sync::atomic::AtomicBool,
    /// The stored record of the presented API key, when there is one (set by `authenticate`).
    pub(super) stored_key: std::sync::OnceLock<std::sync::Arc<crate::store::ApiKey>>,
    /// Headers every answer carries (`x-ratelimit-*`, `retry-after`).
    pub(super) extra_headers: parking_lot::Mutex<Vec<(&'static str, String)>>,
    /// The rate limiter's admission: held (concurrency) until the request ends.
    pub(super) admitted: parking_lot::Mutex<Option<crate::ratelimit::Admitted>>,
    /// The retention policy the request runs under (set once the org and key are known).
    pub(super) retention: std::sync::OnceLock<crate::retention::Policy>,
    /// Request and response content, captured only when the mode lets the logging stage see it.
    pub(super) capture: parking_lot::Mutex<Option<crate::retention::capture::Capture>>,
    /// The policy this request runs under (one version for its whole life).
    pub(super) policy: Arc<crate::policy::Policy>,
    /// The route trace (set by routing; attempts added as they happen).
    pub(super) trace: parking_lot::Mutex<Option<crate::policy::trace::RouteTrace>>,
    /// The billing plugin (and config) of the request's policy route, set by routing.
    pub(super) billing: std::sync::OnceLock<Option<crate::policy::PluginChoice>>,
    /// Whether the trace goes back in `x-tollgate-route`.
    pub(super) trace_header: std::sync::atomic::AtomicBool,
    /// The guardrails that check the answer (set by the prompt check; none: nothing to do).
    pub(super) output_guards: std::sync::OnceLock<Vec<Arc<LoadedPlugin>>>,
}

impl<'a> Request<'a> {
    pub fn new(state: &'a AppState, session: &Session) -> Self {
        Request {
            state,
            id: format!("req_{}", &new_id("x")[2..]),
            started: Instant::now(),
            format: ApiFormat::OpenaiChat,
            client_ip: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip().to_string())
                .unwrap_or_default(),
            held: std::sync::atomic::AtomicBool::new(false),
            stored_key: Default::default(),
            extra_headers: Default::default(),
            admitted: Default::default(),
            retention: Default::default(),
            capture: Default::default(),
            policy: state.policy.current(),
            trace: Default::default(),
            trace_header: Default::default(),
            billing: Default::default(),
            output_guards: Default::default(),
        }
    }

    /// The same request, answering in `format` (set by the route before anything is answered).
    pub fn with_format(mut self, format: ApiFormat) -> Self {
        self.format = format;
        self
    }

    /// The billing plugin for this request (its policy route's, else `[stages] billing`) and
    /// the config it sees (None: its own).
    pub(super) fn billing_plugin(&self) -> (&str, Option<&Arc<str>>) {
        match self.billing.get().and_then(Option::as_ref) {
            Some(choice) => (choice.plugin.as_str(), Some(&choice.config)),
            None => (self.state.config.billing_plugin.as_str(), None),
        }
    }

    pub(super) fn plugin(&self, name: &str, stage: Stage) -> Result<Arc<LoadedPlugin>, ApiError> {
        self.state
            .registry
            .get_stage(name, stage)
            .map_err(|e| self.plugin_failed(&e))
    }

    /// The model as a metrics label: a catalog name, or `other`.
    pub(super) fn model_label<'m>(&self, model: &'m str) -> &'m str {
        if self.policy.models.contains_key(model) {
            model
        } else {
            crate::metrics::OTHER
        }
    }

    /// Counts and logs a plugin failure; the error the client gets for it.
    pub(super) fn plugin_failed(&self, e: &PluginError) -> ApiError {
        self.state.metrics.plugin_failure(&e.plugin, e.class());
        tracing::error!(error = %e, "plugin failure");
        ApiError::new(
            500,
            "plugin_error",
            format!("Request failed in the gateway: {e}"),
        )
    }

    /// A stage call's outcome as the client will see it: a refusal keeps its status, a plugin
    /// failure is a 500 naming the plugin.
    pub(super) fn stage_result<T>(
        &self,
        r: Result<Result<T, Reject>, PluginError>,
    ) -> Result<T, ApiError> {
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(reject)) => Err(ApiError::from(&reject)),
            Err(e) => Err(self.plugin_failed(&e)),
        }
    }

    /// Runs a stage call, timing it into the stage metrics.
    pub(super) async fn timed<T>(
        &self,
        stage: Stage,
        call: impl std::future::Future<Output = T>,
    ) -> T {
        let t = Instant::now();
        let out = call.await;
        self.state.metrics.stage(stage.as_str(), t.elapsed());
        out
    }

    /// The auth stage (prefetching the key record it will look up).
    pub async fn authenticate(&self, session: &Session) -> Result<Principal, ApiError> {
        let req = session.req_header();
        if let Some(key) = presented_key(req) {
            let (hash, stored) = self
                .state
                .services
                .prefetch_key(key)
                .await
                .map_err(|e| ApiError::internal(format!("key lookup failed: {e}")))?;
            if let Some(stored) = stored {
                self.refuse_stored_key(&hash, &stored)?;
                let _ = self.stored_key.set(stored);
            }
        }
        let head = RequestHead {
            id: self.id.clone(),
            method: req.method.as_str().to_string(),
            path: req.uri.path().to_string(),
            headers: req
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect(),
            client_ip: self.client_ip.clone(),
        };
        let auth = self.plugin(&self.state.config.auth_plugin, Stage::Auth)?;
        self.stage_result(
            self.timed(Stage::Auth, auth.authenticate(&self.id, &head))
                .await,
        )
    }
}
