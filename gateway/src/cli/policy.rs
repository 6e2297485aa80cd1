//! `tollgate policy check DIR` and `tollgate check-config`: the checks the gateway makes at
//! start, without starting it — the config, every plugin it names present in the plugin
//! directory, and the policy files (errors name file, line and field).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Check a policy directory against the config (providers, models, plugins present).
    Check {
        /// The policy directory (its `*.toml` files).
        dir: PathBuf,
    },
}

/// Whether `name` is in the plugin directory (a `.wasm` file: what the gateway would load).
fn plugin_file(config: &Config, name: &str) -> bool {
    config.plugin_dir.join(format!("{name}.wasm")).is_file()
}

/// Every plugin the config names, missing from the plugin directory.
fn missing_plugins(config: &Config) -> Vec<String> {
    let mut names: Vec<&String> = vec![
        &config.auth_plugin,
        &config.routing_plugin,
        &config.billing_plugin,
        &config.logging_plugin,
    ];
    names.extend(config.providers.values().map(|p| &p.transform));
    names.extend(config.retention.plugins.values());
    let mut missing: Vec<String> = names
        .into_iter()
        .filter(|n| !plugin_file(config, n))
        .cloned()
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

fn check_policy(config: &Config, dir: &Path) -> Result<crate::policy::Policy> {
    let exists = |name: &str| plugin_file(config, name);
    crate::policy::file::load_dir(dir, config, Some(&exists)).map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn run(config: &Config, command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Check { dir } => {
            let p = check_policy(config, &dir)?;
            println!(
                "policy OK: {} files, {} routes, {} aliases, {} models",
                p.files.len(),
                p.rules.len(),
                p.aliases.len(),
                p.models.len()
            );
            for r in &p.rules {
                println!(
                    "  route {:<24} {:<12} {}",
                    r.name,
                    r.strategy.as_str(),
                    r.source
                );
            }
            Ok(())
        }
    }
}

/// `tollgate check-config`.
pub fn check_config(config: &Config) -> Result<()> {
    if !config.plugin_dir.is_dir() {
        bail!(
            "plugins.dir: {} is not a directory (build plugins with scripts/build-plugins)",
            config.plugin_dir.display()
        );
    }
    let missing = missing_plugins(config);
    if !missing.is_empty() {
        bail!(
            "plugins not in {}: {} (named by [stages], providers' transform or [retention] plugins)",
            config.plugin_dir.display(),
            missing.join(", ")
        );
    }
    let policy = match &config.policy.dir {
        Some(d) if d.is_dir() => Some(check_policy(config, d)?),
        Some(d) if config.policy.required => {
            bail!("policy.dir: {} is not a directory", d.display())
        }
        _ => None,
    };
    println!(
        "config OK: listen {}, admin {}, database {}, plugins {}, {} providers, {} models{}",
        config.listen,
        config.admin_listen,
        config.database_url,
        config.plugin_dir.display(),
        config.providers.len(),
        policy
            .as_ref()
            .map_or(config.models.len(), |p| p.models.len()),
        match (&policy, &config.policy.dir) {
            (Some(p), Some(d)) => format!(", policy {} ({} routes)", d.display(), p.rules.len()),
            _ => String::new(),
        }
    );
    Ok(())
}
