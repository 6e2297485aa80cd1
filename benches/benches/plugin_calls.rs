//! Per-call cost of each plugin stage on real wasm components, instantiation cost, and the
//! OpenAI transform on a ~2 KB chat request.
//!
//! Calls are async (they yield at epoch ticks): each iteration drives one call to its end with
//! a current-thread runtime's `block_on`, whose own cost is measured beside them
//! (`runtime/block_on(ready)`) so it can be subtracted.
//!
//! `scripts/build-plugins && cargo bench -p benches --bench plugin_calls`

use std::sync::Arc;
use std::time::Duration;

use benches::{built_component, chat_request_2kb};
use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::plugins::bindings::*;
use tollgate::plugins::{
    EngineOptions, HostContext, InstanceMode, NoServices, PluginEngine, PluginRegistry,
    PluginSettings, SettingsTable,
};

fn registry() -> Arc<PluginRegistry> {
    let engine = Arc::new(PluginEngine::new(EngineOptions::default()).expect("engine"));
    let shared = Arc::new(HostContext::new(Arc::new(NoServices), 10_000));
    let mut settings = SettingsTable::default();
    settings.by_name.insert(
        "per-call-auth".into(),
        PluginSettings {
            instance_mode: InstanceMode::PerCall,
            ..PluginSettings::default()
        },
    );
    // The Python auth plugin (componentize-py): warm pooled calls, and a fresh instance per call.
    let python = PluginSettings {
        deadline: Duration::from_secs(2),
        ..PluginSettings::default()
    };
    settings
        .by_name
        .insert("trivial-auth-py".into(), python.clone());
    settings.by_name.insert(
        "per-call-auth-py".into(),
        PluginSettings {
            instance_mode: InstanceMode::PerCall,
            ..python
        },
    );
    let reg = PluginRegistry::new(engine, shared, settings, None).expect("registry");
    for (group, name) in [
        ("test-plugins", "trivial-auth"),
        ("test-plugins", "trivial-routing"),
        ("test-plugins", "passthrough-transform"),
        ("test-plugins", "trivial-billing"),
        ("test-plugins", "trivial-logging"),
        ("plugins", "provider-openai"),
        ("plugins", "guardrail-basic"),
        ("plugins-wit-0.1.0", "route-policy"),
        ("test-plugins", "trivial-auth-py"),
    ] {
        reg.load_file(&built_component(group, name)).expect(name);
    }
    // The same auth component under another name, configured for a fresh instance per call.
    let dir = tempfile::tempdir().expect("tempdir");
    let per_call = dir.path().join("per-call-auth.wasm");
    std::fs::copy(built_component("test-plugins", "trivial-auth"), &per_call).expect("copy");
    reg.load_file(&per_call).expect("per-call-auth");
    let per_call_py = dir.path().join("per-call-auth-py.wasm");
    std::fs::copy(
        built_component("test-plugins", "trivial-auth-py"),
        &per_call_py,
    )
    .expect("copy");
    reg.load_file(&per_call_py).expect("per-call-auth-py");
    Arc::new(reg)
}

