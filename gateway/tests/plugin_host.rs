//! The plugin host against real wasm components built by `scripts/build-plugins`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::plugins::bindings::*;
use tollgate::plugins::{
    EngineOptions, HostContext, HostServices, InstanceMode, PluginEngine, PluginErrorKind,
    PluginRegistry, PluginSettings, SettingsTable, Stage,
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of a built component; fails loudly when the build step has not run.
fn component(group: &str, name: &str) -> PathBuf {
    let path = workspace()
        .join("target")
        .join(group)
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-plugins first",
        path.display()
    );
    path
}

fn test_plugin(name: &str) -> PathBuf {
    component("test-plugins", name)
}

struct Services;

impl HostServices for Services {
    fn hash_api_key(&self, presented: &str) -> String {
        tollgate::keys::keyed_hash(b"test-secret", presented)
    }
    fn lookup_api_key(&self, key_hash: &str) -> Option<ApiKeyInfo> {
        (key_hash == tollgate::keys::keyed_hash(b"test-secret", "tg-live")).then(|| ApiKeyInfo {
            key_id: "key-1".into(),
            org_id: "org-1".into(),
            prefix: "tg-li".into(),
            revoked: false,
            expires_at_ms: 0,
            scopes: "chat".into(),
        })
    }
    fn credit_balance(&self, _: &str) -> Option<i64> {
        Some(1_000_000)
    }
    fn model_price(&self, _: &str, _: &str) -> Option<Price> {
        None
    }
}

fn engine() -> Arc<PluginEngine> {
    Arc::new(PluginEngine::new(EngineOptions::default()).expect("engine"))
}

fn registry_with(settings: SettingsTable) -> Arc<PluginRegistry> {
    let shared = Arc::new(HostContext::new(Arc::new(Services), 10_000));
    Arc::new(PluginRegistry::new(engine(), shared, settings, None).expect("registry"))
}

fn registry() -> Arc<PluginRegistry> {
    registry_with(SettingsTable::default())
}

fn head(token: &str) -> RequestHead {
    RequestHead {
        id: "req-1".into(),
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("authorization".into(), format!("Bearer {token}"))],
        client_ip: "127.0.0.1".into(),
    }
}

fn summary() -> RequestSummary {
    RequestSummary {
        format: ApiFormat::OpenaiChat,
        model: "gpt-test".into(),
        stream: false,
        max_tokens: Some(100),
        has_tools: false,
        body_bytes: 100,
    }
}

fn price() -> Price {
    Price {
        input: 1_000_000,
        output: 2_000_000,
        cache_read: 0,
        cache_write: 0,
    }
}

fn ctx() -> TransformCtx {
    TransformCtx {
        request_id: "req-1".into(),
        client_format: ApiFormat::OpenaiChat,
        upstream_model: "gpt-test".into(),
        stream: true,
    }
}

