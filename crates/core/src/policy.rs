//! Access policy. Deny by default: an actor holds a permission on a credential only when
//! * it is root or an admin user, or
//! * it owns the credential (the owner user, or a member of the owner group): every permission, or
//! * it is a member of the credential's safe (directly or through a group): that membership's permissions.

use crate::model::{CredentialMeta, Owner, OwnerKind, Perms};

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

// ------------------------------------------------------------------------------ namespaces
//
// Names that cannot be squatted (issue 14): a credential created by one caller never changes what
// another caller's name resolution returns (fetch-credentials, A2A create-or-update and reads,
// entity reads), unless its creator could already write where that caller reads (a shared safe, or
// the same owner group). `all-users` shares reading, never writing, so it is no such group.

/// Whether `o` is the built-in `all-users` group.
pub fn is_all_users(o: &Owner) -> bool {
    o.kind == OwnerKind::Group && o.name == ALL_USERS
}

/// Whether a credential may be given the owner `owner` through a door: `all-users` only through
/// the entity door (whose own rules make that sharing safe); any other owner through every door.
pub fn owner_allowed_through(owner: &Owner, entity_door: bool) -> bool {
    entity_door || !is_all_users(owner)
}

/// Whether `actor` may give a credential the owner `owner`: admins anyone; others themselves or a
/// group they belong to (every user belongs to `all-users`, which `owner_allowed_through` limits
/// to the entity door).
pub fn may_give_ownership(actor: &Actor, owner: &Owner) -> bool {
    actor.is_admin() || is_all_users(owner) || actor.is_principal(owner.kind, &owner.name)
}

/// Whether a credential takes part when `actor` resolves a name (fetch-credentials): the actor
/// created it, or may read it for a reason other than the `all-users` ownership (admin, owner,
/// owner group member, safe member).
pub fn resolves_name_for(
    actor: &Actor,
    meta: &CredentialMeta,
    created_by: &str,
    safe_members: &[Membership],
) -> bool {
    if actor.name == created_by {
        return true;
    }
    if !meta.owner.as_ref().is_some_and(is_all_users) {
        return credential_perms(actor, meta, safe_members).contains(Perms::READ);
    }
    actor.is_admin()
        || (meta.safe.is_some() && safe_perms(actor, safe_members).contains(Perms::READ))
}

/// Whether a credential in `safe` lies within an application's reach (`app_safes`: the safes it
/// was granted). For the application, a credential outside is no match at all: its create-or-update
/// creates its own instead of being blocked, and its reads answer "not found" (1007), never "no
/// access" (1009), so nothing tells it what exists where it cannot look.
pub fn app_scope_contains(app_safes: &[String], safe: Option<&str>) -> bool {
    safe.is_some_and(|s| app_safes.iter().any(|a| a == s))
}

/// An application's permissions on `safe` from its grants `(kind, target)`: a `safe` grant lists
/// and reads, a `safe-write` grant also writes (creates and updates); nothing else counts.
pub fn app_safe_perms<'a>(
    grants: impl IntoIterator<Item = (&'a str, &'a str)>,
    safe: &str,
) -> Perms {
    grants
        .into_iter()
        .filter(|(_, target)| *target == safe)
        .fold(Perms::NONE, |p, (kind, _)| match kind {
            "safe" => p.union(Perms::LIST).union(Perms::READ),
            "safe-write" => p.union(Perms::LIST).union(Perms::READ).union(Perms::WRITE),
            _ => p,
        })
}

/// Entity credentials (`entity.rs`): readers are admins, the creator and the owner's members
/// (everyone for `all-users`).
pub fn entity_may_read(actor: &Actor, owner: Option<&Owner>, created_by: &str) -> bool {
    actor.is_admin()
        || created_by == actor.name
        || owner.is_some_and(|o| actor.is_principal(o.kind, &o.name))
}

/// Entity writers: admins, the creator, a user owner or member of an owner group other than
/// `all-users`.
pub fn entity_may_write(actor: &Actor, owner: Option<&Owner>, created_by: &str) -> bool {
    actor.is_admin()
        || created_by == actor.name
        || owner.is_some_and(|o| !is_all_users(o) && actor.is_principal(o.kind, &o.name))
}

