//! Plugins built for `tollgate:plugin@0.1.0` (the frozen package in `wit/versions/0.1.0/`):
//! their bindings, their host interface, and the conversions into the latest version's types.
//!
//! 0.2.0 only added to 0.1.0 (the guardrail stage, a candidate's region), so the shared `types`
//! interface maps onto the latest Rust types unchanged (`with`), and only records defined in a
//! stage interface or in `host` are converted here. When a version changes a type, its module
//! converts it; the rest of the gateway never sees an old type.

use super::common::tollgate::plugin::host as latest_host;
use super::{
    ApiKeyInfo, Attempt, AttemptOutcome, Authorization, Candidate, Charge, ClientResponse,
    LogLevel, Price, RequestRecord, RetentionDecision, StreamOutput, TransformCtx, UpstreamRequest,
};
use crate::plugins::state::HostState;

/// The version these bindings speak.
pub const VERSION: &str = "0.1.0";

pub mod common {
    wasmtime::component::bindgen!({
        path: "../wit/versions/0.1.0",
        world: "sdk-common",
        additional_derives: [PartialEq],
        with: {
            "tollgate:plugin/types": crate::plugins::bindings::common::tollgate::plugin::types,
        },
    });
}

macro_rules! stage_world {
    ($module:ident, $world:literal) => {
        pub mod $module {
            wasmtime::component::bindgen!({
                path: "../wit/versions/0.1.0",
                world: $world,
                additional_derives: [PartialEq],
                exports: { default: async },
                with: {
                    "tollgate:plugin/types": crate::plugins::bindings::common::tollgate::plugin::types,
                    "tollgate:plugin/host": super::common::tollgate::plugin::host,
                },
            });
        }
    };
}

stage_world!(auth, "auth-plugin");
stage_world!(routing, "routing-plugin");
stage_world!(transform, "transform-plugin");
stage_world!(billing, "billing-plugin");
stage_world!(logging, "logging-plugin");

use common::tollgate::plugin::host as v1_host;
use logging::exports::tollgate::plugin::logging as v1_logging;
use routing::exports::tollgate::plugin::routing as v1_routing;
use transform::exports::tollgate::plugin::transform as v1_transform;

/// Adds the 0.1.0 host interface (`tollgate:plugin/host@0.1.0`) to the linker; its functions
/// are the latest ones.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    v1_host::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

impl v1_host::Host for HostState {
    fn log(&mut self, level: v1_host::LogLevel, message: String) {
        let level = match level {
            v1_host::LogLevel::Trace => LogLevel::Trace,
            v1_host::LogLevel::Debug => LogLevel::Debug,
            v1_host::LogLevel::Info => LogLevel::Info,
            v1_host::LogLevel::Warn => LogLevel::Warn,
            v1_host::LogLevel::Error => LogLevel::Error,
        };
        latest_host::Host::log(self, level, message)
    }
    fn config(&mut self) -> String {
        latest_host::Host::config(self)
    }
    fn counter_add(&mut self, name: String, delta: i64) {
        latest_host::Host::counter_add(self, name, delta)
    }
    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        latest_host::Host::kv_get(self, key)
    }
    fn kv_set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) {
        latest_host::Host::kv_set(self, key, value, ttl_ms)
    }
    fn now_ms(&mut self) -> u64 {
        latest_host::Host::now_ms(self)
    }
    fn keep_content(&mut self, request_body: Vec<u8>, response_body: Vec<u8>) {
        latest_host::Host::keep_content(self, request_body, response_body)
    }
    fn hash_api_key(&mut self, presented: String) -> String {
        latest_host::Host::hash_api_key(self, presented)
    }
    fn lookup_api_key(&mut self, key_hash: String) -> Option<v1_host::ApiKeyInfo> {
        latest_host::Host::lookup_api_key(self, key_hash).map(|k: ApiKeyInfo| v1_host::ApiKeyInfo {
            key_id: k.key_id,
            org_id: k.org_id,
            prefix: k.prefix,
            revoked: k.revoked,
            expires_at_ms: k.expires_at_ms,
            scopes: k.scopes,
        })
    }
    fn credit_balance(&mut self, org_id: String) -> Option<i64> {
        latest_host::Host::credit_balance(self, org_id)
    }
    fn model_price(&mut self, provider: String, model: String) -> Option<Price> {
        latest_host::Host::model_price(self, provider, model)
    }
}

// ---- latest -> 0.1.0 (arguments) ----

/// 0.1.0 candidates have no region.
pub fn candidate(c: &Candidate) -> v1_routing::Candidate {
    v1_routing::Candidate {
        provider: c.provider.clone(),
        upstream_model: c.upstream_model.clone(),
        price: c.price,
        healthy: c.healthy,
        zero_retention: c.zero_retention,
        latency_ms: c.latency_ms,
    }
}