#[tokio::test]
async fn each_stage_world_loads_and_answers_with_real_data() {
    let reg = registry();
    for name in [
        "trivial-auth",
        "trivial-routing",
        "passthrough-transform",
        "trivial-billing",
        "trivial-logging",
    ] {
        reg.load_file(&test_plugin(name)).expect(name);
    }

    let auth = reg.get_stage("trivial-auth", Stage::Auth).unwrap();
    let who = auth.authenticate("r", &head("ok")).await.unwrap().unwrap();
    assert_eq!(who.org_id, "org-trivial");
    assert_eq!(
        who.attributes,
        vec![("request-id".to_string(), "req-1".to_string())]
    );
    let refused = auth
        .authenticate("r", &head("nope"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        (refused.status, refused.code.as_str()),
        (401, "invalid_api_key")
    );

    let routing = reg.get_stage("trivial-routing", Stage::Routing).unwrap();
    let candidate = |provider: &str, healthy| Candidate {
        provider: provider.into(),
        upstream_model: format!("{provider}-model"),
        price: price(),
        healthy,
        zero_retention: false,
        latency_ms: 0,
        region: String::new(),
    };
    let attempts = routing
        .route(
            "r",
            &who,
            &summary(),
            &[
                candidate("a", true),
                candidate("b", false),
                candidate("c", true),
            ],
        )
        .await
        .unwrap()
        .unwrap();
    let order: Vec<_> = attempts.iter().map(|a| a.provider.as_str()).collect();
    assert_eq!(order, ["a", "c"]);
    let none = routing
        .route("r", &who, &summary(), &[])
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(none.status, 404);

    let transform = reg
        .get_stage("passthrough-transform", Stage::Transform)
        .unwrap();
    let body = br#"{"model":"gpt-test","messages":[]}"#;
    let up = transform
        .transform_request("r", &ctx(), body)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (up.path.as_str(), up.body.as_slice()),
        ("/v1/chat/completions", &body[..])
    );
    let resp = transform
        .transform_response("r", &ctx(), 200, b"{}")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"{}"[..]));
    let event = SseEvent {
        event: None,
        data: "{\"x\":1}".into(),
    };
    let out = transform
        .transform_event("r", &ctx(), b"s", &event)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.events, vec![event]);
    assert_eq!(out.state, b"s");
    let end = transform
        .end_of_stream("r", &ctx(), b"s")
        .await
        .unwrap()
        .unwrap();
    assert!(end.events.is_empty());

    let billing = reg.get_stage("trivial-billing", Stage::Billing).unwrap();
    billing
        .authorize("r", None, &who, &summary(), "a", price())
        .await
        .unwrap()
        .unwrap();
    let usage = Usage {
        input: 1000,
        output: 500,
        cache_read: 0,
        cache_write: 0,
        reasoning: 0,
    };
    // 1000 * 1 + 500 * 2 micro-USD
    assert_eq!(
        billing
            .settle("r", None, &who, "a", price(), usage, false)
            .await
            .unwrap()
            .amount_micros,
        2000
    );
    assert_eq!(
        billing
            .settle("r", None, &who, "a", price(), usage, true)
            .await
            .unwrap()
            .amount_micros,
        0
    );

    let logging = reg.get_stage("trivial-logging", Stage::Logging).unwrap();
    let record = RequestRecord {
        request_id: "r".into(),
        org_id: "org-1".into(),
        key_id: "key-1".into(),
        model: "m".into(),
        provider: "a".into(),
        usage,
        cost_micros: 2000,
        latency_ms: 5,
        status: 200,
        attempts: vec![],
        client_ip: "127.0.0.1".into(),
        stream: false,
        request_body: Some(b"secret".to_vec()),
        response_body: None,
        timestamp_ms: 0,
    };
    let decision = logging.retain("r", &record).await.unwrap().decision;
    assert!(decision.store_event && !decision.store_content && !decision.store_client_ip);

    // Calling a plugin at the wrong stage is refused by name.
    let err = reg.get_stage("trivial-auth", Stage::Billing).err().unwrap();
    assert!(matches!(
        err.kind,
        PluginErrorKind::WrongStage {
            actual: Stage::Auth
        }
    ));
    let listed = reg.list();
    assert_eq!(listed.len(), 5);
    assert!(listed
        .iter()
        .all(|s| s.active.as_ref().is_some_and(|v| v.wit_version == "0.2.0")));
}

