#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The storage conformance suite: every backend must pass these. They run on SQLite always and on
//! PostgreSQL when `CREDVAULT_TEST_DATABASE_URL` points at a cluster (each test gets a fresh database).

use std::sync::Arc;

use credvault_core::model::{
    Credential, CredentialMeta, Owner, OwnerKind, SafeMember, TokenInfo, User, UserKind,
};
use credvault_store::postgres::PgStore;
use credvault_store::sqlite::SqliteStore;
use credvault_store::{
    migrate, AuditAppend, CredentialFilter, CredentialWithPayload, NewAudit, NewVersion,
    SealConfig, Store, StoreError, Visibility, WrappedKey,
};
use time::OffsetDateTime;
use uuid::Uuid;

struct Backend {
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn backend() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = match std::env::var("CREDVAULT_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(admin) => Arc::new(PgStore::connect(&fresh_pg(&admin).await).await.unwrap()),
        None => Arc::new(SqliteStore::open(dir.path()).await.unwrap()),
    };
    Backend { store, _dir: dir }
}

async fn fresh_pg(admin: &str) -> String {
    let name = format!("cv_{}", Uuid::now_v7().simple());
    let pool = sqlx::PgPool::connect(admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

fn meta(name: &str) -> CredentialMeta {
    CredentialMeta {
        identifier: None,
        name: name.into(),
        username: "u".into(),
        additional_info: None,
        tags: vec!["t1".into()],
        credential_type: None,
        domain: None,
        device: None,
        safe: None,
        folder: None,
        owner: None,
        parameter_names: vec![],
        properties: Default::default(),
        settings: serde_json::Value::Null,
    }
}

fn cred(m: CredentialMeta) -> Credential {
    let now = OffsetDateTime::now_utc();
    Credential {
        id: Uuid::now_v7(),
        meta: m,
        version: 1,
        created_at: now,
        updated_at: now,
        created_by: "t".into(),
        updated_by: "t".into(),
    }
}

fn v(payload: &[u8]) -> NewVersion {
    NewVersion {
        payload: payload.to_vec(),
        operation: "create".into(),
    }
}

#[tokio::test]
async fn seal_config_and_keys_initialise_once() {
    let b = backend().await;
    let s = &b.store;
    assert_eq!(s.seal_config().await.unwrap(), None);
    let k = WrappedKey {
        purpose: "data".into(),
        term: 1,
        wrapped: vec![1, 2, 3],
    };
    s.initialize(
        &SealConfig {
            shares: 5,
            threshold: 3,
        },
        std::slice::from_ref(&k),
    )
    .await
    .unwrap();
    assert_eq!(
        s.seal_config().await.unwrap(),
        Some(SealConfig {
            shares: 5,
            threshold: 3
        })
    );
    assert!(matches!(
        s.initialize(
            &SealConfig {
                shares: 1,
                threshold: 1
            },
            &[]
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    s.add_key(
        &WrappedKey {
            purpose: "data".into(),
            term: 2,
            wrapped: vec![4],
        },
        &AuditAppend::none(),
    )
    .await
    .unwrap();
    assert_eq!(s.keys().await.unwrap().len(), 2);
    assert_eq!(s.newest_data_term().await.unwrap(), 2);
}

#[tokio::test]
async fn credentials_versions_optimistic_updates_and_filters() {
    let b = backend().await;
    let s = &b.store;
    let mut m = meta("a");
    m.identifier = Some("ident-a".into());
    m.safe = Some("prod".into());
    m.owner = Some(Owner {
        kind: OwnerKind::Group,
        name: "ops".into(),
    });
    let mut c = cred(m);
    s.insert_credential(&c, &v(b"ct1"), &AuditAppend::none())
        .await
        .unwrap();
    // Unique identifier (within a safe: migration 0012).
    let mut dup = cred(meta("b"));
    dup.meta.identifier = Some("ident-a".into());
    dup.meta.safe = Some("prod".into());
    assert!(matches!(
        s.insert_credential(&dup, &v(b"x"), &AuditAppend::none())
            .await,
        Err(StoreError::Conflict(_))
    ));
    // Optimistic update.
    c.version = 2;
    s.update_credential(&c, 1, &v(b"ct2"), &AuditAppend::none())
        .await
        .unwrap();
    assert_eq!(
        s.update_credential(&c, 1, &v(b"ct3"), &AuditAppend::none())
            .await,
        Err(StoreError::VersionMismatch { current: 2 })
    );
    let cur = s.credential_with_payload(c.id).await.unwrap().unwrap();
    assert_eq!((cur.credential.version, cur.payload), (2, b"ct2".to_vec()));
    assert_eq!(
        s.get_version(c.id, 1).await.unwrap().unwrap().payload,
        b"ct1".to_vec()
    );
    assert_eq!(s.list_versions(c.id).await.unwrap().len(), 2);
    assert_eq!(
        s.credential_by_identifier("ident-a")
            .await
            .unwrap()
            .unwrap()
            .id,
        c.id
    );

    s.insert_credential(&cred(meta("plain")), &v(b"p"), &AuditAppend::none())
        .await
        .unwrap();
    let all = |f: CredentialFilter| async move {
        s.list_credentials(&CredentialFilter { limit: 100, ..f })
            .await
            .unwrap()
    };
    assert_eq!(all(CredentialFilter::default()).await.len(), 2);
    assert_eq!(
        all(CredentialFilter {
            tag: Some("t1".into()),
            ..Default::default()
        })
        .await
        .len(),
        2
    );
    assert_eq!(
        all(CredentialFilter {
            tag: Some("none".into()),
            ..Default::default()
        })
        .await
        .len(),
        0
    );
    assert_eq!(
        all(CredentialFilter {
            safe: Some("prod".into()),
            ..Default::default()
        })
        .await
        .len(),
        1
    );
    let vis = |user: &str, groups: Vec<String>, safes: Vec<String>| CredentialFilter {
        visibility: Visibility::Restricted {
            user: user.into(),
            groups,
            safes,
        },
        ..Default::default()
    };
    assert_eq!(all(vis("x", vec![], vec![])).await.len(), 0);
    assert_eq!(all(vis("x", vec!["ops".into()], vec![])).await.len(), 1);
    assert_eq!(all(vis("x", vec![], vec!["prod".into()])).await.len(), 1);
    s.delete_credential(c.id, &AuditAppend::none())
        .await
        .unwrap();
    assert!(
        s.get_version(c.id, 1).await.unwrap().is_none(),
        "versions go with the credential"
    );
    assert!(matches!(
        s.delete_credential(c.id, &AuditAppend::none()).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn identities_tokens_and_safes() {
    let b = backend().await;
    let s = &b.store;
    let u = User {
        name: "alice".into(),
        kind: UserKind::Human,
        admin: false,
        created_at: OffsetDateTime::now_utc(),
    };
    s.create_user(&u, Some("$argon2id$x"), &AuditAppend::none())
        .await
        .unwrap();
    assert!(matches!(
        s.create_user(&u, None, &AuditAppend::none()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.user_password_hash("alice").await.unwrap().as_deref(),
        Some("$argon2id$x")
    );
    s.create_group("ops", &AuditAppend::none()).await.unwrap();
    s.add_group_member("ops", "alice", &AuditAppend::none())
        .await
        .unwrap();
    s.add_group_member("ops", "alice", &AuditAppend::none())
        .await
        .unwrap(); // idempotent
    assert_eq!(s.groups_of("alice").await.unwrap(), vec!["ops".to_owned()]);
    assert!(matches!(
        s.add_group_member("ops", "ghost", &AuditAppend::none())
            .await,
        Err(StoreError::NotFound(_))
    ));

    let t = TokenInfo {
        id: Uuid::now_v7(),
        user: "alice".into(),
        description: None,
        created_at: OffsetDateTime::now_utc(),
        expires_at: None,
        revoked: false,
    };
    s.insert_token(&t, "hash-1", &AuditAppend::none())
        .await
        .unwrap();
    assert_eq!(s.token_by_hash("hash-1").await.unwrap().unwrap().id, t.id);
    s.revoke_token(t.id, &AuditAppend::none()).await.unwrap();
    assert!(s.token_by_hash("hash-1").await.unwrap().unwrap().revoked);
    assert_eq!(s.list_tokens(Some("alice")).await.unwrap().len(), 1);
    assert_eq!(s.list_tokens(Some("bob")).await.unwrap().len(), 0);

    s.create_safe(
        &credvault_core::model::Safe {
            name: "prod".into(),
            description: None,
        },
        &AuditAppend::none(),
    )
    .await
    .unwrap();
    s.set_safe_member(
        "prod",
        &SafeMember {
            kind: OwnerKind::Group,
            name: "ops".into(),
            permissions: vec![],
        },
        3,
        &AuditAppend::none(),
    )
    .await
    .unwrap();
    assert_eq!(
        s.safes_with("alice", &["ops".into()], 2).await.unwrap(),
        vec!["prod".to_owned()]
    );
    assert!(s
        .safes_with("alice", &["ops".into()], 4)
        .await
        .unwrap()
        .is_empty());
    assert!(s.safes_with("alice", &[], 1).await.unwrap().is_empty());
    let mut c = cred(meta("in-safe"));
    c.meta.safe = Some("prod".into());
    s.insert_credential(&c, &v(b"x"), &AuditAppend::none())
        .await
        .unwrap();
    assert!(
        matches!(
            s.delete_safe("prod", &AuditAppend::none()).await,
            Err(StoreError::Conflict(_))
        ),
        "a safe with credentials stays"
    );
    s.delete_user("alice", &AuditAppend::none()).await.unwrap();
    assert!(s.groups_of("alice").await.unwrap().is_empty());
    assert!(s.token_by_hash("hash-1").await.unwrap().unwrap().revoked);
}

fn audit(i: usize) -> NewAudit {
    NewAudit {
        time: OffsetDateTime::now_utc(),
        actor: format!("a{i}"),
        door: "native".into(),
        action: "x".into(),
        target: "t".into(),
        source: "s".into(),
        outcome: "ok".into(),
        detail: serde_json::json!({"i": i}),
    }
}

#[tokio::test]
async fn concurrent_audit_appends_form_one_chain() {
    let b = backend().await;
    let chain = |p: &[u8], r: &[u8]| -> [u8; 32] {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (p, r).hash(&mut h);
        let mut out = [0u8; 32];
        out[..8].copy_from_slice(&h.finish().to_be_bytes());
        out
    };
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = b.store.clone();
            tokio::spawn(async move {
                s.append_audit(&[audit(i), audit(i + 100)], &chain)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in futures::future::join_all(tasks).await {
        t.unwrap();
    }
    let rows = b.store.audit_rows(0, 1000).await.unwrap();
    assert_eq!(rows.len(), 16);
    let mut prev: Vec<u8> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.seq, i as i64 + 1);
        assert_eq!(
            r.hash,
            chain(&prev, &r.canonical()).to_vec(),
            "record {} chains to its predecessor",
            r.seq
        );
        prev = r.hash.clone();
    }
    assert_eq!(
        b.store.audit_tail(3).await.unwrap().first().unwrap().seq,
        14
    );
}

/// Issue 16.2: an archive commit deletes the records up to one whose hash matches, moves the keyed
/// base there and appends its own record, in one transaction; appends go on from the head.
#[tokio::test]
async fn archiving_moves_the_audit_base_and_deletes_only_the_archived_records() {
    let b = backend().await;
    let s = &b.store;
    let chain = |p: &[u8], r: &[u8]| -> [u8; 32] {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (p, r).hash(&mut h);
        let mut out = [0u8; 32];
        out[..8].copy_from_slice(&h.finish().to_be_bytes());
        out
    };
    s.append_audit(&(0..6).map(audit).collect::<Vec<_>>(), &chain)
        .await
        .unwrap();
    assert!(s.audit_base().await.unwrap().is_none());
    let rows = s.audit_rows(0, 100).await.unwrap();
    let four = &rows[3];
    let record = [audit(99)];
    // A hash that is not record 4's: refused, nothing changes.
    let err = s
        .archive_audit(4, &rows[2].hash, &AuditAppend::new(&record, &chain))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.audit_rows(0, 100).await.unwrap().len(), 6);
    assert!(s.audit_base().await.unwrap().is_none());
    // The right one: records 1-4 go, the base names 4, the archive's record is 7.
    let deleted = s
        .archive_audit(4, &four.hash, &AuditAppend::new(&record, &chain))
        .await
        .unwrap();
    assert_eq!(deleted, 4);
    let left = s.audit_rows(0, 100).await.unwrap();
    assert_eq!(left.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 6, 7]);
    let base = s.audit_base().await.unwrap().unwrap();
    assert_eq!((base.seq, &base.hash), (4, &four.hash));
    assert_eq!(
        base.mac,
        credvault_store::audit_base_mac(&chain, 4, &four.hash).to_vec()
    );
    assert_eq!(
        left[2].hash,
        chain(&left[1].hash, &left[2].canonical()).to_vec()
    );
    // Archived already: refused.
    assert!(s
        .archive_audit(4, &four.hash, &AuditAppend::new(&record, &chain))
        .await
        .is_err());
    // Appends continue from the head.
    let seqs = s.append_audit(&[audit(7)], &chain).await.unwrap();
    assert_eq!(seqs, [8]);
}

#[tokio::test]
async fn export_and_import_round_trip_every_table() {
    let a = backend().await;
    let b = backend().await;
    a.store
        .initialize(
            &SealConfig {
                shares: 1,
                threshold: 1,
            },
            &[WrappedKey {
                purpose: "data".into(),
                term: 1,
                wrapped: vec![9; 40],
            }],
        )
        .await
        .unwrap();
    a.store
        .create_user(
            &User {
                name: "u".into(),
                kind: UserKind::Service,
                admin: true,
                created_at: OffsetDateTime::now_utc(),
            },
            None,
            &AuditAppend::none(),
        )
        .await
        .unwrap();
    let mut c = cred(meta("m"));
    a.store
        .insert_credential(&c, &v(&[0, 1, 2, 255]), &AuditAppend::none())
        .await
        .unwrap();
    c.version = 2;
    a.store
        .update_credential(&c, 1, &v(&[7]), &AuditAppend::none())
        .await
        .unwrap();
    a.store
        .append_audit(&[audit(1), audit(2)], &|_, r| [r.len() as u8; 32])
        .await
        .unwrap();
    let mut seen = 0;
    let report = migrate::copy(a.store.as_ref(), b.store.as_ref(), |n| seen += n)
        .await
        .unwrap();
    assert_eq!(seen, migrate::total_rows(a.store.as_ref()).await.unwrap());
    assert_eq!(report.audit_records, 2);
    let got = b
        .store
        .credential_with_payload(c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.credential.version, got.payload), (2, vec![7]));
    assert!(b.store.get_user("u").await.unwrap().unwrap().admin);
    // A second copy into a vault is refused.
    assert!(matches!(
        migrate::copy(a.store.as_ref(), b.store.as_ref(), |_| {}).await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn find_by_key_is_case_folded_and_limited_to_the_grants() {
    use credvault_store::LookupKey;
    let b = backend().await;
    let s = &b.store;
    let mut m = meta("Pay-DB");
    m.username = "Svc_Pay".into();
    m.safe = Some("Pay".into());
    m.device = Some(credvault_core::model::Device {
        hostname: "DB1.corp".into(),
        ip: "10.0.0.7".into(),
        ..Default::default()
    });
    let c = cred(m);
    s.insert_credential(&c, &v(b"x"), &AuditAppend::none())
        .await
        .unwrap();
    let mut other = meta("pay-db");
    other.safe = Some("Other".into());
    let o = cred(other);
    s.insert_credential(&o, &v(b"y"), &AuditAppend::none())
        .await
        .unwrap();
    let pay = vec!["Pay".to_owned()];
    let ids =
        |v: Vec<CredentialWithPayload>| v.into_iter().map(|c| c.credential.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s
            .find_by_key(LookupKey::Name, "pay-db", &pay, &[], 10)
            .await
            .unwrap()),
        vec![c.id]
    );
    assert_eq!(
        ids(s
            .find_by_key(LookupKey::Username, "svc_pay", &pay, &[], 10)
            .await
            .unwrap()),
        vec![c.id]
    );
    assert_eq!(
        ids(s
            .find_by_key(LookupKey::Hostname, "db1.corp", &pay, &[], 10)
            .await
            .unwrap()),
        vec![c.id]
    );
    assert_eq!(
        ids(s
            .find_by_key(LookupKey::Ip, "10.0.0.7", &pay, &[], 10)
            .await
            .unwrap()),
        vec![c.id]
    );
    assert!(
        s.find_by_key(LookupKey::Name, "pay-db", &[], &[], 10)
            .await
            .unwrap()
            .is_empty(),
        "no grants, nothing"
    );
    let both = s
        .find_by_key(LookupKey::Name, "pay-db", &pay, &[o.id.to_string()], 10)
        .await
        .unwrap();
    assert_eq!(
        both.len(),
        2,
        "a single-credential grant reaches outside the safes"
    );
    // Renames keep the keys current.
    let mut c2 = c.clone();
    c2.meta.name = "Renamed".into();
    c2.version = 2;
    s.update_credential(&c2, 1, &v(b"z"), &AuditAppend::none())
        .await
        .unwrap();
    assert!(s
        .find_by_key(LookupKey::Name, "pay-db", &pay, &[], 10)
        .await
        .unwrap()
        .is_empty());
    // The current version's payload comes with the row.
    let found = s
        .find_by_key(LookupKey::Name, "renamed", &pay, &[], 10)
        .await
        .unwrap();
    assert_eq!(ids(found.clone()), vec![c.id]);
    assert_eq!(found[0].payload, b"z".to_vec());
    assert_eq!(found[0].credential.version, 2);
}

fn on_device(user: &str, host: &str, ip: &str) -> CredentialMeta {
    let mut m = meta(&format!("{user}@{host}"));
    m.username = user.into();
    m.safe = Some("a2a".into());
    m.device = Some(credvault_core::model::Device {
        hostname: host.into(),
        ip: ip.into(),
        ..Default::default()
    });
    m
}

#[tokio::test]
async fn domains_devices_custody_and_one_credential_per_device_user() {
    let b = backend().await;
    let s = b.store.clone();
    let now = OffsetDateTime::now_utc();

    // Domains: found by name or abbreviation in any case; names and abbreviations unique.
    let d = credvault_core::model::Domain {
        name: "Corp.Example".into(),
        abbreviation: Some("CORP".into()),
        created_at: now,
    };
    s.create_domain(&d, &AuditAppend::none()).await.unwrap();
    assert_eq!(
        s.find_domain("corp.example").await.unwrap().unwrap().name,
        "Corp.Example"
    );
    assert_eq!(
        s.find_domain("corp").await.unwrap().unwrap().name,
        "Corp.Example"
    );
    assert!(s.find_domain("other").await.unwrap().is_none());
    assert!(matches!(
        s.create_domain(&d, &AuditAppend::none()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.list_domains().await.unwrap().len(), 1);
    s.delete_domain("CORP.EXAMPLE", &AuditAppend::none())
        .await
        .unwrap();
    assert!(matches!(
        s.delete_domain("corp.example", &AuditAppend::none()).await,
        Err(StoreError::NotFound(_))
    ));

    // Devices: one per folded host name + IP, optimistic updates.
    let mut dev = credvault_store::DeviceRecord {
        id: Uuid::now_v7(),
        device: credvault_core::model::Device {
            hostname: "Web01".into(),
            ip: "10.0.0.1".into(),
            vendor: Some("Debian".into()),
            ..Default::default()
        },
        version: 1,
        created_at: now,
        updated_at: now,
    };
    s.insert_device(&dev).await.unwrap();
    let mut twin = dev.clone();
    twin.id = Uuid::now_v7();
    assert!(matches!(
        s.insert_device(&twin).await,
        Err(StoreError::Conflict(_))
    ));
    let got = s.get_device("web01", "10.0.0.1").await.unwrap().unwrap();
    assert_eq!(got, dev);
    dev.device.vendor = Some("Ubuntu".into());
    dev.version = 2;
    s.update_device(&dev, 1).await.unwrap();
    assert!(matches!(
        s.update_device(&dev, 1).await,
        Err(StoreError::VersionMismatch { current: 2 })
    ));
    assert_eq!(
        s.get_device("web01", "10.0.0.1")
            .await
            .unwrap()
            .unwrap()
            .device
            .vendor
            .as_deref(),
        Some("Ubuntu")
    );

    // Concurrent "insert unless the device has one for this user": exactly one is inserted.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let c = cred(on_device("Admin", "Web01", "10.0.0.1"));
                let within = ["a2a".to_owned()];
                s.insert_credential_unless_on_device_audited(
                    &c,
                    &v(&[1]),
                    &within,
                    &AuditAppend::none(),
                )
                .await
                .map(|r| (c.id, r))
            })
        })
        .collect();
    let mut inserted = vec![];
    let mut existing = std::collections::BTreeSet::new();
    for t in tasks {
        match t.await.unwrap().unwrap() {
            (id, None) => inserted.push(id),
            (_, Some(other)) => {
                existing.insert(other);
            }
        }
    }
    assert_eq!(inserted.len(), 1);
    assert!(existing.iter().all(|e| *e == inserted[0]));
    let found = s
        .credentials_on_device("web01", "10.0.0.1", "admin")
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, inserted[0]);
    // Only the given safes count: the same device and user in another safe is another credential.
    let within = ["a2a".to_owned()];
    let mut elsewhere = cred(on_device("Admin", "Web01", "10.0.0.1"));
    elsewhere.meta.safe = Some("elsewhere".into());
    assert!(s
        .insert_credential_unless_on_device_audited(
            &elsewhere,
            &v(&[1]),
            &["elsewhere".to_owned()],
            &AuditAppend::none()
        )
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.insert_credential_unless_on_device_audited(
            &cred(on_device("admin", "web01", "10.0.0.1")),
            &v(&[1]),
            &within,
            &AuditAppend::none()
        )
        .await
        .unwrap(),
        Some(inserted[0]),
        "the one in the given safes, not the one elsewhere"
    );
    // Another user on the device, or the same user on another IP, is another credential.
    let c = cred(on_device("other", "Web01", "10.0.0.1"));
    assert!(s
        .insert_credential_unless_on_device_audited(&c, &v(&[1]), &within, &AuditAppend::none())
        .await
        .unwrap()
        .is_none());
    let c = cred(on_device("admin", "web01", "10.0.0.2"));
    assert!(s
        .insert_credential_unless_on_device_audited(&c, &v(&[1]), &within, &AuditAppend::none())
        .await
        .unwrap()
        .is_none());

    // Custody: taken, replaced, released only by its holder.
    let id = inserted[0];
    s.take_custody(id, "app:A", now).await.unwrap();
    assert!(!s
        .release_custody(id, "app:B", &AuditAppend::none())
        .await
        .unwrap());
    s.take_custody(id, "app:B", now).await.unwrap();
    assert!(!s
        .release_custody(id, "app:A", &AuditAppend::none())
        .await
        .unwrap());
    assert!(s
        .release_custody(id, "app:B", &AuditAppend::none())
        .await
        .unwrap());
    assert!(!s
        .release_custody(id, "app:B", &AuditAppend::none())
        .await
        .unwrap());
}

/// A snapshot export sees one instant: while a writer keeps inserting credentials (each with its
/// first version, in one transaction), the exported credentials and versions still match one to one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_snapshot_is_one_instant_under_concurrent_writes() {
    let b = backend().await;
    let s = b.store.clone();
    for i in 0..200 {
        s.insert_credential(
            &cred(meta(&format!("seed-{i}"))),
            &v(&[1]),
            &AuditAppend::none(),
        )
        .await
        .unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.insert_credential(
                    &cred(meta(&format!("live-{n}"))),
                    &v(&[2]),
                    &AuditAppend::none(),
                )
                .await
                .unwrap();
                n += 1;
            }
            n
        })
    };
    let creds_idx = migrate::TABLES
        .iter()
        .position(|t| t.name == "credentials")
        .unwrap();
    let vers_idx = migrate::TABLES
        .iter()
        .position(|t| t.name == "credential_versions")
        .unwrap();
    let mut cred_ids = std::collections::BTreeSet::new();
    let mut version_ids = std::collections::BTreeSet::new();
    let collected = Arc::new(std::sync::Mutex::new(
        Vec::<(usize, Vec<migrate::Cell>)>::new(),
    ));
    let c2 = collected.clone();
    let mut sink = move |t: usize, rows: Vec<Vec<migrate::Cell>>| {
        let c2 = c2.clone();
        Box::pin(async move {
            // A slow reader: the writer gets plenty of commits in between.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            c2.lock().unwrap().extend(rows.into_iter().map(|r| (t, r)));
            true
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    s.export_snapshot(&mut sink).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(written > 0, "the writer ran during the export");
    for (t, row) in collected.lock().unwrap().iter() {
        if let Some(migrate::Cell::Text(id)) = row.first() {
            if *t == creds_idx {
                cred_ids.insert(id.clone());
            } else if *t == vers_idx {
                version_ids.insert(id.clone());
            }
        }
    }
    assert!(cred_ids.len() >= 200);
    assert_eq!(
        cred_ids, version_ids,
        "credentials and their versions from one instant"
    );
}

/// Issue 14.5: a credential write and its audit records are one transaction. With the audit insert
/// failing (injected where the rows are inserted, after the write's own statements ran), nothing of
/// the write is left; without the fault, the records and the keyed checkpoint move with it.
#[tokio::test]
async fn a_write_and_its_audit_commit_together_or_not_at_all() {
    use credvault_store::fault::FaultStore;
    let b = backend().await;
    let f = FaultStore::new(b.store.clone());
    let s: &dyn Store = f.as_ref();
    let chain = |p: &[u8], r: &[u8]| -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, x) in p.iter().chain(r).enumerate() {
            out[i % 32] = out[i % 32].wrapping_mul(31).wrapping_add(*x);
        }
        out
    };
    let recs = [audit(1)];
    let a = AuditAppend::new(&recs, &chain);
    let mut c = cred(meta("atomic"));
    s.insert_credential(&c, &v(b"v1"), &a).await.unwrap();
    let head = s.audit_head().await.unwrap().unwrap();
    assert_eq!(head.seq, 1);
    assert_eq!(
        head.mac,
        credvault_store::audit_head_mac(&chain, 1, &head.hash).to_vec()
    );

    f.fail_audit(StoreError::Unavailable("injected".into()));
    let other = cred(meta("never"));
    assert!(matches!(
        s.insert_credential(&other, &v(b"x"), &a).await,
        Err(StoreError::AuditFailed(_))
    ));
    assert!(matches!(
        s.insert_credentials(&[(other.clone(), v(b"x"))], &a).await,
        Err(StoreError::AuditFailed(_))
    ));
    c.version = 2;
    assert!(matches!(
        s.update_credential(&c, 1, &v(b"v2"), &a).await,
        Err(StoreError::AuditFailed(_))
    ));
    assert!(matches!(
        s.delete_credential(c.id, &a).await,
        Err(StoreError::AuditFailed(_))
    ));
    let mut dev = cred(on_device("root", "h1", "10.0.0.1"));
    dev.meta.name = "dev".into();
    assert!(matches!(
        s.insert_credential_unless_on_device_audited(&dev, &v(b"x"), &["a2a".to_owned()], &a)
            .await,
        Err(StoreError::AuditFailed(_))
    ));
    assert!(s.append_audit(&recs, &chain).await.is_err());

    f.clear();
    assert!(s.get_credential(other.id).await.unwrap().is_none());
    assert!(s.get_credential(dev.id).await.unwrap().is_none());
    let cur = s.credential_with_payload(c.id).await.unwrap().unwrap();
    assert_eq!((cur.credential.version, cur.payload), (1, b"v1".to_vec()));
    assert_eq!(s.list_versions(c.id).await.unwrap().len(), 1);
    assert_eq!(s.audit_rows(0, 100).await.unwrap().len(), 1);
    assert_eq!(s.audit_head().await.unwrap().unwrap(), head);

    s.update_credential(&c, 1, &v(b"v2"), &a).await.unwrap();
    s.delete_credential(c.id, &a).await.unwrap();
    let rows = s.audit_rows(0, 100).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let head = s.audit_head().await.unwrap().unwrap();
    assert_eq!((head.seq, &head.hash), (3, &rows[2].hash));

    // Latency injection: a delayed call still completes.
    f.delay("get_credential", std::time::Duration::from_millis(50));
    let t = std::time::Instant::now();
    assert!(s.get_credential(c.id).await.unwrap().is_none());
    assert!(t.elapsed() >= std::time::Duration::from_millis(50));
    f.fail("get_credential", StoreError::Unavailable("down".into()));
    assert!(matches!(
        s.get_credential(c.id).await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn identifiers_are_unique_per_safe() {
    let b = backend().await;
    let s = &b.store;
    let with = |safe: Option<&str>| {
        let mut m = meta("n");
        m.identifier = Some("shared-ident".into());
        m.safe = safe.map(Into::into);
        cred(m)
    };
    for safe in [Some("a"), Some("b"), None] {
        s.insert_credential(&with(safe), &v(b"x"), &AuditAppend::none())
            .await
            .unwrap();
    }
    for safe in [Some("a"), None] {
        assert!(
            matches!(
                s.insert_credential(&with(safe), &v(b"x"), &AuditAppend::none())
                    .await,
                Err(StoreError::Conflict(_))
            ),
            "{safe:?}"
        );
    }
    let found = s
        .list_credentials(&CredentialFilter {
            identifier: Some("shared-ident".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 3);
}

#[tokio::test]
async fn an_identifier_prefix_lists_exactly_a_folders_descendants() {
    let b = backend().await;
    let s = &b.store;
    // Neighbours a bytewise range must leave out: the folder's own name, a sibling sharing its
    // first letters, the next byte after '/', another safe, and an upper-case and non-ASCII key
    // (a collation that is not bytewise would misplace these).
    let rows = [
        ("m", "kv:m/a/x", true),
        ("m", "kv:m/a/y/z", true),
        ("m", "kv:m/a/Ünï", true),
        ("m", "kv:m/a/B", true),
        ("m", "kv:m/a", false),
        ("m", "kv:m/ab", false),
        ("m", "kv:m/a0", false),
        ("m", "kv:m/b/x", false),
        ("other", "kv:m/a/x", false),
    ];
    for (safe, ident, _) in rows {
        let mut m = meta(ident);
        m.identifier = Some(ident.into());
        m.safe = Some(safe.into());
        s.insert_credential(&cred(m), &v(b"x"), &AuditAppend::none())
            .await
            .unwrap();
    }
    let found = s
        .list_credentials(&CredentialFilter {
            safe: Some("m".into()),
            identifier_prefix: Some("kv:m/a/".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got: Vec<_> = found
        .iter()
        .filter_map(|c| c.meta.identifier.clone())
        .collect();
    got.sort();
    let mut want: Vec<String> = rows
        .iter()
        .filter(|r| r.2)
        .map(|r| r.1.to_owned())
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn listings_return_named_rows() {
    use credvault_store::{
        AppGrant, AppRecord, IntegrationCiphertext, IntegrationRecord, SafeMemberRow,
        VersionCiphertext,
    };
    let b = backend().await;
    let s = &b.store;
    s.create_safe(
        &credvault_core::model::Safe {
            name: "prod".into(),
            description: None,
        },
        &AuditAppend::none(),
    )
    .await
    .unwrap();
    for (kind, name, perms) in [(OwnerKind::User, "bob", 5), (OwnerKind::Group, "ops", 3)] {
        let member = SafeMember {
            kind,
            name: name.into(),
            permissions: vec![],
        };
        s.set_safe_member("prod", &member, perms, &AuditAppend::none())
            .await
            .unwrap();
    }
    assert_eq!(
        s.safe_members("prod").await.unwrap(),
        vec![
            SafeMemberRow {
                kind: "group".into(),
                name: "ops".into(),
                perms: 3
            },
            SafeMemberRow {
                kind: "user".into(),
                name: "bob".into(),
                perms: 5
            },
        ]
    );

    s.create_app(
        &AppRecord {
            app_id: "A".into(),
            owner: "root".into(),
            description: None,
            rules: "{}".into(),
            created_at: OffsetDateTime::now_utc(),
        },
        &AuditAppend::none(),
    )
    .await
    .unwrap();
    s.grant_app("A", &["safe"], "prod", &AuditAppend::none())
        .await
        .unwrap();
    s.grant_app("A", &["credential"], "c1", &AuditAppend::none())
        .await
        .unwrap();
    assert_eq!(
        s.app_grants("A").await.unwrap(),
        vec![
            AppGrant {
                kind: "credential".into(),
                target: "c1".into()
            },
            AppGrant {
                kind: "safe".into(),
                target: "prod".into()
            },
        ]
    );

    // A value is 0x01 ‖ term (u32 BE) ‖ …: one under term 1, one under term 2.
    let old = cred(meta("old"));
    s.insert_credential(&old, &v(&[1, 0, 0, 0, 1, 9]), &AuditAppend::none())
        .await
        .unwrap();
    let new = cred(meta("new"));
    s.insert_credential(&new, &v(&[1, 0, 0, 0, 2, 9]), &AuditAppend::none())
        .await
        .unwrap();
    assert_eq!(
        s.versions_not_of_term(2, None, 10).await.unwrap(),
        vec![VersionCiphertext {
            id: old.id,
            version: 1,
            payload: vec![1, 0, 0, 0, 1, 9]
        }]
    );
    s.create_integration(
        &IntegrationRecord {
            name: "ext".into(),
            settings: "{}".into(),
            secrets: vec![1, 0, 0, 0, 1, 7],
            safe: "prod".into(),
            enabled: true,
            status: "{}".into(),
            created_at: OffsetDateTime::now_utc(),
        },
        &AuditAppend::none(),
    )
    .await
    .unwrap();
    assert_eq!(
        s.integration_secrets_not_of_term(2).await.unwrap(),
        vec![IntegrationCiphertext {
            name: "ext".into(),
            secrets: vec![1, 0, 0, 0, 1, 7]
        }]
    );
}

/// The KV door's state is replaced only if nobody changed it since it was read, and the versions it
/// destroys are emptied in the same transaction.
#[tokio::test]
async fn kv_state_is_replaced_by_compare_and_swap_with_its_destroyed_versions() {
    let b = backend().await;
    let s = &b.store;
    let mut c = cred(meta("kv"));
    s.insert_credential(&c, &v(b"one"), &AuditAppend::none())
        .await
        .unwrap();
    c.version = 2;
    s.update_credential(&c, 1, &v(b"two"), &AuditAppend::none())
        .await
        .unwrap();
    let none = AuditAppend::none();
    s.set_kv_meta(c.id, None, r#"{"a":1}"#, &[], &none)
        .await
        .unwrap();
    // A second "first" state, or a change from a state that is no longer there, loses.
    for stale in [None, Some(r#"{"b":2}"#)] {
        assert!(
            matches!(
                s.set_kv_meta(c.id, stale, r#"{"c":3}"#, &[1], &none).await,
                Err(StoreError::VersionMismatch { .. })
            ),
            "{stale:?}"
        );
    }
    assert_eq!(
        s.get_version(c.id, 1).await.unwrap().unwrap().payload,
        b"one".to_vec(),
        "a lost change destroys nothing"
    );
    s.set_kv_meta(c.id, Some(r#"{"a":1}"#), r#"{"d":4}"#, &[1], &none)
        .await
        .unwrap();
    assert_eq!(
        s.kv_meta(c.id).await.unwrap().as_deref(),
        Some(r#"{"d":4}"#)
    );
    assert!(s
        .get_version(c.id, 1)
        .await
        .unwrap()
        .unwrap()
        .payload
        .is_empty());
    assert_eq!(
        s.get_version(c.id, 2).await.unwrap().unwrap().payload,
        b"two".to_vec()
    );
}

#[tokio::test]
async fn writes_publish_their_area_to_the_change_feed_before_returning() {
    use credvault_store::feed::Area;
    let b = backend().await;
    let s = &b.store;
    let feed = s.feed();
    assert!(!feed.live(), "no poll yet: caches above must not be used");
    s.poll_changes().await.unwrap();
    assert!(feed.live());
    let epochs = || Area::ALL.map(|a| feed.epoch(a));
    let [apps, ident, creds] = epochs();

    s.create_group("ops", &AuditAppend::none()).await.unwrap();
    let [a1, i1, c1] = epochs();
    assert!(i1 > ident, "an identity change moves its area at once");
    assert_eq!((a1, c1), (apps, creds), "and no other area");

    s.insert_credential(&cred(meta("fed")), &v(b"x"), &AuditAppend::none())
        .await
        .unwrap();
    let [a2, i2, c2] = epochs();
    assert!(c2 > c1, "a credential change moves the credentials area");
    assert_eq!((a2, i2), (a1, i1));

    // What a poll reads is what the writes published: nothing moves backwards or further.
    s.poll_changes().await.unwrap();
    assert_eq!(epochs(), [a2, i2, c2]);
}
