//! Plugin config schemas at host level: a plugin declares the schema of its config (embedded
//! by `tools/plugin-build` from `config.schema.json`, or a `NAME.schema.json` beside the file);
//! every config it is given is checked when the plugin or the config changes, and a mismatch
//! refuses the load naming the plugin, the field and where the config came from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tollgate::plugins::{
    EngineOptions, HostContext, NoServices, PluginEngine, PluginRegistry, PluginSettings,
    SettingsTable,
};

fn built(dir: &str, name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(dir)
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} missing: run scripts/build-plugins",
        path.display()
    );
    path
}

fn registry(config_for: &[(&str, &str)]) -> PluginRegistry {
    let engine = Arc::new(PluginEngine::new(EngineOptions::default()).expect("engine"));
    let shared = Arc::new(HostContext::new(Arc::new(NoServices), 1000));
    let mut table = SettingsTable::default();
    for (name, config) in config_for {
        table.by_name.insert(
            name.to_string(),
            PluginSettings {
                config_json: Arc::from(*config),
                ..PluginSettings::default()
            },
        );
    }
    PluginRegistry::new(engine, shared, table, None).expect("registry")
}

#[test]
fn a_config_file_typo_refuses_the_plugin_naming_plugin_field_and_place() {
    let reg = registry(&[("route-policy", r#"{"sort": "prize"}"#)]);
    let err = reg
        .load_file(&built("plugins", "route-policy"))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("route-policy"), "{err}");
    assert!(
        err.contains("[plugins.settings.route-policy] config in the config file"),
        "{err}"
    );
    assert!(
        err.contains(r#"sort: "prize" is not one of "order", "price", "latency""#),
        "{err}"
    );

    let reg = registry(&[("route-policy", r#"{"sort": "price", "max_attempts": 2}"#)]);
    let p = reg
        .load_file(&built("plugins", "route-policy"))
        .expect("loads");
    assert!(p.version.config_schema);
    let m = reg
        .check_config("route-policy", r#"{"srot": "price"}"#)
        .expect_err("unknown field");
    assert_eq!(m.field, "srot");
    assert!(
        m.message.starts_with("unknown field (known: "),
        "{}",
        m.message
    );
    // Plugins without a schema accept anything.
    reg.load_file(&built("plugins", "auth-apikey"))
        .expect("loads");
    reg.check_config("auth-apikey", r#"{"anything": 1}"#)
        .expect("no schema");
}

#[test]
fn a_new_version_is_checked_against_the_policys_configs_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(&[]);
    // v1: no schema.
    let target = dir.path().join("router.wasm");
    std::fs::copy(built("test-plugins", "trivial-routing"), &target).unwrap();
    let v1 = reg.load_file(&target).expect("v1 loads");
    assert!(!v1.version.config_schema);
    reg.set_policy_configs(vec![(
        "router".into(),
        "p.toml:3: routes 'r'.routing.config".into(),
        Arc::from(r#"{"sort": "prize"}"#),
    )]);
    // v2: the route-policy component (with its embedded schema) under the same name.
    std::fs::copy(built("plugins", "route-policy"), &target).unwrap();
    let err = reg.load_file(&target).expect_err("refused").to_string();
    assert!(
        err.contains("p.toml:3: routes 'r'.routing.config: sort:"),
        "{err}"
    );
    assert_eq!(
        reg.get("router").unwrap().version.sha256,
        v1.version.sha256,
        "the previous version keeps serving"
    );
}

#[test]
fn a_sidecar_schema_beside_the_file_is_read_and_must_be_supported() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("mine.wasm");
    std::fs::copy(built("test-plugins", "trivial-routing"), &target).unwrap();
    let sidecar = dir.path().join("mine.schema.json");
    std::fs::write(
        &sidecar,
        r#"{"type": "object", "additionalProperties": false, "properties": {"level": {"type": "integer", "maximum": 3}}}"#,
    )
    .unwrap();
    let reg = registry(&[("mine", r#"{"level": 5}"#)]);
    let err = reg.load_file(&target).expect_err("refused").to_string();
    assert!(err.contains("level: must be at most 3, not 5"), "{err}");

    let reg = registry(&[("mine", r#"{"level": 2}"#)]);
    assert!(reg.load_file(&target).expect("loads").version.config_schema);

    std::fs::write(&sidecar, r#"{"properties": {"level": {"pattern": "x"}}}"#).unwrap();
    let reg = registry(&[]);
    let err = reg.load_file(&target).expect_err("refused").to_string();
    assert!(err.contains("keyword `pattern` is not supported"), "{err}");
    assert!(err.contains("mine.schema.json"), "{err}");
}
