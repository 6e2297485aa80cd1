//! Credit reservations: a request's worst-case cost is held against its org's balance before it
//! goes upstream, atomically in the database, so neither concurrent requests nor several gateway
//! replicas can spend past the balance. The hold is released in the transaction that records the
//! request's usage and charge (`usage.rs`), or directly when nothing is recorded, or by a sweep
//! for holds whose request never settled (a crash).
//!
//! Atomicity: every reservation first writes the org's `credit_accounts` row (an upsert that
//! changes nothing), which takes that row's lock on PostgreSQL and the write lock on SQLite; the
//! balance is read after that, so two reservations for one org are serialised and each sees the
//! other's hold.

use sqlx::Row;

use super::{db, Result, Store};

/// The outcome of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Held,
    /// Not enough left: what was available (what is left of unexpired grants minus holds).
    Insufficient {
        available_micros: i64,
    },
}

impl Store {
    /// Holds `amount_micros` of `org_id`'s balance for `request_id`, or says how much is
    /// available. A request id holds at most once (a second call for it is `Held` and changes
    /// nothing).
    pub async fn reserve(
        &self,
        org_id: &str,
        request_id: &str,
        amount_micros: i64,
        now_ms: i64,
    ) -> Result<Reservation> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a reservation"))?;
        // Lock the org's account row first (see the module comment).
        sqlx::query(
            "INSERT INTO credit_accounts (org_id, charged_micros, held_micros) VALUES ($1, 0, 0) \
             ON CONFLICT (org_id) DO UPDATE SET held_micros = credit_accounts.held_micros",
        )
        .bind(org_id)
        .execute(&mut *tx)
        .await
        .map_err(db("locking a credit account"))?;
        let row = sqlx::query(
            "SELECT CAST(COALESCE((SELECT SUM(remaining_micros) FROM credit_ledger \
                    WHERE org_id = $1 AND kind = 'grant' AND remaining_micros > 0 \
                      AND (expires_at = 0 OR expires_at > $2)), 0) AS BIGINT) AS left_micros, \
                    (SELECT held_micros FROM credit_accounts WHERE org_id = $1) AS held, \
                    (SELECT COUNT(*) FROM credit_holds WHERE request_id = $3) AS already",
        )
        .bind(org_id)
        .bind(now_ms)
        .bind(request_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("reading a balance to reserve"))?;
        let left: i64 = row
            .try_get("left_micros")
            .map_err(db("reading a balance"))?;
        let held: i64 = row.try_get("held").map_err(db("reading holds"))?;
        let already: i64 = row.try_get("already").map_err(db("reading holds"))?;
        if already > 0 {
            return Ok(Reservation::Held);
        }
        let available = left - held;
        if available < amount_micros || available <= 0 {
            return Ok(Reservation::Insufficient {
                available_micros: available.max(0),
            });
        }
        sqlx::query(
            "INSERT INTO credit_holds (request_id, org_id, amount_micros, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(request_id)
        .bind(org_id)
        .bind(amount_micros)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db("recording a hold"))?;
        sqlx::query("UPDATE credit_accounts SET held_micros = held_micros + $1 WHERE org_id = $2")
            .bind(amount_micros)
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db("holding credits"))?;
        tx.commit().await.map_err(db("committing a reservation"))?;
        Ok(Reservation::Held)
    }

    /// Releases `request_id`'s hold, if it has one (idempotent).
    pub async fn release_hold(&self, request_id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db("starting a release"))?;
        release_in(&mut tx, request_id).await?;
        tx.commit().await.map_err(db("committing a release"))
    }

    /// Releases holds older than `before_ms` (their request never settled); returns how many.
    pub async fn release_stale_holds(&self, before_ms: i64) -> Result<u64> {
        let rows =
            sqlx::query("SELECT request_id FROM credit_holds WHERE created_at < $1 LIMIT 500")
                .bind(before_ms)
                .fetch_all(&self.pool)
                .await
                .map_err(db("finding stale holds"))?;
        let mut released = 0;
        for r in rows {
            let id: String = r.try_get("request_id").map_err(db("reading a hold"))?;
            self.release_hold(&id).await?;
            released += 1;
        }
        Ok(released)
    }

    /// Credits held right now for `org_id` (tests, audits).
    pub async fn held(&self, org_id: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE((SELECT held_micros FROM credit_accounts WHERE org_id = $1), 0) AS BIGINT) AS held",
        )
        .bind(org_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db("reading holds"))?;
        row.try_get("held").map_err(db("reading holds"))
    }
}

/// Releases a request's hold inside `tx` (the usage transaction, or its own).
pub(super) async fn release_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    request_id: &str,
) -> Result<()> {
    let hold = sqlx::query("SELECT org_id, amount_micros FROM credit_holds WHERE request_id = $1")
        .bind(request_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db("reading a hold"))?;
    let Some(hold) = hold else {
        return Ok(());
    };
    let org: String = hold.try_get("org_id").map_err(db("reading a hold"))?;
    let amount: i64 = hold
        .try_get("amount_micros")
        .map_err(db("reading a hold"))?;
    let deleted = sqlx::query("DELETE FROM credit_holds WHERE request_id = $1")
        .bind(request_id)
        .execute(&mut **tx)
        .await
        .map_err(db("releasing a hold"))?;
    if deleted.rows_affected() == 1 {
        sqlx::query("UPDATE credit_accounts SET held_micros = held_micros - $1 WHERE org_id = $2")
            .bind(amount)
            .bind(org)
            .execute(&mut **tx)
            .await
            .map_err(db("releasing held credits"))?;
    }
    Ok(())
}
