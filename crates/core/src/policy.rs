//! Access policy. Deny by default: an actor holds a permission on a credential only when
//! * it is root or an admin user, or
//! * it owns the credential (the owner user, or a member of the owner group): every permission, or
//! * it is a member of the credential's safe (directly or through a group): that membership's permissions.

use crate::model::{CredentialMeta, OwnerKind, Perms};

/// The built-in group every user belongs to (the default owner of entity credentials). Owning
/// through it shares `list` and `read` with everyone, never `write` or `manage`, so no member can take
/// over or overwrite what it shares. The name is reserved: no real group can have it.
pub const ALL_USERS: &str = "all-users";

/// The authenticated caller, as every door resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub kind: ActorKind,
    /// Names of the groups the actor belongs to.
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// The root token from `operator init`.
    Root,
    /// A user with the admin flag: manages identities and safes, sees everything.
    Admin,
    User,
    Service,
    /// An application acting through a login token (Vault AppRole): its permissions are its grants,
    /// never memberships or ownership. Its name is `app:<AppID>`.
    App,
}

impl Actor {
    pub fn root() -> Self {
        Self {
            name: "root".into(),
            kind: ActorKind::Root,
            groups: vec![],
        }
    }
    pub fn is_admin(&self) -> bool {
        matches!(self.kind, ActorKind::Root | ActorKind::Admin)
    }
    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }
    /// Whether this actor is (or is a member of) the given principal.
    pub fn is_principal(&self, kind: OwnerKind, name: &str) -> bool {
        match kind {
            OwnerKind::User => self.name == name,
            OwnerKind::Group => self.in_group(name),
        }
    }
}

/// A safe membership row that applies to some actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub kind: OwnerKind,
    pub name: String,
    pub perms: Perms,
}

/// Permissions of `actor` in a safe, given that safe's membership list.
pub fn safe_perms(actor: &Actor, members: &[Membership]) -> Perms {
    if actor.is_admin() {
        return Perms::ALL;
    }
    members
        .iter()
        .filter(|m| actor.is_principal(m.kind, &m.name))
        .fold(Perms::NONE, |acc, m| acc.union(m.perms))
}

/// Permissions of `actor` on a credential, given the membership list of its safe (empty when none).
pub fn credential_perms(
    actor: &Actor,
    meta: &CredentialMeta,
    safe_members: &[Membership],
) -> Perms {
    if actor.is_admin() {
        return Perms::ALL;
    }
    if let Some(o) = &meta.owner {
        if o.kind == OwnerKind::Group && o.name == ALL_USERS {
            if actor.in_group(ALL_USERS) {
                return Perms(Perms::LIST.0 | Perms::READ.0);
            }
        } else if actor.is_principal(o.kind, &o.name) {
            return Perms::ALL;
        }
    }
    if meta.safe.is_some() {
        safe_perms(actor, safe_members)
    } else {
        Perms::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Owner;

    fn meta(owner: Option<Owner>, safe: Option<&str>) -> CredentialMeta {
        CredentialMeta {
            identifier: None,
            name: "n".into(),
            username: "u".into(),
            additional_info: None,
            tags: vec![],
            credential_type: None,
            domain: None,
            device: None,
            safe: safe.map(Into::into),
            folder: None,
            owner,
            parameter_names: vec![],
            properties: Default::default(),
            settings: serde_json::Value::Null,
        }
    }

    fn user(name: &str, groups: &[&str]) -> Actor {
        Actor {
            name: name.into(),
            kind: ActorKind::User,
            groups: groups.iter().map(|g| (*g).into()).collect(),
        }
    }

    #[test]
    fn deny_by_default_owner_group_and_safe_rules() {
        let alice = user("alice", &["ops"]);
        let bob = user("bob", &[]);
        let owned = meta(
            Some(Owner {
                kind: OwnerKind::User,
                name: "alice".into(),
            }),
            None,
        );
        assert_eq!(credential_perms(&alice, &owned, &[]), Perms::ALL);
        assert_eq!(credential_perms(&bob, &owned, &[]), Perms::NONE);

        let group_owned = meta(
            Some(Owner {
                kind: OwnerKind::Group,
                name: "ops".into(),
            }),
            None,
        );
        assert_eq!(credential_perms(&alice, &group_owned, &[]), Perms::ALL);
        assert_eq!(credential_perms(&bob, &group_owned, &[]), Perms::NONE);

        let in_safe = meta(None, Some("prod"));
        let members = vec![
            Membership {
                kind: OwnerKind::User,
                name: "bob".into(),
                perms: Perms::LIST,
            },
            Membership {
                kind: OwnerKind::Group,
                name: "ops".into(),
                perms: Perms::READ,
            },
        ];
        assert_eq!(credential_perms(&bob, &in_safe, &members), Perms::LIST);
        assert_eq!(credential_perms(&alice, &in_safe, &members), Perms::READ);
        assert_eq!(
            credential_perms(&user("eve", &[]), &in_safe, &members),
            Perms::NONE
        );
        assert_eq!(credential_perms(&Actor::root(), &in_safe, &[]), Perms::ALL);
    }

    #[test]
    fn all_users_shares_reading_never_writing() {
        let owner = Owner {
            kind: OwnerKind::Group,
            name: ALL_USERS.into(),
        };
        let m = meta(Some(owner), None);
        let mut a = Actor {
            name: "bob".into(),
            kind: ActorKind::User,
            groups: vec![ALL_USERS.into()],
        };
        let p = credential_perms(&a, &m, &[]);
        assert!(p.contains(Perms::READ) && !p.contains(Perms::WRITE) && !p.contains(Perms::MANAGE));
        a.groups.clear();
        assert_eq!(credential_perms(&a, &m, &[]), Perms::NONE);
    }
}
