//! One loaded plugin version: its compiled component, its `InstancePre`, its pool of warm
//! instances, and typed calls for its stage.
//!
//! Every call is async: it runs as an owned future (instance, store and arguments inside) that
//! starts on the caller's worker and moves to the slow lane if the guest is still running at
//! its first epoch tick ([`super::lane`]). Over ~500 lines: the stage calls are one small
//! method each, kept beside the call machinery they share.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_queue::ArrayQueue;
use wasmtime::Store;

use super::bindings::*;
use super::engine::PluginEngine;
use super::error::{PluginError, PluginErrorKind};
use super::instance::{StageInstance, StagePre};
use super::settings::{InstanceMode, PluginSettings};
use super::state::{HostContext, HostState};
use super::wasi::OutputGate;
use super::Stage;

/// An instance with its store: what a call owns while it runs.
pub(crate) struct Warm {
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
    /// The component imports WASI (`wasi:*`): it gets the deny-by-default context.
    pub uses_wasi: bool,
    /// The plugin declares a config schema (every config it is given is checked against it).
    pub config_schema: bool,
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
    /// Calls (and instantiations) that used their inline CPU budget and finished on the slow
    /// lane: a plugin that shows many is slow or looping.
    pub slow_lane: AtomicU64,
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
    /// Rate limit of the plugin's stdout/stderr lines (all its instances).
    output: Arc<OutputGate>,
    /// The config schema the plugin declares, if any.
    pub(crate) schema: Option<Arc<super::schema::ConfigSchema>>,
    /// A guardrail's answer to `checks-output`, once asked.
    checks_output: std::sync::OnceLock<bool>,
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

impl OutputSize for () {
    fn output_bytes(&self) -> u64 {
        0
    }
}
impl OutputSize for bool {
    fn output_bytes(&self) -> u64 {
        0
    }
}
/// A guardrail's output state.
impl OutputSize for Vec<u8> {
    fn output_bytes(&self) -> u64 {
        self.len() as u64
    }
}

impl OutputSize for RetentionDecision {
    fn output_bytes(&self) -> u64 {
        0
    }
}

/// A stage call on a warm instance: the future owns the instance (`w`) and the arguments, and
/// hands the instance back with the result. `$call` is a [`StageInstance`] method taking the
/// store first.
macro_rules! stage_call {
    ($self:ident, $stage:ident, $rid:expr, $config:expr, $call:ident($($arg:expr),*)) => {
        $self
            .checked(
                Stage::$stage,
                $rid,
                $config,
                move |mut w: Warm| async move {
                    let r = w.instance.$call(&mut w.store, $($arg),*).await;
                    (w, r)
                },
            )
            .await
    };
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
        let output = Arc::new(OutputGate::new(engine.options.output));
        LoadedPlugin {
            name: Arc::from(version.name.as_str()),
            version,
            stats: PluginStats::default(),
            pre,
            engine,
            settings,
            shared,
            pool,
            output,
            checks_output: std::sync::OnceLock::new(),
            schema: None,
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

    /// A store for a new instance: memory cap, and the epoch callback that interrupts the guest
    /// at its deadline and makes it yield (leave the worker) past its inline CPU budget.
    fn new_store(&self) -> Store<HostState> {
        let state = HostState::new(
            self.name.clone(),
            self.settings.config_json.clone(),
            self.settings.memory_limit_bytes,
            self.shared.clone(),
            self.output.clone(),
            self.settings.deadline,
            self.engine.options.inline_budget,
        );
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().at_tick()));
        store
    }

    /// Instantiation as an owned future (it runs guest start code: bounded like a call).
    /// With it, the flag its epoch callback sets when the instantiation used its inline budget.
    fn instantiate_future(
        &self,
    ) -> (
        Arc<AtomicBool>,
        impl Future<Output = (Store<HostState>, wasmtime::Result<StageInstance>)> + Send + 'static,
    ) {
        let mut store = self.new_store();
        store.data_mut().start_call();
        store.set_epoch_deadline(1);
        let moved = store.data().moved.clone();
        let pre = self.pre.clone();
        let call = async move {
            let instance = pre.instantiate(&mut store).await;
            (store, instance)
        };
        (moved, call)
    }

