//! Usage records and their charges: the event type, the batched insert (event and ledger charge
//! in one transaction, exactly once per request id) and the reads.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{db, now_ms, DbKind, Result, Store};

/// One finished request, as stored (metadata only).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageEvent {
    pub request_id: String,
    pub org_id: String,
    pub key_id: String,
    pub model: String,
    pub provider: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_micros: i64,
    pub latency_ms: i64,
    pub status: i64,
    pub stream: bool,
    /// JSON array of attempts: provider, model, status, error, latency.
    pub attempts: String,
    /// The route trace (JSON: policy route, candidates offered and skipped with why, attempts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    pub client_ip: Option<String>,
    pub created_at: i64,
    /// The client API of the request: `openai-chat`, `anthropic-messages`, `openai-responses`,
    /// `openai-embeddings` (see [`format_name`]).
    pub format: String,
    /// Whether the token counts were estimated because the provider reported no usage.
    pub estimated: bool,
    /// When the purge deletes the row (None: never) and nulls its client IP.
    pub expires_at: Option<i64>,
    pub ip_expires_at: Option<i64>,
    /// False under retention mode `zero`: no usage row is written, only what billing needs
    /// (the charge, the key's spend, the hold's release).
    #[serde(skip)]
    pub stored: bool,
    /// Request and response content the logging stage decided to keep (retain-all), written in
    /// the same transaction. Never written to the dead-letter file.
    #[serde(skip)]
    pub content: Option<Box<super::content::StoredContent>>,
}

/// A charge to debit in the same transaction as its usage event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChargeEntry {
    pub org_id: String,
    /// The key the request was made with ('' when none): its spend counters move too.
    #[serde(default)]
    pub key_id: String,
    pub request_id: String,
    pub amount_micros: i64,
    pub memo: String,
}

pub(super) fn usage_from(row: &AnyRow) -> std::result::Result<UsageEvent, sqlx::Error> {
    Ok(UsageEvent {
        request_id: row.try_get("request_id")?,
        org_id: row.try_get("org_id")?,
        key_id: row.try_get("key_id")?,
        model: row.try_get("model")?,
        provider: row.try_get("provider")?,
        input_tokens: row.try_get("input_tokens")?,
        output_tokens: row.try_get("output_tokens")?,
        cache_read_tokens: row.try_get("cache_read_tokens")?,
        cache_write_tokens: row.try_get("cache_write_tokens")?,
        reasoning_tokens: row.try_get("reasoning_tokens")?,
        cost_micros: row.try_get("cost_micros")?,
        latency_ms: row.try_get("latency_ms")?,
        status: row.try_get("status")?,
        stream: row.try_get::<i64, _>("stream")? != 0,
        attempts: row.try_get("attempts")?,
        route: row.try_get("route")?,
        client_ip: row.try_get("client_ip")?,
        created_at: row.try_get("created_at")?,
        format: row.try_get("format")?,
        estimated: row.try_get::<i64, _>("estimated")? != 0,
        expires_at: row.try_get("expires_at")?,
        ip_expires_at: row.try_get("ip_expires_at")?,
        stored: true,
        content: None,
    })
}

const USAGE_COLUMNS: &str = "request_id, org_id, key_id, model, provider, input_tokens, \
    output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_micros, \
    latency_ms, status, stream, attempts, client_ip, created_at, format, estimated, expires_at, \
    ip_expires_at, route";
/// Number of columns in [`USAGE_COLUMNS`] (parameters per inserted row).
const USAGE_COLUMN_COUNT: usize = 22;

