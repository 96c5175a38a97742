//! Entity credentials (seed 004): key/value parameters bound to a package (`PKG`) or a connection of
//! a package (`PKG.CONN`), written and read with an API key.
//!
//! - Legacy form: `POST|GET /api/credentials/for/{entity}`; a GET answers `{"parameters": {...}}` or
//!   `null` ("not set"), and a caller who may not read gets the same `null` (audited as denied).
//! - Public REST form: `GET /api/public/v1/credentials/for/{entity}`, `POST /api/public/v1/credentials`,
//!   `DELETE /api/public/v1/credentials/{id}` with `parameters`, redacted `openParameters`,
//!   `entityBindId` and `group` (the owner).
//!
//! Each entity is one ordinary credential with identifier `entity:<entity>` (prefix owned by the door
//! `entity`), its parameters the payload's `parameters`, versioned and audited like any credential.
//! Owner: given on write, default the built-in group `all-users` (everyone reads). Who may read: the
//! owner's members (everyone for `all-users`), the creator, admins. Who may write or change the owner:
//! the creator, a user owner or member of an owner group other than `all-users`, admins. A connection
//! `PKG.CONN` under an existing package also needs the package's writers (`policy::entity_connection_allowed`).
//! API keys are tokens (`credvault apikey ...`): `Authorization: <key>` or `Bearer <key>`.

use std::collections::BTreeMap;

use credvault_core::model::{Credential, CredentialMeta, Owner, OwnerKind, SecretPayload};
use credvault_core::policy::{self, Actor, ActorKind, ALL_USERS};
use credvault_core::validate::{self, Reserved};
use credvault_core::DomainError;
use credvault_crypto::SecretString;
use serde_json::json;
use uuid::Uuid;

use crate::error::{ServiceError, ServiceResult};
use crate::vault::{Found, WriteRules};
use crate::{Ctx, Vault};

pub const DOOR: &str = "entity";

/// `PKG` or `PKG.CONN`, each 1..=64 of `[A-Za-z0-9_-]`.
pub fn check_entity(entity: &str) -> Result<(), DomainError> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 64
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let mut parts = entity.split('.');
    let valid = match (parts.next(), parts.next(), parts.next()) {
        (Some(p), None, None) => ok_part(p),
        (Some(p), Some(c), None) => ok_part(p) && ok_part(c),
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "entity",
            "must be PACKAGE or PACKAGE.CONNECTION, each 1 to 64 letters, digits, '_' or '-'",
        ))
    }
}

fn identifier(entity: &str) -> String {
    Reserved::Entity.identifier(entity)
}

/// A stored entity credential, decrypted.
pub struct EntityCredential {
    pub id: Uuid,
    pub entity: String,
    pub owner: Owner,
    pub version: i64,
    pub parameters: BTreeMap<String, SecretString>,
}

fn may_read(actor: &Actor, cred: &Credential) -> bool {
    policy::entity_may_read(actor, cred.meta.owner.as_ref(), &cred.created_by)
}

fn may_write(actor: &Actor, cred: &Credential) -> bool {
    policy::entity_may_write(actor, cred.meta.owner.as_ref(), &cred.created_by)
}

fn as_package(cred: &Credential) -> policy::EntityPackage<'_> {
    policy::EntityPackage {
        owner: cred.meta.owner.as_ref(),
        created_by: &cred.created_by,
    }
}

impl Vault {
    async fn entity_find(&self, entity: &str) -> ServiceResult<Option<Credential>> {
        check_entity(entity)?;
        self.by_identifier(&identifier(entity)).await
    }

    /// The current owner of an entity (`all-users` when none is stored), for a door to tell an
    /// unchanged owner from a change; `None` when the entity does not exist. Tells the caller
    /// nothing: a save by someone who may not write is refused before any owner is compared.
    pub async fn entity_current_owner(&self, entity: &str) -> ServiceResult<Option<Owner>> {
        Ok(self.entity_find(entity).await?.map(|c| {
            c.meta.owner.unwrap_or(Owner {
                kind: OwnerKind::Group,
                name: ALL_USERS.into(),
            })
        }))
    }