fn bench(c: &mut Criterion) {
    let reg = registry();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let head = RequestHead {
        id: "req".into(),
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![
            ("authorization".into(), "Bearer ok".into()),
            ("content-type".into(), "application/json".into()),
        ],
        client_ip: "127.0.0.1".into(),
    };
    let who = Principal {
        org_id: "org".into(),
        key_id: "key".into(),
        attributes: vec![],
    };
    let summary = RequestSummary {
        format: ApiFormat::OpenaiChat,
        model: "gpt-4o-mini".into(),
        stream: false,
        max_tokens: Some(256),
        has_tools: false,
        body_bytes: 2048,
    };
    let price = Price {
        input: 150_000,
        output: 600_000,
        cache_read: 75_000,
        cache_write: 0,
    };
    let candidates: Vec<Candidate> = ["openai", "azure", "backup"]
        .iter()
        .map(|p| Candidate {
            provider: p.to_string(),
            upstream_model: "gpt-4o-mini".into(),
            price,
            healthy: true,
            zero_retention: false,
            latency_ms: 0,
            region: String::new(),
        })
        .collect();
    let ctx = TransformCtx {
        request_id: "req".into(),
        client_format: ApiFormat::OpenaiChat,
        upstream_model: "gpt-4o-mini-2024-07-18".into(),
        stream: false,
    };
    let usage = Usage {
        input: 500,
        output: 200,
        cache_read: 0,
        cache_write: 0,
        reasoning: 0,
    };
    let record = RequestRecord {
        request_id: "req".into(),
        org_id: "org".into(),
        key_id: "key".into(),
        model: "gpt-4o-mini".into(),
        provider: "openai".into(),
        usage,
        cost_micros: 195,
        latency_ms: 120,
        status: 200,
        attempts: vec![],
        client_ip: "127.0.0.1".into(),
        stream: false,
        request_body: None,
        response_body: None,
        timestamp_ms: 0,
    };
    let body = chat_request_2kb();
    let event = SseEvent {
        event: None,
        data: r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello"}}]}"#.into(),
    };

    let auth = reg.get("trivial-auth").expect("loaded");
    let routing = reg.get("trivial-routing").expect("loaded");
    let passthrough = reg.get("passthrough-transform").expect("loaded");
    let billing = reg.get("trivial-billing").expect("loaded");
    let logging = reg.get("trivial-logging").expect("loaded");
    let openai = reg.get("provider-openai").expect("loaded");
    let per_call = reg.get("per-call-auth").expect("loaded");
    let python = reg.get("trivial-auth-py").expect("loaded");
    let per_call_py = reg.get("per-call-auth-py").expect("loaded");

    let mut g = c.benchmark_group("runtime");
    g.bench_function("block_on(ready)", |b| b.iter(|| rt.block_on(async { 1u8 })));
    g.finish();

    let mut g = c.benchmark_group("stage_call_trivial");
    g.bench_function("auth.authenticate", |b| {
        b.iter(|| rt.block_on(auth.authenticate("req", &head)).expect("call"))
    });
    g.bench_function("routing.route(3 candidates)", |b| {
        b.iter(|| {
            rt.block_on(routing.route("req", &who, &summary, &candidates))
                .expect("call")
        })
    });
    g.bench_function("transform.request(passthrough 2KB)", |b| {
        b.iter(|| {
            rt.block_on(passthrough.transform_request("req", &ctx, &body))
                .expect("call")
        })
    });
    g.bench_function("transform.event(passthrough)", |b| {
        b.iter(|| {
            rt.block_on(passthrough.transform_event("req", &ctx, &[], &event))
                .expect("call")
        })
    });
    g.bench_function("billing.authorize", |b| {
        b.iter(|| {
            rt.block_on(billing.authorize("req", None, &who, &summary, "openai", price))
                .expect("call")
        })
    });
    g.bench_function("billing.settle", |b| {
        b.iter(|| {
            rt.block_on(billing.settle("req", None, &who, "openai", price, usage, false))
                .expect("call")
        })
    });
    g.bench_function("logging.retain", |b| {
        b.iter(|| rt.block_on(logging.retain("req", &record)).expect("call"))
    });
    g.finish();

    let mut g = c.benchmark_group("instance");
    g.bench_function("fresh instance + auth call (per-call mode)", |b| {
        b.iter(|| {
            rt.block_on(per_call.authenticate("req", &head))
                .expect("call")
        })
    });
    g.finish();

    let mut g = c.benchmark_group("python");
    g.bench_function("auth.authenticate (warm)", |b| {
        b.iter(|| {
            rt.block_on(python.authenticate("req", &head))
                .expect("call")
        })
    });
    g.bench_function("fresh instance + auth call (per-call mode)", |b| {
        b.iter(|| {
            rt.block_on(per_call_py.authenticate("req", &head))
                .expect("call")
        })
    });
    g.finish();

    // The guardrail stage (WIT 0.2.0): a 6-message prompt, and one piece of answer text.
    let guard = reg.get("guardrail-basic").expect("guardrail-basic");
    let who = Principal {
        org_id: "org".into(),
        key_id: "key".into(),
        attributes: Vec::new(),
    };
    let prompt = Prompt {
        summary: summary.clone(),
        messages: (0..6)
            .map(|i| Message {
                role: if i % 2 == 0 { "user" } else { "assistant" }.into(),
                text: "Please summarise the attached quarterly report in three bullet points."
                    .into(),
                tool_calls: Vec::new(),
                attachments: 0,
            })
            .collect(),
        tools: Vec::new(),
        inputs: Vec::new(),
    };
    let piece = Output {
        text: " the quarterly revenue grew by".into(),
        done: false,
    };
    let mut g = c.benchmark_group("guardrail");
    g.bench_function("check_prompt(6 messages)", |b| {
        b.iter(|| {
            rt.block_on(guard.check_prompt("req", &who, prompt.clone()))
                .expect("call")
        })
    });
    g.bench_function("check_output(one piece)", |b| {
        b.iter(|| {
            rt.block_on(guard.check_output("req", &who, Vec::new(), piece.clone()))
                .expect("call")
        })
    });
    g.finish();

    // The same router built for WIT 0.1.0 (through the adapter) and for 0.2.0.
    let old_router = reg.get("route-policy").expect("0.1.0 route-policy");
    let mut g = c.benchmark_group("wit_0_1_0_adapter");
    g.bench_function("routing.route(3 candidates), 0.1.0 build", |b| {
        b.iter(|| {
            rt.block_on(old_router.route("req", &who, &summary, &candidates))
                .expect("call")
        })
    });
    g.finish();

    let mut g = c.benchmark_group("provider_openai");
    g.bench_function("transform.request(2KB chat, patch model)", |b| {
        b.iter(|| {
            rt.block_on(openai.transform_request("req", &ctx, &body))
                .expect("call")
        })
    });
    g.bench_function("transform.event(content chunk)", |b| {
        b.iter(|| {
            rt.block_on(openai.transform_event("req", &ctx, &[], &event))
                .expect("call")
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
