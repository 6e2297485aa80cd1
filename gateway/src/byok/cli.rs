//! `tollgate byok ...`: store, list and remove an org's own provider keys, set its BYOK mode,
//! and rotate the master key. A provider key is read from standard input, never from the
//! command line (argv is visible to every user through `ps`), and is never printed.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use zeroize::Zeroizing;

use super::{new_credential_id, ByokMode, MasterKey, MAX_SECRET_BYTES};
use crate::config::Config;
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum ByokCommand {
    /// Store the org's key for a provider (replacing any previous one), read from stdin.
    Set {
        #[arg(long)]
        org: String,
        /// A provider name from the config.
        #[arg(long)]
        provider: String,
        /// A note for people (not secret): which account or project the key belongs to.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List the org's provider keys (never the keys themselves) and its BYOK mode.
    List {
        #[arg(long)]
        org: String,
    },
    /// Delete the org's key for a provider.
    Remove {
        #[arg(long)]
        org: String,
        #[arg(long)]
        provider: String,
    },
    /// Set whose key goes first: prefer (the org's), fallback (the gateway's), only (the org's
    /// alone, for providers it has a key for).
    Mode {
        #[arg(long)]
        org: String,
        #[arg(value_enum)]
        mode: ByokMode,
    },
    /// Re-encrypt every stored provider key under a new master key, in one transaction. The
    /// current master comes from the usual env var or file.
    RotateMaster {
        /// File with the new master key (32 bytes as base64 or 64 hex digits, mode 0600).
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

/// Reads the provider key from stdin: everything up to EOF, trailing newline removed.
fn read_secret() -> Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("paste the provider key, then press Enter and Ctrl-D:");
    }
    let mut raw = Zeroizing::new(Vec::new());
    stdin
        .lock()
        .take(MAX_SECRET_BYTES as u64 + 2)
        .read_to_end(&mut raw)
        .context("reading the provider key from stdin")?;
    let text = std::str::from_utf8(&raw).context("the provider key is not UTF-8")?;
    let key = text.trim_end_matches(['\n', '\r']);
    if key.is_empty() {
        bail!(
            "no provider key on stdin (pipe it in: `printf %s \"$KEY\" | tollgate byok set ...`)"
        );
    }
    Ok(Zeroizing::new(key.to_string()))
}

pub async fn run(store: &Store, config: &Config, cmd: ByokCommand) -> Result<()> {
    match cmd {
        ByokCommand::Set {
            org,
            provider,
            label,
        } => {
            if !config.providers.contains_key(&provider) {
                let known: Vec<&str> = config.providers.keys().map(String::as_str).collect();
                bail!(
                    "unknown provider '{provider}' (the config has: {})",
                    known.join(", ")
                );
            }
            let org = store.find_org(&org).await?;
            let master = MasterKey::require(&config.byok)?;
            // One master for every row: a key sealed under a different master than the rest
            // would be unreadable by a gateway holding the other one.
            for (id, n) in store.byok_master_ids().await? {
                if id != master.id() {
                    bail!(
                        "{n} provider key(s) are sealed under master key {id}, but the loaded \
                         master key is {}: load that master key, or rotate to this one first",
                        master.id()
                    );
                }
            }
            let secret = read_secret()?;
            let id = new_credential_id();
            let sealed = master.seal(&org.id, &provider, &id, &secret)?;
            let stored = store
                .put_provider_key(&org.id, &provider, &label, &sealed)
                .await?;
            println!(
                "stored the {provider} key of org {} as {} (sealed under master key {})",
                org.id, stored.id, stored.master_key_id
            );
        }
        ByokCommand::List { org } => {
            let org = store.find_org(&org).await?;
            let mode = store.byok_mode(&org.id).await?;
            println!("org {} BYOK mode: {mode}", org.id);
            println!(
                "{:<16} {:<30} {:<18} {:<22} LABEL",
                "PROVIDER", "ID", "MASTER KEY", "UPDATED"
            );
            for k in store.provider_keys(&org.id).await? {
                println!(
                    "{:<16} {:<30} {:<18} {:<22} {}",
                    k.provider,
                    k.id,
                    k.master_key_id,
                    crate::util::utc_minute(k.updated_at),
                    k.label
                );
            }
        }
        ByokCommand::Remove { org, provider } => {
            let org = store.find_org(&org).await?;
            store.delete_provider_key(&org.id, &provider).await?;
            println!("removed the {provider} key of org {}", org.id);
        }
        ByokCommand::Mode { org, mode } => {
            let org = store.find_org(&org).await?;
            store.set_byok_mode(&org.id, mode).await?;
            println!("org {} BYOK mode: {mode}", org.id);
        }
        ByokCommand::RotateMaster { new_key_file } => {
            let old = MasterKey::require(&config.byok).context("the current master key")?;
            let new = MasterKey::from_file(&new_key_file).context("the new master key")?;
            if old.id() == new.id() {
                bail!(
                    "the new master key is the current one ({}): generate a new one, e.g. \
                     `(umask 077; openssl rand -base64 32 > {})`",
                    old.id(),
                    new_key_file.display()
                );
            }
            let done = store.rotate_provider_keys(&old, &new).await?;
            println!(
                "re-encrypted {} provider key(s) from master key {} to {} ({} already under \
                 the new key)",
                done.resealed,
                old.id(),
                new.id(),
                done.skipped
            );
            let source = match &config.byok.master_key_file {
                Some(f) => format!(
                    "set {} to the contents of {}, or copy {} over {}",
                    config.byok.master_key_env,
                    new_key_file.display(),
                    new_key_file.display(),
                    f.display()
                ),
                None => format!(
                    "set {} to the contents of {}",
                    config.byok.master_key_env,
                    new_key_file.display()
                ),
            };
            println!(
                "Now replace the master key on every gateway replica: {source}. Until then, \
                 gateways holding the old master key cannot decrypt BYOK keys (a gateway that \
                 reads its master key from byok.master_key_file picks up the new file within \
                 seconds; one using the env var needs a restart). Then destroy the old master \
                 key: it no longer opens anything."
            );
        }
    }
    Ok(())
}
