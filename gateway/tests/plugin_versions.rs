//! WIT versions and the guardrail stage at host level: the stock plugins built against the
//! frozen `tollgate:plugin@0.1.0` (`target/plugins-wit-0.1.0/`, built by `scripts/build-plugins`
//! with the SDK's `wit-0-1-0` feature) load and answer exactly as their 0.2.0 builds do,
//! through the adapter; the Rust and Python guardrails check prompts and answers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tollgate::plugins::bindings::*;
use tollgate::plugins::{
    EngineOptions, HostContext, NoServices, PluginEngine, PluginRegistry, PluginSettings,
    SettingsTable, Stage,
};

fn built(dir: &str, name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(dir)
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-plugins",
        path.display()
    );
    path
}

fn registry(config: &str) -> Arc<PluginRegistry> {
    let engine = Arc::new(PluginEngine::new(EngineOptions::default()).expect("engine"));
    let shared = Arc::new(HostContext::new(Arc::new(NoServices), 1000));
    let table = SettingsTable {
        default: PluginSettings {
            deadline: Duration::from_secs(2),
            config_json: Arc::from(config),
            ..PluginSettings::default()
        },
        ..SettingsTable::default()
    };
    Arc::new(PluginRegistry::new(engine, shared, table, None).expect("registry"))
}

fn who() -> Principal {
    Principal {
        org_id: "org".into(),
        key_id: "key".into(),
        attributes: Vec::new(),
    }
}

fn summary() -> RequestSummary {
    RequestSummary {
        format: ApiFormat::OpenaiChat,
        model: "gpt-4o-mini".into(),
        stream: false,
        max_tokens: Some(100),
        has_tools: false,
        body_bytes: 10,
    }
}

fn candidates() -> Vec<Candidate> {
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, p)| Candidate {
            provider: p.to_string(),
            upstream_model: format!("{p}-m"),
            price: Price {
                input: 3 - i as u64,
                output: 1,
                cache_read: 0,
                cache_write: 0,
            },
            healthy: i != 1,
            zero_retention: false,
            latency_ms: 10,
            region: "eu".into(),
        })
        .collect()
}

