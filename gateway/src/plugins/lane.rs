//! Where guest code runs, so that no plugin can hold a proxy worker.
//!
//! Every call starts inline, on the proxy worker that awaits it: most finish within
//! microseconds, and a thread hand-off would cost more than the call. At each epoch tick the
//! host looks at the CPU time the call has used on this thread since the first tick it reached
//! (`CLOCK_THREAD_CPUTIME_ID`, so a call the kernel merely preempted is not blamed): past the
//! inline budget (1 ms by default) the guest yields (wasmtime's async support, `UpdateDeadline::Yield`) and the call, now
//! `Pending`, moves to the *slow lane*: a few lower-priority threads (nice 10 by default) of
//! their own tokio runtime, where it runs on to its end or its deadline. So a looping plugin
//! holds a proxy worker for about the budget plus one tick, and under load the kernel gives the
//! slow lane a small share.
//!
//! Moving a call is possible because every stage call is an owned `'static` future (its store,
//! instance and arguments inside), and a wasmtime fiber may resume on any thread.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::task::Poll;
use std::time::Duration;

/// The call did not come back: its slow-lane task was lost (the runtime shut down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost;

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the call did not come back from the plugin slow lane")
    }
}

/// Options of the slow lane.
#[derive(Debug, Clone)]
pub struct LaneOptions {
    /// Threads of the slow lane.
    pub threads: usize,
    /// Their nice value (0 = the workers' priority, 19 = the lowest).
    pub nice: i32,
}

impl Default for LaneOptions {
    fn default() -> Self {
        LaneOptions {
            threads: 2,
            // 10, not 19: a plugin that is merely slow (a Python guardrail at a few ms) still
            // gets ~10 % of a saturated machine, where 19 would starve it past its deadline.
            nice: 10,
        }
    }
}

/// CPU time the calling thread has used (zero where the clock is unavailable: then no call is
/// ever moved for its CPU use, only deadlines apply).
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The slow lane: a tokio runtime on low-priority threads.
pub struct SlowLane {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for SlowLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlowLane").finish_non_exhaustive()
    }
}

/// Lowers the calling thread's priority (Linux: nice applies per thread).
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the current thread's id; no memory is shared.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice)
        };
        if rc != 0 {
            tracing::warn!(
                nice,
                error = %std::io::Error::last_os_error(),
                "cannot lower the plugin slow lane's priority"
            );
        }
    }
}

impl SlowLane {
    pub fn new(options: &LaneOptions) -> std::io::Result<Self> {
        let nice = options.nice.clamp(0, 19);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads.max(1))
            .thread_name("wasm-slow")
            .on_thread_start(move || lower_priority(nice))
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        Ok(SlowLane {
            runtime: Some(runtime),
            handle,
        })
    }

    /// Runs `call` inline, moving it to the slow lane when it yields with `moved` set (it
    /// used its inline CPU budget). A call that is merely waiting (a WASI sleep) stays on the
    /// worker's executor: waiting holds no worker.
    pub async fn run<T, F>(&self, call: F, moved: &AtomicBool) -> Result<T, Lost>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let mut call = Box::pin(call);
        let inline = std::future::poll_fn(|cx| match call.as_mut().poll(cx) {
            Poll::Ready(value) => Poll::Ready(Some(value)),
            Poll::Pending if moved.load(Ordering::Relaxed) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        match inline {
            Some(value) => Ok(value),
            None => self.handle.spawn(call).await.map_err(|_| Lost),
        }
    }

    /// Runs `call` on the slow lane and waits for it on this thread (for loads, which are not
    /// on the request path), at most `limit`.
    pub fn block_on<T, F>(&self, call: F, limit: Duration) -> Result<T, Lost>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let task = self.handle.spawn(async move {
            let _ = tx.send(call.await);
        });
        let out = rx.recv_timeout(limit).map_err(|_| Lost);
        task.abort();
        out
    }
}

impl Drop for SlowLane {
    fn drop(&mut self) {
        // Dropping a runtime inside another runtime's context panics; shut down in background.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Polls `fut` once with a no-op waker (tests: does a call finish inline?).
#[cfg(test)]
fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    fut.as_mut().poll(&mut cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_futures_finish_inline() {
        assert_eq!(poll_once(async { 7 }), Poll::Ready(7));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_past_its_budget_moves_to_the_slow_lane() {
        let lane = SlowLane::new(&LaneOptions::default()).expect("lane");
        let here = std::thread::current().id();
        let moved = AtomicBool::new(true);
        let ran_on = lane
            .run(
                async {
                    tokio::task::yield_now().await;
                    std::thread::current().id()
                },
                &moved,
            )
            .await
            .expect("not lost");
        assert_ne!(
            ran_on, here,
            "a call that yields past its budget ends on the slow lane"
        );
        let waiting = AtomicBool::new(false);
        let ran_on = lane
            .run(
                async {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    std::thread::current().id()
                },
                &waiting,
            )
            .await
            .expect("not lost");
        assert_eq!(
            ran_on, here,
            "a call that merely waits stays on the worker's executor"
        );
        let inline = lane
            .run(async { std::thread::current().id() }, &waiting)
            .await
            .expect("not lost");
        assert_eq!(inline, here, "a call that does not yield stays inline");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_looping_call_leaves_the_worker_free() {
        // The worker is a current-thread runtime: if the looping call held it, the ticker
        // below could not advance.
        let lane = SlowLane::new(&LaneOptions::default()).expect("lane");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let moved = AtomicBool::new(true);
        let looping = lane.run(
            async move {
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::task::yield_now().await;
                    std::thread::sleep(Duration::from_millis(1));
                }
            },
            &moved,
        );
        let ticks = async {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        };
        let (r, ()) = tokio::join!(looping, ticks);
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn block_on_waits_with_a_bound() {
        let lane = SlowLane::new(&LaneOptions::default()).expect("lane");
        assert_eq!(lane.block_on(async { 3 }, Duration::from_secs(5)), Ok(3));
        let never = lane.block_on(std::future::pending::<()>(), Duration::from_millis(20));
        assert_eq!(never, Err(Lost));
    }
}
