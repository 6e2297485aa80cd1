//! Tollgate benchmarks: `benches/plugin_calls.rs` (criterion) measures the plugin host;
//! `loadbench` (this crate's binary) runs direct vs gateway loads. See `docs/benchmarks.md`.

pub mod driver;
pub mod mock;
pub mod procstat;

use std::path::{Path, PathBuf};

/// Path of a component built by `scripts/build-plugins` (`group` is `plugins` or
/// `test-plugins`); panics with the fix when it is missing.
pub fn built_component(group: &str, name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
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

/// A ~2 KB OpenAI chat completions request, as clients send them.
pub fn chat_request_2kb() -> Vec<u8> {
    let filler = "Tollgate benchmark message with some ordinary English text in it. ".repeat(6);
    let messages: Vec<String> = (0..5)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            format!(r#"{{"role":"{role}","content":"{i}: {filler}"}}"#)
        })
        .collect();
    format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"You are terse."}},{}],"temperature":0.2,"max_tokens":256,"stream":false}}"#,
        messages.join(",")
    )
    .into_bytes()
}
