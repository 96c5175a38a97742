//! [`IdentityStore`]: users, groups, tokens, safes and their members.

use async_trait::async_trait;
use credvault_core::model::{Group, Safe, SafeMember, TokenInfo, User};
use sqlx::QueryBuilder;
use time::OffsetDateTime;
use uuid::Uuid;

use super::common::{conflict_as, exec, i, not_found_if_zero, os, s, token_from, user_from, DbRow};
use super::{Backend, Db};
use crate::sql::{corrupt, db_err};
use crate::AuditAppend;
use crate::{format_time, IdentityStore, Result, SafeMemberRow, StoreError};

const USER_COLS: &str = "name, kind, admin, created_at";
const TOKEN_COLS: &str = "id, user_name, description, created_at, expires_at, revoked";

fn safe_from(r: &DbRow) -> Result<Safe> {
    Ok(Safe {
        name: s(r, "name")?,
        description: os(r, "description")?,
    })
}

#[async_trait]
impl IdentityStore for Backend {
    // --- users, groups

    async fn create_user(
        &self,
        user: &User,
        password_hash: Option<&str>,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO users (name, kind, admin, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.name)
        .bind(user.kind.as_str())
        .bind(user.admin)
        .bind(password_hash)
        .bind(format_time(user.created_at))
        .execute(&mut *tx)
        .await
        .map_err(conflict_as(StoreError::Conflict(format!(
            "user '{}' already exists",
            user.name
        ))))?;
        self.commit_audited(tx, audit).await
    }

    async fn get_user(&self, name: &str) -> Result<Option<User>> {
        sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(user_from)
            .transpose()
    }