/// Takes a charge out of the org's unexpired grants, soonest-expiring first (never-expiring
/// grants last), in the charge's transaction. What no grant covers is logged: the balance stops
/// at zero (it is the sum of what is left of grants), and the charge row keeps the full amount.
async fn consume_grants(tx: &mut sqlx::Transaction<'_, sqlx::Any>, c: &ChargeEntry) -> Result<()> {
    let now = now_ms();
    let grants = sqlx::query(
        "SELECT id, remaining_micros FROM credit_ledger \
         WHERE org_id = $1 AND kind = 'grant' AND remaining_micros > 0 \
           AND (expires_at = 0 OR expires_at > $2) \
         ORDER BY CASE WHEN expires_at = 0 THEN 1 ELSE 0 END, expires_at, id",
    )
    .bind(&c.org_id)
    .bind(now)
    .fetch_all(&mut **tx)
    .await
    .map_err(db("reading open grants"))?;
    let mut owed = c.amount_micros;
    for g in grants {
        if owed <= 0 {
            break;
        }
        let id: i64 = g.try_get("id").map_err(db("reading a grant"))?;
        let left: i64 = g
            .try_get("remaining_micros")
            .map_err(db("reading a grant"))?;
        let take = owed.min(left);
        sqlx::query(
            "UPDATE credit_ledger SET remaining_micros = remaining_micros - $1 WHERE id = $2",
        )
        .bind(take)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(db("consuming a grant"))?;
        owed -= take;
    }
    if owed > 0 {
        tracing::warn!(org = %c.org_id, request = %c.request_id, uncovered_micros = owed,
            "charge exceeds the org's remaining credits; balance stops at zero");
    }
    Ok(())
}

/// Adds a charge to the key's spend counters: this day, week and month (UTC) and in total.
async fn add_key_spend(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    key_id: &str,
    amount: i64,
    now: i64,
) -> Result<()> {
    use super::SpendPeriod::*;
    for period in [Daily, Weekly, Monthly, Total] {
        sqlx::query(
            "INSERT INTO key_spend (key_id, period, period_start, spent_micros) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key_id, period, period_start) DO UPDATE SET spent_micros = key_spend.spent_micros + $4",
        )
        .bind(key_id)
        .bind(period.counter())
        .bind(period.start(now))
        .bind(amount)
        .execute(&mut **tx)
        .await
        .map_err(db("adding to a key's spend"))?;
    }
    Ok(())
}

