//! An org's usage as JSON Lines or CSV (issue 10), produced a page at a time: [`Exporter`]
//! reads one keyset page (1,000 rows) per [`Exporter::next_chunk`] and formats it, so the CLI
//! writes and the admin API streams millions of rows in constant memory. Exactly the org's
//! rows; the retained content only when asked for.

use serde_json::{json, Value};

use crate::store::{Cursor, ExportQuery, ExportRow, Store, StoreError};

/// Rows read per page.
pub const PAGE_ROWS: i64 = 1000;

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

impl ExportFormat {
    pub fn parse(s: &str) -> Option<ExportFormat> {
        match s {
            "jsonl" | "json" | "ndjson" => Some(ExportFormat::Jsonl),
            "csv" => Some(ExportFormat::Csv),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "application/jsonl",
            ExportFormat::Csv => "text/csv; charset=utf-8",
        }
    }
}

const COLUMNS: [&str; 20] = [
    "request_id",
    "created_at",
    "org_id",
    "key_id",
    "model",
    "provider",
    "format",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_micros",
    "cost_usd",
    "latency_ms",
    "status",
    "stream",
    "estimated",
    "attempts",
    "client_ip",
];
const CONTENT_COLUMNS: [&str; 3] = ["request_body", "response_body", "content_truncated"];

/// One row as (column, value) pairs in column order.
fn fields(row: &ExportRow, content: bool) -> Vec<(&'static str, Value)> {
    let e = &row.event;
    let attempts: Value = serde_json::from_str(&e.attempts).unwrap_or(Value::Array(vec![]));
    let mut out = vec![
        ("request_id", json!(e.request_id)),
        ("created_at", json!(e.created_at)),
        ("org_id", json!(e.org_id)),
        ("key_id", json!(e.key_id)),
        ("model", json!(e.model)),
        ("provider", json!(e.provider)),
        ("format", json!(e.format)),
        ("input_tokens", json!(e.input_tokens)),
        ("output_tokens", json!(e.output_tokens)),
        ("cache_read_tokens", json!(e.cache_read_tokens)),
        ("cache_write_tokens", json!(e.cache_write_tokens)),
        ("reasoning_tokens", json!(e.reasoning_tokens)),
        ("cost_micros", json!(e.cost_micros)),
        ("cost_usd", json!(e.cost_micros as f64 / 1e6)),
        ("latency_ms", json!(e.latency_ms)),
        ("status", json!(e.status)),
        ("stream", json!(e.stream)),
        ("estimated", json!(e.estimated)),
        ("attempts", attempts),
        ("client_ip", json!(e.client_ip)),
    ];
    if content {
        let (req, resp, cut) = match &row.content {
            Some((a, b, c)) => (json!(a), json!(b), json!(c)),
            None => (Value::Null, Value::Null, Value::Null),
        };
        out.extend([
            ("request_body", req),
            ("response_body", resp),
            ("content_truncated", cut),
        ]);
    }
    out
}

/// A CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF; quotes doubled.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => csv_field(s),
        other => csv_field(&other.to_string()),
    }
}

/// Formats `rows` (with the CSV header first when `header`).
pub fn format_rows(
    rows: &[ExportRow],
    format: ExportFormat,
    content: bool,
    header: bool,
) -> Vec<u8> {
    let mut out = String::new();
    match format {
        ExportFormat::Jsonl => {
            for row in rows {
                let map: serde_json::Map<String, Value> = fields(row, content)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                out.push_str(&Value::Object(map).to_string());
                out.push('\n');
            }
        }
        ExportFormat::Csv => {
            if header {
                let mut cols: Vec<&str> = COLUMNS.to_vec();
                if content {
                    cols.extend(CONTENT_COLUMNS);
                }
                out.push_str(&cols.join(","));
                out.push_str("\r\n");
            }
            for row in rows {
                let line: Vec<String> = fields(row, content)
                    .iter()
                    .map(|(_, v)| csv_value(v))
                    .collect();
                out.push_str(&line.join(","));
                out.push_str("\r\n");
            }
        }
    }
    out.into_bytes()
}

/// Produces an export a page at a time.
pub struct Exporter {
    store: Store,
    query: ExportQuery,
    format: ExportFormat,
    cursor: Option<Cursor>,
    started: bool,
    done: bool,
    /// Rows produced so far.
    pub rows: u64,
}

impl Exporter {
    pub fn new(store: Store, query: ExportQuery, format: ExportFormat) -> Exporter {
        Exporter {
            store,
            query,
            format,
            cursor: None,
            started: false,
            done: false,
            rows: 0,
        }
    }

    /// The next formatted chunk (the CSV header comes with the first), or None at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .store
            .export_page(&self.query, self.cursor.as_ref(), PAGE_ROWS)
            .await?;
        if (page.len() as i64) < PAGE_ROWS {
            self.done = true;
        }
        if let Some(last) = page.last() {
            self.cursor = Some((last.event.created_at, last.event.request_id.clone()));
        }
        let header = !self.started;
        self.started = true;
        self.rows += page.len() as u64;
        if page.is_empty() && !header {
            return Ok(None);
        }
        Ok(Some(format_rows(
            &page,
            self.format,
            self.query.content,
            header,
        )))
    }
}
