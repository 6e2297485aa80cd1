//! `tollgate keys create | list | show | update | revoke | disable | enable | rotate`.
//! Secrets are printed once, alone on stdout; everything else goes to stderr or tables.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::admin_client::{when, Admin};
use super::usd_to_micros;

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key; its plaintext is printed once and never stored.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long, default_value = "default")]
        name: String,
        /// The member the key belongs to (id or name; default: the org's own key).
        #[arg(long)]
        member: Option<String>,
        #[command(flatten)]
        fields: KeyFields,
    },
    List {
        #[arg(long)]
        org: Option<String>,
    },
    /// Everything about one key, as JSON.
    Show {
        key_id: String,
    },
    /// Change a key; only the flags given change. Scope flags replace the key's scopes.
    Update {
        key_id: String,
        #[arg(long)]
        name: Option<String>,
        /// Remove every scope restriction.
        #[arg(long, conflicts_with_all = ["model", "provider", "api"])]
        unrestricted: bool,
        /// The key's own retention mode (retain-all, metadata-only, zero), or `org` for the
        /// org's; only where the org allows key overrides.
        #[arg(long)]
        retention_mode: Option<String>,
        #[command(flatten)]
        fields: KeyFields,
    },
    Revoke {
        key_id: String,
    },
    Disable {
        key_id: String,
    },
    Enable {
        key_id: String,
    },
    /// A new secret (printed once); the old one works for --grace-seconds more.
    Rotate {
        key_id: String,
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
    },
}

/// The key settings shared by `create` and `update`.
#[derive(Args, Debug, Default)]
pub struct KeyFields {
    /// Allowed model (repeat; `gpt-4o*` matches a prefix). Default: any.
    #[arg(long)]
    model: Vec<String>,
    /// Allowed provider (repeat). Default: any.
    #[arg(long)]
    provider: Vec<String>,
    /// Allowed client API (repeat): openai-chat, anthropic-messages, openai-responses,
    /// openai-embeddings. Default: any.
    #[arg(long)]
    api: Vec<String>,
    /// Spend limit in USD per period (0: none).
    #[arg(long)]
    spend_limit: Option<f64>,
    /// When the spend limit resets: daily, weekly, monthly or total (never).
    #[arg(long)]
    period: Option<String>,
    #[arg(long)]
    rpm: Option<i64>,
    #[arg(long)]
    tpm: Option<i64>,
    #[arg(long)]
    concurrency: Option<i64>,
    /// Expire after this many days (0: never).
    #[arg(long = "expires-in-days", alias = "expires-days")]
    expires_in_days: Option<u64>,
}

impl KeyFields {
    /// The body fields these flags set.
    fn body(&self) -> Result<Map<String, Value>> {
        let mut body = Map::new();
        if !(self.model.is_empty() && self.provider.is_empty() && self.api.is_empty()) {
            body.insert(
                "scopes".into(),
                json!({"models": self.model, "providers": self.provider, "apis": self.api}),
            );
        }
        if let Some(usd) = self.spend_limit {
            let micros = if usd == 0.0 { 0 } else { usd_to_micros(usd)? };
            body.insert("spend_limit_micros".into(), json!(micros));
        }
        if let Some(p) = &self.period {
            body.insert("spend_period".into(), json!(p));
        }
        for (k, v) in [
            ("rpm_limit", self.rpm),
            ("tpm_limit", self.tpm),
            ("concurrency_limit", self.concurrency),
        ] {
            if let Some(v) = v {
                body.insert(k.into(), json!(v));
            }
        }
        match self.expires_in_days {
            Some(0) => {
                body.insert("expires_at".into(), json!(0));
            }
            Some(d) => {
                let Some(ms) = i64::try_from(d)
                    .ok()
                    .and_then(|d| d.checked_mul(86_400_000))
                else {
                    bail!("--expires-in-days is too large");
                };
                body.insert("expires_at".into(), json!(crate::store::now_ms() + ms));
            }
            None => {}
        }
        Ok(body)
    }
}

fn status(k: &Value) -> &'static str {
    let expires = k["expires_at"].as_i64().unwrap_or(0);
    if !k["revoked_at"].is_null() {
        "revoked"
    } else if !k["disabled_at"].is_null() {
        "disabled"
    } else if expires != 0 && expires <= crate::store::now_ms() {
        "expired"
    } else {
        "active"
    }
}

