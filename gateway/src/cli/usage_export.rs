//! `tollgate usage export`: an org's usage (and, with `--content`, its retained content) as
//! JSON Lines or CSV, written page by page to stdout or a file (docs/export.md). Audited as
//! `usage.export` by `cli`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::retention::export::{ExportFormat, Exporter};
use crate::store::{Audit, ExportQuery, Store};

#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: &Store,
    org: &str,
    format: &str,
    since: Option<i64>,
    until: Option<i64>,
    content: bool,
    output: Option<PathBuf>,
) -> Result<()> {
    let Some(format) = ExportFormat::parse(format) else {
        bail!("--format must be jsonl or csv (not '{format}')");
    };
    let org = store.find_org(org).await?;
    let query = ExportQuery {
        org_id: org.id.clone(),
        since,
        until,
        content,
    };
    let mut out: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut exporter = Exporter::new(store.clone(), query, format);
    while let Some(chunk) = exporter.next_chunk().await? {
        out.write_all(&chunk).context("writing the export")?;
    }
    out.flush().context("writing the export")?;
    let entry = Audit::new("cli", &org.id, "usage.export", &org.id).with_details(json!({
        "format": if format == ExportFormat::Csv { "csv" } else { "jsonl" },
        "since": since, "until": until, "content": content, "rows": exporter.rows,
    }));
    store.append_audit(&entry).await?;
    Ok(())
}