impl Store {
    /// Writes usage events and their charges in one transaction. A request id already recorded
    /// is skipped (usage and charge are recorded exactly once). Events go in multi-row inserts;
    /// each new charge also moves its org's running total.
    pub async fn record_usage(&self, events: &[UsageEvent], charges: &[ChargeEntry]) -> Result<()> {
        // 21 columns x 100 rows stays under SQLite's and PostgreSQL's parameter limits.
        const ROWS_PER_INSERT: usize = 100;
        // Rows under retention mode `zero` are not written (their charges and holds are).
        let stored: Vec<&UsageEvent> = events.iter().filter(|e| e.stored).collect();
        let _turn = self.write_turn().await;
        let mut tx = self
            .begin_write()
            .await
            .map_err(db("starting a usage batch"))?;
        for chunk in stored.chunks(ROWS_PER_INSERT) {
            let mut sql = format!("INSERT INTO usage_events ({USAGE_COLUMNS}) VALUES ");
            for i in 0..chunk.len() {
                // SQLite looks named parameters up by a linear scan per bind, which makes `$n`
                // quadratic in a 1900-parameter statement; its anonymous `?` binds by position.
                const N: usize = USAGE_COLUMN_COUNT;
                let params: Vec<String> = match self.kind {
                    DbKind::Sqlite => vec!["?".to_string(); N],
                    DbKind::Postgres => (1..=N).map(|n| format!("${}", i * N + n)).collect(),
                };
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                sql.push_str(&params.join(","));
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT DO NOTHING");
            // Not kept in the connection's statement cache: the text differs with the row
            // count, and a cached 1900-parameter statement per count grew memory for good.
            let mut query = sqlx::query(&sql).persistent(false);
            for e in chunk {
                query = query
                    .bind(&e.request_id)
                    .bind(&e.org_id)
                    .bind(&e.key_id)
                    .bind(&e.model)
                    .bind(&e.provider)
                    .bind(e.input_tokens)
                    .bind(e.output_tokens)
                    .bind(e.cache_read_tokens)
                    .bind(e.cache_write_tokens)
                    .bind(e.reasoning_tokens)
                    .bind(e.cost_micros)
                    .bind(e.latency_ms)
                    .bind(e.status)
                    .bind(i64::from(e.stream))
                    .bind(&e.attempts)
                    .bind(&e.client_ip)
                    .bind(e.created_at)
                    .bind(&e.format)
                    .bind(i64::from(e.estimated))
                    .bind(e.expires_at)
                    .bind(e.ip_expires_at)
                    .bind(&e.route);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(db("recording usage"))?;
        }
        for e in &stored {
            if let Some(content) = &e.content {
                super::content::insert_in(&mut tx, content).await?;
            }
        }
        // Each recorded request gives back its hold, in the transaction that charges it.
        // (SQLite keeps holds in memory: released after the commit, below.)
        if self.kind == DbKind::Postgres {
            for e in events {
                super::credits::release_in(&mut tx, &e.request_id).await?;
            }
        }
        // What each key was charged in this batch, added to its spend counters once per key.
        let mut by_key: std::collections::HashMap<&str, i64> = Default::default();
        for c in charges {
            if c.amount_micros == 0 {
                continue;
            }
            let inserted = sqlx::query(
                "INSERT INTO credit_ledger (org_id, kind, amount_micros, request_id, memo, created_at) \
                 VALUES ($1, 'charge', $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&c.org_id)
            .bind(c.amount_micros)
            .bind(&c.request_id)
            .bind(&c.memo)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db("recording a charge"))?;
            if inserted.rows_affected() == 1 {
                sqlx::query(
                    "INSERT INTO credit_accounts (org_id, charged_micros) VALUES ($1, $2) \
                     ON CONFLICT (org_id) DO UPDATE SET charged_micros = credit_accounts.charged_micros + $2",
                )
                .bind(&c.org_id)
                .bind(c.amount_micros)
                .execute(&mut *tx)
                .await
                .map_err(db("updating a credit account"))?;
                consume_grants(&mut tx, c).await?;
                if !c.key_id.is_empty() {
                    *by_key.entry(c.key_id.as_str()).or_default() += c.amount_micros;
                }
            }
        }
        let now = now_ms();
        for (key_id, amount) in by_key {
            add_key_spend(&mut tx, key_id, amount, now).await?;
        }
        tx.commit().await.map_err(db("committing a usage batch"))?;
        self.settled_locally(events, charges).await;
        Ok(())
    }

    /// Most recent usage events, newest first.
    pub async fn usage(&self, org_id: Option<&str>, limit: i64) -> Result<Vec<UsageEvent>> {
        let rows = match org_id {
            Some(org) => {
                sqlx::query(&format!(
                    "SELECT {USAGE_COLUMNS} FROM usage_events WHERE org_id = $1 \
                     ORDER BY created_at DESC, request_id LIMIT $2"
                ))
                .bind(org)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {USAGE_COLUMNS} FROM usage_events ORDER BY created_at DESC, request_id LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(db("listing usage"))?;
        rows.iter()
            .map(usage_from)
            .collect::<std::result::Result<_, _>>()
            .map_err(db("reading usage"))
    }

    /// Number of charge entries for a request (tests and audits: must be 0 or 1).
    pub async fn charges_for_request(&self, request_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM credit_ledger WHERE kind = 'charge' AND request_id = $1")
            .bind(request_id)
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting charges"))?;
        row.try_get("n").map_err(db("reading a count"))
    }
}

impl Store {
    /// The newest usage records of the keys that belong to `member_id` in `org_id`.
    pub async fn usage_for_member(
        &self,
        org_id: &str,
        member_id: &str,
        limit: i64,
    ) -> Result<Vec<UsageEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {USAGE_COLUMNS} FROM usage_events WHERE org_id = $1 \
             AND key_id IN (SELECT id FROM api_keys WHERE member_id = $2) \
             ORDER BY created_at DESC, request_id LIMIT $3"
        ))
        .bind(org_id)
        .bind(member_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing a member's usage"))?;
        rows.iter()
            .map(usage_from)
            .collect::<std::result::Result<_, _>>()
            .map_err(db("reading a member's usage"))
    }

    /// One request's usage record, if recorded (records are written in batches, within the
    /// usage writer's flush interval).
    pub async fn usage_event(&self, request_id: &str) -> Result<Option<UsageEvent>> {
        let row = sqlx::query(&format!(
            "SELECT {USAGE_COLUMNS} FROM usage_events WHERE request_id = $1"
        ))
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a usage record"))?;
        row.as_ref()
            .map(usage_from)
            .transpose()
            .map_err(db("reading a usage record"))
    }
}
