//! Request and response content kept under retention mode `retain-all` (table
//! `request_content`): written with its usage row, in the same transaction; read back by
//! request id (and by the export); deleted by the purge at `expires_at` and by org deletion.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{db, Result, Store};

/// One request's stored content, as the logging stage decided it (possibly redacted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredContent {
    pub request_id: String,
    pub org_id: String,
    pub key_id: String,
    /// The body the client sent.
    pub request_body: String,
    /// What the client received (the event stream's text when streamed).
    pub response_body: String,
    /// Either side was cut at `[retention] max_content_bytes`.
    pub truncated: bool,
    pub created_at: i64,
    /// Ms since the epoch; the purge deletes the row at and after this instant.
    pub expires_at: i64,
}

pub(super) fn content_from(row: &AnyRow) -> std::result::Result<StoredContent, sqlx::Error> {
    Ok(StoredContent {
        request_id: row.try_get("request_id")?,
        org_id: row.try_get("org_id")?,
        key_id: row.try_get("key_id")?,
        request_body: row.try_get("request_body")?,
        response_body: row.try_get("response_body")?,
        truncated: row.try_get::<i64, _>("truncated")? != 0,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// Inserts content in the usage batch's transaction (once per request id).
pub(super) async fn insert_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    c: &StoredContent,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO request_content (request_id, org_id, key_id, request_body, response_body, \
           truncated, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&c.request_id)
    .bind(&c.org_id)
    .bind(&c.key_id)
    .bind(&c.request_body)
    .bind(&c.response_body)
    .bind(i64::from(c.truncated))
    .bind(c.created_at)
    .bind(c.expires_at)
    .execute(&mut **tx)
    .await
    .map_err(db("storing request content"))?;
    Ok(())
}

impl Store {
    /// The content stored for a request of `org_id` (None: none stored, or another org's).
    pub async fn request_content(
        &self,
        request_id: &str,
        org_id: &str,
    ) -> Result<Option<StoredContent>> {
        let row =
            sqlx::query("SELECT * FROM request_content WHERE request_id = $1 AND org_id = $2")
                .bind(request_id)
                .bind(org_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading request content"))?;
        row.as_ref()
            .map(content_from)
            .transpose()
            .map_err(db("reading request content"))
    }
}
