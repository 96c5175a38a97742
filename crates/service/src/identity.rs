//! Identities: safes and their members, users, groups, tokens and password login.

use credvault_core::model::{Group, OwnerKind, Perms, Safe, SafeMember, TokenInfo, User, UserKind};
use credvault_core::policy::{self, Actor};
use credvault_core::{validate, DomainError};
use credvault_crypto::{password, token, SecretString};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{ServiceError, ServiceResult};
use crate::vault::forbidden;
use crate::{Ctx, Vault};

impl Vault {
    // ---------------------------------------------------------------- safes

    pub async fn create_safe(&self, ctx: &Ctx, safe: Safe) -> ServiceResult<Safe> {
        self.require_admin(ctx)?;
        validate::principal_name("name", &safe.name)?;
        let audit = self
            .write_audit(ctx, "safe.create", &safe.name, json!({}))
            .await?;
        self.store.create_safe(&safe, &audit.append()).await?;

        Ok(safe)
    }

    pub async fn list_safes(&self, ctx: &Ctx) -> ServiceResult<Vec<Safe>> {
        let all = self.store.list_safes().await?;
        if ctx.actor.is_admin() {
            return Ok(all);
        }
        let mine = self
            .store
            .safes_with(&ctx.actor.name, &ctx.actor.groups, Perms::NONE.0)
            .await?;
        Ok(all.into_iter().filter(|s| mine.contains(&s.name)).collect())
    }

    pub async fn delete_safe(&self, ctx: &Ctx, name: &str) -> ServiceResult<()> {
        self.require_admin(ctx)?;
        let audit = self
            .write_audit(ctx, "safe.delete", name, json!({}))
            .await?;
        self.store.delete_safe(name, &audit.append()).await?;

        Ok(())
    }

    pub async fn safe_members(&self, ctx: &Ctx, safe: &str) -> ServiceResult<Vec<SafeMember>> {
        if self.safe_perms(&ctx.actor, safe).await? == Perms::NONE {
            return Err(forbidden());
        }
        Ok(self
            .memberships(safe)
            .await?
            .iter()
            .cloned()
            .map(|m| SafeMember {
                kind: m.kind,
                name: m.name,
                permissions: m.perms.names(),
            })
            .collect())
    }

    pub async fn set_safe_member(
        &self,
        ctx: &Ctx,
        safe: &str,
        member: SafeMember,
    ) -> ServiceResult<SafeMember> {
        if !self
            .safe_perms(&ctx.actor, safe)
            .await?
            .contains(Perms::MANAGE)
        {
            return Err(forbidden());
        }
        let perms = Perms::from_names(&member.permissions)
            .map_err(|m| DomainError::invalid("permissions", m))?;
        let exists = match member.kind {
            OwnerKind::User => self.store.get_user(&member.name).await?.is_some(),
            OwnerKind::Group => self.store.get_group(&member.name).await?.is_some(),
        };
        if !exists {
            return Err(DomainError::invalid(
                "name",
                format!("no {} '{}'", member.kind.as_str(), member.name),
            )
            .into());
        }
        let audit = self.write_audit(ctx, "safe.member.set", safe, json!({"member": member.name, "type": member.kind.as_str(), "permissions": perms.names()})).await?;
        self.store
            .set_safe_member(safe, &member, perms.0, &audit.append())
            .await?;

        Ok(SafeMember {
            permissions: perms.names(),
            ..member
        })
    }

    pub async fn remove_safe_member(
        &self,
        ctx: &Ctx,
        safe: &str,
        kind: OwnerKind,
        name: &str,
    ) -> ServiceResult<()> {
        if !self
            .safe_perms(&ctx.actor, safe)
            .await?
            .contains(Perms::MANAGE)
        {
            return Err(forbidden());
        }
        let audit = self
            .write_audit(
                ctx,
                "safe.member.remove",
                safe,
                json!({"member": name, "type": kind.as_str()}),
            )
            .await?;
        self.store
            .remove_safe_member(safe, kind.as_str(), name, &audit.append())
            .await?;

        Ok(())
    }

    // ---------------------------------------------------------------- users and groups

