//! Command line: `tollgate serve` and the management commands. Orgs, keys, members, the audit
//! log and credit grants go through the admin API in-process (`cli/admin_client.rs`), so they
//! are validated and audited (actor `cli`) like API calls; one file per command group in
//! `cli/`.

mod admin_client;
mod audit;
mod keys;
mod members;
mod orgs;
mod policy;
mod usage_export;

pub use audit::AuditCommand;
pub use keys::{KeyFields, KeysCommand};
pub use members::MembersCommand;
pub use orgs::OrgsCommand;
pub use policy::PolicyCommand;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::plugins::{HostContext, PluginEngine, PluginRegistry, PluginStatus};
use crate::store::{Store, UsageEvent};

#[derive(Parser, Debug)]
#[command(name = "tollgate", version, about = "A programmable LLM API gateway")]
pub struct Cli {
    /// Config file (TOML). Without one, the built-in defaults apply.
    #[arg(long, short, global = true, env = "TOLLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Manage organizations.
    Orgs {
        #[command(subcommand)]
        command: OrgsCommand,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage an org's members and their roles.
    Members {
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Read an org's audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage prepaid credits.
    Credits {
        #[command(subcommand)]
        command: CreditsCommand,
    },
    /// Show recent usage (`usage export`: all of an org's usage as JSON Lines or CSV).
    #[command(args_conflicts_with_subcommands = true)]
    Usage {
        #[command(subcommand)]
        command: Option<UsageCommand>,
        #[arg(long)]
        org: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Show plugins: from the running gateway's admin API, else loaded from the plugin directory.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Check a config file, the plugins it names and the policy directory; print the effective
    /// settings.
    CheckConfig,
    /// Routing policy files (`tollgate policy check DIR`).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// One retention purge pass: expired usage rows, content, client IPs and Responses state
    /// (the running gateway does this every `[retention] purge_interval_ms`); prints the report.
    Purge {
        /// Purge as of this time (ms since the epoch) instead of now.
        #[arg(long)]
        now: Option<i64>,
    },
    /// BYOK: an org's own provider keys, sealed under the master key.
    Byok {
        #[command(subcommand)]
        command: crate::byok::cli::ByokCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum UsageCommand {
    /// An org's usage, oldest first, streamed page by page (constant memory).
    Export {
        #[arg(long)]
        org: String,
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// From this time (ms since the epoch, inclusive).
        #[arg(long)]
        since: Option<i64>,
        /// Until this time (ms since the epoch, exclusive).
        #[arg(long)]
        until: Option<i64>,
        /// Include the stored request and response content (retain-all orgs).
        #[arg(long)]
        content: bool,
        /// Write here instead of stdout.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CreditsCommand {
    /// Grant credits in USD (expire after a year unless told otherwise).
    Add {
        #[arg(long)]
        org: String,
        #[arg(long)]
        usd: f64,
        #[arg(long, default_value_t = 365)]
        expires_days: u64,
    },
    Balance {
        #[arg(long)]
        org: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum PluginsCommand {
    List,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("TOLLGATE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tollgate-bg")
        .enable_all()
        .build()
        .context("starting the background runtime")
}

pub fn run(cli: Cli) -> Result<()> {
    init_tracing();
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => crate::server::serve(config),
        Command::CheckConfig => policy::check_config(&config),
        Command::Policy { command } => policy::run(&config, command),
        Command::Plugins {
            command: PluginsCommand::List,
        } => plugins_list(&config),
        other => runtime()?.block_on(manage(config, other)),
    }
}

fn usd_to_micros(usd: f64) -> Result<i64> {
    if !usd.is_finite() || usd <= 0.0 || usd > 1e9 {
        bail!("amount must be a positive number of USD");
    }
    Ok((usd * 1e6).round() as i64)
}

fn format_usd(micros: i64) -> String {
    format!("${:.6}", micros as f64 / 1e6)
}

async fn manage(config: Config, command: Command) -> Result<()> {
    let store = Store::connect(&config.database_url).await?;
    match command {
        Command::Orgs { command } => {
            orgs::run(&admin_client::Admin::new(&config, &store)?, command).await?
        }
        Command::Keys { command } => {
            keys::run(&admin_client::Admin::new(&config, &store)?, command).await?
        }
        Command::Members { command } => {
            members::run(&admin_client::Admin::new(&config, &store)?, command).await?
        }
        Command::Audit { command } => {
            audit::run(&admin_client::Admin::new(&config, &store)?, command).await?
        }
        Command::Credits {
            command:
                CreditsCommand::Add {
                    org,
                    usd,
                    expires_days,
                },
        } => {
            // Through the admin API: validated and audited as `cli`.
            let amount = usd_to_micros(usd)?;
            let days = u32::try_from(expires_days).context("--expires-days is too large")?;
            let admin = admin_client::Admin::new(&config, &store)?;
            let body = serde_json::json!({
                "amount_micros": amount, "expires_in_days": days, "memo": "cli grant",
            });
            let granted = admin
                .call("POST", &format!("/admin/orgs/{org}/credits"), body)
                .await?;
            println!(
                "granted {} to {}; balance {}",
                format_usd(amount),
                granted["org_id"].as_str().unwrap_or("?"),
                format_usd(granted["balance_micros"].as_i64().unwrap_or(0))
            );
        }
        Command::Credits {
            command: CreditsCommand::Balance { org },
        } => {
            let org = store.find_org(&org).await?;
            let balance = store.balance(&org.id).await?.unwrap_or(0);
            println!("{}", format_usd(balance));
        }
        Command::Usage {
            command:
                Some(UsageCommand::Export {
                    org,
                    format,
                    since,
                    until,
                    content,
                    output,
                }),
            ..
        } => {
            usage_export::run(&store, &org, &format, since, until, content, output).await?;
        }
        Command::Purge { now } => {
            let now = now.unwrap_or_else(crate::store::now_ms);
            let batch = i64::try_from(config.retention.purge_batch).unwrap_or(i64::MAX);
            let report = store.purge_expired(now, batch).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Usage {
            command: None,
            org,
            limit,
            format,
        } => {
            let org_id = match org {
                Some(o) => Some(store.find_org(&o).await?.id),
                None => None,
            };
            print_usage(&store.usage(org_id.as_deref(), limit).await?, format)?;
        }
        Command::Byok { command } => crate::byok::cli::run(&store, &config, command).await?,
        Command::Serve
        | Command::CheckConfig
        | Command::Policy { .. }
        | Command::Plugins { .. } => {
            unreachable!("handled in run")
        }
    }
    store.close().await;
    Ok(())
}

fn print_usage(events: &[UsageEvent], format: OutputFormat) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => {
            for e in events {
                writeln!(out, "{}", serde_json::to_string(e)?)?;
            }
        }
        OutputFormat::Csv => {
            writeln!(out, "request_id,org_id,key_id,model,provider,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,reasoning_tokens,cost_micros,latency_ms,status,stream,created_at,format,estimated")?;
            for e in events {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    e.request_id,
                    e.org_id,
                    e.key_id,
                    csv_field(&e.model),
                    csv_field(&e.provider),
                    e.input_tokens,
                    e.output_tokens,
                    e.cache_read_tokens,
                    e.cache_write_tokens,
                    e.reasoning_tokens,
                    e.cost_micros,
                    e.latency_ms,
                    e.status,
                    e.stream,
                    e.created_at,
                    csv_field(&e.format),
                    e.estimated
                )?;
            }
        }
        OutputFormat::Table => {
            writeln!(
                out,
                "{:<30} {:<20} {:<12} {:<18} {:>7} {:>7} {:>8} {:>3} {:>12} {:>8} ATTEMPTS",
                "REQUEST",
                "MODEL",
                "PROVIDER",
                "FORMAT",
                "IN",
                "OUT",
                "CACHED",
                "EST",
                "COST",
                "STATUS"
            )?;
            for e in events {
                let attempts: Vec<serde_json::Value> =
                    serde_json::from_str(&e.attempts).unwrap_or_default();
                let path: Vec<String> = attempts
                    .iter()
                    .map(|a| format!("{}:{}", a["provider"].as_str().unwrap_or("?"), a["status"]))
                    .collect();
                writeln!(
                    out,
                    "{:<30} {:<20} {:<12} {:<18} {:>7} {:>7} {:>8} {:>3} {:>12} {:>8} {}",
                    e.request_id,
                    e.model,
                    e.provider,
                    e.format,
                    e.input_tokens,
                    e.output_tokens,
                    e.cache_read_tokens,
                    if e.estimated { "yes" } else { "-" },
                    format_usd(e.cost_micros),
                    e.status,
                    path.join(" -> ")
                )?;
            }
        }
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Asks the running gateway's admin API; `None` when nothing answers.
fn admin_get(config: &Config, path: &str) -> Option<String> {
    let addr: std::net::SocketAddr = config.admin_listen.parse().ok()?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = config
        .admin_token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
        config.admin_listen
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

fn plugins_list(config: &Config) -> Result<()> {
    let statuses: Vec<PluginStatus> = match admin_get(config, "/admin/plugins") {
        Some(body) => {
            let rows: Vec<serde_json::Value> =
                serde_json::from_str(&body).context("admin API answer")?;
            println!("(from the running gateway at {})", config.admin_listen);
            print_plugin_rows(&rows);
            return Ok(());
        }
        None => {
            println!(
                "(no gateway answering at {}; loading {} locally)",
                config.admin_listen,
                config.plugin_dir.display()
            );
            let registry = local_registry(config)?;
            registry.load_dir(&config.plugin_dir);
            registry.list()
        }
    };
    let rows: Vec<serde_json::Value> = statuses
        .iter()
        .filter_map(|s| serde_json::to_value(s).ok())
        .collect();
    print_plugin_rows(&rows);
    Ok(())
}

fn print_plugin_rows(rows: &[serde_json::Value]) {
    println!(
        "{:<26} {:<10} {:<8} {:<14} {:>9} {:>8} {:>8}  LAST ERROR",
        "NAME", "STAGE", "WIT", "SHA256", "LOAD MS", "CALLS", "FAILED"
    );
    for r in rows {
        let active = &r["active"];
        println!(
            "{:<26} {:<10} {:<8} {:<14} {:>9.1} {:>8} {:>8}  {}",
            r["name"].as_str().unwrap_or("?"),
            active["stage"].as_str().unwrap_or("-"),
            active["wit_version"].as_str().unwrap_or("-"),
            active["sha256"]
                .as_str()
                .map(|s| &s[..12.min(s.len())])
                .unwrap_or("-"),
            active["load_ms"].as_f64().unwrap_or(0.0),
            r["calls"],
            r["failures"],
            r["last_error"].as_str().unwrap_or(""),
        );
    }
}

fn local_registry(config: &Config) -> Result<PluginRegistry> {
    let engine = Arc::new(PluginEngine::new(config.plugin_engine.clone())?);
    let shared = Arc::new(HostContext::new(Arc::new(crate::plugins::NoServices), 1000));
    let registry = PluginRegistry::new(
        engine,
        shared,
        config.plugin_settings.clone(),
        Some(&config.plugin_cache_dir),
    )?;
    registry.expect_stages(config.plugin_stages());
    Ok(registry)
}
