//! Pages of an org's usage for export (issue 10): keyset pagination on
//! `(created_at, request_id)` — a row-value comparison both databases answer with one range
//! scan of the `(org_id, created_at, request_id)` index — so an export of millions of rows reads one page at a time in
//! constant memory and never skips or repeats a row; optionally with the request's stored
//! content (retain-all).

use sqlx::Row;

use super::usage::usage_from;
use super::{db, Result, Store, UsageEvent};

/// Where a page starts: after this `(created_at, request_id)`.
pub type Cursor = (i64, String);

/// One exported row: the usage event and, when asked for and kept, its content.
#[derive(Debug, Clone)]
pub struct ExportRow {
    pub event: UsageEvent,
    pub content: Option<(String, String, bool)>,
}

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportQuery {
    pub org_id: String,
    /// ms since the epoch, inclusive (None: from the first row).
    pub since: Option<i64>,
    /// ms since the epoch, exclusive (None: to the last row).
    pub until: Option<i64>,
    pub content: bool,
}

impl Store {
    /// The next page of at most `limit` rows after `after`, oldest first.
    pub async fn export_page(
        &self,
        q: &ExportQuery,
        after: Option<&Cursor>,
        limit: i64,
    ) -> Result<Vec<ExportRow>> {
        // The first page starts at `since` (every id sorts after ""); later ones after the
        // last row read. One row-value condition, so the index range starts right there.
        let (after_at, after_id) = after
            .cloned()
            .unwrap_or((q.since.unwrap_or(i64::MIN), String::new()));
        let sql = format!(
            "SELECT u.*{} FROM usage_events u {} \
             WHERE u.org_id = $1 AND (u.created_at, u.request_id) > ($2, $3) AND u.created_at < $4 \
             ORDER BY u.created_at, u.request_id LIMIT $5",
            if q.content {
                ", c.request_body AS c_request, c.response_body AS c_response, c.truncated AS c_truncated"
            } else {
                ""
            },
            if q.content {
                "LEFT JOIN request_content c ON c.request_id = u.request_id"
            } else {
                ""
            },
        );
        let rows = sqlx::query(&sql)
            .bind(&q.org_id)
            .bind(after_at)
            .bind(after_id)
            .bind(q.until.unwrap_or(i64::MAX))
            .bind(limit.max(1))
            .fetch_all(&self.pool)
            .await
            .map_err(db("exporting usage"))?;
        rows.iter()
            .map(|row| {
                let event = usage_from(row)?;
                let content = if q.content {
                    let request: Option<String> = row.try_get("c_request")?;
                    let response: Option<String> = row.try_get("c_response")?;
                    let truncated: Option<i64> = row.try_get("c_truncated")?;
                    request.map(|r| (r, response.unwrap_or_default(), truncated.unwrap_or(0) != 0))
                } else {
                    None
                };
                Ok(ExportRow { event, content })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(db("reading exported usage"))
    }
}