    pub async fn create_user(
        &self,
        ctx: &Ctx,
        name: &str,
        kind: UserKind,
        admin: bool,
        pw: Option<&SecretString>,
    ) -> ServiceResult<User> {
        self.require_admin(ctx)?;
        validate::principal_name("name", name)?;
        let hash = match pw {
            Some(_) if kind == UserKind::Service => {
                return Err(DomainError::invalid(
                    "password",
                    "service users authenticate with API tokens, not passwords",
                )
                .into())
            }
            Some(p) if p.len() < 12 => {
                return Err(
                    DomainError::invalid("password", "must be at least 12 characters").into(),
                )
            }
            Some(p) => Some(password::hash_password(p.expose())?),
            None => None,
        };
        let user = User {
            name: name.to_owned(),
            kind,
            admin,
            created_at: self.clock.now(),
        };
        let audit = self
            .write_audit(
                ctx,
                "user.create",
                name,
                json!({"kind": kind.as_str(), "admin": admin}),
            )
            .await?;
        self.store
            .create_user(&user, hash.as_deref(), &audit.append())
            .await?;

        Ok(user)
    }

    pub async fn list_users(&self, ctx: &Ctx) -> ServiceResult<Vec<User>> {
        self.require_admin(ctx)?;
        Ok(self.store.list_users().await?)
    }

