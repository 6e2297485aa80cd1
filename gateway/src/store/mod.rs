//! Persistent state on SQLite (embedded, the default) or PostgreSQL (several replicas), through
//! sqlx's `Any` driver so one set of queries serves both. SQL uses `$n` parameters, which both
//! accept; migrations are kept per database in `migrations/`.

mod byok;
mod content;
// Admin API (members, audit log, key administration): see `admin/`.
mod alerts;
mod audit;
mod credits;
mod erase;
mod export;
mod key_admin;
mod keys;
mod members;
mod org_policy;
mod periods;
mod purge;
mod responses;
mod usage;
mod usage_writer;

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use alerts::{AlertWatch, LowBalance};
pub use audit::{Audit, AuditRecord};
pub use byok::{ByokState, ProviderKey, Rotation};
pub use content::StoredContent;
pub use credits::{KeyLimit, Reservation};
pub use erase::DeletionReport;
pub use export::{Cursor, ExportQuery, ExportRow};
pub use key_admin::KeyUpdate;
pub use keys::{ApiKey, KeyScopes, NewKey};
pub use members::{Member, OrgLimits, OwnerGuard, Role};
pub use org_policy::{DataPolicyUpdate, RetentionUpdate};
pub use periods::{civil_from_days, SpendPeriod};
pub use purge::PurgeReport;
pub use responses::{spawn_response_purge, ResponseState};
pub use usage::{ChargeEntry, UsageEvent};
pub use usage_writer::{UsageWriter, UsageWriterHandle};

/// The name stored in a usage record's `format` column for a client API (the WIT kebab-case
/// name); one definition, shared with error bodies and configs.
pub use crate::api_error::format_name;

/// Store errors, saying what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error while {doing}: {source}")]
    Db {
        doing: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("unsupported database URL '{0}': use sqlite://... or postgres://...")]
    UnsupportedUrl(String),
}

type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// Whether retrying the same statement can never succeed: the database refused the data
    /// itself (a constraint, a type), as opposed to a connection, pool or I/O failure.
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::Db { source, .. } => matches!(
                source,
                sqlx::Error::Database(_)
                    | sqlx::Error::Encode(_)
                    | sqlx::Error::Decode(_)
                    | sqlx::Error::TypeNotFound { .. }
                    | sqlx::Error::ColumnDecode { .. }
            ),
            StoreError::NotFound(_) | StoreError::UnsupportedUrl(_) => true,
            _ => false,
        }
    }
}

fn db(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Db { doing, source }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A random id with a readable prefix, e.g. `org_3f9a...`.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub retention_mode: String,
    pub retention_days: i64,
    pub created_at: i64,
    /// Requests per minute, tokens per minute and requests at once for the whole org (0: none).
    pub rpm_limit: i64,
    pub tpm_limit: i64,
    pub concurrency_limit: i64,
    /// Days a stored client IP is kept (at most 30).
    pub ip_retention_days: i64,
    /// The org's keys may choose their own retention mode.
    pub key_retention_override: bool,
    /// Which providers routing may use for this org.
    pub data_policy: crate::retention::DataPolicy,
    /// Set on a tombstone org: the anonymised owner of a deleted org's usage and ledger rows.
    pub deleted_at: Option<i64>,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    kind: DbKind,
    /// SQLite allows one writer at a time and makes the others sleep in its busy handler
    /// (1, 2, 5 ... 100 ms steps): under load that sleep, not the write, was the cost. This
    /// process's write transactions queue here instead (PostgreSQL: not used).
    write_turn: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// SQLite: credit holds kept in this process's memory (see `credits.rs`).
    local_holds: std::sync::Arc<tokio::sync::Mutex<credits::LocalHolds>>,
    /// Hashes of keys changed by this process (revoked, disabled, rotated, limits): the key
    /// caches drop them at once. Other processes hear of changes through PostgreSQL's NOTIFY.
    key_changes: tokio::sync::broadcast::Sender<String>,
}

fn org_from(row: &AnyRow) -> std::result::Result<Org, sqlx::Error> {
    Ok(Org {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        retention_mode: row.try_get("retention_mode")?,
        retention_days: row.try_get("retention_days")?,
        created_at: row.try_get("created_at")?,
        rpm_limit: row.try_get("rpm_limit")?,
        tpm_limit: row.try_get("tpm_limit")?,
        concurrency_limit: row.try_get("concurrency_limit")?,
        ip_retention_days: row.try_get("ip_retention_days")?,
        key_retention_override: row.try_get::<i64, _>("key_retention_override")? != 0,
        data_policy: crate::retention::DataPolicy {
            require_zdr: row.try_get::<i64, _>("require_zdr")? != 0,
            deny_training: row.try_get::<i64, _>("deny_training")? != 0,
            allowed_regions: crate::retention::DataPolicy::regions_from(
                &row.try_get::<String, _>("allowed_regions")?,
            ),
        },
        deleted_at: row.try_get("deleted_at")?,
    })
}

