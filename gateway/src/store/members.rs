//! Members of an org and their roles, and the org settings admins change (rate limits).
//!
//! A member calls the admin API with a token (`tgm-` + 48 hex digits) shown once; only its
//! keyed hash (same server secret as API keys) and a visible prefix are stored. Every change
//! here writes its audit entry in the same transaction.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::audit::{write_audit, Audit};
use super::{db, new_id, now_ms, DbKind, Org, Result, Store, StoreError};

/// What a member may do is decided by its role (see `admin/auth.rs` and docs/admin-api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Developer,
    Restricted,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Developer, Role::Restricted];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Restricted => "restricted",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Member {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub role: Role,
    pub token_prefix: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The outcome of a change that must leave the org at least one owner.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnerGuard<T> {
    Done(T),
    /// Refused: the member is the org's last owner.
    LastOwner,
}

fn member_from(row: &AnyRow) -> std::result::Result<Member, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(Member {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        name: row.try_get("name")?,
        // The table's CHECK allows only the four names.
        role: Role::parse(&role).unwrap_or(Role::Restricted),
        token_prefix: row.try_get("token_prefix")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A new member token: `tgm-` and 48 hex digits.
fn new_token() -> String {
    let mut raw = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut raw);
    format!("tgm-{}", hex::encode(raw))
}

/// New org rate limits; None leaves one as it is (0 = no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgLimits {
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub concurrency_limit: Option<i64>,
}

impl Store {
    /// Adds a member and returns it with its token, which is not stored anywhere.
    pub async fn add_member(
        &self,
        org_id: &str,
        name: &str,
        role: Role,
        secret: &[u8],
        audit: &Audit,
    ) -> Result<(Member, String)> {
        let token = new_token();
        let now = now_ms();
        let member = Member {
            id: new_id("mem"),
            org_id: org_id.to_string(),
            name: name.to_string(),
            role,
            token_prefix: token[..11].to_string(),
            created_at: now,
            updated_at: now,
        };
        let _turn = self.write_turn().await;
        let mut tx = self.begin_write().await.map_err(db("adding a member"))?;
        sqlx::query(
            "INSERT INTO members (id, org_id, name, role, token_prefix, token_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&member.id)
        .bind(&member.org_id)
        .bind(&member.name)
        .bind(role.as_str())
        .bind(&member.token_prefix)
        .bind(crate::keys::keyed_hash(secret, &token))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("adding a member"))?;
        write_audit(&mut tx, &audit.clone().on(&member.id)).await?;
        tx.commit().await.map_err(db("adding a member"))?;
        Ok((member, token))
    }

    pub async fn member(&self, member_id: &str) -> Result<Member> {
        let row = sqlx::query("SELECT * FROM members WHERE id = $1")
            .bind(member_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a member"))?;
        match row {
            Some(r) => member_from(&r).map_err(db("reading a member")),
            None => Err(StoreError::NotFound(format!("member '{member_id}'"))),
        }
    }

    pub async fn members(&self, org_id: &str) -> Result<Vec<Member>> {
        let rows = sqlx::query("SELECT * FROM members WHERE org_id = $1 ORDER BY created_at, id")
            .bind(org_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing members"))?;
        rows.iter()
            .map(member_from)
            .collect::<std::result::Result<_, _>>()
            .map_err(db("reading members"))
    }

    /// The member whose token hashes to `token_hash`.
    pub async fn member_by_token_hash(&self, token_hash: &str) -> Result<Option<Member>> {
        let row = sqlx::query("SELECT * FROM members WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("looking up a member"))?;
        row.as_ref()
            .map(member_from)
            .transpose()
            .map_err(db("reading a member"))
    }

    /// Whether another owner than `member_id` is left in its org (inside the change's
    /// transaction; on PostgreSQL the owners' rows are locked so two demotions cannot both
    /// pass).
    async fn other_owner_left(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        member: &Member,
    ) -> Result<bool> {
        let lock = if self.kind == DbKind::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let rows = sqlx::query(&format!(
            "SELECT id FROM members WHERE org_id = $1 AND role = 'owner' AND id <> $2{lock}"
        ))
        .bind(&member.org_id)
        .bind(&member.id)
        .fetch_all(&mut **tx)
        .await
        .map_err(db("counting owners"))?;
        Ok(!rows.is_empty())
    }

    /// Changes a member's role; an org's last owner keeps its role.
    pub async fn set_member_role(
        &self,
        member_id: &str,
        role: Role,
        audit: &Audit,
    ) -> Result<OwnerGuard<Member>> {
        let member = self.member(member_id).await?;
        let _turn = self.write_turn().await;
        let mut tx = self.begin_write().await.map_err(db("changing a role"))?;
        if member.role == Role::Owner
            && role != Role::Owner
            && !self.other_owner_left(&mut tx, &member).await?
        {
            return Ok(OwnerGuard::LastOwner);
        }
        let now = now_ms();
        sqlx::query("UPDATE members SET role = $1, updated_at = $2 WHERE id = $3")
            .bind(role.as_str())
            .bind(now)
            .bind(member_id)
            .execute(&mut *tx)
            .await
            .map_err(db("changing a role"))?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db("changing a role"))?;
        Ok(OwnerGuard::Done(Member {
            role,
            updated_at: now,
            ..member
        }))
    }

    /// Removes a member (its token stops working at once); an org's last owner stays. Keys
    /// that belonged to it become the org's.
    pub async fn remove_member(&self, member_id: &str, audit: &Audit) -> Result<OwnerGuard<()>> {
        let member = self.member(member_id).await?;
        let _turn = self.write_turn().await;
        let mut tx = self.begin_write().await.map_err(db("removing a member"))?;
        if member.role == Role::Owner && !self.other_owner_left(&mut tx, &member).await? {
            return Ok(OwnerGuard::LastOwner);
        }
        sqlx::query("UPDATE api_keys SET member_id = NULL WHERE member_id = $1")
            .bind(member_id)
            .execute(&mut *tx)
            .await
            .map_err(db("removing a member"))?;
        sqlx::query("DELETE FROM members WHERE id = $1")
            .bind(member_id)
            .execute(&mut *tx)
            .await
            .map_err(db("removing a member"))?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db("removing a member"))?;
        Ok(OwnerGuard::Done(()))
    }

    /// Gives a member a new token (the old one stops working at once).
    pub async fn new_member_token(
        &self,
        member_id: &str,
        secret: &[u8],
        audit: &Audit,
    ) -> Result<(Member, String)> {
        let member = self.member(member_id).await?;
        let token = new_token();
        let now = now_ms();
        let _turn = self.write_turn().await;
        let mut tx = self.begin_write().await.map_err(db("renewing a token"))?;
        sqlx::query(
            "UPDATE members SET token_prefix = $1, token_hash = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(&token[..11])
        .bind(crate::keys::keyed_hash(secret, &token))
        .bind(now)
        .bind(member_id)
        .execute(&mut *tx)
        .await
        .map_err(db("renewing a token"))?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db("renewing a token"))?;
        let member = Member {
            token_prefix: token[..11].to_string(),
            updated_at: now,
            ..member
        };
        Ok((member, token))
    }

    /// Changes an org's rate limits; the gateways' org caches hear of it at once (this process
    /// directly, other replicas through PostgreSQL's NOTIFY on `tollgate_orgs`).
    pub async fn update_org_limits(
        &self,
        org_id: &str,
        limits: &OrgLimits,
        audit: &Audit,
    ) -> Result<Org> {
        use super::org_policy::Value;
        let columns = [
            ("rpm_limit", limits.rpm_limit),
            ("tpm_limit", limits.tpm_limit),
            ("concurrency_limit", limits.concurrency_limit),
        ]
        .into_iter()
        .filter_map(|(c, v)| Some((c, Value::Int(v?))))
        .collect();
        self.update_org_audited(org_id, columns, audit, "changing an org's limits")
            .await
    }
}