    /// The package `PKG` of a connection `PKG.CONN` (`None` for a package or a missing package).
    async fn entity_package(&self, entity: &str) -> ServiceResult<Option<Credential>> {
        match entity.split_once('.') {
            Some((pkg, _)) => self.entity_find(pkg).await,
            None => Ok(None),
        }
    }

    /// The actor a credential's creator would be now (its admin flag and groups), for rules that
    /// ask what the creator may do; a user that no longer exists may do nothing.
    async fn actor_named(&self, name: &str) -> ServiceResult<Actor> {
        if name == "root" {
            return Ok(Actor::root());
        }
        match self.user_actor(name).await? {
            Some(actor) => Ok(actor),
            None => Ok(Actor {
                name: name.to_owned(),
                kind: ActorKind::User,
                groups: vec![],
            }),
        }
    }

    /// Whether a stored connection stands in its package's namespace: its creator may write the
    /// package (`policy::entity_connection_allowed`), or there is no package. One that does not
    /// (made before the package by someone else) reads as not set and may be replaced.
    async fn entity_stands(
        &self,
        cred: &Credential,
        package: Option<&Credential>,
    ) -> ServiceResult<bool> {
        let Some(pkg) = package else { return Ok(true) };
        let creator = self.actor_named(&cred.created_by).await?;
        Ok(policy::entity_connection_allowed(
            &creator,
            Some(as_package(pkg)),
        ))
    }

    /// Read an entity's parameters: `None` when not set or when the caller may not read it
    /// (indistinguishable, as the contract requires; a refusal is audited as denied).
    pub async fn entity_get(
        &self,
        ctx: &Ctx,
        entity: &str,
    ) -> ServiceResult<Option<EntityCredential>> {
        let Some(cred) = self.entity_find(entity).await? else {
            return Ok(None);
        };
        let package = self.entity_package(entity).await?;
        if !may_read(&ctx.actor, &cred) || !self.entity_stands(&cred, package.as_ref()).await? {
            let _ = self
                .audit(
                    ctx,
                    "credential.read_secret",
                    cred.id.to_string(),
                    "denied",
                    json!({"entity": entity}),
                )
                .await;
            return Ok(None);
        }
        // The entity rules decided above; the one read path does the rest, as the caller.
        let stored = self
            .current(cred.id)
            .await?
            .ok_or_else(|| DomainError::NotFound("credential".into()))?;
        let found = Found {
            version: stored.credential.version,
            cred: stored.credential,
            blob: stored.payload,
            latest: true,
        };
        let owner = found.cred.meta.owner.clone();
        let read = self
            .open_found(
                ctx,
                found,
                "credential.read_secret",
                json!({"entity": entity}),
            )
            .await?;
        Ok(Some(EntityCredential {
            id: read.id,
            entity: entity.to_owned(),
            owner: owner.unwrap_or(Owner {
                kind: OwnerKind::Group,
                name: ALL_USERS.into(),
            }),
            version: read.version,
            parameters: read.parameters,
        }))
    }

    /// Check that the caller may give ownership to `owner`: itself, a group it belongs to, or
    /// `all-users`; admins any existing principal.
    fn entity_owner_allowed(ctx: &Ctx, owner: &Owner) -> ServiceResult<()> {
        if policy::may_give_ownership(&ctx.actor, owner) {
            Ok(())
        } else {
            Err(DomainError::invalid(
                "owner",
                "you can only give ownership to yourself, a group you belong to, or all-users",
            )
            .into())
        }
    }