pub fn transform_ctx(c: &TransformCtx) -> v1_transform::TransformCtx {
    v1_transform::TransformCtx {
        request_id: c.request_id.clone(),
        client_format: c.client_format,
        upstream_model: c.upstream_model.clone(),
        stream: c.stream,
    }
}

pub fn request_record(r: &RequestRecord) -> v1_logging::RequestRecord {
    v1_logging::RequestRecord {
        request_id: r.request_id.clone(),
        org_id: r.org_id.clone(),
        key_id: r.key_id.clone(),
        model: r.model.clone(),
        provider: r.provider.clone(),
        usage: r.usage,
        cost_micros: r.cost_micros,
        latency_ms: r.latency_ms,
        status: r.status,
        attempts: r
            .attempts
            .iter()
            .map(|a: &AttemptOutcome| v1_logging::AttemptOutcome {
                provider: a.provider.clone(),
                upstream_model: a.upstream_model.clone(),
                status: a.status,
                error: a.error.clone(),
                latency_ms: a.latency_ms,
            })
            .collect(),
        client_ip: r.client_ip.clone(),
        stream: r.stream,
        request_body: r.request_body.clone(),
        response_body: r.response_body.clone(),
        timestamp_ms: r.timestamp_ms,
    }
}

// ---- 0.1.0 -> latest (results) ----

impl From<v1_routing::Attempt> for Attempt {
    fn from(a: v1_routing::Attempt) -> Self {
        Attempt {
            provider: a.provider,
            upstream_model: a.upstream_model,
            timeout_ms: a.timeout_ms,
        }
    }
}

impl From<v1_transform::UpstreamRequest> for UpstreamRequest {
    fn from(r: v1_transform::UpstreamRequest) -> Self {
        UpstreamRequest {
            method: r.method,
            path: r.path,
            headers: r.headers,
            body: r.body,
            stream_state: r.stream_state,
        }
    }
}

impl From<v1_transform::ClientResponse> for ClientResponse {
    fn from(r: v1_transform::ClientResponse) -> Self {
        ClientResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
            usage: r.usage,
        }
    }
}

impl From<v1_transform::StreamOutput> for StreamOutput {
    fn from(o: v1_transform::StreamOutput) -> Self {
        StreamOutput {
            events: o.events,
            usage: o.usage,
            state: o.state,
        }
    }
}

impl From<billing::exports::tollgate::plugin::billing::Authorization> for Authorization {
    fn from(a: billing::exports::tollgate::plugin::billing::Authorization) -> Self {
        Authorization {
            hold_micros: a.hold_micros,
        }
    }
}

impl From<billing::exports::tollgate::plugin::billing::Charge> for Charge {
    fn from(c: billing::exports::tollgate::plugin::billing::Charge) -> Self {
        Charge {
            amount_micros: c.amount_micros,
            memo: c.memo,
        }
    }
}

impl From<v1_logging::RetentionDecision> for RetentionDecision {
    fn from(d: v1_logging::RetentionDecision) -> Self {
        RetentionDecision {
            store_event: d.store_event,
            store_client_ip: d.store_client_ip,
            store_content: d.store_content,
            retention_days: d.retention_days,
        }
    }
}

// ---- instances ----

use super::{Principal, Reject, RequestHead, RequestSummary, SseEvent, Usage};
use crate::plugins::Stage;
use wasmtime::component::InstancePre;
use wasmtime::Store;

type Res<T> = wasmtime::Result<Result<T, Reject>>;

/// A 0.1.0 plugin's `InstancePre`, typed by its stage world.
#[derive(Clone)]
pub enum Pre {
    Auth(auth::AuthPluginPre<HostState>),
    Routing(routing::RoutingPluginPre<HostState>),
    Transform(transform::TransformPluginPre<HostState>),
    Billing(billing::BillingPluginPre<HostState>),
    Logging(logging::LoggingPluginPre<HostState>),
}

/// A 0.1.0 plugin instance.
pub enum Instance {
    Auth(auth::AuthPlugin),
    Routing(routing::RoutingPlugin),
    Transform(transform::TransformPlugin),
    Billing(billing::BillingPlugin),
    Logging(logging::LoggingPlugin),
}

impl Pre {
    /// `None` for a stage 0.1.0 did not have.
    pub fn new(stage: Stage, pre: InstancePre<HostState>) -> Option<wasmtime::Result<Pre>> {
        Some(match stage {
            Stage::Auth => auth::AuthPluginPre::new(pre).map(Pre::Auth),
            Stage::Routing => routing::RoutingPluginPre::new(pre).map(Pre::Routing),
            Stage::Transform => transform::TransformPluginPre::new(pre).map(Pre::Transform),
            Stage::Billing => billing::BillingPluginPre::new(pre).map(Pre::Billing),
            Stage::Logging => logging::LoggingPluginPre::new(pre).map(Pre::Logging),
            Stage::Guardrail => return None,
        })
    }