    async fn user_password_hash(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| os(&r, "password_hash")).transpose()?.flatten())
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!("SELECT {USER_COLS} FROM users ORDER BY name"))
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(user_from).collect()
    }

    async fn delete_user(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = exec(&mut *tx, "DELETE FROM users WHERE name = $1", &[name]).await?;
        not_found_if_zero(n, "user")?;
        exec(
            &mut *tx,
            "UPDATE tokens SET revoked = TRUE WHERE user_name = $1",
            &[name],
        )
        .await?;
        exec(
            &mut *tx,
            "DELETE FROM safe_members WHERE kind = 'user' AND name = $1",
            &[name],
        )
        .await?;
        self.commit_audited(tx, audit).await
    }

    async fn create_group(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO groups (name, created_at) VALUES ($1, $2)")
            .bind(name)
            .bind(format_time(OffsetDateTime::now_utc()))
            .execute(&mut *tx)
            .await
            .map_err(conflict_as(StoreError::Conflict(format!(
                "group '{name}' already exists"
            ))))?;
        self.commit_audited(tx, audit).await
    }

    async fn get_group(&self, name: &str) -> Result<Option<Group>> {
        let exists = sqlx::query("SELECT name FROM groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        if exists.is_none() {
            return Ok(None);
        }
        let members = sqlx::query(
            "SELECT user_name
             FROM group_members
             WHERE group_name = $1
             ORDER BY user_name",
        )
        .bind(name)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| s(r, "user_name"))
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(Group {
            name: name.to_owned(),
            members,
        }))
    }

    async fn list_groups(&self) -> Result<Vec<Group>> {
        let rows = sqlx::query(
            "SELECT g.name AS name, m.user_name AS user_name
             FROM groups g
             LEFT JOIN group_members m ON m.group_name = g.name
             ORDER BY g.name, m.user_name",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let mut out: Vec<Group> = Vec::new();
        for r in &rows {
            let name = s(r, "name")?;
            let member = os(r, "user_name")?;
            match out.last_mut() {
                Some(g) if g.name == name => g.members.extend(member),
                _ => out.push(Group {
                    name,
                    members: member.into_iter().collect(),
                }),
            }
        }
        Ok(out)
    }

    async fn delete_group(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = exec(&mut *tx, "DELETE FROM groups WHERE name = $1", &[name]).await?;
        not_found_if_zero(n, "group")?;
        exec(
            &mut *tx,
            "DELETE FROM safe_members WHERE kind = 'group' AND name = $1",
            &[name],
        )
        .await?;
        self.commit_audited(tx, audit).await
    }

    async fn add_group_member(
        &self,
        group: &str,
        user: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO group_members (group_name, user_name)
             VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(group)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(conflict_as(StoreError::NotFound("group or user".into())))?;
        self.commit_audited(tx, audit).await
    }

    async fn remove_group_member(
        &self,
        group: &str,
        user: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = exec(
            &mut *tx,
            "DELETE FROM group_members WHERE group_name = $1 AND user_name = $2",
            &[group, user],
        )
        .await?;
        not_found_if_zero(n, "group member")?;
        self.commit_audited(tx, audit).await
    }

    async fn groups_of(&self, user: &str) -> Result<Vec<String>> {
        sqlx::query(
            "SELECT group_name
             FROM group_members
             WHERE user_name = $1
             ORDER BY group_name",
        )
        .bind(user)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| s(r, "group_name"))
        .collect()
    }

    // --- tokens

    async fn insert_token(
        &self,
        info: &TokenInfo,
        hash: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO tokens
               (id, hash, user_name, description, created_at, expires_at, revoked)
             VALUES ($1, $2, $3, $4, $5, $6, FALSE)",
        )
        .bind(info.id.to_string())
        .bind(hash)
        .bind(&info.user)
        .bind(&info.description)
        .bind(format_time(info.created_at))
        .bind(info.expires_at.map(format_time))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.commit_audited(tx, audit).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
        sqlx::query(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE hash = $1"))
            .bind(hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(token_from)
            .transpose()
    }

    async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLS}
             FROM tokens
             WHERE (CAST($1 AS TEXT) IS NULL OR user_name = $1)
             ORDER BY id"
        ))
        .bind(user)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(token_from).collect()
    }

    async fn get_token(&self, id: Uuid) -> Result<Option<TokenInfo>> {
        sqlx::query(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(token_from)
            .transpose()
    }

    async fn revoke_token(&self, id: Uuid, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = exec(
            &mut *tx,
            "UPDATE tokens SET revoked = TRUE WHERE id = $1",
            &[&id.to_string()],
        )
        .await?;
        not_found_if_zero(n, "token")?;
        self.commit_audited(tx, audit).await
    }

    // --- safes

    async fn create_safe(&self, safe: &Safe, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO safes (name, description, created_at)
             VALUES ($1, $2, $3)",
        )
        .bind(&safe.name)
        .bind(&safe.description)
        .bind(format_time(OffsetDateTime::now_utc()))
        .execute(&mut *tx)
        .await
        .map_err(conflict_as(StoreError::Conflict(format!(
            "safe '{}' already exists",
            safe.name
        ))))?;
        self.commit_audited(tx, audit).await
    }

    async fn get_safe(&self, name: &str) -> Result<Option<Safe>> {
        sqlx::query("SELECT name, description FROM safes WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(safe_from)
            .transpose()
    }

    async fn list_safes(&self) -> Result<Vec<Safe>> {
        let rows = sqlx::query("SELECT name, description FROM safes ORDER BY name")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(safe_from).collect()
    }

    async fn delete_safe(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials WHERE safe = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if used > 0 {
            return Err(StoreError::Conflict(format!(
                "safe '{name}' still holds {used} credential(s)"
            )));
        }
        let n = exec(&mut *tx, "DELETE FROM safes WHERE name = $1", &[name]).await?;
        not_found_if_zero(n, "safe")?;
        self.commit_audited(tx, audit).await
    }

    async fn set_safe_member(
        &self,
        safe: &str,
        member: &SafeMember,
        perms: u8,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO safe_members (safe_name, kind, name, perms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (safe_name, kind, name) DO UPDATE
               SET perms = excluded.perms",
        )
        .bind(safe)
        .bind(member.kind.as_str())
        .bind(&member.name)
        .bind(i64::from(perms))
        .execute(&mut *tx)
        .await
        .map_err(conflict_as(StoreError::NotFound("safe".into())))?;
        self.commit_audited(tx, audit).await
    }

    async fn remove_safe_member(
        &self,
        safe: &str,
        kind: &str,
        name: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = exec(
            &mut *tx,
            "DELETE FROM safe_members WHERE safe_name = $1 AND kind = $2 AND name = $3",
            &[safe, kind, name],
        )
        .await?;
        not_found_if_zero(n, "safe member")?;
        self.commit_audited(tx, audit).await
    }

    async fn safe_members(&self, safe: &str) -> Result<Vec<SafeMemberRow>> {
        let rows = sqlx::query(
            "SELECT kind, name, perms
             FROM safe_members
             WHERE safe_name = $1
             ORDER BY kind, name",
        )
        .bind(safe)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(SafeMemberRow {
                    kind: s(r, "kind")?,
                    name: s(r, "name")?,
                    perms: u8::try_from(i(r, "perms")?).map_err(|_| corrupt("perms"))?,
                })
            })
            .collect()
    }

    async fn safes_with(&self, user: &str, groups: &[String], perms: u8) -> Result<Vec<String>> {
        // SELECT DISTINCT safe_name FROM safe_members
        // WHERE (perms & $p) = $p
        //   AND ((kind = 'user' AND name = $user) OR (kind = 'group' AND name IN ($groups…)))
        // ORDER BY safe_name
        let mut q: QueryBuilder<Db> =
            QueryBuilder::new("SELECT DISTINCT safe_name FROM safe_members WHERE (perms & ");
        q.push_bind(i64::from(perms))
            .push(") = ")
            .push_bind(i64::from(perms));
        q.push(" AND ((kind = 'user' AND name = ")
            .push_bind(user)
            .push(")");
        if !groups.is_empty() {
            q.push(" OR (kind = 'group' AND name IN (");
            let mut sep = q.separated(", ");
            for g in groups {
                sep.push_bind(g);
            }
            q.push("))");
        }
        q.push(") ORDER BY safe_name");
        q.build()
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| s(r, "safe_name"))
            .collect()
    }
}