    pub async fn get_user(&self, ctx: &Ctx, name: &str) -> ServiceResult<User> {
        if !ctx.actor.is_admin() && ctx.actor.name != name {
            return Err(forbidden());
        }
        self.store
            .get_user(name)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("user '{name}'")).into())
    }

    pub async fn delete_user(&self, ctx: &Ctx, name: &str) -> ServiceResult<()> {
        self.require_admin(ctx)?;
        let audit = self
            .write_audit(ctx, "user.delete", name, json!({}))
            .await?;
        self.store.delete_user(name, &audit.append()).await?;

        Ok(())
    }

    pub async fn create_group(&self, ctx: &Ctx, name: &str) -> ServiceResult<Group> {
        self.require_admin(ctx)?;
        validate::principal_name("name", name)?;
        if name == policy::ALL_USERS {
            return Err(DomainError::invalid(
                "name",
                "'all-users' is the built-in group of every user",
            )
            .into());
        }
        let audit = self
            .write_audit(ctx, "group.create", name, json!({}))
            .await?;
        self.store.create_group(name, &audit.append()).await?;

        Ok(Group {
            name: name.to_owned(),
            members: vec![],
        })
    }

    pub async fn list_groups(&self, ctx: &Ctx) -> ServiceResult<Vec<Group>> {
        let all = self.store.list_groups().await?;
        if ctx.actor.is_admin() {
            return Ok(all);
        }
        Ok(all
            .into_iter()
            .filter(|g| ctx.actor.in_group(&g.name))
            .collect())
    }

    pub async fn get_group(&self, ctx: &Ctx, name: &str) -> ServiceResult<Group> {
        if !ctx.actor.is_admin() && !ctx.actor.in_group(name) {
            return Err(forbidden());
        }
        self.store
            .get_group(name)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("group '{name}'")).into())
    }

    pub async fn delete_group(&self, ctx: &Ctx, name: &str) -> ServiceResult<()> {
        self.require_admin(ctx)?;
        let audit = self
            .write_audit(ctx, "group.delete", name, json!({}))
            .await?;
        self.store.delete_group(name, &audit.append()).await?;

        Ok(())
    }

    pub async fn add_group_member(
        &self,
        ctx: &Ctx,
        group: &str,
        user: &str,
    ) -> ServiceResult<Group> {
        self.require_admin(ctx)?;
        if self.store.get_group(group).await?.is_none() {
            return Err(DomainError::NotFound(format!("group '{group}'")).into());
        }
        if self.store.get_user(user).await?.is_none() {
            return Err(DomainError::invalid("user", format!("no user '{user}'")).into());
        }
        let audit = self
            .write_audit(ctx, "group.member.add", group, json!({"user": user}))
            .await?;
        self.store
            .add_group_member(group, user, &audit.append())
            .await?;

        self.get_group(ctx, group).await
    }

    pub async fn remove_group_member(
        &self,
        ctx: &Ctx,
        group: &str,
        user: &str,
    ) -> ServiceResult<()> {
        self.require_admin(ctx)?;
        let audit = self
            .write_audit(ctx, "group.member.remove", group, json!({"user": user}))
            .await?;
        self.store
            .remove_group_member(group, user, &audit.append())
            .await?;

        Ok(())
    }

    // ---------------------------------------------------------------- tokens

    /// Create a token for `user` (default: the caller). Returns the token, shown only this once.
    pub async fn create_token(
        &self,
        ctx: &Ctx,
        user: Option<&str>,
        ttl_seconds: Option<i64>,
        description: Option<String>,
    ) -> ServiceResult<(TokenInfo, SecretString)> {
        let user = user.unwrap_or(&ctx.actor.name).to_owned();
        if user != ctx.actor.name && !ctx.actor.is_admin() {
            return Err(forbidden());
        }
        if user == "root" && !matches!(ctx.actor.kind, policy::ActorKind::Root) {
            return Err(forbidden());
        }
        if user != "root" && self.store.get_user(&user).await?.is_none() {
            return Err(DomainError::invalid("user", format!("no user '{user}'")).into());
        }
        if let Some(d) = &description {
            if d.len() > validate::MAX_NAME {
                return Err(DomainError::invalid("description", "is too long").into());
            }
        }
        let expires_at = match ttl_seconds {
            Some(s) if s <= 0 || s > 10 * 365 * 86_400 => {
                return Err(
                    DomainError::invalid("ttl_seconds", "must be between 1 and 315360000").into(),
                )
            }
            Some(s) => Some(self.clock.now() + time::Duration::seconds(s)),
            None => None,
        };
        let detail = json!({"user": user});
        self.issue_token(ctx, "token.create", &user, expires_at, description, |i| {
            (i.id.to_string(), detail)
        })
        .await
    }

    /// Mint and store a token without authorisation checks (init, login), with the call's audit
    /// record (`action` by `ctx`; `describe` gives its target and detail) in the same transaction.
    pub(crate) async fn issue_token(
        &self,
        ctx: &Ctx,
        action: &'static str,
        user: &str,
        expires_at: Option<OffsetDateTime>,
        description: Option<String>,
        describe: impl FnOnce(&TokenInfo) -> (String, serde_json::Value),
    ) -> ServiceResult<(TokenInfo, SecretString)> {
        let keys = self.barrier.keys().await?;
        let secret = token::generate_token();
        let info = TokenInfo {
            id: Uuid::now_v7(),
            user: user.to_owned(),
            description,
            created_at: self.clock.now(),
            expires_at,
            revoked: false,
        };
        let (target, detail) = describe(&info);
        let audit = self.write_audit(ctx, action, target, detail).await?;
        self.store
            .insert_token(
                &info,
                &keys.tokens.token_hash(secret.expose()),
                &audit.append(),
            )
            .await?;
        Ok((info, secret))
    }

    pub async fn list_tokens(&self, ctx: &Ctx) -> ServiceResult<Vec<TokenInfo>> {
        let user = (!ctx.actor.is_admin()).then_some(ctx.actor.name.as_str());
        Ok(self.store.list_tokens(user).await?)
    }

    pub async fn revoke_token(&self, ctx: &Ctx, id: Uuid) -> ServiceResult<()> {
        let t = self
            .store
            .get_token(id)
            .await?
            .ok_or_else(|| ServiceError::from(DomainError::NotFound("token".into())))?;
        if t.user != ctx.actor.name && !ctx.actor.is_admin() {
            return Err(DomainError::NotFound("token".into()).into());
        }
        let audit = self
            .write_audit(ctx, "token.revoke", id.to_string(), json!({"user": t.user}))
            .await?;
        self.store.revoke_token(id, &audit.append()).await?;

        Ok(())
    }

    /// Exchange a human user's password for a token (default lifetime 8 hours).
    pub async fn login(
        &self,
        source: std::net::IpAddr,
        door: &'static str,
        user: &str,
        pw: &SecretString,
    ) -> ServiceResult<(TokenInfo, SecretString)> {
        self.limiter.check(source)?;
        let hash = self.store.user_password_hash(user).await?;
        let ok = match &hash {
            Some(h) => password::verify_password(pw.expose(), h),
            None => {
                // Spend the same time as a real check so user names cannot be probed by timing.
                let _ = password::hash_password(pw.expose());
                false
            }
        };
        let ctx = Ctx {
            actor: Actor {
                name: user.to_owned(),
                kind: policy::ActorKind::User,
                groups: vec![],
            },
            source: source.to_string(),
            door,
        };
        if !ok {
            let err: ServiceError = self
                .limiter
                .refuse(source, DomainError::Unauthenticated.into());
            self.audit_refusal(crate::audit::Event {
                actor: ctx.actor.name.clone(),
                door,
                action: "auth.login",
                target: user.to_owned(),
                source: ctx.source.clone(),
                outcome: "denied",
                detail: json!({}),
            })
            .await;
            return Err(err);
        }
        self.issue_token(
            &ctx,
            "auth.login",
            user,
            Some(self.clock.now() + time::Duration::hours(8)),
            Some("login".into()),
            |i| (user.to_owned(), json!({"token": i.id})),
        )
        .await
    }
}