    fn warm(
        &self,
        (store, instance): (Store<HostState>, wasmtime::Result<StageInstance>),
    ) -> Result<Warm, PluginError> {
        let instance = instance.map_err(|e| {
            let trap = self.classify(e, store.data());
            match trap.kind {
                PluginErrorKind::Trap(detail) => self.err(PluginErrorKind::Instantiate(detail)),
                other => self.err(other),
            }
        })?;
        self.stats.instantiations.fetch_add(1, Ordering::Relaxed);
        Ok(Warm {
            store,
            instance,
            calls: 0,
        })
    }

    async fn instantiate(&self) -> Result<Warm, PluginError> {
        let (moved, call) = self.instantiate_future();
        let made = self.run_guest(call, &moved).await?;
        self.warm(made)
    }

    /// Instantiates once and keeps the instance warm: the load-time self-test (not on the
    /// request path: it waits on this thread, at most a second past the deadline).
    pub(crate) fn self_test(&self) -> Result<(), PluginError> {
        let limit = self.settings.deadline + Duration::from_secs(1);
        let made = self
            .engine
            .lane
            .block_on(self.instantiate_future().1, limit)
            .map_err(|_| {
                self.err(PluginErrorKind::Timeout {
                    deadline_ms: limit.as_millis() as u64,
                })
            })?;
        let warm = self.warm(made)?;
        if self.settings.instance_mode == InstanceMode::Pooled {
            let _ = self.pool.push(warm);
        }
        Ok(())
    }

    /// Number of idle warm instances (for the admin view and tests).
    pub fn idle_instances(&self) -> usize {
        self.pool.len()
    }

