//! One loaded plugin version: its compiled component, its `InstancePre`, its pool of warm
//! instances, and typed calls for its stage.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crossbeam_queue::ArrayQueue;
use wasmtime::Store;

use super::bindings::*;
use super::engine::PluginEngine;
use super::error::{PluginError, PluginErrorKind};
use super::settings::{InstanceMode, PluginSettings};
use super::state::{HostContext, HostState};
use super::Stage;

/// The `InstancePre` of a plugin, typed by its stage world.
pub(crate) enum StagePre {
    Auth(AuthPluginPre<HostState>),
    Routing(RoutingPluginPre<HostState>),
    Transform(TransformPluginPre<HostState>),
    Billing(BillingPluginPre<HostState>),
    Logging(LoggingPluginPre<HostState>),
}

enum StageInstance {
    Auth(AuthPlugin),
    Routing(RoutingPlugin),
    Transform(TransformPlugin),
    Billing(BillingPlugin),
    Logging(LoggingPlugin),
}

struct Warm {
    store: Store<HostState>,
    instance: StageInstance,
    calls: u64,
}

/// Identity of a loaded plugin version.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginVersion {
    pub name: String,
    pub stage: Stage,
    /// The WIT package version the plugin was built against, e.g. `0.1.0`.
    pub wit_version: String,
    /// SHA-256 of the `.wasm` file.
    pub sha256: String,
    pub file: PathBuf,
    pub size_bytes: u64,
    #[serde(with = "crate::util::unix_ms")]
    pub loaded_at: SystemTime,
    /// Milliseconds spent compiling (or loading from the artifact cache) and checking.
    pub load_ms: f64,
    /// Whether the compiled code came from the on-disk artifact cache (no Cranelift run).
    pub from_cache: bool,
}

/// Call statistics of a plugin version.
#[derive(Debug, Default)]
pub struct PluginStats {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub instantiations: AtomicU64,
}

/// A plugin version ready to be called.
pub struct LoadedPlugin {
    pub version: PluginVersion,
    pub stats: PluginStats,
    name: Arc<str>,
    pre: StagePre,
    engine: Arc<PluginEngine>,
    settings: PluginSettings,
    shared: Arc<HostContext>,
    pool: ArrayQueue<Warm>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("version", &self.version)
            .field("idle_instances", &self.pool.len())
            .finish_non_exhaustive()
    }
}

/// Byte payloads a stage result carries, checked against `max_output_bytes`.
trait OutputSize {
    fn output_bytes(&self) -> u64;
}

impl<T: OutputSize> OutputSize for Result<T, Reject> {
    fn output_bytes(&self) -> u64 {
        match self {
            Ok(v) => v.output_bytes(),
            Err(r) => (r.message.len() + r.code.len()) as u64,
        }
    }
}
impl OutputSize for Principal {
    fn output_bytes(&self) -> u64 {
        let attrs: usize = self.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
        (self.org_id.len() + self.key_id.len() + attrs) as u64
    }
}
impl OutputSize for Vec<Attempt> {
    fn output_bytes(&self) -> u64 {
        self.iter()
            .map(|a| (a.provider.len() + a.upstream_model.len()) as u64)
            .sum()
    }
}
fn headers_bytes(headers: &[(String, String)]) -> u64 {
    headers
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum()
}
impl OutputSize for UpstreamRequest {
    fn output_bytes(&self) -> u64 {
        (self.body.len() + self.path.len()) as u64 + headers_bytes(&self.headers)
    }
}
impl OutputSize for ClientResponse {
    fn output_bytes(&self) -> u64 {
        self.body.len() as u64 + headers_bytes(&self.headers)
    }
}
impl OutputSize for StreamOutput {
    fn output_bytes(&self) -> u64 {
        let events: usize = self
            .events
            .iter()
            .map(|e| e.data.len() + e.event.as_ref().map_or(0, String::len))
            .sum();
        (events + self.state.len()) as u64
    }
}
impl OutputSize for Authorization {
    fn output_bytes(&self) -> u64 {
        0
    }
}
impl OutputSize for Charge {
    fn output_bytes(&self) -> u64 {
        self.memo.len() as u64
    }
}
/// A logging plugin's answer: the decision, and the content it chose to store instead of the
/// record's (`keep-content`).
#[derive(Debug, Clone, PartialEq)]
pub struct Retained {
    pub decision: RetentionDecision,
    pub kept_content: Option<(Vec<u8>, Vec<u8>)>,
}

