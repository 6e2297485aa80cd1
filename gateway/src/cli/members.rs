//! `tollgate members add | list | role | remove | token`. Tokens are printed once, alone on
//! stdout.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};

use super::admin_client::{when, Admin};

#[derive(Subcommand, Debug)]
pub enum MembersCommand {
    /// Add a member; its token is printed once and never stored.
    Add {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        /// owner, admin, developer or restricted.
        #[arg(long)]
        role: String,
    },
    List {
        #[arg(long)]
        org: String,
    },
    /// Change a member's role.
    Role {
        #[arg(long)]
        org: String,
        /// Member id or name.
        member: String,
        role: String,
    },
    Remove {
        #[arg(long)]
        org: String,
        member: String,
    },
    /// Issue a new token (printed once); the old one stops working.
    Token {
        #[arg(long)]
        org: String,
        member: String,
    },
}

fn print_token(answer: &Value) {
    let m = &answer["member"];
    eprintln!(
        "member {} ({}, {}) of org {}: token shown once, store it now",
        m["id"].as_str().unwrap_or("?"),
        m["name"].as_str().unwrap_or("?"),
        m["role"].as_str().unwrap_or("?"),
        m["org_id"].as_str().unwrap_or("?"),
    );
    println!("{}", answer["token"].as_str().unwrap_or_default());
}

pub async fn run(admin: &Admin, command: MembersCommand) -> Result<()> {
    match command {
        MembersCommand::Add { org, name, role } => {
            let path = format!("/admin/orgs/{org}/members");
            print_token(
                &admin
                    .call("POST", &path, json!({"name": name, "role": role}))
                    .await?,
            );
        }
        MembersCommand::List { org } => {
            let path = format!("/admin/orgs/{org}/members");
            let list = admin.call("GET", &path, Value::Null).await?;
            println!(
                "{:<30} {:<24} {:<11} {:<12} ADDED",
                "ID", "NAME", "ROLE", "TOKEN"
            );
            for m in list["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<30} {:<24} {:<11} {:<12} {}",
                    m["id"].as_str().unwrap_or("?"),
                    m["name"].as_str().unwrap_or("?"),
                    m["role"].as_str().unwrap_or("?"),
                    m["token_prefix"].as_str().unwrap_or("?"),
                    when(m["created_at"].as_i64().unwrap_or(0)),
                );
            }
        }
        MembersCommand::Role { org, member, role } => {
            let path = format!("/admin/orgs/{org}/members/{member}");
            let m = admin.call("PATCH", &path, json!({ "role": role })).await?;
            println!(
                "{} is now {}",
                m["id"].as_str().unwrap_or("?"),
                m["role"].as_str().unwrap_or("?")
            );
        }
        MembersCommand::Remove { org, member } => {
            let path = format!("/admin/orgs/{org}/members/{member}");
            let r = admin.call("DELETE", &path, Value::Null).await?;
            println!("removed {}", r["removed"].as_str().unwrap_or("?"));
        }
        MembersCommand::Token { org, member } => {
            let path = format!("/admin/orgs/{org}/members/{member}/token");
            print_token(&admin.call("POST", &path, Value::Null).await?);
        }
    }
    Ok(())
}