    /// Set an entity's parameters (a new version), creating it on first write. `owner` None keeps the
    /// current owner (default `all-users` for a new entity).
    pub async fn entity_set(
        &self,
        ctx: &Ctx,
        entity: &str,
        parameters: BTreeMap<String, SecretString>,
        owner: Option<Owner>,
    ) -> ServiceResult<Credential> {
        if ctx.actor.kind == ActorKind::App {
            return Err(DomainError::Forbidden.into());
        }
        for k in parameters.keys() {
            validate::parameter_key(k)?;
        }
        let payload = SecretPayload {
            secret: SecretString::default(),
            parameters,
        };
        for _ in 0..2 {
            // A connection lives in its package's namespace: under an existing package only
            // someone who may write the package makes one (or replaces one that does not stand).
            let package = self.entity_package(entity).await?;
            let allowed_here =
                policy::entity_connection_allowed(&ctx.actor, package.as_ref().map(as_package));
            let mut current = self.entity_find(entity).await?;
            if let Some(cur) = &current {
                if !self.entity_stands(cur, package.as_ref()).await? {
                    if !allowed_here {
                        self.audit_denied(ctx, "credential.update", cur.id.to_string())
                            .await;
                        return Err(DomainError::Forbidden.into());
                    }
                    if let Some(o) = &owner {
                        Self::entity_owner_allowed(ctx, o)?;
                    }
                    match self
                        .delete_with(ctx, WriteRules::EntityReplace, cur.id)
                        .await
                    {
                        Ok(()) | Err(ServiceError::Domain(DomainError::NotFound(_))) => {}
                        Err(e) => return Err(e),
                    }
                    current = None;
                }
            } else if !allowed_here {
                self.audit_denied(ctx, "credential.create", identifier(entity))
                    .await;
                return Err(DomainError::Forbidden.into());
            }
            if let Some(cur) = current {
                if !may_write(&ctx.actor, &cur) {
                    let _ = self
                        .audit(
                            ctx,
                            "credential.update",
                            cur.id.to_string(),
                            "denied",
                            json!({"entity": entity}),
                        )
                        .await;
                    return Err(DomainError::Forbidden.into());
                }
                if let Some(o) = &owner {
                    Self::entity_owner_allowed(ctx, o)?;
                }
                let p = payload.clone();
                let o = owner.clone();
                return self
                    .update_with(
                        ctx,
                        WriteRules::Entity,
                        cur.id,
                        None,
                        "entity.set",
                        move |meta, pl| {
                            *pl = p.clone();
                            if let Some(o) = &o {
                                meta.owner = Some(o.clone());
                            }
                            Ok(())
                        },
                    )
                    .await;
            }
            if let Some(o) = &owner {
                Self::entity_owner_allowed(ctx, o)?;
            }
            let meta = CredentialMeta {
                identifier: Some(identifier(entity)),
                owner: Some(owner.clone().unwrap_or(Owner {
                    kind: OwnerKind::Group,
                    name: ALL_USERS.into(),
                })),
                ..CredentialMeta::named(entity.to_owned())
            };
            match self.create_credential(ctx, meta, payload.clone()).await {
                // Another writer created it first: go again as an update (with its rules).
                Err(ServiceError::Domain(DomainError::Conflict(_))) => continue,
                other => return other,
            }
        }
        Err(
            DomainError::Conflict("the entity is being written concurrently; try again".into())
                .into(),
        )
    }

    /// Delete an entity credential by its id (public REST form).
    pub async fn entity_delete(&self, ctx: &Ctx, id: Uuid) -> ServiceResult<()> {
        let cred = self
            .store
            .get_credential(id)
            .await?
            .filter(|c| {
                c.meta
                    .identifier
                    .as_deref()
                    .is_some_and(|i| Reserved::of(i) == Some(Reserved::Entity))
            })
            .ok_or_else(|| DomainError::NotFound("credential".into()))?;
        if !may_write(&ctx.actor, &cred) {
            return Err(if may_read(&ctx.actor, &cred) {
                DomainError::Forbidden.into()
            } else {
                DomainError::NotFound("credential".into()).into()
            });
        }
        self.delete_with(ctx, WriteRules::Entity, id).await
    }
}