#[tokio::test]
async fn builtin_auth_uses_keyed_hash_lookup_through_the_host() {
    let reg = registry();
    let auth = reg.load_file(&component("plugins", "auth-apikey")).unwrap();
    let who = auth
        .authenticate("r", &head("tg-live"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (who.org_id.as_str(), who.key_id.as_str()),
        ("org-1", "key-1")
    );
    let err = auth
        .authenticate("r", &head("tg-dead"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.status, 401);
}

#[tokio::test]
async fn plugin_config_is_passed_as_json() {
    let mut settings = SettingsTable::default();
    settings.by_name.insert(
        "trivial-auth".into(),
        PluginSettings {
            config_json: Arc::from(r#"{"token":"sesame"}"#),
            ..PluginSettings::default()
        },
    );
    let reg = registry_with(settings);
    let auth = reg.load_file(&test_plugin("trivial-auth")).unwrap();
    assert!(auth
        .authenticate("r", &head("sesame"))
        .await
        .unwrap()
        .is_ok());
    assert!(auth.authenticate("r", &head("ok")).await.unwrap().is_err());
}

fn hostile_registry(deadline_ms: u64) -> Arc<PluginRegistry> {
    let mut settings = SettingsTable::default();
    settings.by_name.insert(
        "hostile".into(),
        PluginSettings {
            deadline: Duration::from_millis(deadline_ms),
            memory_limit_bytes: 32 << 20,
            max_output_bytes: 1 << 20,
            ..PluginSettings::default()
        },
    );
    let reg = registry_with(settings);
    reg.load_file(&test_plugin("hostile")).unwrap();
    reg.load_file(&test_plugin("passthrough-transform"))
        .unwrap();
    reg
}

async fn good_call_still_works(reg: &PluginRegistry) {
    let good = reg.get("passthrough-transform").unwrap();
    assert!(good
        .transform_request("r", &ctx(), b"{}")
        .await
        .unwrap()
        .is_ok());
    // The hostile plugin itself also serves a well-behaved call afterwards.
    let hostile = reg.get("hostile").unwrap();
    let echoed = hostile
        .transform_request("r", &ctx(), b"hello")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed.body, b"hello");
}

#[tokio::test]
async fn infinite_loop_is_interrupted_at_its_deadline() {
    let reg = hostile_registry(30);
    let hostile = reg.get("hostile").unwrap();
    let started = Instant::now();
    let err = hostile
        .transform_request("r", &ctx(), b"loop")
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind, PluginErrorKind::Timeout { deadline_ms: 30 });
    assert!(err.to_string().contains("plugin 'hostile'"), "{err}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    good_call_still_works(&reg).await;
    assert_eq!(hostile.stats.failures.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn trap_fails_the_call_only() {
    let reg = hostile_registry(50);
    let err = reg
        .get("hostile")
        .unwrap()
        .transform_request("r", &ctx(), b"trap")
        .await
        .unwrap_err();
    assert!(matches!(err.kind, PluginErrorKind::Trap(_)), "{err}");
    good_call_still_works(&reg).await;
}

#[tokio::test]
async fn memory_bomb_hits_the_cap() {
    let reg = hostile_registry(2_000);
    let err = reg
        .get("hostile")
        .unwrap()
        .transform_request("r", &ctx(), b"memory")
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        PluginErrorKind::MemoryExceeded {
            limit_bytes: 32 << 20
        },
        "{err}"
    );
    good_call_still_works(&reg).await;
}

#[tokio::test]
async fn huge_output_is_refused() {
    let reg = hostile_registry(2_000);
    let hostile = reg.get("hostile").unwrap();
    let err = hostile
        .transform_request("r", &ctx(), b"huge:4000000")
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, PluginErrorKind::OutputTooLarge { bytes, limit_bytes: 1_048_576 } if bytes > 4_000_000),
        "{err}"
    );
    // Bigger than the memory cap: the guest cannot even build it.
    let err = hostile
        .transform_request("r", &ctx(), b"huge:100000000")
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, PluginErrorKind::MemoryExceeded { .. }),
        "{err}"
    );
    // Under the limit passes.
    let ok = hostile
        .transform_request("r", &ctx(), b"huge:1000")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.body.len(), 1000);
    good_call_still_works(&reg).await;
}

