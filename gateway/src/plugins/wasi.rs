//! WASI for plugins, deny by default: components built for `wasm32-wasip2` (or wasip1 with the
//! adapter) import `wasi:cli`, `wasi:filesystem`, `wasi:clocks`, `wasi:random`... The host links
//! them all (so such components load), but the context grants nothing: no preopened
//! directories (opening `/etc/passwd` fails: there is no directory to open it from), no
//! environment variables, no arguments, no stdin, no sockets or name lookups. Clocks and random
//! are allowed. Whatever the guest writes to stdout or stderr goes to the gateway log, one
//! event per line under the plugin's name, at most [`OutputLimits::lines_per_sec`] lines a
//! second per plugin (the rest is counted, and the count logged).
//!
//! The context is built lazily, on the guest's first WASI call: plugins that import no WASI
//! (`wasm32-unknown-unknown`) never pay for it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// Longest line logged; longer ones are cut (and the cut said).
const MAX_LINE_BYTES: usize = 4096;

/// How much guest output reaches the log.
#[derive(Debug, Clone, Copy)]
pub struct OutputLimits {
    /// Lines per second a plugin may log (all its instances together); bursts up to
    /// `burst_lines`.
    pub lines_per_sec: f64,
    pub burst_lines: f64,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            lines_per_sec: 20.0,
            burst_lines: 50.0,
        }
    }
}

/// The per-plugin token bucket shared by all its instances.
#[derive(Debug)]
pub struct OutputGate {
    limits: OutputLimits,
    state: Mutex<GateState>,
}

#[derive(Debug)]
struct GateState {
    tokens: f64,
    last: Instant,
    dropped: u64,
}

impl OutputGate {
    pub fn new(limits: OutputLimits) -> Self {
        OutputGate {
            limits,
            state: Mutex::new(GateState {
                tokens: limits.burst_lines,
                last: Instant::now(),
                dropped: 0,
            }),
        }
    }

    /// May one more line be logged? Returns the lines dropped since the last one that was.
    fn admit(&self) -> Option<u64> {
        let mut s = self.state.lock();
        let now = Instant::now();
        let refill = now.duration_since(s.last).as_secs_f64() * self.limits.lines_per_sec;
        s.tokens = (s.tokens + refill).min(self.limits.burst_lines);
        s.last = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Some(std::mem::take(&mut s.dropped))
        } else {
            s.dropped += 1;
            None
        }
    }

    /// Lines dropped and not yet reported.
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.state.lock().dropped
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Stdout,
    Stderr,
}

impl Which {
    fn as_str(self) -> &'static str {
        match self {
            Which::Stdout => "stdout",
            Which::Stderr => "stderr",
        }
    }
}

/// A guest's stdout or stderr: lines into the gateway log.
#[derive(Clone)]
struct LogOutput {
    plugin: Arc<str>,
    which: Which,
    gate: Arc<OutputGate>,
}

/// The stream a guest writes to: buffers to the end of a line.
struct LogStream {
    out: LogOutput,
    line: Vec<u8>,
    /// The current line was already cut at [`MAX_LINE_BYTES`].
    cut: bool,
}

impl LogStream {
    fn emit(&mut self) {
        let line = std::mem::take(&mut self.line);
        let cut = std::mem::replace(&mut self.cut, false);
        let Some(dropped) = self.out.gate.admit() else {
            return;
        };
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches('\r');
        let (plugin, stream) = (&*self.out.plugin, self.out.which.as_str());
        if dropped > 0 {
            tracing::warn!(
                plugin,
                stream,
                dropped,
                "plugin output over its rate limit: lines dropped"
            );
        }
        match self.out.which {
            Which::Stdout => tracing::info!(plugin, stream, cut, "{text}"),
            Which::Stderr => tracing::warn!(plugin, stream, cut, "{text}"),
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        for part in bytes.split_inclusive(|b| *b == b'\n') {
            let (body, newline) = match part.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (part, false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(self.line.len());
            if body.len() > room {
                self.cut = true;
            }
            self.line.extend_from_slice(&body[..body.len().min(room)]);
            if newline {
                self.emit();
            }
        }
    }
}

impl Drop for LogStream {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

#[async_trait::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.take(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LogStream {
            out: self.clone(),
            line: Vec::new(),
            cut: false,
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(AsyncLog(Mutex::new(LogStream {
            out: self.clone(),
            line: Vec::new(),
            cut: false,
        })))
    }
}

/// The same stream for WASI 0.3-style async writers.
struct AsyncLog(Mutex<LogStream>);

impl tokio::io::AsyncWrite for AsyncLog {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().take(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The WASI context of one plugin instance: nothing granted but clocks, random and a log.
pub(crate) fn deny_by_default(plugin: &Arc<str>, gate: &Arc<OutputGate>) -> WasiCtx {
    let out = |which| LogOutput {
        plugin: plugin.clone(),
        which,
        gate: gate.clone(),
    };
    WasiCtxBuilder::new()
        .stdout(out(Which::Stdout))
        .stderr(out(Which::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .allow_blocking_current_thread(false)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(gate: Arc<OutputGate>) -> LogStream {
        LogStream {
            out: LogOutput {
                plugin: Arc::from("p"),
                which: Which::Stdout,
                gate,
            },
            line: Vec::new(),
            cut: false,
        }
    }

    #[test]
    fn lines_are_cut_and_rate_limited() {
        let gate = Arc::new(OutputGate::new(OutputLimits {
            lines_per_sec: 0.0,
            burst_lines: 3.0,
        }));
        let mut s = stream(gate.clone());
        s.take(&vec![b'x'; MAX_LINE_BYTES * 3]);
        assert_eq!(s.line.len(), MAX_LINE_BYTES);
        assert!(s.cut);
        s.take(b"\nsecond\nthird\nfourth\nfifth\n");
        // three lines admitted (the long one, second, third), two dropped
        assert_eq!(gate.dropped(), 2);
        assert!(s.line.is_empty() && !s.cut);
    }

    #[test]
    fn a_partial_line_waits_for_its_end() {
        let gate = Arc::new(OutputGate::new(OutputLimits::default()));
        let mut s = stream(gate);
        s.take(b"hel");
        s.take(b"lo");
        assert_eq!(s.line, b"hello");
        s.take(b"\n");
        assert!(s.line.is_empty());
    }
}