    pub async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::Auth(p) => Instance::Auth(p.instantiate_async(store).await?),
            Pre::Routing(p) => Instance::Routing(p.instantiate_async(store).await?),
            Pre::Transform(p) => Instance::Transform(p.instantiate_async(store).await?),
            Pre::Billing(p) => Instance::Billing(p.instantiate_async(store).await?),
            Pre::Logging(p) => Instance::Logging(p.instantiate_async(store).await?),
        })
    }
}

fn other_stage<T>() -> wasmtime::Result<T> {
    Err(wasmtime::Error::msg(crate::plugins::instance::OTHER_STAGE))
}

impl Instance {
    pub async fn authenticate(
        &self,
        s: &mut Store<HostState>,
        head: &RequestHead,
    ) -> Res<Principal> {
        match self {
            Instance::Auth(p) => p.tollgate_plugin_auth().call_authenticate(s, head).await,
            _ => other_stage(),
        }
    }

    pub async fn route(
        &self,
        s: &mut Store<HostState>,
        who: &Principal,
        summary: &RequestSummary,
        candidates: &[Candidate],
    ) -> Res<Vec<Attempt>> {
        let Instance::Routing(p) = self else {
            return other_stage();
        };
        let old: Vec<_> = candidates.iter().map(candidate).collect();
        let r = p
            .tollgate_plugin_routing()
            .call_route(s, who, summary, &old)
            .await?;
        Ok(r.map(|v| v.into_iter().map(Attempt::from).collect()))
    }

    fn transform(&self) -> wasmtime::Result<&transform::TransformPlugin> {
        match self {
            Instance::Transform(p) => Ok(p),
            _ => other_stage(),
        }
    }

    pub async fn transform_request(
        &self,
        s: &mut Store<HostState>,
        ctx: &TransformCtx,
        body: &[u8],
    ) -> Res<UpstreamRequest> {
        let r = self
            .transform()?
            .tollgate_plugin_transform()
            .call_transform_request(s, &transform_ctx(ctx), body)
            .await?;
        Ok(r.map(Into::into))
    }

    pub async fn transform_response(
        &self,
        s: &mut Store<HostState>,
        ctx: &TransformCtx,
        status: u16,
        body: &[u8],
    ) -> Res<ClientResponse> {
        let r = self
            .transform()?
            .tollgate_plugin_transform()
            .call_transform_response(s, &transform_ctx(ctx), status, body)
            .await?;
        Ok(r.map(Into::into))
    }

    pub async fn transform_event(
        &self,
        s: &mut Store<HostState>,
        ctx: &TransformCtx,
        state: &[u8],
        event: &SseEvent,
    ) -> Res<StreamOutput> {
        let r = self
            .transform()?
            .tollgate_plugin_transform()
            .call_transform_event(s, &transform_ctx(ctx), state, event)
            .await?;
        Ok(r.map(Into::into))
    }

    pub async fn end_of_stream(
        &self,
        s: &mut Store<HostState>,
        ctx: &TransformCtx,
        state: &[u8],
    ) -> Res<StreamOutput> {
        let r = self
            .transform()?
            .tollgate_plugin_transform()
            .call_end_of_stream(s, &transform_ctx(ctx), state)
            .await?;
        Ok(r.map(Into::into))
    }

    pub async fn authorize(
        &self,
        s: &mut Store<HostState>,
        who: &Principal,
        summary: &RequestSummary,
        provider: &str,
        price: Price,
    ) -> Res<Authorization> {
        let Instance::Billing(p) = self else {
            return other_stage();
        };
        let r = p
            .tollgate_plugin_billing()
            .call_authorize(s, who, summary, provider, price)
            .await?;
        Ok(r.map(Into::into))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn settle(
        &self,
        s: &mut Store<HostState>,
        who: &Principal,
        provider: &str,
        price: Price,
        usage: Usage,
        byok: bool,
    ) -> wasmtime::Result<Charge> {
        let Instance::Billing(p) = self else {
            return other_stage();
        };
        let c = p
            .tollgate_plugin_billing()
            .call_settle(s, who, provider, price, usage, byok)
            .await?;
        Ok(c.into())
    }

    pub async fn retain(
        &self,
        s: &mut Store<HostState>,
        record: &RequestRecord,
    ) -> wasmtime::Result<RetentionDecision> {
        let Instance::Logging(p) = self else {
            return other_stage();
        };
        let d = p
            .tollgate_plugin_logging()
            .call_retain(s, &request_record(record))
            .await?;
        Ok(d.into())
    }
}
