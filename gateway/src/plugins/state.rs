//! What a plugin instance's store holds, and the host interface served from it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::common::tollgate::plugin::{host, types};
use super::bindings::{ApiKeyInfo, LogLevel, Price};
use super::wasi::{self, OutputGate};

/// Most WASI resources (streams, pollables...) one instance may hold: they live in host memory,
/// which the linear-memory cap does not see.
const MAX_WASI_RESOURCES: usize = 1024;

/// Data the gateway provides to plugins through the host interface: key lookup, balances,
/// prices. The store implements it; tests use small in-memory ones.
pub trait HostServices: Send + Sync + 'static {
    /// Keyed hash (HMAC-SHA256 with the server secret, hex) of a presented API key.
    fn hash_api_key(&self, presented: &str) -> String;
    fn lookup_api_key(&self, key_hash: &str) -> Option<ApiKeyInfo>;
    fn credit_balance(&self, org_id: &str) -> Option<i64>;
    fn model_price(&self, provider: &str, model: &str) -> Option<Price>;
}

/// Services that know nothing: every lookup misses.
pub struct NoServices;

impl HostServices for NoServices {
    fn hash_api_key(&self, presented: &str) -> String {
        crate::keys::keyed_hash(b"", presented)
    }
    fn lookup_api_key(&self, _: &str) -> Option<ApiKeyInfo> {
        None
    }
    fn credit_balance(&self, _: &str) -> Option<i64> {
        None
    }
    fn model_price(&self, _: &str, _: &str) -> Option<Price> {
        None
    }
}

#[derive(Clone)]
struct KvEntry {
    value: Arc<[u8]>,
    ttl: Option<Duration>,
}

struct KvExpiry;

impl moka::Expiry<String, KvEntry> for KvExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &KvEntry,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        value.ttl
    }
    fn expire_after_update(
        &self,
        _key: &String,
        value: &KvEntry,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        value.ttl
    }
}

/// State shared by every instance of every plugin: services, the kv store, counters.
pub struct HostContext {
    pub services: Arc<dyn HostServices>,
    /// Plugin config set by the live policy (`[plugins.NAME] config`), by plugin name.
    config_overrides: arc_swap::ArcSwap<HashMap<String, Arc<str>>>,
    kv: moka::sync::Cache<String, KvEntry>,
    counters: Mutex<HashMap<(Arc<str>, String), i64>>,
}

impl HostContext {
    pub fn new(services: Arc<dyn HostServices>, kv_max_entries: u64) -> Self {
        HostContext {
            services,
            kv: moka::sync::Cache::builder()
                .max_capacity(kv_max_entries)
                .expire_after(KvExpiry)
                .build(),
            counters: Mutex::new(HashMap::new()),
            config_overrides: Default::default(),
        }
    }

    /// The config the live policy sets for `plugin`, if it sets one.
    pub fn config_override(&self, plugin: &str) -> Option<Arc<str>> {
        let map = self.config_overrides.load();
        if map.is_empty() {
            return None;
        }
        map.get(plugin).cloned()
    }

    /// Replaces the policy's plugin configs (on every policy load).
    pub fn set_config_overrides(&self, map: HashMap<String, Arc<str>>) {
        self.config_overrides.store(Arc::new(map));
    }

    /// Snapshot of plugin counters: ((plugin, name), value).
    pub fn counters(&self) -> Vec<((String, String), i64)> {
        let mut out: Vec<_> = self
            .counters
            .lock()
            .iter()
            .map(|((p, n), v)| ((p.to_string(), n.clone()), *v))
            .collect();
        out.sort();
        out
    }
}

/// Tracks linear-memory growth against the instance's cap.
pub(crate) struct MemoryLimiter {
    pub limit_bytes: u64,
    pub peak_bytes: u64,
    /// Set when a growth was refused: a trap that follows is reported as "memory exceeded".
    pub refused: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.limit_bytes {
            self.refused = true;
            return Ok(false);
        }
        self.peak_bytes = self.peak_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The data of one instance's `Store`.
pub struct HostState {
    pub(crate) limiter: MemoryLimiter,
    pub(crate) plugin: Arc<str>,
    pub(crate) config: Arc<str>,
    pub(crate) request_id: String,
    pub(crate) shared: Arc<HostContext>,
    /// What a logging plugin asked to store in place of the record's content (`keep-content`),
    /// taken by the host after `retain`.
    pub(crate) kept_content: Option<(Vec<u8>, Vec<u8>)>,
    /// When the current call (or instantiation) started, and its budget: the epoch callback
    /// interrupts the guest past it.
    pub(crate) call_started: Instant,
    pub(crate) deadline: Duration,
    /// This thread's CPU time at the first epoch tick the call reached (None before: the clock
    /// is a syscall, so calls that end within a tick — nearly all — never read it), and the CPU
    /// a call may use on a proxy worker past that tick before it moves to the slow lane;
    /// `moved` once it has.
    cpu_at_first_tick: Option<Duration>,
    inline_budget: Duration,
    pub(crate) moved: Arc<std::sync::atomic::AtomicBool>,
    /// The WASI context, made on the guest's first WASI call (deny by default).
    wasi: Option<Box<WasiParts>>,
    output: Arc<OutputGate>,
}

struct WasiParts {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (plugin, output) = (&self.plugin, &self.output);
        let parts = self.wasi.get_or_insert_with(|| {
            let mut table = ResourceTable::new();
            table.set_max_capacity(MAX_WASI_RESOURCES);
            Box::new(WasiParts {
                ctx: wasi::deny_by_default(plugin, output),
                table,
            })
        });
        WasiCtxView {
            ctx: &mut parts.ctx,
            table: &mut parts.table,
        }
    }
}