#[tokio::test]
async fn plugins_built_for_0_1_0_answer_like_their_0_2_0_builds() {
    let old_reg = registry("{}");
    let new_reg = registry("{}");
    // Routing: candidates lose their region on the way in, attempts come back.
    let old = old_reg
        .load_file(&built("plugins-wit-0.1.0", "route-policy"))
        .expect("0.1.0 router loads");
    let new = new_reg
        .load_file(&built("plugins", "route-policy"))
        .expect("0.2.0 router loads");
    assert_eq!(old.version.wit_version, "0.1.0");
    assert_eq!(new.version.wit_version, "0.2.0");
    let a = old
        .route("r", &who(), &summary(), &candidates())
        .await
        .expect("call");
    let b = new
        .route("r", &who(), &summary(), &candidates())
        .await
        .expect("call");
    assert_eq!(a, b);
    assert!(!a.expect("routed").is_empty());

    // Transform: request, complete response, stream events and the end of the stream.
    let old = old_reg
        .load_file(&built("plugins-wit-0.1.0", "provider-anthropic"))
        .expect("0.1.0 transform loads");
    let new = new_reg
        .load_file(&built("plugins", "provider-anthropic"))
        .expect("0.2.0 transform loads");
    let ctx = TransformCtx {
        request_id: "r".into(),
        client_format: ApiFormat::OpenaiChat,
        upstream_model: "claude-x".into(),
        stream: true,
    };
    let body = br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (ra, rb) = (
        old.transform_request("r", &ctx, body).await.expect("call"),
        new.transform_request("r", &ctx, body).await.expect("call"),
    );
    assert_eq!(ra, rb);
    let state = ra.expect("translated").stream_state;
    let event = SseEvent {
        event: Some("content_block_delta".into()),
        data:
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"yo"}}"#
                .into(),
    };
    let (ea, eb) = (
        old.transform_event("r", &ctx, &state, &event)
            .await
            .expect("call"),
        new.transform_event("r", &ctx, &state, &event)
            .await
            .expect("call"),
    );
    assert_eq!(ea, eb);
    let (za, zb) = (
        old.end_of_stream("r", &ctx, &state).await.expect("call"),
        new.end_of_stream("r", &ctx, &state).await.expect("call"),
    );
    assert_eq!(za, zb);
    let answer = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"hello"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":2}}"#;
    let (ca, cb) = (
        old.transform_response("r", &ctx, 200, answer)
            .await
            .expect("call"),
        new.transform_response("r", &ctx, 200, answer)
            .await
            .expect("call"),
    );
    assert_eq!(ca, cb);
    assert_eq!(ca.expect("ok").usage.map(|u| u.output), Some(2));

    // Billing and logging.
    let old = old_reg
        .load_file(&built("plugins-wit-0.1.0", "retention-metadata-only"))
        .expect("0.1.0 logging loads");
    let new = new_reg
        .load_file(&built("plugins", "retention-metadata-only"))
        .expect("0.2.0 logging loads");
    let record = RequestRecord {
        request_id: "r".into(),
        org_id: "o".into(),
        key_id: "k".into(),
        model: "m".into(),
        provider: "p".into(),
        usage: Usage {
            input: 1,
            output: 2,
            cache_read: 0,
            cache_write: 0,
            reasoning: 0,
        },
        cost_micros: 5,
        latency_ms: 7,
        status: 200,
        attempts: vec![AttemptOutcome {
            provider: "p".into(),
            upstream_model: "m".into(),
            status: 200,
            error: String::new(),
            latency_ms: 7,
        }],
        client_ip: "127.0.0.1".into(),
        stream: false,
        request_body: None,
        response_body: None,
        timestamp_ms: 1,
    };
    assert_eq!(
        old.retain("r", &record).await.expect("call"),
        new.retain("r", &record).await.expect("call")
    );
}

async fn guard(reg: &PluginRegistry, dir: &str, name: &str) {
    let p = reg.load_file(&built(dir, name)).expect("guardrail loads");
    assert_eq!(p.stage(), Stage::Guardrail);
    let prompt = |texts: &[&str]| Prompt {
        summary: summary(),
        messages: texts
            .iter()
            .map(|t| Message {
                role: "user".into(),
                text: t.to_string(),
                tool_calls: Vec::new(),
                attachments: 0,
            })
            .collect(),
        tools: Vec::new(),
        inputs: Vec::new(),
    };
    p.check_prompt("r", &who(), prompt(&["hello"]))
        .await
        .expect("call")
        .expect("clean prompt passes");
    let r = p
        .check_prompt("r", &who(), prompt(&["my key AKIAABCDEFGHIJKLMNOP"]))
        .await
        .expect("call")
        .expect_err("secret refused");
    assert_eq!(
        (r.status, r.code.as_str()),
        (400, "guardrail_blocked"),
        "{name}"
    );
    let r = p
        .check_prompt("r", &who(), prompt(&["a", "b", "c"]))
        .await
        .expect("call")
        .expect_err("too many messages");
    assert!(r.message.contains("3 messages"), "{name}: {}", r.message);
    assert!(p.checks_output().await);
    let piece = |t: &str| Output {
        text: t.into(),
        done: false,
    };
    let state = p
        .check_output("r", &who(), Vec::new(), piece("the key: AKIAABCD"))
        .await
        .expect("call")
        .expect("no whole key yet");
    let r = p
        .check_output("r", &who(), state, piece("EFGHIJKLMNOP."))
        .await
        .expect("call")
        .expect_err("the key split across two pieces is caught");
    assert_eq!(r.status, 403, "{name}");
}

#[tokio::test]
async fn the_rust_and_python_guardrails_check_prompts_and_answers() {
    let reg = registry(r#"{"max_messages": 2}"#);
    guard(&reg, "plugins", "guardrail-basic").await;
    guard(&reg, "test-plugins", "guardrail-py").await;
}