    /// Runs guest code: inline, then on the slow lane if it yields ([`super::lane`]). A plugin
    /// that imports WASI could wait in a host call (a `wasi:io/poll` sleep) where no epoch
    /// interrupts it: its calls also get a wall-clock bound.
    async fn run_guest<T: Send + 'static>(
        &self,
        call: impl Future<Output = T> + Send + 'static,
        moved: &AtomicBool,
    ) -> Result<T, PluginError> {
        let out = self.run_guest_inner(call, moved).await;
        if moved.load(Ordering::Relaxed) {
            self.stats.slow_lane.fetch_add(1, Ordering::Relaxed);
        }
        out
    }

    async fn run_guest_inner<T: Send + 'static>(
        &self,
        call: impl Future<Output = T> + Send + 'static,
        moved: &AtomicBool,
    ) -> Result<T, PluginError> {
        let deadline_ms = self.settings.deadline.as_millis() as u64;
        let out = if self.version.uses_wasi {
            let bound = self.settings.deadline + self.engine.options.epoch_tick * 2;
            match self
                .engine
                .lane
                .run(
                    async move { tokio::time::timeout(bound, call).await },
                    moved,
                )
                .await
            {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(_elapsed)) => Err(PluginErrorKind::Timeout { deadline_ms }),
                Err(lost) => Err(PluginErrorKind::Trap(lost.to_string())),
            }
        } else {
            self.engine
                .lane
                .run(call, moved)
                .await
                .map_err(|lost| PluginErrorKind::Trap(lost.to_string()))
        };
        out.map_err(|kind| self.err(kind))
    }

    /// Runs `call` on a warm (or fresh) instance, with the deadline and memory cap applied, and
    /// turns every failure into a [`PluginError`] naming this plugin.
    async fn with_instance<R, F, Fut>(
        &self,
        request_id: &str,
        config: Option<&Arc<str>>,
        call: F,
    ) -> Result<R, PluginError>
    where
        R: OutputSize + Send + 'static,
        F: FnOnce(Warm) -> Fut,
        Fut: Future<Output = (Warm, wasmtime::Result<R>)> + Send + 'static,
    {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.call_inner(request_id, config, call).await;
        if result.is_err() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn call_inner<R, F, Fut>(
        &self,
        request_id: &str,
        config: Option<&Arc<str>>,
        call: F,
    ) -> Result<R, PluginError>
    where
        R: OutputSize + Send + 'static,
        F: FnOnce(Warm) -> Fut,
        Fut: Future<Output = (Warm, wasmtime::Result<R>)> + Send + 'static,
    {
        let pooled = self.settings.instance_mode == InstanceMode::Pooled;
        let mut warm = match pooled.then(|| self.pool.pop()).flatten() {
            Some(w) => w,
            None => self.instantiate().await?,
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
            data.start_call();
        }
        warm.store.set_epoch_deadline(1);
        // A call past its wall-clock bound is dropped with its instance (never reused).
        let moved = warm.store.data().moved.clone();
        let (mut warm, outcome) = self.run_guest(call(warm), &moved).await?;
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

    /// [`Self::with_instance`] after checking the plugin implements `expected`; the call sees
    /// `config` instead of the plugin's own when given (a policy route's).
    async fn checked<R, F, Fut>(
        &self,
        expected: Stage,
        request_id: &str,
        config: Option<&Arc<str>>,
        call: F,
    ) -> Result<R, PluginError>
    where
        R: OutputSize + Send + 'static,
        F: FnOnce(Warm) -> Fut,
        Fut: Future<Output = (Warm, wasmtime::Result<R>)> + Send + 'static,
    {
        if self.version.stage != expected {
            return Err(PluginError::new(
                &self.name,
                Some(expected),
                PluginErrorKind::WrongStage {
                    actual: self.version.stage,
                },
            ));
        }
        self.with_instance(request_id, config, call).await
    }

    /// Auth stage.
    pub async fn authenticate(
        &self,
        request_id: &str,
        head: &RequestHead,
    ) -> Result<Result<Principal, Reject>, PluginError> {
        let head = head.clone();
        stage_call!(self, Auth, request_id, None, authenticate(&head))
    }

    /// Guardrail stage: may this prompt go out?
    pub async fn check_prompt(
        &self,
        request_id: &str,
        who: &Principal,
        prompt: Prompt,
    ) -> Result<Result<(), Reject>, PluginError> {
        let who = who.clone();
        stage_call!(
            self,
            Guardrail,
            request_id,
            None,
            check_prompt(&who, &prompt)
        )
    }

    /// Guardrail stage: whether the plugin checks answers (asked once per loaded version; a
    /// failure to answer counts as yes, so its `check-output` failures are seen).
    pub async fn checks_output(&self) -> bool {
        if let Some(known) = self.checks_output.get() {
            return *known;
        }
        let answer = stage_call!(self, Guardrail, "", None, checks_output()).unwrap_or(true);
        *self.checks_output.get_or_init(|| answer)
    }

    /// Guardrail stage: may this piece of the answer be delivered? `Ok(state)` for the next
    /// piece.
    pub async fn check_output(
        &self,
        request_id: &str,
        who: &Principal,
        state: Vec<u8>,
        output: Output,
    ) -> Result<Result<Vec<u8>, Reject>, PluginError> {
        let who = who.clone();
        stage_call!(
            self,
            Guardrail,
            request_id,
            None,
            check_output(&who, &state, &output)
        )
    }

    /// Routing stage.
    pub async fn route(
        &self,
        request_id: &str,
        who: &Principal,
        summary: &RequestSummary,
        candidates: &[Candidate],
    ) -> Result<Result<Vec<Attempt>, Reject>, PluginError> {
        self.route_with(request_id, None, who, summary, candidates)
            .await
    }

    /// Routing stage, the plugin seeing `config` (a policy route's) instead of its own.
    pub async fn route_with(
        &self,
        request_id: &str,
        config: Option<&Arc<str>>,
        who: &Principal,
        summary: &RequestSummary,
        candidates: &[Candidate],
    ) -> Result<Result<Vec<Attempt>, Reject>, PluginError> {
        let (who, summary, candidates) = (who.clone(), summary.clone(), candidates.to_vec());
        stage_call!(
            self,
            Routing,
            request_id,
            config,
            route(&who, &summary, &candidates)
        )
    }

    /// Transform stage: client request -> upstream request.
    pub async fn transform_request(
        &self,
        request_id: &str,
        ctx: &TransformCtx,
        body: &[u8],
    ) -> Result<Result<UpstreamRequest, Reject>, PluginError> {
        let (ctx, body) = (ctx.clone(), body.to_vec());
        stage_call!(
            self,
            Transform,
            request_id,
            None,
            transform_request(&ctx, &body)
        )
    }

    /// Transform stage: complete upstream response -> client response.
    pub async fn transform_response(
        &self,
        request_id: &str,
        ctx: &TransformCtx,
        status: u16,
        body: &[u8],
    ) -> Result<Result<ClientResponse, Reject>, PluginError> {
        let (ctx, body) = (ctx.clone(), body.to_vec());
        stage_call!(
            self,
            Transform,
            request_id,
            None,
            transform_response(&ctx, status, &body)
        )
    }

    /// Transform stage: one upstream stream event -> client events.
    pub async fn transform_event(
        &self,
        request_id: &str,
        ctx: &TransformCtx,
        state: &[u8],
        event: &SseEvent,
    ) -> Result<Result<StreamOutput, Reject>, PluginError> {
        let (ctx, state, event) = (ctx.clone(), state.to_vec(), event.clone());
        stage_call!(
            self,
            Transform,
            request_id,
            None,
            transform_event(&ctx, &state, &event)
        )
    }

    /// Transform stage: the upstream stream ended.
    pub async fn end_of_stream(
        &self,
        request_id: &str,
        ctx: &TransformCtx,
        state: &[u8],
    ) -> Result<Result<StreamOutput, Reject>, PluginError> {
        let (ctx, state) = (ctx.clone(), state.to_vec());
        stage_call!(
            self,
            Transform,
            request_id,
            None,
            end_of_stream(&ctx, &state)
        )
    }

    /// Billing stage: may the request proceed?
    /// `config`: the config this call sees instead of the plugin's own (a policy route's).
    pub async fn authorize(
        &self,
        request_id: &str,
        config: Option<&Arc<str>>,
        who: &Principal,
        summary: &RequestSummary,
        provider: &str,
        price: Price,
    ) -> Result<Result<Authorization, Reject>, PluginError> {
        let (who, summary, provider) = (who.clone(), summary.clone(), provider.to_string());
        stage_call!(
            self,
            Billing,
            request_id,
            config,
            authorize(&who, &summary, &provider, price)
        )
    }

    /// Billing stage: the charge for a finished request.
    #[allow(clippy::too_many_arguments)]
    pub async fn settle(
        &self,
        request_id: &str,
        config: Option<&Arc<str>>,
        who: &Principal,
        provider: &str,
        price: Price,
        usage: Usage,
        byok: bool,
    ) -> Result<Charge, PluginError> {
        let (who, provider) = (who.clone(), provider.to_string());
        stage_call!(
            self,
            Billing,
            request_id,
            config,
            settle(&who, &provider, price, usage, byok)
        )
    }

    /// Logging stage: what may be stored of a finished request, and the content the plugin
    /// asked to store in place of the record's (`keep-content`), if it did.
    pub async fn retain(
        &self,
        request_id: &str,
        record: &RequestRecord,
    ) -> Result<Retained, PluginError> {
        let record = record.clone();
        self.checked(
            Stage::Logging,
            request_id,
            None,
            move |mut w: Warm| async move {
                w.store.data_mut().kept_content = None;
                let decision = w.instance.retain(&mut w.store, &record).await;
                let kept = w.store.data_mut().kept_content.take();
                let r = decision.map(|decision| Retained {
                    decision,
                    kept_content: kept,
                });
                (w, r)
            },
        )
        .await
    }
}
