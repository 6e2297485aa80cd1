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
    /// Replay recorded usage through a candidate policy: which providers it would have chosen,
    /// and the cost and latency difference (docs/policies.md, "Dry run").
    Simulate {
        /// The candidate policy directory.
        #[arg(long)]
        policy: PathBuf,
        /// How far back: `24h`, `30m`, `7d`, or milliseconds.
        #[arg(long, default_value = "24h")]
        since: String,
        /// Only this org's requests (default: every org).
        #[arg(long)]
        org: Option<String>,
        /// Most records read (newest windows are read whole up to this).
        #[arg(long, default_value_t = 1_000_000)]
        limit: usize,
        /// Seed of the weighted strategy's draws (repeatable reports).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Whether `name` is in the plugin directory (a `.wasm` file: what the gateway would load).
fn plugin_file(config: &Config, name: &str) -> bool {
    config.plugin_dir.join(format!("{name}.wasm")).is_file()
}

/// Every plugin the config names, missing from the plugin directory.
fn missing_plugins(config: &Config) -> Vec<String> {
    let mut missing: Vec<String> = config
        .plugin_stages()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| !plugin_file(config, n))
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// The plugin directory as `policy check` sees it: a plugin exists when its file does, and
/// its config schema is read from the file (no engine needed).
struct PluginFiles<'a>(&'a Config);

impl crate::policy::file::Plugins for PluginFiles<'_> {
    fn exists(&self, name: &str) -> bool {
        plugin_file(self.0, name)
    }
    fn check_config(&self, name: &str, config: &str) -> Result<(), (String, String)> {
        let path = self.0.plugin_dir.join(format!("{name}.wasm"));
        let schema = std::fs::read(&path)
            .ok()
            .and_then(|wasm| crate::plugins::schema::embedded(&wasm).ok().flatten())
            .or_else(|| {
                let sidecar = path.with_file_name(format!("{name}.schema.json"));
                let bytes = std::fs::read(sidecar).ok()?;
                crate::plugins::schema::ConfigSchema::parse(&bytes).ok()
            });
        match schema {
            Some(s) => s.check(config).map_err(|m| (m.field, m.message)),
            None => Ok(()),
        }
    }
}

fn check_policy(config: &Config, dir: &Path) -> Result<crate::policy::Policy> {
    crate::policy::file::load_dir(dir, config, Some(&PluginFiles(config)))
        .map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn run(config: &Config, command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Simulate {
            policy,
            since,
            org,
            limit,
            seed,
            json,
        } => {
            let candidate = check_policy(config, &policy)?;
            let Some(window) = crate::policy::simulate::parse_duration(&since) else {
                bail!("--since: '{since}' is not a duration (24h, 30m, 7d, or milliseconds)");
            };
            let events = super::runtime()?.block_on(read_usage(config, org, window, limit))?;
            let report = crate::policy::simulate::simulate(&candidate, &events, seed);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report, &since);
            }
            Ok(())
        }
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

/// Usage records of the last `window` ms (one org, or every org), at most `limit`.
async fn read_usage(
    config: &Config,
    org: Option<String>,
    window: i64,
    limit: usize,
) -> Result<Vec<crate::store::UsageEvent>> {
    use crate::store::ExportQuery;
    let store = crate::store::Store::connect(&config.database_url).await?;
    let orgs = match org {
        Some(o) => vec![o],
        None => store.orgs().await?.into_iter().map(|o| o.id).collect(),
    };
    let since = crate::store::now_ms().saturating_sub(window);
    let mut events = Vec::new();
    'orgs: for org_id in orgs {
        let q = ExportQuery {
            org_id,
            since: Some(since),
            until: None,
            content: false,
        };
        let mut after = None;
        loop {
            let page = store.export_page(&q, after.as_ref(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.event.created_at, last.event.request_id.clone()));
            for row in page {
                if events.len() >= limit {
                    break 'orgs;
                }
                events.push(row.event);
            }
        }
    }
    Ok(events)
}

fn usd(micros: i64) -> String {
    format!("${:.6}", micros as f64 / 1e6)
}

fn change(actual: f64, simulated: f64) -> String {
    if actual == 0.0 {
        return "-".into();
    }
    format!("{:+.1}%", (simulated - actual) / actual * 100.0)
}

fn print_report(r: &crate::policy::simulate::Report, since: &str) {
    println!(
        "{} requests in the last {since} ({} not simulated: failed, or a model the policy does not serve); \
         {} would go to another provider first",
        r.requests, r.skipped, r.changed
    );
    println!(
        "cost     {} -> {} ({})",
        usd(r.actual_cost_micros),
        usd(r.simulated_cost_micros),
        change(r.actual_cost_micros as f64, r.simulated_cost_micros as f64)
    );
    println!(
        "latency  {:.0} ms -> {:.0} ms mean ({})",
        r.actual_latency_ms,
        r.simulated_latency_ms,
        change(r.actual_latency_ms, r.simulated_latency_ms)
    );
    if r.plugin_routes > 0 {
        println!("({} requests fall under routes with a routing plugin: simulated by their strategy only)", r.plugin_routes);
    }
    println!(
        "\n{:<28} {:>8} {:>8}  {:<32} {:<32} {:>14} {:>14}",
        "MODEL",
        "REQUESTS",
        "CHANGED",
        "PROVIDERS NOW",
        "PROVIDERS SIMULATED",
        "COST NOW",
        "COST SIMULATED"
    );
    let dist = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(p, n)| format!("{p}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (name, m) in &r.models {
        println!(
            "{:<28} {:>8} {:>8}  {:<32} {:<32} {:>14} {:>14}",
            name,
            m.requests,
            m.changed,
            dist(&m.actual_providers),
            dist(&m.simulated_providers),
            usd(m.actual_cost_micros),
            usd(m.simulated_cost_micros)
        );
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
