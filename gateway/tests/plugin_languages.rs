//! Plugins in other languages, built from source by `scripts/build-plugins`: a Python auth plugin
//! (componentize-py, an ~18 MB component importing WASI) loads, serves from warm pooled
//! instances, and is refused nothing it needs.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::plugins::bindings::*;
use tollgate::plugins::{
    EngineOptions, HostContext, InstanceMode, NoServices, PluginEngine, PluginRegistry,
    PluginSettings, SettingsTable,
};

fn component(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: scripts/build-plugins builds it with componentize-py from the project's \
         .venv (scripts/test installs it)",
        path.display()
    );
    path
}

fn head(auth: &str) -> RequestHead {
    RequestHead {
        id: "req-1".into(),
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("authorization".into(), auth.into())],
        client_ip: "127.0.0.1".into(),
    }
}

fn registry(settings: PluginSettings) -> Arc<PluginRegistry> {
    let engine = Arc::new(PluginEngine::new(EngineOptions::default()).expect("engine"));
    let shared = Arc::new(HostContext::new(Arc::new(NoServices), 1000));
    let table = SettingsTable {
        default: settings,
        ..SettingsTable::default()
    };
    Arc::new(PluginRegistry::new(engine, shared, table, None).expect("registry"))
}

#[tokio::test]
async fn a_python_auth_plugin_serves_from_warm_instances() {
    let reg = registry(PluginSettings {
        // Instantiating an 18 MB interpreter is far slower than a Rust plugin's first call.
        deadline: Duration::from_secs(2),
        config_json: Arc::from(r#"{"token":"sesame"}"#),
        ..PluginSettings::default()
    });
    let started = Instant::now();
    let p = reg
        .load_file(&component("trivial-auth-py"))
        .expect("the Python component loads");
    let load = started.elapsed();
    assert!(p.version.uses_wasi);
    let who = p
        .authenticate("r", &head("Bearer sesame"))
        .await
        .expect("call")
        .expect("accepted");
    assert_eq!(who.org_id, "org-trivial");
    assert_eq!(
        who.attributes,
        vec![("request-id".to_string(), "req-1".to_string())]
    );
    let refused = p
        .authenticate("r", &head("Bearer ok"))
        .await
        .expect("call")
        .expect_err("refused");
    assert_eq!(
        (refused.status, refused.code.as_str()),
        (401, "invalid_api_key")
    );

    let n = 200;
    let started = Instant::now();
    for _ in 0..n {
        p.authenticate("r", &head("Bearer sesame"))
            .await
            .expect("call")
            .expect("accepted");
    }
    let per_call = started.elapsed() / n;
    // One instance (the load's self-test) served every call.
    assert_eq!(p.stats.instantiations.load(Ordering::Relaxed), 1);
    eprintln!("python auth: load {load:?} (compile + self-test), warm call {per_call:?}");
}

#[tokio::test]
async fn a_python_plugin_per_call_instance() {
    let reg = registry(PluginSettings {
        deadline: Duration::from_secs(2),
        instance_mode: InstanceMode::PerCall,
        ..PluginSettings::default()
    });
    let p = reg.load_file(&component("trivial-auth-py")).expect("load");
    let n = 10;
    let started = Instant::now();
    for _ in 0..n {
        p.authenticate("r", &head("Bearer ok"))
            .await
            .expect("call")
            .expect("accepted");
    }
    let per_call = started.elapsed() / n;
    assert_eq!(p.stats.instantiations.load(Ordering::Relaxed), 1 + n as u64);
    eprintln!("python auth: fresh instance + call {per_call:?}");
}