/// The package of an entity credential as the connection rules see it: its owner and creator.
#[derive(Debug, Clone, Copy)]
pub struct EntityPackage<'a> {
    pub owner: Option<&'a Owner>,
    pub created_by: &'a str,
}

/// Whether `actor` may hold the connection `PKG.CONN` under `package` (`None`: `PKG` does not exist,
/// or the entity is itself a package). A connection lives in its package's namespace: under an
/// existing package only someone who may write that package creates one, and a connection whose
/// creator may not (made before the package, or the creator lost the right) no longer stands: it
/// reads as not set and the package's writers may replace it.
pub fn entity_connection_allowed(actor: &Actor, package: Option<EntityPackage<'_>>) -> bool {
    package.is_none_or(|p| entity_may_write(actor, p.owner, p.created_by))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn application_grants_as_safe_permissions() {
        let rw = Perms::LIST.union(Perms::READ).union(Perms::WRITE);
        let r = Perms::LIST.union(Perms::READ);
        type Grants<'a> = &'a [(&'a str, &'a str)];
        let table: &[(Grants, &str, Perms)] = &[
            (&[], "s", Perms::NONE),
            (&[("safe", "s")], "s", r),
            (&[("safe", "s")], "other", Perms::NONE),
            (&[("safe-write", "s")], "s", rw),
            (&[("safe", "s"), ("safe-write", "s")], "s", rw),
            // a single-credential grant names a credential, never a safe
            (&[("credential", "s")], "s", Perms::NONE),
            (&[("safe-write", "t"), ("safe", "s")], "s", r),
        ];
        for (grants, safe, want) in table {
            assert_eq!(
                app_safe_perms(grants.iter().copied(), safe),
                *want,
                "{grants:?} on {safe}"
            );
        }
    }

    #[test]
    fn who_may_give_ownership_to_whom() {
        let owner = |kind, name: &str| Owner {
            kind,
            name: name.into(),
        };
        let alice = user("alice", &["team"]);
        let admin = Actor {
            kind: ActorKind::Admin,
            ..user("root-ish", &[])
        };
        let table = [
            (&alice, owner(OwnerKind::User, "alice"), true),
            (&alice, owner(OwnerKind::Group, "team"), true),
            (&alice, owner(OwnerKind::Group, ALL_USERS), true),
            (&alice, owner(OwnerKind::User, "bob"), false),
            (&alice, owner(OwnerKind::Group, "others"), false),
            // a group named like the user is not the user
            (&alice, owner(OwnerKind::Group, "alice"), false),
            (&admin, owner(OwnerKind::User, "bob"), true),
            (&admin, owner(OwnerKind::Group, "others"), true),
        ];
        for (actor, o, want) in table {
            assert_eq!(
                may_give_ownership(actor, &o),
                want,
                "{} -> {o:?}",
                actor.name
            );
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

    fn owner(kind: OwnerKind, name: &str) -> Owner {
        Owner {
            kind,
            name: name.into(),
        }
    }

    fn admin(name: &str) -> Actor {
        Actor {
            name: name.into(),
            kind: ActorKind::Admin,
            groups: vec![ALL_USERS.into()],
        }
    }

    #[test]
    fn all_users_is_given_only_through_the_entity_door() {
        let all = owner(OwnerKind::Group, ALL_USERS);
        let ops = owner(OwnerKind::Group, "ops");
        let me = owner(OwnerKind::User, "alice");
        // (owner, entity door, allowed)
        let table = [
            (&all, true, true),
            (&all, false, false),
            (&ops, false, true),
            (&ops, true, true),
            (&me, false, true),
        ];
        for (o, entity, want) in table {
            assert_eq!(
                owner_allowed_through(o, entity),
                want,
                "{o:?} entity={entity}"
            );
        }
    }

    /// (actor, owner, safe, safe members, created_by, resolves)
    type Row<'a> = (
        &'a Actor,
        Option<Owner>,
        Option<&'a str>,
        &'a [Membership],
        &'a str,
        bool,
    );

    #[test]
    fn only_what_is_readable_beside_all_users_resolves_a_name() {
        let all = Some(owner(OwnerKind::Group, ALL_USERS));
        let team = Some(owner(OwnerKind::Group, "team"));
        let readers = vec![Membership {
            kind: OwnerKind::User,
            name: "bob".into(),
            perms: Perms(Perms::LIST.0 | Perms::READ.0),
        }];
        let listers = vec![Membership {
            kind: OwnerKind::User,
            name: "bob".into(),
            perms: Perms::LIST,
        }];
        let bob = user("bob", &[ALL_USERS, "team"]);
        let eve = user("eve", &[ALL_USERS]);
        let adm = admin("adm");
        // (actor, owner, safe, members, created_by, resolves)
        let table: Vec<Row> = vec![
            // The squat: eve's credential owned by all-users does not answer bob's fetch...
            (&bob, all.clone(), None, &[], "eve", false),
            // ...but answers eve's own, and an admin's.
            (&eve, all.clone(), None, &[], "eve", true),
            (&adm, all.clone(), None, &[], "eve", true),
            // Owned by all-users in a safe bob reads (its creator wrote there): it does.
            (&bob, all.clone(), Some("s"), &readers, "eve", true),
            (&bob, all.clone(), Some("s"), &listers, "eve", false),
            // A shared owner group or safe: the creator could write where bob reads.
            (&bob, team.clone(), None, &[], "carol", true),
            (&bob, None, Some("s"), &readers, "carol", true),
            (&bob, None, Some("s"), &listers, "carol", false),
            (&eve, team.clone(), None, &[], "carol", false),
            // bob's own.
            (
                &bob,
                Some(owner(OwnerKind::User, "bob")),
                None,
                &[],
                "bob",
                true,
            ),
        ];
        for (i, (a, o, safe, members, by, want)) in table.into_iter().enumerate() {
            let m = meta(o, safe);
            assert_eq!(resolves_name_for(a, &m, by, members), want, "row {i}");
        }
    }

    #[test]
    fn an_application_sees_only_its_safes() {
        let safes = vec!["pam".to_owned(), "other".to_owned()];
        // (granted safes, credential safe, in scope)
        let table: [(&[String], Option<&str>, bool); 5] = [
            (&safes, Some("pam"), true),
            (&safes, Some("other"), true),
            (&safes, Some("foreign"), false),
            (&safes, None, false),
            (&[], Some("pam"), false),
        ];
        for (granted, safe, want) in table {
            assert_eq!(app_scope_contains(granted, safe), want, "{safe:?}");
        }
    }

    #[test]
    fn entity_readers_writers_and_connections() {
        let all = owner(OwnerKind::Group, ALL_USERS);
        let team = owner(OwnerKind::Group, "team");
        let bob_o = owner(OwnerKind::User, "bob");
        let bob = user("bob", &[ALL_USERS, "team"]);
        let eve = user("eve", &[ALL_USERS]);
        let adm = admin("adm");
        // (actor, owner, created_by, may read, may write)
        let table = [
            (&bob, Some(&all), "carol", true, false),
            (&bob, Some(&all), "bob", true, true),
            (&bob, Some(&team), "carol", true, true),
            (&eve, Some(&team), "carol", false, false),
            (&eve, Some(&bob_o), "carol", false, false),
            (&bob, Some(&bob_o), "carol", true, true),
            (&eve, None, "eve", true, true),
            (&adm, Some(&team), "carol", true, true),
        ];
        for (i, (a, o, by, r, w)) in table.into_iter().enumerate() {
            assert_eq!(entity_may_read(a, o, by), r, "read row {i}");
            assert_eq!(entity_may_write(a, o, by), w, "write row {i}");
        }
        // (actor, package: None = absent, connection allowed)
        fn pkg<'a>(owner: &'a Owner, by: &'a str) -> EntityPackage<'a> {
            EntityPackage {
                owner: Some(owner),
                created_by: by,
            }
        }
        let table = [
            (&eve, None, true),
            (&eve, Some(pkg(&all, "bob")), false),
            (&bob, Some(pkg(&all, "bob")), true),
            (&bob, Some(pkg(&team, "carol")), true),
            (&eve, Some(pkg(&team, "carol")), false),
            (&adm, Some(pkg(&team, "carol")), true),
        ];
        for (i, (a, p, want)) in table.into_iter().enumerate() {
            assert_eq!(entity_connection_allowed(a, p), want, "connection row {i}");
        }
    }
}
