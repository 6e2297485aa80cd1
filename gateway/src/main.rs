//! The `tollgate` binary: `serve` runs the gateway; the other commands manage orgs, keys,
//! credits and usage in the same database, and show plugin status.

use anyhow::Result;
use clap::Parser;

fn main() -> Result<()> {
    let cli = tollgate::cli::Cli::parse();
    tollgate::cli::run(cli)
}
