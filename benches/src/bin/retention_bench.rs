//! Purge and export at scale (issue 10): inserts N usage rows (default 1,000,000) for one org
//! into a fresh SQLite file and a fresh PostgreSQL database, then times one export of all of
//! them as JSON Lines and as CSV (to a sink, page by page, noting the largest resident memory
//! seen while exporting) and one purge pass that deletes them all (`[retention] purge_batch`
//! rows per statement). Run in release:
//!
//! ```sh
//! cargo run --release -p benches --bin retention_bench -- --rows 1000000
//! ```
//!
//! PostgreSQL at `$TOLLGATE_TEST_POSTGRES` (default postgres://postgres@127.0.0.1:5432/test);
//! skipped, loudly, when unreachable.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use tollgate::retention::export::{ExportFormat, Exporter};
use tollgate::store::{ExportQuery, Store, UsageEvent};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Rows per purge statement.
    #[arg(long, default_value_t = 500)]
    batch: i64,
    /// Only this database (sqlite or postgres).
    #[arg(long)]
    only: Option<String>,
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn event(org: &str, i: usize, t0: i64) -> UsageEvent {
    UsageEvent {
        request_id: format!("req_bench_{i:09}"),
        org_id: org.into(),
        key_id: "key_bench".into(),
        model: "gpt-4o-mini".into(),
        provider: "openai".into(),
        input_tokens: 120 + (i % 50) as i64,
        output_tokens: 300,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        cost_micros: 250,
        latency_ms: 420,
        status: 200,
        stream: i.is_multiple_of(2),
        attempts: r#"[{"provider":"openai","model":"gpt-4o-mini","status":200,"error":"","latency_ms":420}]"#.into(),
        route: None,
        client_ip: Some("192.0.2.1".into()),
        created_at: t0 + i as i64,
        format: "openai-chat".into(),
        estimated: false,
        expires_at: Some(t0 + i as i64 + 1000),
        ip_expires_at: Some(t0 + i as i64 + 500),
        stored: true,
        content: None,
    }
}

async fn run(name: &str, url: &str, args: &Args) -> Result<()> {
    let store = Store::connect(url).await.context("connecting")?;
    let org = store.create_org("bench").await?.id;
    let t0 = 1_700_000_000_000;
    let started = Instant::now();
    for chunk in (0..args.rows).collect::<Vec<_>>().chunks(10_000) {
        let events: Vec<UsageEvent> = chunk.iter().map(|&i| event(&org, i, t0)).collect();
        store.record_usage(&events, &[]).await?;
    }
    let insert = started.elapsed();
    println!(
        "{name}: inserted {} rows in {:.1} s",
        args.rows,
        insert.as_secs_f64()
    );
    for (label, format) in [("jsonl", ExportFormat::Jsonl), ("csv", ExportFormat::Csv)] {
        let before = rss_mb();
        let mut peak = before;
        let started = Instant::now();
        let query = ExportQuery {
            org_id: org.clone(),
            ..ExportQuery::default()
        };
        let mut exporter = Exporter::new(store.clone(), query, format);
        let mut sink = std::io::sink();
        let mut bytes = 0usize;
        while let Some(chunk) = exporter.next_chunk().await? {
            bytes += chunk.len();
            sink.write_all(&chunk)?;
            peak = peak.max(rss_mb());
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name}: export {label}: {} rows, {:.0} MB in {secs:.1} s = {:.0} rows/s; RSS {before:.0} MB before, peak {peak:.0} MB",
            exporter.rows,
            bytes as f64 / 1e6,
            exporter.rows as f64 / secs
        );
    }
    let started = Instant::now();
    let report = store
        .purge_expired(t0 + args.rows as i64 + 2000, args.batch)
        .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{name}: purge (batch {}): {} usage rows deleted (and {} IPs) in {secs:.1} s = {:.0} rows/s",
        args.batch,
        report.usage_rows,
        report.client_ips,
        report.usage_rows as f64 / secs
    );
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.only.as_deref() != Some("postgres") {
        let dir = tempfile::tempdir()?;
        run(
            "sqlite",
            &format!("sqlite://{}/bench.db", dir.path().display()),
            &args,
        )
        .await?;
    }
    if args.only.as_deref() != Some("sqlite") {
        let admin_url = std::env::var("TOLLGATE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("tollgate_retbench_{}", std::process::id());
        let created = std::process::Command::new("psql")
            .args([&admin_url, "-qc", &format!("CREATE DATABASE {name}")])
            .status();
        if !created.is_ok_and(|s| s.success()) {
            eprintln!("#### PostgreSQL SKIPPED: could not create a database at {admin_url} ####");
            return Ok(());
        }
        let url = format!("{}/{name}", admin_url.rsplit_once('/').map_or("", |p| p.0));
        let result = run("postgres", &url, &args).await;
        let _ = std::process::Command::new("psql")
            .args([
                &admin_url,
                "-qc",
                &format!("DROP DATABASE {name} WITH (FORCE)"),
            ])
            .status();
        result?;
    }
    Ok(())
}
