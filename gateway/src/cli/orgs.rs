//! `tollgate orgs create | list | limits | alert | retention | data-policy | delete`.

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::{json, Value};

use super::admin_client::Admin;

#[derive(Subcommand, Debug)]
pub enum OrgsCommand {
    /// Create an org; prints its id.
    Create {
        name: String,
    },
    List,
    /// Change the org's rate limits (0 = no limit; omitted ones stay).
    Limits {
        #[arg(long)]
        org: String,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<i64>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<i64>,
        /// Requests at once.
        #[arg(long)]
        concurrency: Option<i64>,
    },
    /// Set what is kept of the org's requests and for how long (omitted values stay); prints
    /// the org.
    Retention {
        org: String,
        /// retain-all, metadata-only or zero.
        #[arg(long)]
        mode: Option<String>,
        /// Days request logs (and content under retain-all) are kept, 0-90.
        #[arg(long)]
        days: Option<i64>,
        /// Days a stored client IP is kept, 0-30.
        #[arg(long = "ip-days")]
        ip_days: Option<i64>,
        /// Whether the org's keys may choose their own mode.
        #[arg(long = "key-override")]
        key_override: Option<bool>,
    },
    /// Delete the org: members, keys, BYOK credentials, content and Responses state go; usage
    /// (anonymised) and the ledger stay under a tombstone (docs/deletion.md). Prints the report.
    Delete {
        org: String,
        /// Confirm: the deletion cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// Set which providers the org's requests may go to (omitted values stay); prints the org.
    DataPolicy {
        org: String,
        /// Only providers with zero data retention.
        #[arg(long = "require-zdr")]
        require_zdr: Option<bool>,
        /// No provider that trains on the data it is sent.
        #[arg(long = "deny-training")]
        deny_training: Option<bool>,
        /// Allowed regions, comma-separated (`''`: any).
        #[arg(long)]
        regions: Option<String>,
    },
    /// Show the org's low-balance alert, or set it (omitted values keep the current ones) or
    /// clear it.
    Alert {
        #[arg(long)]
        org: String,
        /// Alert when the spendable balance falls below this many USD.
        #[arg(long, conflicts_with = "clear")]
        below: Option<f64>,
        /// Where the alert is POSTed (http:// or https://).
        #[arg(long, conflicts_with = "clear")]
        webhook: Option<String>,
        /// USD the receiver is asked to add when the alert fires (0: alert only).
        #[arg(long = "top-up", conflicts_with = "clear")]
        top_up: Option<f64>,
        /// Remove the alert.
        #[arg(long)]
        clear: bool,
    },
}

fn print_alert(alert: &Value) {
    let org = alert["org_id"].as_str().unwrap_or("?");
    if alert["enabled"].as_bool() != Some(true) {
        println!("{org}: no low-balance alert");
        return;
    }
    let usd = |field: &str| super::format_usd(alert[field].as_i64().unwrap_or(0));
    let top_up = match alert["auto_top_up_micros"].as_i64().unwrap_or(0) {
        0 => "no auto top-up".to_string(),
        _ => format!("auto top-up {}", usd("auto_top_up_micros")),
    };
    println!(
        "{org}: alert below {} to {} ({top_up})",
        usd("threshold_micros"),
        alert["webhook"].as_str().unwrap_or("?")
    );
}

pub async fn run(admin: &Admin, command: OrgsCommand) -> Result<()> {
    match command {
        OrgsCommand::Create { name } => {
            let org = admin
                .call("POST", "/admin/orgs", json!({ "name": name }))
                .await?;
            println!("{}", org["id"].as_str().unwrap_or_default());
        }
        OrgsCommand::List => {
            let orgs = admin.call("GET", "/admin/orgs", Value::Null).await?;
            println!(
                "{:<30} {:<24} {:<28} LIMITS rpm/tpm/concurrency",
                "ID", "NAME", "RETENTION"
            );
            for o in orgs["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<30} {:<24} {:<28} {}/{}/{}",
                    o["id"].as_str().unwrap_or("?"),
                    o["name"].as_str().unwrap_or("?"),
                    format!(
                        "{} ({} days)",
                        o["retention_mode"].as_str().unwrap_or("?"),
                        o["retention_days"]
                    ),
                    o["rpm_limit"],
                    o["tpm_limit"],
                    o["concurrency_limit"]
                );
            }
        }
        OrgsCommand::Limits {
            org,
            rpm,
            tpm,
            concurrency,
        } => {
            let mut body = serde_json::Map::new();
            for (k, v) in [
                ("rpm_limit", rpm),
                ("tpm_limit", tpm),
                ("concurrency_limit", concurrency),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), json!(v));
                }
            }
            let org = admin
                .call("PATCH", &format!("/admin/orgs/{org}"), Value::Object(body))
                .await?;
            println!(
                "{}: rpm {} tpm {} concurrency {}",
                org["id"].as_str().unwrap_or("?"),
                org["rpm_limit"],
                org["tpm_limit"],
                org["concurrency_limit"]
            );
        }
        OrgsCommand::Retention {
            org,
            mode,
            days,
            ip_days,
            key_override,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(m) = mode {
                body.insert("mode".into(), json!(m));
            }
            if let Some(d) = days {
                body.insert("retention_days".into(), json!(d));
            }
            if let Some(d) = ip_days {
                body.insert("ip_retention_days".into(), json!(d));
            }
            if let Some(b) = key_override {
                body.insert("key_retention_override".into(), json!(b));
            }
            let path = format!("/admin/orgs/{org}/retention");
            let org = admin.call("PATCH", &path, Value::Object(body)).await?;
            println!("{}", serde_json::to_string_pretty(&org)?);
        }
        OrgsCommand::Delete { org, yes } => {
            if !yes {
                bail!("deleting an org cannot be undone: add --yes");
            }
            let report = admin
                .call("DELETE", &format!("/admin/orgs/{org}"), Value::Null)
                .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        OrgsCommand::DataPolicy {
            org,
            require_zdr,
            deny_training,
            regions,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(b) = require_zdr {
                body.insert("require_zdr".into(), json!(b));
            }
            if let Some(b) = deny_training {
                body.insert("deny_training".into(), json!(b));
            }
            if let Some(r) = regions {
                let list: Vec<&str> = r
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                body.insert("allowed_regions".into(), json!(list));
            }
            let path = format!("/admin/orgs/{org}/data-policy");
            let org = admin.call("PATCH", &path, Value::Object(body)).await?;
            println!("{}", serde_json::to_string_pretty(&org)?);
        }
        OrgsCommand::Alert {
            org,
            below,
            webhook,
            top_up,
            clear,
        } => {
            let path = format!("/admin/orgs/{org}/alerts");
            let current = admin.call("GET", &path, Value::Null).await?;
            if !clear && below.is_none() && webhook.is_none() && top_up.is_none() {
                print_alert(&current);
                return Ok(());
            }
            let body = if clear {
                json!({ "threshold_usd": 0 })
            } else {
                if below.is_none() && current["enabled"].as_bool() != Some(true) {
                    bail!("the org has no low-balance alert yet: give --below and --webhook");
                }
                json!({
                    "threshold_usd": below.or(current["threshold_usd"].as_f64()),
                    "webhook": webhook.or(current["webhook"].as_str().map(String::from)),
                    "auto_top_up_usd": top_up.or(current["auto_top_up_usd"].as_f64()),
                })
            };
            print_alert(&admin.call("PUT", &path, body).await?);
        }
    }
    Ok(())
}