fn print_secret(answer: &Value, what: &str) {
    let k = &answer["key"];
    eprintln!(
        "key {} for org {} (prefix {}) {what}: shown once, store it now",
        k["id"].as_str().unwrap_or("?"),
        k["org_id"].as_str().unwrap_or("?"),
        k["prefix"].as_str().unwrap_or("?"),
    );
    println!("{}", answer["secret"].as_str().unwrap_or_default());
}

pub async fn run(admin: &Admin, command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Create {
            org,
            name,
            member,
            fields,
        } => {
            let mut body = fields.body()?;
            body.insert("name".into(), json!(name));
            if let Some(m) = member {
                let org_id = admin.store().find_org(&org).await?.id;
                let members = admin.store().members(&org_id).await?;
                let Some(found) = members.iter().find(|x| x.id == m || x.name == m) else {
                    bail!("no member '{m}' in org '{org}'");
                };
                body.insert("member_id".into(), json!(found.id));
            }
            let path = format!("/admin/orgs/{org}/keys");
            print_secret(
                &admin.call("POST", &path, Value::Object(body)).await?,
                "created",
            );
        }
        KeysCommand::List { org } => {
            let keys: Vec<Value> = match org {
                Some(org) => {
                    let list = admin
                        .call("GET", &format!("/admin/orgs/{org}/keys"), Value::Null)
                        .await?;
                    list["data"].as_array().cloned().unwrap_or_default()
                }
                // Every org's keys: the operator's view, read from the store.
                None => admin
                    .store()
                    .keys(None)
                    .await?
                    .iter()
                    .map(|k| json!(k))
                    .collect(),
            };
            println!(
                "{:<30} {:<30} {:<12} {:<16} {:<9} {:<17} LIMITS spend/period rpm/tpm/conc",
                "ID", "ORG", "PREFIX", "NAME", "STATUS", "EXPIRES (UTC)"
            );
            for k in &keys {
                println!(
                    "{:<30} {:<30} {:<12} {:<16} {:<9} {:<17} {}/{} {}/{}/{}",
                    k["id"].as_str().unwrap_or("?"),
                    k["org_id"].as_str().unwrap_or("?"),
                    k["prefix"].as_str().unwrap_or("?"),
                    k["name"].as_str().unwrap_or("?"),
                    status(k),
                    when(k["expires_at"].as_i64().unwrap_or(0)),
                    super::format_usd(k["spend_limit_micros"].as_i64().unwrap_or(0)),
                    k["spend_period"].as_str().unwrap_or("?"),
                    k["rpm_limit"],
                    k["tpm_limit"],
                    k["concurrency_limit"],
                );
            }
        }
        KeysCommand::Show { key_id } => {
            let org = admin.org_of_key(&key_id).await?;
            let k = admin
                .call(
                    "GET",
                    &format!("/admin/orgs/{org}/keys/{key_id}"),
                    Value::Null,
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&k)?);
        }
        KeysCommand::Update {
            key_id,
            name,
            unrestricted,
            retention_mode,
            fields,
        } => {
            let mut body = fields.body()?;
            if let Some(m) = retention_mode {
                body.insert("retention_mode".into(), json!(m));
            }
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if unrestricted {
                body.insert("scopes".into(), json!({}));
            }
            let org = admin.org_of_key(&key_id).await?;
            let path = format!("/admin/orgs/{org}/keys/{key_id}");
            let k = admin.call("PATCH", &path, Value::Object(body)).await?;
            println!("updated {}", k["id"].as_str().unwrap_or("?"));
        }
        KeysCommand::Revoke { key_id } => state(admin, &key_id, "revoke", "revoked").await?,
        KeysCommand::Disable { key_id } => state(admin, &key_id, "disable", "disabled").await?,
        KeysCommand::Enable { key_id } => state(admin, &key_id, "enable", "enabled").await?,
        KeysCommand::Rotate {
            key_id,
            grace_seconds,
        } => {
            let org = admin.org_of_key(&key_id).await?;
            let path = format!("/admin/orgs/{org}/keys/{key_id}/rotate");
            let answer = admin
                .call("POST", &path, json!({ "grace_seconds": grace_seconds }))
                .await?;
            let what = format!("rotated (the old secret works for {grace_seconds} s more)");
            print_secret(&answer, &what);
        }
    }
    Ok(())
}

/// Revoke, disable or enable.
async fn state(admin: &Admin, key_id: &str, verb: &str, done: &str) -> Result<()> {
    let org = admin.org_of_key(key_id).await?;
    let path = format!("/admin/orgs/{org}/keys/{key_id}/{verb}");
    admin.call("POST", &path, Value::Null).await?;
    println!("{done} {key_id}");
    Ok(())
}
