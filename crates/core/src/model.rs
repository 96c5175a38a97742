//! The credential model and the identities that own and read credentials.

use std::collections::BTreeMap;

use credvault_crypto::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// A network endpoint of a device, parsed from `SSH:22`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Connectivity {
    pub protocol: String,
    pub port: u16,
}

/// The device a credential belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Device {
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub ip: String,
    #[serde(default, rename = "type")]
    pub device_type: Option<String>,
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub connectivities: Vec<Connectivity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OwnerKind {
    User,
    Group,
}

impl OwnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::User => "user",
            OwnerKind::Group => "group",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "group" => Some(Self::Group),
            _ => None,
        }
    }
}

/// Who owns a credential: a user or a group, by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    #[serde(rename = "type")]
    pub kind: OwnerKind,
    pub name: String,
}

/// Everything about a credential except its secrets. Safe to show to anyone with `list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CredentialMeta {
    pub identifier: Option<String>,
    pub name: String,
    pub username: String,
    pub additional_info: Option<String>,
    pub tags: Vec<String>,
    pub credential_type: Option<String>,
    pub domain: Option<String>,
    pub device: Option<Device>,
    pub safe: Option<String>,
    pub folder: Option<String>,
    pub owner: Option<Owner>,
    /// Names of the secret parameters (their values are secrets and live in [`SecretPayload`]).
    pub parameter_names: Vec<String>,
    /// Non-secret account properties by name, as other vaults' dialects know them (`PolicyID`,
    /// `Database`, `LogonDomain`, `Port`, `CreationMethod`, `PasswordChangeInProcess`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
}

impl CredentialMeta {
    /// A credential called `name` with nothing else set; doors fill in what they have with
    /// `CredentialMeta { safe: ..., ..CredentialMeta::named(name) }`.
    /// False once the credential was deactivated (PAM A2A `DELETE`: `settings.active = false`):
    /// no door hands out its secret until it is activated again.
    pub fn is_active(&self) -> bool {
        self.settings
            .get("active")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true)
    }

    pub fn named(name: impl Into<String>) -> Self {
        Self {
            identifier: None,
            name: name.into(),
            username: String::new(),
            additional_info: None,
            tags: vec![],
            credential_type: None,
            domain: None,
            device: None,
            safe: None,
            folder: None,
            owner: None,
            parameter_names: vec![],
            properties: BTreeMap::new(),
            settings: serde_json::Value::Null,
        }
    }
}

/// The secret part of a credential, encrypted as one value per version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecretPayload {
    pub secret: SecretString,
    #[serde(default)]
    pub parameters: BTreeMap<String, SecretString>,
}

/// A stored credential as the API shows it (metadata and version bookkeeping, no secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Credential {
    pub id: Uuid,
    #[serde(flatten)]
    pub meta: CredentialMeta,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    pub created_by: String,
    pub updated_by: String,
}

/// One entry of a credential's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionInfo {
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    /// What made this version: `create`, `update` or `rollback:<n>`.
    pub operation: String,
}

/// Safe permissions, a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Perms(pub u8);

impl Perms {
    pub const LIST: Perms = Perms(1);
    pub const READ: Perms = Perms(2);
    pub const WRITE: Perms = Perms(4);
    pub const MANAGE: Perms = Perms(8);
    pub const ALL: Perms = Perms(15);
    pub const NONE: Perms = Perms(0);
    pub const NAMES: [(&'static str, Perms); 4] = [
        ("list", Perms::LIST),
        ("read", Perms::READ),
        ("write", Perms::WRITE),
        ("manage", Perms::MANAGE),
    ];

    pub fn contains(self, other: Perms) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn union(self, other: Perms) -> Perms {
        Perms(self.0 | other.0)
    }
    pub fn names(self) -> Vec<String> {
        Self::NAMES
            .iter()
            .filter(|(_, p)| self.contains(*p))
            .map(|(n, _)| (*n).to_owned())
            .collect()
    }
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Perms, String> {
        let mut p = Perms::NONE;
        for n in names {
            let n = n.as_ref();
            let found = Self::NAMES
                .iter()
                .find(|(name, _)| *name == n)
                .map(|(_, p)| *p);
            p =
                p.union(found.ok_or_else(|| {
                    format!("unknown permission '{n}' (list, read, write, manage)")
                })?);
        }
        Ok(p)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserKind {
    Human,
    Service,
}

impl UserKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UserKind::Human => "human",
            UserKind::Service => "service",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "human" => Some(Self::Human),
            "service" => Some(Self::Service),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub name: String,
    pub kind: UserKind,
    pub admin: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Group {
    pub name: String,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Safe {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SafeMember {
    #[serde(rename = "type")]
    pub kind: OwnerKind,
    pub name: String,
    pub permissions: Vec<String>,
}

/// Token metadata (the token itself is shown once at creation and stored only as a keyed hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: Uuid,
    /// The user the token acts as; `root` for root tokens.
    pub user: String,
    pub description: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    pub revoked: bool,
}

/// One audit record as shown by `audit tail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub time: OffsetDateTime,
    pub actor: String,
    pub door: String,
    pub action: String,
    pub target: String,
    pub source: String,
    pub outcome: String,
    /// Door-specific, non-secret details (query, reason, …).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A registered domain (Active Directory or DNS domain). Credentials and devices may name a domain
/// only once it is registered; they may name it by its name or its abbreviation (any case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Domain {
    pub name: String,
    pub abbreviation: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}