impl HostState {
    pub(crate) fn new(
        plugin: Arc<str>,
        config: Arc<str>,
        memory_limit: u64,
        shared: Arc<HostContext>,
        output: Arc<OutputGate>,
        deadline: Duration,
        inline_budget: Duration,
    ) -> Self {
        HostState {
            limiter: MemoryLimiter {
                limit_bytes: memory_limit,
                peak_bytes: 0,
                refused: false,
            },
            plugin,
            config,
            request_id: String::new(),
            shared,
            kept_content: None,
            call_started: Instant::now(),
            deadline,
            cpu_at_first_tick: None,
            inline_budget,
            moved: Default::default(),
            wasi: None,
            output,
        }
    }

    /// A call (or instantiation) starts now, on this thread.
    pub(crate) fn start_call(&mut self) {
        self.call_started = Instant::now();
        self.cpu_at_first_tick = None;
        self.moved
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// At an epoch tick during guest code: interrupt past the deadline; yield (and so move to
    /// the slow lane, or take turns there) once the call has used its inline CPU budget since
    /// the first tick it reached; otherwise run on. A looping call so holds a worker for up to
    /// one tick plus the budget plus one tick (5 ms with the defaults).
    pub(crate) fn at_tick(&mut self) -> wasmtime::UpdateDeadline {
        use wasmtime::UpdateDeadline;
        if self.call_started.elapsed() >= self.deadline {
            return UpdateDeadline::Interrupt;
        }
        if !self.moved.load(std::sync::atomic::Ordering::Relaxed) {
            let now = super::lane::thread_cpu_time();
            let since = *self.cpu_at_first_tick.get_or_insert(now);
            if now.saturating_sub(since) < self.inline_budget {
                return UpdateDeadline::Continue(1);
            }
            self.moved.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        UpdateDeadline::Yield(1)
    }

    fn kv_key(&self, key: &str) -> String {
        format!("{}\u{0}{key}", self.plugin)
    }
}

/// Longest log line a plugin may write; longer ones are cut.
const MAX_LOG_BYTES: usize = 4096;

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_BYTES {
            let mut cut = MAX_LOG_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let plugin = &*self.plugin;
        let request_id = self.request_id.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(plugin, request_id, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, request_id, "{message}"),
            LogLevel::Info => tracing::info!(plugin, request_id, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, request_id, "{message}"),
            LogLevel::Error => tracing::error!(plugin, request_id, "{message}"),
        }
    }

    fn config(&mut self) -> String {
        self.config.to_string()
    }

    fn counter_add(&mut self, name: String, delta: i64) {
        let mut counters = self.shared.counters.lock();
        let slot = counters.entry((self.plugin.clone(), name)).or_insert(0);
        *slot = slot.saturating_add(delta);
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.shared
            .kv
            .get(&self.kv_key(&key))
            .map(|e| e.value.to_vec())
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) {
        let entry = KvEntry {
            value: value.into(),
            ttl: (ttl_ms > 0).then(|| Duration::from_millis(ttl_ms)),
        };
        self.shared.kv.insert(self.kv_key(&key), entry);
    }

    fn now_ms(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn keep_content(&mut self, request_body: Vec<u8>, response_body: Vec<u8>) {
        self.kept_content = Some((request_body, response_body));
    }

    fn hash_api_key(&mut self, presented: String) -> String {
        self.shared.services.hash_api_key(&presented)
    }

    fn lookup_api_key(&mut self, key_hash: String) -> Option<ApiKeyInfo> {
        self.shared.services.lookup_api_key(&key_hash)
    }

    fn credit_balance(&mut self, org_id: String) -> Option<i64> {
        self.shared.services.credit_balance(&org_id)
    }

    fn model_price(&mut self, provider: String, model: String) -> Option<Price> {
        self.shared.services.model_price(&provider, &model)
    }
}