impl Store {
    /// Connects and brings the schema up to date. `sqlite://path` creates the file (and its
    /// directory) when missing.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let kind = if url.starts_with("sqlite:") {
            DbKind::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            DbKind::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let mut url = url.to_string();
        if kind == DbKind::Sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or_default();
            if let Some(dir) = std::path::Path::new(path).parent() {
                if !dir.as_os_str().is_empty() {
                    let _ = std::fs::create_dir_all(dir);
                }
            }
            if !url.contains('?') {
                url.push_str("?mode=rwc");
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if kind == DbKind::Sqlite { 4 } else { 16 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if kind == DbKind::Sqlite {
                        // WAL lets the gateway and the CLI use the file at once.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                        // With WAL, NORMAL never corrupts the file; a power cut (not a crash)
                        // can lose the last commits. FULL would fsync every usage batch.
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                        // Deleted rows (purged content, a deleted org) are overwritten with
                        // zeros, not left readable in free pages of the file (docs/retention.md).
                        sqlx::query("PRAGMA secure_delete = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(db("connecting"))?;
        match kind {
            DbKind::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            DbKind::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Store {
            pool,
            kind,
            write_turn: Default::default(),
            local_holds: Default::default(),
            key_changes: tokio::sync::broadcast::channel(1024).0,
        })
    }

    /// A write transaction. On SQLite it takes the write lock at `BEGIN IMMEDIATE` (waiting up
    /// to the busy timeout): a deferred transaction that reads first fails at its first write,
    /// at once and whatever the busy timeout, when another connection — the CLI, a replica, a
    /// single-statement write here — committed since its read (WAL snapshot; seen as a rare
    /// 500 `database is locked` from the admin API under load).
    pub(crate) async fn begin_write(
        &self,
    ) -> std::result::Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.kind {
            DbKind::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            DbKind::Postgres => self.pool.begin().await,
        }
    }

    /// This process's turn to write, on SQLite (None on PostgreSQL, which queues writers on
    /// row locks without sleeping).
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.kind {
            DbKind::Sqlite => Some(self.write_turn.lock().await),
            DbKind::Postgres => None,
        }
    }

    /// Hashes of keys changed through this process, as they commit.
    pub fn key_changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.key_changes.subscribe()
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    pub async fn close(&self) {
        self.pool.close().await
    }

    pub async fn create_org(&self, name: &str) -> Result<Org> {
        let org = Org {
            id: new_id("org"),
            name: name.to_string(),
            retention_mode: "metadata-only".into(),
            retention_days: 30,
            created_at: now_ms(),
            rpm_limit: 0,
            tpm_limit: 0,
            concurrency_limit: 0,
            ip_retention_days: crate::retention::MAX_IP_RETENTION_DAYS,
            key_retention_override: false,
            data_policy: Default::default(),
            deleted_at: None,
        };
        sqlx::query(
            "INSERT INTO orgs (id, name, retention_mode, retention_days, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&org.id)
        .bind(&org.name)
        .bind(&org.retention_mode)
        .bind(org.retention_days)
        .bind(org.created_at)
        .execute(&self.pool)
        .await
        .map_err(db("creating an org"))?;
        Ok(org)
    }

    pub async fn orgs(&self) -> Result<Vec<Org>> {
        let rows = sqlx::query("SELECT * FROM orgs ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing orgs"))?;
        rows.iter()
            .map(org_from)
            .collect::<std::result::Result<_, _>>()
            .map_err(db("reading orgs"))
    }

    /// The org with exactly this id (None: no such org).
    pub async fn org(&self, id: &str) -> Result<Option<Org>> {
        let row = sqlx::query("SELECT * FROM orgs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading an org"))?;
        row.as_ref()
            .map(org_from)
            .transpose()
            .map_err(db("reading an org"))
    }

    /// The org with this id, or with this name when no id matches.
    pub async fn find_org(&self, id_or_name: &str) -> Result<Org> {
        let row = sqlx::query(
            "SELECT * FROM orgs WHERE id = $1 OR name = $1 ORDER BY (id = $1) DESC LIMIT 1",
        )
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("finding an org"))?;
        match row {
            Some(r) => org_from(&r).map_err(db("reading an org")),
            None => Err(StoreError::NotFound(format!("org '{id_or_name}'"))),
        }
    }

    /// Grants credits that expire at `expires_at` (ms; 0 = never).
    pub async fn add_credits(
        &self,
        org_id: &str,
        amount_micros: i64,
        expires_at: i64,
        memo: &str,
    ) -> Result<()> {
        let org = self.find_org(org_id).await?;
        sqlx::query(
            "INSERT INTO credit_ledger (org_id, kind, amount_micros, remaining_micros, expires_at, memo, created_at) \
             VALUES ($1, 'grant', $2, $2, $3, $4, $5)",
        )
        .bind(&org.id)
        .bind(amount_micros)
        .bind(expires_at)
        .bind(memo)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db("granting credits"))?;
        Ok(())
    }

    /// Spendable balance: unexpired grants minus all charges. None for an unknown org. Reads
    /// the org's grants (few) and its running charge total (one row), never the charges.
    /// The org's spendable balance now (None: no such org).
    pub async fn balance(&self, org_id: &str) -> Result<Option<i64>> {
        self.balance_at(org_id, now_ms()).await
    }

    /// The org's spendable balance at `now_ms`: what is left of its grants unexpired then, less
    /// what is held for requests in flight.
    /// (Charges consumed grants soonest-expiring first, so expiry removes only what was left.)
    pub async fn balance_at(&self, org_id: &str, now_ms: i64) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE((SELECT SUM(remaining_micros) FROM credit_ledger \
                    WHERE org_id = o.id AND kind = 'grant' AND remaining_micros > 0 \
                      AND (expires_at = 0 OR expires_at > $2)), 0) \
                  - COALESCE((SELECT held_micros FROM credit_accounts WHERE org_id = o.id), 0) AS BIGINT) AS left_micros \
             FROM orgs o WHERE o.id = $1",
        )
        .bind(org_id)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("computing a balance"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let left: i64 = row
            .try_get("left_micros")
            .map_err(db("reading a balance"))?;
        // SQLite keeps this process's holds in memory (`credits.rs`).
        Ok(Some(left - self.local_held(org_id).await))
    }
}
