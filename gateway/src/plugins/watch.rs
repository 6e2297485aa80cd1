//! Hot reload: watches the plugin directory and reloads changed `.wasm` files.
//!
//! Events are debounced (a file is reloaded once it has been quiet for `debounce`), so both
//! atomic renames and in-place writes work: a half-written file that fails to compile is
//! reported and the next write event retries it. Compilation happens on the watcher thread,
//! never on the request path.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use super::registry::{plugin_name, PluginRegistry};

/// Keeps the watch alive; dropping it stops watching.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
}

/// Watches `dir` and reloads changed plugins into `registry`.
pub fn watch(
    registry: Arc<PluginRegistry>,
    dir: &Path,
    debounce: Duration,
) -> notify::Result<WatchHandle> {
    let (tx, rx) = channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if matches!(
                event.kind,
                notify::EventKind::Create(_)
                    | notify::EventKind::Modify(_)
                    | notify::EventKind::Any
            ) {
                for path in event.paths {
                    if plugin_name(&path).is_some() {
                        let _ = tx.send(path);
                    }
                }
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let dir_display = dir.display().to_string();
    std::thread::Builder::new()
        .name("plugin-watch".into())
        .spawn(move || {
            let mut pending: HashSet<PathBuf> = HashSet::new();
            let mut last_event = Instant::now();
            loop {
                let wait = if pending.is_empty() {
                    Duration::from_secs(3600)
                } else {
                    debounce.saturating_sub(last_event.elapsed())
                };
                match rx.recv_timeout(wait) {
                    Ok(path) => {
                        pending.insert(path);
                        last_event = Instant::now();
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        for path in pending.drain() {
                            if path.is_file() {
                                let _ = registry.load_file(&path);
                            }
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            tracing::debug!(dir = %dir_display, "plugin watcher stopped");
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(WatchHandle { _watcher: watcher })
}
