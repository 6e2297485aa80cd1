//! Every example config in `examples/configs/` loads and names only plugins the project builds;
//! every policy file in `policies/` and `policies/examples/` checks against the built-in config.

use std::path::Path;

use tollgate::config::Config;

#[test]
fn every_example_policy_loads_and_names_real_plugins() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("examples").join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let config =
            Config::load(Some(&path)).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        let mut plugins = vec![
            config.auth_plugin.clone(),
            config.routing_plugin.clone(),
            config.billing_plugin.clone(),
            config.logging_plugin.clone(),
        ];
        plugins.extend(config.providers.values().map(|p| p.transform.clone()));
        plugins.extend(config.plugin_settings.by_name.keys().cloned());
        for plugin in plugins {
            assert!(
                root.join("plugins")
                    .join(&plugin)
                    .join("Cargo.toml")
                    .is_file(),
                "{} names plugin '{plugin}', which plugins/ does not build",
                path.display()
            );
        }
        assert!(!config.models.is_empty(), "{}: no models", path.display());
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} example configs found");
    // The built-in defaults are held to the same rule.
    Config::load(None).unwrap();
}

#[test]
fn the_shipped_policy_directory_checks_against_the_defaults() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = Config::load(None).unwrap();
    let policy = tollgate::policy::file::load_dir(&root.join("policies"), &config, None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(policy.files.iter().any(|f| f.ends_with("default.toml")));
    assert_eq!(policy.models.len(), config.models.len());
}

#[test]
fn the_example_policies_check_and_name_plugins_the_project_builds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = Config::load(None).unwrap();
    let examples = root.join("policies").join("examples");
    let policy = tollgate::policy::file::load_dir(&examples, &config, None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.rules.len(), 2, "one route per example file");
    for rule in &policy.rules {
        let plugin = &rule
            .routing
            .as_ref()
            .expect("each example names its router")
            .plugin;
        assert!(
            examples.join(plugin).join("Cargo.toml").is_file(),
            "{} names plugin '{plugin}', which policies/examples/ does not build",
            rule.source
        );
    }
}
