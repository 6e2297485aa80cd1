//! `tollgate orgs create | list | limits`.

use anyhow::Result;
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
    }
    Ok(())
}