impl OutputSize for Retained {
    fn output_bytes(&self) -> u64 {
        self.kept_content
            .as_ref()
            .map_or(0, |(a, b)| (a.len() + b.len()) as u64)
    }
}

impl OutputSize for RetentionDecision {
    fn output_bytes(&self) -> u64 {
        0
    }
}

impl LoadedPlugin {
    pub(crate) fn new(
        version: PluginVersion,
        pre: StagePre,
        engine: Arc<PluginEngine>,
        settings: PluginSettings,
        shared: Arc<HostContext>,
    ) -> Self {
        let pool = ArrayQueue::new(settings.pool_size.max(1));
        LoadedPlugin {
            name: Arc::from(version.name.as_str()),
            version,
            stats: PluginStats::default(),
            pre,
            engine,
            settings,
            shared,
            pool,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stage(&self) -> Stage {
        self.version.stage
    }

    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    fn err(&self, kind: PluginErrorKind) -> PluginError {
        PluginError::new(&self.name, Some(self.version.stage), kind)
    }

    fn instantiate(&self) -> Result<Warm, PluginError> {
        let state = HostState::new(
            self.name.clone(),
            self.settings.config_json.clone(),
            self.settings.memory_limit_bytes,
            self.shared.clone(),
        );
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Instantiation runs guest start code: bound it like a call.
        store.set_epoch_deadline(self.engine.deadline_ticks(self.settings.deadline));
        let instance = match &self.pre {
            StagePre::Auth(p) => p.instantiate(&mut store).map(StageInstance::Auth),
            StagePre::Routing(p) => p.instantiate(&mut store).map(StageInstance::Routing),
            StagePre::Transform(p) => p.instantiate(&mut store).map(StageInstance::Transform),
            StagePre::Billing(p) => p.instantiate(&mut store).map(StageInstance::Billing),
            StagePre::Logging(p) => p.instantiate(&mut store).map(StageInstance::Logging),
        }
        .map_err(|e| self.err(PluginErrorKind::Instantiate(format!("{e:#}"))))?;
        self.stats.instantiations.fetch_add(1, Ordering::Relaxed);
        Ok(Warm {
            store,
            instance,
            calls: 0,
        })
    }

    /// Instantiates once and keeps the instance warm: the load-time self-test.
    pub(crate) fn self_test(&self) -> Result<(), PluginError> {
        let warm = self.instantiate()?;
        if self.settings.instance_mode == InstanceMode::Pooled {
            let _ = self.pool.push(warm);
        }
        Ok(())
    }

    /// Number of idle warm instances (for the admin view and tests).
    pub fn idle_instances(&self) -> usize {
        self.pool.len()
    }

    /// Runs `call` on a warm (or fresh) instance, with the deadline and memory cap applied, and
    /// turns every failure into a [`PluginError`] naming this plugin.
    fn with_instance<R: OutputSize>(
        &self,
        request_id: &str,
        config: Option<&Arc<str>>,
        call: impl FnOnce(&StageInstance, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.call_inner(request_id, config, call);
        if result.is_err() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn call_inner<R: OutputSize>(
        &self,
        request_id: &str,
        config: Option<&Arc<str>>,
        call: impl FnOnce(&StageInstance, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let pooled = self.settings.instance_mode == InstanceMode::Pooled;
        let mut warm = match pooled.then(|| self.pool.pop()).flatten() {
            Some(w) => w,
            None => self.instantiate()?,
        };
        {
            let data = warm.store.data_mut();
            data.request_id.clear();
            data.request_id.push_str(request_id);
            data.limiter.refused = false;
            // The config this call sees: the caller's (a policy route's), else the policy's for
            // this plugin, else the config file's. Set per call, so a reload needs no new
            // instances.
            let config = match config {
                Some(c) => c.clone(),
                None => self
                    .shared
                    .config_override(&self.name)
                    .unwrap_or_else(|| self.settings.config_json.clone()),
            };
            if !Arc::ptr_eq(&data.config, &config) {
                data.config = config;
            }
        }
        warm.store
            .set_epoch_deadline(self.engine.deadline_ticks(self.settings.deadline));
        let outcome = call(&warm.instance, &mut warm.store);
        warm.calls += 1;
        match outcome {
            Ok(value) => {
                let bytes = value.output_bytes();
                let keep = pooled
                    && warm.calls < self.settings.max_calls_per_instance
                    && warm.store.data().limiter.peak_bytes <= self.settings.recycle_memory_bytes;
                if keep {
                    warm.store.data_mut().request_id.clear();
                    // A full pool drops the instance: fine, it is recreated on demand.
                    let _ = self.pool.push(warm);
                }
                if bytes > self.settings.max_output_bytes {
                    return Err(self.err(PluginErrorKind::OutputTooLarge {
                        bytes,
                        limit_bytes: self.settings.max_output_bytes,
                    }));
                }
                Ok(value)
            }
            // The instance is dropped: after a trap its state cannot be trusted.
            Err(err) => Err(self.classify(err, warm.store.data())),
        }
    }

    fn classify(&self, err: wasmtime::Error, state: &HostState) -> PluginError {
        if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
            if *trap == wasmtime::Trap::Interrupt {
                return self.err(PluginErrorKind::Timeout {
                    deadline_ms: self.settings.deadline.as_millis() as u64,
                });
            }
        }
        if state.limiter.refused {
            return self.err(PluginErrorKind::MemoryExceeded {
                limit_bytes: state.limiter.limit_bytes,
            });
        }
        let detail = match err.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{err:#}"),
        };
        self.err(PluginErrorKind::Trap(detail))
    }

    fn wrong_stage(&self) -> wasmtime::Error {
        wasmtime::Error::msg(format!(
            "plugin implements the {} stage",
            self.version.stage
        ))
    }

    fn checked<R: OutputSize>(
        &self,
        expected: Stage,
        request_id: &str,
        call: impl FnOnce(&StageInstance, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.checked_with(expected, request_id, None, call)
    }

    /// [`Self::checked`], the call seeing `config` instead of the plugin's own when given.
    fn checked_with<R: OutputSize>(
        &self,
        expected: Stage,
        request_id: &str,
        config: Option<&Arc<str>>,
        call: impl FnOnce(&StageInstance, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        if self.version.stage != expected {
            return Err(PluginError::new(
                &self.name,
                Some(expected),
                PluginErrorKind::WrongStage {
                    actual: self.version.stage,
                },
            ));
        }
        self.with_instance(request_id, config, call)
    }

    /// Auth stage.
    pub fn authenticate(
        &self,
        request_id: &str,
        head: &RequestHead,
    ) -> Result<Result<Principal, Reject>, PluginError> {
        self.checked(Stage::Auth, request_id, |inst, store| match inst {
            StageInstance::Auth(p) => p.tollgate_plugin_auth().call_authenticate(store, head),
            _ => Err(self.wrong_stage()),
        })
    }

    /// Routing stage.
    pub fn route(
        &self,
        request_id: &str,
        who: &Principal,
        summary: &RequestSummary,
        candidates: &[Candidate],
    ) -> Result<Result<Vec<Attempt>, Reject>, PluginError> {
        self.route_with(request_id, None, who, summary, candidates)
    }

    /// Routing stage, the plugin seeing `config` (a policy route's) instead of its own.
    pub fn route_with(
        &self,
        request_id: &str,
        config: Option<&Arc<str>>,
        who: &Principal,
        summary: &RequestSummary,
        candidates: &[Candidate],
    ) -> Result<Result<Vec<Attempt>, Reject>, PluginError> {
        self.checked_with(
            Stage::Routing,
            request_id,
            config,
            |inst, store| match inst {
                StageInstance::Routing(p) => p
                    .tollgate_plugin_routing()
                    .call_route(store, who, summary, candidates),
                _ => Err(self.wrong_stage()),
            },
        )
    }

    /// Transform stage: client request -> upstream request.
    pub fn transform_request(
        &self,
        request_id: &str,
        ctx: &TransformCtx,
        body: &[u8],
    ) -> Result<Result<UpstreamRequest, Reject>, PluginError> {
        self.checked(Stage::Transform, request_id, |inst, store| match inst {
            StageInstance::Transform(p) => p
                .tollgate_plugin_transform()
                .call_transform_request(store, ctx, body),
            _ => Err(self.wrong_stage()),
        })
    }

    /// Transform stage: complete upstream response -> client response.
    pub fn transform_response(
        &self,
        request_id: &str,
        ctx: &TransformCtx,
        status: u16,
        body: &[u8],
    ) -> Result<Result<ClientResponse, Reject>, PluginError> {
        self.checked(Stage::Transform, request_id, |inst, store| match inst {
            StageInstance::Transform(p) => p
                .tollgate_plugin_transform()
                .call_transform_response(store, ctx, status, body),
            _ => Err(self.wrong_stage()),
        })
    }

    /// Transform stage: one upstream stream event -> client events.
    pub fn transform_event(
        &self,
        request_id: &str,
        ctx: &TransformCtx,
        state: &[u8],
        event: &SseEvent,
    ) -> Result<Result<StreamOutput, Reject>, PluginError> {
        self.checked(Stage::Transform, request_id, |inst, store| match inst {
            StageInstance::Transform(p) => p
                .tollgate_plugin_transform()
                .call_transform_event(store, ctx, state, event),
            _ => Err(self.wrong_stage()),
        })
    }

    /// Transform stage: the upstream stream ended.
    pub fn end_of_stream(
        &self,
        request_id: &str,
        ctx: &TransformCtx,
        state: &[u8],
    ) -> Result<Result<StreamOutput, Reject>, PluginError> {
        self.checked(Stage::Transform, request_id, |inst, store| match inst {
            StageInstance::Transform(p) => p
                .tollgate_plugin_transform()
                .call_end_of_stream(store, ctx, state),
            _ => Err(self.wrong_stage()),
        })
    }

    /// Billing stage: may the request proceed?
    /// `config`: the config this call sees instead of the plugin's own (a policy route's).
    pub fn authorize(
        &self,
        request_id: &str,
        config: Option<&Arc<str>>,
        who: &Principal,
        summary: &RequestSummary,
        provider: &str,
        price: Price,
    ) -> Result<Result<Authorization, Reject>, PluginError> {
        self.checked_with(
            Stage::Billing,
            request_id,
            config,
            |inst, store| match inst {
                StageInstance::Billing(p) => p
                    .tollgate_plugin_billing()
                    .call_authorize(store, who, summary, provider, price),
                _ => Err(self.wrong_stage()),
            },
        )
    }

    /// Billing stage: the charge for a finished request.
    #[allow(clippy::too_many_arguments)]
    pub fn settle(
        &self,
        request_id: &str,
        config: Option<&Arc<str>>,
        who: &Principal,
        provider: &str,
        price: Price,
        usage: Usage,
        byok: bool,
    ) -> Result<Charge, PluginError> {
        self.checked_with(
            Stage::Billing,
            request_id,
            config,
            |inst, store| match inst {
                StageInstance::Billing(p) => p
                    .tollgate_plugin_billing()
                    .call_settle(store, who, provider, price, usage, byok),
                _ => Err(self.wrong_stage()),
            },
        )
    }

    /// Logging stage: what may be stored of a finished request, and the content the plugin
    /// asked to store in place of the record's (`keep-content`), if it did.
    pub fn retain(
        &self,
        request_id: &str,
        record: &RequestRecord,
    ) -> Result<Retained, PluginError> {
        self.checked(Stage::Logging, request_id, |inst, store| match inst {
            StageInstance::Logging(p) => {
                store.data_mut().kept_content = None;
                let decision = p.tollgate_plugin_logging().call_retain(&mut *store, record);
                let kept = store.data_mut().kept_content.take();
                Ok(Retained {
                    decision: decision?,
                    kept_content: kept,
                })
            }
            _ => Err(self.wrong_stage()),
        })
    }
}
