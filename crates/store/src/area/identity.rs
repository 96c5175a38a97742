use async_trait::async_trait;

use crate::AuditAppend;
use credvault_core::model::{Group, Safe, SafeMember, TokenInfo, User};
use uuid::Uuid;

use crate::{Result, SafeMemberRow};

/// Who may do what: users, groups, tokens, safes and their members.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    // --- users, groups
    async fn create_user(
        &self,
        user: &User,
        password_hash: Option<&str>,
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    async fn get_user(&self, name: &str) -> Result<Option<User>>;
    async fn user_password_hash(&self, name: &str) -> Result<Option<String>>;
    async fn list_users(&self) -> Result<Vec<User>>;
    async fn delete_user(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()>;
    async fn create_group(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()>;
    async fn get_group(&self, name: &str) -> Result<Option<Group>>;
    async fn list_groups(&self) -> Result<Vec<Group>>;
    async fn delete_group(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()>;
    async fn add_group_member(
        &self,
        group: &str,
        user: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    async fn remove_group_member(
        &self,
        group: &str,
        user: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    async fn groups_of(&self, user: &str) -> Result<Vec<String>>;

    // --- tokens
    async fn insert_token(
        &self,
        info: &TokenInfo,
        hash: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>>;
    async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>>;
    async fn get_token(&self, id: Uuid) -> Result<Option<TokenInfo>>;
    async fn revoke_token(&self, id: Uuid, audit: &AuditAppend<'_>) -> Result<()>;

    // --- safes
    async fn create_safe(&self, safe: &Safe, audit: &AuditAppend<'_>) -> Result<()>;
    async fn get_safe(&self, name: &str) -> Result<Option<Safe>>;
    async fn list_safes(&self) -> Result<Vec<Safe>>;
    async fn delete_safe(&self, name: &str, audit: &AuditAppend<'_>) -> Result<()>;
    async fn set_safe_member(
        &self,
        safe: &str,
        member: &SafeMember,
        perms: u8,
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    async fn remove_safe_member(
        &self,
        safe: &str,
        kind: &str,
        name: &str,
        audit: &AuditAppend<'_>,
    ) -> Result<()>;
    /// Every member (kind, name, perms bits), ordered by kind and name.
    async fn safe_members(&self, safe: &str) -> Result<Vec<SafeMemberRow>>;
    /// Safes in which the user (directly or through the groups) holds all of `perms`.
    async fn safes_with(&self, user: &str, groups: &[String], perms: u8) -> Result<Vec<String>>;
}
