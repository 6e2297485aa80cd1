//! Plugins that cannot stall or crash the gateway: WASI guests get nothing but clocks, random
//! and a rate-limited log; a looping guest leaves the proxy worker after one epoch tick; a
//! component of another stage never replaces a plugin. Real components from
//! `scripts/build-plugins` (`hostile-wasi` is built for wasm32-wasip2).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::plugins::bindings::*;
use tollgate::plugins::{
    EngineOptions, HostContext, NoServices, PluginEngine, PluginErrorKind, PluginRegistry,
    PluginSettings, SettingsTable, Stage,
};

fn component(group: &str, name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(group)
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup-toolchain (rustup target wasm32-wasip2) and \
         scripts/build-plugins",
        path.display()
    );
    path
}

fn registry(deadline_ms: u64) -> Arc<PluginRegistry> {
    let engine = Arc::new(PluginEngine::new(EngineOptions::default()).expect("engine"));
    let shared = Arc::new(HostContext::new(Arc::new(NoServices), 1000));
    let settings = SettingsTable {
        default: PluginSettings {
            deadline: Duration::from_millis(deadline_ms),
            memory_limit_bytes: 32 << 20,
            ..PluginSettings::default()
        },
        ..SettingsTable::default()
    };
    Arc::new(PluginRegistry::new(engine, shared, settings, None).expect("registry"))
}

fn ctx() -> TransformCtx {
    TransformCtx {
        request_id: "req-1".into(),
        client_format: ApiFormat::OpenaiChat,
        upstream_model: "m".into(),
        stream: false,
    }
}

/// The body the guest answers `command` with (the call must succeed).
async fn answer(reg: &PluginRegistry, plugin: &str, command: &str) -> String {
    let p = reg.get(plugin).expect("loaded");
    let out = p
        .transform_request("r", &ctx(), command.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{command}: {e}"))
        .unwrap_or_else(|r| panic!("{command}: refused {}", r.message));
    String::from_utf8_lossy(&out.body).into_owned()
}

async fn failure(reg: &PluginRegistry, plugin: &str, command: &str) -> PluginErrorKind {
    let p = reg.get(plugin).expect("loaded");
    match p.transform_request("r", &ctx(), command.as_bytes()).await {
        Err(e) => e.kind,
        Ok(r) => panic!("{command}: expected a failure, got {:?}", r.map(|u| u.body)),
    }
}

#[tokio::test]
async fn a_wasip2_guest_loads_and_is_granted_nothing_but_clocks_and_random() {
    let reg = registry(200);
    let loaded = reg
        .load_file(&component("test-plugins", "hostile-wasi"))
        .expect("a wasm32-wasip2 component loads");
    assert!(loaded.version.uses_wasi);
    let passwd = answer(&reg, "hostile-wasi", "passwd").await;
    assert!(passwd.starts_with("denied"), "{passwd}");
    assert_eq!(answer(&reg, "hostile-wasi", "env").await, "env=0 args=0");
    let socket = answer(&reg, "hostile-wasi", "socket").await;
    assert!(socket.starts_with("denied"), "{socket}");
    assert_eq!(answer(&reg, "hostile-wasi", "hello").await, "hello");
    assert_eq!(
        answer(&reg, "hostile-wasi", "ping").await,
        "ping clock=true random=true"
    );
}

#[tokio::test]
async fn hostile_wasi_guests_fail_only_their_own_call() {
    let reg = registry(50);
    reg.load_file(&component("test-plugins", "hostile-wasi"))
        .expect("load");
    // stdout in a loop: interrupted at the deadline (its lines rate-limited into the log)
    assert_eq!(
        failure(&reg, "hostile-wasi", "stdout").await,
        PluginErrorKind::Timeout { deadline_ms: 50 }
    );
    // a 10 s sleep in a WASI host call, where no epoch can interrupt: the wall-clock bound
    let started = Instant::now();
    assert_eq!(
        failure(&reg, "hostile-wasi", "sleep").await,
        PluginErrorKind::Timeout { deadline_ms: 50 }
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        failure(&reg, "hostile-wasi", "loop").await,
        PluginErrorKind::Timeout { deadline_ms: 50 }
    );
    assert_eq!(
        failure(&reg, "hostile-wasi", "memory").await,
        PluginErrorKind::MemoryExceeded {
            limit_bytes: 32 << 20
        }
    );
    // the plugin still serves
    assert_eq!(
        answer(&reg, "hostile-wasi", "ok").await,
        "ok clock=true random=true"
    );
}

/// The proxy worker here is a current-thread runtime: if a looping call held it, nothing else
/// could run until the loop hit its deadline.
#[tokio::test(flavor = "current_thread")]
async fn a_looping_plugin_does_not_hold_the_worker() {
    let reg = registry(400);
    reg.load_file(&component("test-plugins", "hostile"))
        .expect("load");
    reg.load_file(&component("test-plugins", "passthrough-transform"))
        .expect("load");
    let started = Instant::now();
    let looping = async {
        let kind = failure(&reg, "hostile", "loop").await;
        (kind, started.elapsed())
    };
    let others = async {
        let good = reg.get("passthrough-transform").expect("loaded");
        let mut served = 0;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            good.transform_request("r", &ctx(), b"{}")
                .await
                .expect("call")
                .expect("ok");
            served += 1;
        }
        (served, started.elapsed())
    };
    let ((kind, loop_took), (served, others_took)) = tokio::join!(looping, others);
    assert_eq!(kind, PluginErrorKind::Timeout { deadline_ms: 400 });
    assert_eq!(served, 50);
    // Only the looping call left its worker; the quick ones never did.
    let stat = |name: &str| {
        reg.get(name)
            .expect("loaded")
            .stats
            .slow_lane
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!((stat("hostile"), stat("passthrough-transform")), (1, 0));
    assert!(
        others_took < loop_took,
        "the other calls finished at {others_took:?}, the looping one at {loop_took:?}"
    );
}

#[tokio::test]
async fn a_component_of_another_stage_never_replaces_a_plugin() {
    let reg = registry(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("my-router.wasm");
    std::fs::copy(component("test-plugins", "trivial-routing"), &file).expect("copy");
    reg.load_file(&file).expect("routing plugin");
    // a logging component written over the routing plugin's file
    std::fs::copy(component("test-plugins", "trivial-logging"), &file).expect("copy");
    let err = reg.load_file(&file).expect_err("stage change refused");
    assert!(
        err.to_string().contains("exports the logging stage")
            && err.to_string().contains("implements routing"),
        "{err}"
    );
    let serving = reg.get("my-router").expect("still loaded");
    assert_eq!(serving.stage(), Stage::Routing);
    let status = reg.list();
    let s = status
        .iter()
        .find(|s| s.name == "my-router")
        .expect("listed");
    assert!(s
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("logging")));

    // configured for a stage: a file of another stage is refused on first load too
    reg.expect_stages([("cfg-auth".to_string(), Stage::Auth)]);
    let file = dir.path().join("cfg-auth.wasm");
    std::fs::copy(component("test-plugins", "trivial-logging"), &file).expect("copy");
    let err = reg.load_file(&file).expect_err("refused");
    assert!(
        err.to_string().contains("configured for the auth stage"),
        "{err}"
    );
    assert!(reg.get("cfg-auth").is_none());
}
