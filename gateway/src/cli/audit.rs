//! `tollgate audit list`: an org's audit log, newest first.

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::admin_client::{when, Admin};
use super::{csv_field, OutputFormat};

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    List {
        #[arg(long)]
        org: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only entries with ids below this (the next page).
        #[arg(long)]
        before: Option<i64>,
        /// table, json (one entry per line) or csv.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

pub async fn run(admin: &Admin, command: AuditCommand) -> Result<()> {
    let AuditCommand::List {
        org,
        limit,
        before,
        format,
    } = command;
    let mut path = format!("/admin/orgs/{org}/audit?limit={limit}");
    if let Some(b) = before {
        path.push_str(&format!("&before={b}"));
    }
    let page = admin.call("GET", &path, Value::Null).await?;
    let entries = page["data"].as_array().cloned().unwrap_or_default();
    if format == OutputFormat::Csv {
        println!("id,at,actor,org_id,action,target,details");
    }
    if format == OutputFormat::Table {
        println!(
            "{:>6} {:<17} {:<36} {:<15} {:<30} DETAILS",
            "ID", "AT (UTC)", "ACTOR", "ACTION", "TARGET"
        );
    }
    for e in &entries {
        match format {
            OutputFormat::Table => println!(
                "{:>6} {:<17} {:<36} {:<15} {:<30} {}",
                e["id"],
                when(e["at"].as_i64().unwrap_or(0)),
                e["actor"].as_str().unwrap_or("?"),
                e["action"].as_str().unwrap_or("?"),
                e["target"].as_str().unwrap_or(""),
                e["details"]
            ),
            OutputFormat::Json => println!("{e}"),
            OutputFormat::Csv => println!(
                "{},{},{},{},{},{},{}",
                e["id"],
                e["at"],
                csv_field(e["actor"].as_str().unwrap_or_default()),
                csv_field(e["org_id"].as_str().unwrap_or_default()),
                csv_field(e["action"].as_str().unwrap_or_default()),
                csv_field(e["target"].as_str().unwrap_or_default()),
                csv_field(&e["details"].to_string())
            ),
        }
    }
    if let Some(next) = page["next_before"].as_i64() {
        eprintln!("(more: --before {next})");
    }
    Ok(())
}
