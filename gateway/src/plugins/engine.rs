//! The one wasmtime `Engine` of the process: pooling allocator when the machine lets us reserve
//! its address space (falling back to on-demand allocation otherwise), async support with epoch
//! yields driven by a ticker thread, the slow lane guest calls move to when they run long, and
//! the linker with the host interface and deny-by-default WASI.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::common::SdkCommon;
use super::lane::{LaneOptions, SlowLane};
use super::state::HostState;
use super::wasi::OutputLimits;

/// Engine-wide options (per-plugin limits live in [`super::PluginSettings`]).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Epoch tick: the granularity of plugin deadlines, and the longest a guest call runs on a
    /// proxy worker before it moves to the slow lane.
    pub epoch_tick: Duration,
    /// Try the pooling allocator (falls back when it cannot reserve memory).
    pub pooling: bool,
    /// Instances the pool can hold at once (all plugins together).
    pub pool_total_instances: u32,
    /// Largest linear memory any plugin may have; per-plugin caps must not exceed it.
    pub max_memory_bytes: u64,
    /// CPU time a guest call may use on a proxy worker before it moves to the slow lane
    /// (checked at each epoch tick).
    pub inline_budget: Duration,
    /// Where long-running guest calls continue ([`super::lane`]).
    pub lane: LaneOptions,
    /// How much of a plugin's stdout/stderr reaches the log.
    pub output: OutputLimits,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            // Deadlines are checked, and long calls moved off the worker, at each tick: 2 ms
            // keeps a looping call's hold on a worker short at ~500 wakeups a second.
            epoch_tick: Duration::from_millis(2),
            inline_budget: Duration::from_millis(1),
            pooling: true,
            pool_total_instances: 1000,
            max_memory_bytes: 256 << 20,
            lane: LaneOptions::default(),
            output: OutputLimits::default(),
        }
    }
}

/// The engine, its linker and the epoch ticker.
pub struct PluginEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) options: EngineOptions,
    pub(crate) lane: SlowLane,
    pooling: bool,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Without it, `call_async` is a plain fiber call. With it (wasmtime's default since the
    // component-model-async work) every call runs through the concurrent event loop and
    // returns `Pending` at least once: measured, that moved every call to the slow lane and
    // added ~0.2 ms to a request at c1. The stage worlds use no WIT `async`.
    config.concurrency_support(false);
    config.epoch_interruption(true);
    config.max_wasm_stack(1 << 20);
    config
}

impl PluginEngine {
    pub fn new(options: EngineOptions) -> anyhow::Result<Self> {
        let (engine, pooling) = if options.pooling {
            let mut config = base_config();
            let mut pool = PoolingAllocationConfig::default();
            let n = options.pool_total_instances;
            pool.total_component_instances(n)
                .total_core_instances(n * 4)
                .total_memories(n)
                .total_tables(n * 4)
                .max_core_instances_per_component(16)
                .max_memories_per_component(2)
                .max_tables_per_component(8)
                // One fiber stack per call in flight (a call parked on the slow lane keeps
                // its stack until it ends or reaches its deadline).
                .total_stacks(n)
                .max_memory_size(usize::try_from(options.max_memory_bytes)?);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            match Engine::new(&config) {
                Ok(engine) => (engine, true),
                Err(err) => {
                    tracing::warn!(error = %err, "pooling allocator unavailable, using on-demand allocation");
                    (Engine::new(&base_config())?, false)
                }
            }
        } else {
            (Engine::new(&base_config())?, false)
        };

        let mut linker = Linker::new(&engine);
        SdkCommon::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        // Plugins built for 0.1.0 import `host@0.1.0`: the same functions (`bindings::v0_1_0`).
        super::bindings::v0_1_0::add_to_linker(&mut linker)?;
        // WASI for components built for wasm32-wasip1/p2: linked so they load, granting nothing
        // but clocks, random and a rate-limited log (`super::wasi`).
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        let lane = SlowLane::new(&options.lane)?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            let tick = options.epoch_tick;
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })?
        };
        Ok(PluginEngine {
            engine,
            linker,
            options,
            lane,
            pooling,
            stop,
            ticker: Some(ticker),
        })
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}