#[tokio::test]
async fn instances_are_pooled_recycled_or_fresh_per_call() {
    let mut settings = SettingsTable::default();
    settings.by_name.insert(
        "trivial-auth".into(),
        PluginSettings {
            max_calls_per_instance: 3,
            ..PluginSettings::default()
        },
    );
    settings.by_name.insert(
        "alt-auth".into(),
        PluginSettings {
            instance_mode: InstanceMode::PerCall,
            ..PluginSettings::default()
        },
    );
    let reg = registry_with(settings);
    let recycled = reg.load_file(&test_plugin("trivial-auth")).unwrap();
    let fresh = reg.load_file(&test_plugin("alt-auth")).unwrap();
    for _ in 0..9 {
        recycled
            .authenticate("r", &head("ok"))
            .await
            .unwrap()
            .unwrap();
        fresh.authenticate("r", &head("ok")).await.unwrap().unwrap();
    }
    // 1 self-test instance serves 3 calls, then 2 more instances for the other 6.
    assert_eq!(recycled.stats.instantiations.load(Ordering::Relaxed), 3);
    // Per-call: the self-test instance plus one per call, none kept idle.
    assert_eq!(fresh.stats.instantiations.load(Ordering::Relaxed), 10);
    assert_eq!(fresh.idle_instances(), 0);

    let default_reg = registry();
    let pooled = default_reg.load_file(&test_plugin("trivial-auth")).unwrap();
    for _ in 0..50 {
        pooled
            .authenticate("r", &head("ok"))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(pooled.stats.instantiations.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn instances_past_the_memory_threshold_are_recycled() {
    let mut settings = SettingsTable::default();
    settings.by_name.insert(
        "trivial-auth".into(),
        // Any instance's memory is above 1 byte: every call recycles its instance.
        PluginSettings {
            recycle_memory_bytes: 1,
            ..PluginSettings::default()
        },
    );
    let reg = registry_with(settings);
    let plugin = reg.load_file(&test_plugin("trivial-auth")).unwrap();
    for _ in 0..5 {
        plugin
            .authenticate("r", &head("ok"))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(plugin.idle_instances(), 0);
    assert_eq!(plugin.stats.instantiations.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn engine_falls_back_when_the_pool_cannot_be_reserved() {
    // 1M instances of 64 GiB memories cannot be reserved in a 47-bit address space.
    let engine = PluginEngine::new(EngineOptions {
        pool_total_instances: 1_000_000,
        max_memory_bytes: 64 << 30,
        ..EngineOptions::default()
    })
    .expect("engine with fallback");
    assert!(!engine.pooling(), "pooling should have been refused");
    let shared = Arc::new(HostContext::new(Arc::new(Services), 100));
    let reg =
        PluginRegistry::new(Arc::new(engine), shared, SettingsTable::default(), None).unwrap();
    let plugin = reg.load_file(&test_plugin("trivial-auth")).unwrap();
    assert!(plugin.authenticate("r", &head("ok")).await.unwrap().is_ok());
    assert!(self::engine().pooling(), "the default engine pools");
}

fn copy_atomically(from: &Path, to: &Path) {
    let tmp = to.with_file_name(format!(
        ".{}.tmp",
        to.file_name().unwrap().to_string_lossy()
    ));
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[tokio::test]
async fn bad_files_are_refused_with_a_clear_error_and_keep_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry();
    let target = dir.path().join("auth.wasm");
    std::fs::copy(test_plugin("trivial-auth"), &target).unwrap();
    let v1 = reg.load_file(&target).unwrap();

    let cases: [(&[u8], &str); 4] = [
        (b"not wasm at all", "not a valid component"),
        (b"(component)", "exports no tollgate:plugin stage"),
        (
            b"(component (instance $i) (export \"tollgate:plugin/auth@0.3.0\" (instance $i)))",
            "built against tollgate:plugin@0.3.0",
        ),
        (
            b"(component (import \"acme:net/socket@1.0.0\" (instance)))",
            "plugins may import only tollgate:plugin/host and WASI",
        ),
    ];
    for (bytes, expected) in cases {
        std::fs::write(&target, bytes).unwrap();
        let err = reg.load_file(&target).unwrap_err();
        assert!(
            err.to_string().contains(expected),
            "{err} should mention {expected}"
        );
        let active = reg.get("auth").unwrap();
        assert_eq!(active.version.sha256, v1.version.sha256, "old version kept");
        assert!(active.authenticate("r", &head("ok")).await.unwrap().is_ok());
        let status = reg.list().into_iter().find(|s| s.name == "auth").unwrap();
        assert!(status
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains(expected));
    }
}

#[tokio::test]
async fn compiled_artifacts_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let shared = Arc::new(HostContext::new(Arc::new(Services), 100));
    let eng = engine();
    let first = PluginRegistry::new(
        eng.clone(),
        shared.clone(),
        SettingsTable::default(),
        Some(cache.path()),
    )
    .unwrap();
    let p = first.load_file(&test_plugin("trivial-auth")).unwrap();
    assert!(!p.version.from_cache, "nothing was cached yet");
    let cached: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "one compiled artifact");
    // A second registry (a restart) reads the artifact back instead of compiling.
    let second = PluginRegistry::new(
        eng.clone(),
        shared.clone(),
        SettingsTable::default(),
        Some(cache.path()),
    )
    .unwrap();
    let p = second.load_file(&test_plugin("trivial-auth")).unwrap();
    assert!(
        p.version.from_cache,
        "the cached artifact was not read back"
    );
    assert!(p.authenticate("r", &head("ok")).await.unwrap().is_ok());
    // A corrupt artifact is discarded: the plugin is compiled again and still works.
    // (Replaced, not written in place: loaded artifacts are memory-mapped, as in production
    // where the cache only ever renames new files over old ones.)
    let tmp = cache.path().join("corrupt.tmp");
    std::fs::write(&tmp, b"not a compiled component").unwrap();
    std::fs::rename(&tmp, &cached[0]).unwrap();
    let third =
        PluginRegistry::new(eng, shared, SettingsTable::default(), Some(cache.path())).unwrap();
    let p = third.load_file(&test_plugin("trivial-auth")).unwrap();
    assert!(!p.version.from_cache);
    assert!(p.authenticate("r", &head("ok")).await.unwrap().is_ok());
    assert!(
        std::fs::read(&cached[0]).unwrap().len() > 100,
        "artifact rewritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_concurrent_calls_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("swap-auth.wasm");
    std::fs::copy(test_plugin("trivial-auth"), &target).unwrap();
    // A generous deadline: 8 threads on a small, busy machine can be descheduled past the
    // default 50 ms, and a call timing out is not what this test is about.
    let reg = registry_with(SettingsTable {
        default: PluginSettings {
            deadline: Duration::from_secs(2),
            ..PluginSettings::default()
        },
        ..SettingsTable::default()
    });
    for (path, outcome) in reg.load_dir(dir.path()) {
        outcome.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let _watch =
        tollgate::plugins::watch(reg.clone(), dir.path(), Duration::from_millis(20)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let swapped_at: Arc<parking_lot::Mutex<Option<Instant>>> = Arc::default();
    let first_seen: Arc<parking_lot::Mutex<Option<Instant>>> = Arc::default();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (reg, stop, calls, failures, first_seen) = (
                reg.clone(),
                stop.clone(),
                calls.clone(),
                failures.clone(),
                first_seen.clone(),
            );
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) && n < 20_000 {
                        n += 1;
                        let plugin = reg.get("swap-auth").expect("always loaded");
                        match plugin.authenticate("r", &head("ok")).await {
                            Ok(Ok(who)) => {
                                if who.org_id == "org-alt" {
                                    first_seen.lock().get_or_insert_with(Instant::now);
                                }
                            }
                            _ => {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
        })
        .collect();

    while calls.load(Ordering::Relaxed) < 1_000 {
        std::thread::sleep(Duration::from_millis(1));
    }
    *swapped_at.lock() = Some(Instant::now());
    copy_atomically(&test_plugin("alt-auth"), &target);
    let deadline = Instant::now() + Duration::from_secs(5);
    while first_seen.lock().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // A corrupt file written in place while calls flow: the new (alt) version keeps serving.
    std::fs::write(&target, b"\0asm garbage").unwrap();
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }

    let total = calls.load(Ordering::Relaxed);
    assert!(total >= 2_000, "only {total} calls");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "failed calls during reload"
    );
    let seen = first_seen.lock().expect("new version never observed");
    let lag = seen - swapped_at.lock().unwrap();
    assert!(
        lag < Duration::from_secs(1),
        "new version seen after {lag:?}"
    );
    let active = reg.get("swap-auth").unwrap();
    assert_eq!(
        active
            .authenticate("r", &head("x"))
            .await
            .unwrap()
            .unwrap()
            .org_id,
        "org-alt",
        "corrupt file must not replace the loaded version"
    );
    let status = reg
        .list()
        .into_iter()
        .find(|s| s.name == "swap-auth")
        .unwrap();
    assert!(status.last_error.is_some(), "corrupt file error visible");
    eprintln!("hot reload: {total} calls, 0 failed, new version seen {lag:?} after the rename");
}
