//! Input limits and shape rules shared by every door.

use crate::model::{Connectivity, CredentialMeta, SecretPayload};
use crate::DomainError;

pub const MAX_NAME: usize = 256;
pub const MAX_TEXT: usize = 4096;
pub const MAX_SECRET: usize = 64 * 1024;
pub const MAX_TAGS: usize = 64;
pub const MAX_PARAMS: usize = 128;
pub const MAX_PARAM_KEY: usize = 128;
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;

/// A name of a user, group, safe or similar: 1..=64 of `[A-Za-z0-9._@-]`.
pub fn principal_name(field: &str, s: &str) -> Result<(), DomainError> {
    if s.is_empty() || s.len() > 64 {
        return Err(DomainError::invalid(field, "must be 1 to 64 characters"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err(DomainError::invalid(
            field,
            "may contain only letters, digits, '.', '_', '-' and '@'",
        ));
    }
    if s == "root" {
        return Err(DomainError::invalid(field, "'root' is reserved"));
    }
    Ok(())
}

fn text(field: &str, s: &str, max: usize, required: bool) -> Result<(), DomainError> {
    if required && s.trim().is_empty() {
        return Err(DomainError::invalid(field, "is required"));
    }
    if s.len() > max {
        return Err(DomainError::invalid(
            field,
            format!("is longer than {max} bytes"),
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(DomainError::invalid(field, "contains control characters"));
    }
    Ok(())
}

fn opt_text(field: &str, s: &Option<String>, max: usize) -> Result<(), DomainError> {
    s.as_deref().map_or(Ok(()), |s| text(field, s, max, false))
}

fn tags(field: &str, t: &[String]) -> Result<(), DomainError> {
    if t.len() > MAX_TAGS {
        return Err(DomainError::invalid(
            field,
            format!("more than {MAX_TAGS} tags"),
        ));
    }
    t.iter().try_for_each(|x| text(field, x, MAX_NAME, true))
}

/// A parameter key: 1..=128 of `[A-Za-z0-9._-]`, starting with a letter or `_`.
pub fn parameter_key(k: &str) -> Result<(), DomainError> {
    let ok_start = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !ok_start || k.len() > MAX_PARAM_KEY {
        return Err(DomainError::invalid(
            "parameters",
            format!("key '{}' must start with a letter or '_' and be at most {MAX_PARAM_KEY} characters", truncate(k)),
        ));
    }
    if !k
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(DomainError::invalid(
            "parameters",
            format!(
                "key '{}' may contain only letters, digits, '.', '_' and '-'",
                truncate(k)
            ),
        ));
    }
    Ok(())
}

/// A property name: 1..=64 of `[A-Za-z0-9_]`, starting with a letter (`PolicyID`, `LogonDomain`).
pub fn property_key(k: &str) -> Result<(), DomainError> {
    let ok = k.len() <= 64
        && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "properties",
            format!(
                "name '{}' must be a letter followed by up to 63 letters, digits or '_'",
                truncate(k)
            ),
        ))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Parse `SSH:22, HTTPS:443` into connectivities.
pub fn parse_connectivities(s: &str) -> Result<Vec<Connectivity>, DomainError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (proto, port) = p.split_once(':').ok_or_else(|| {
                DomainError::invalid(
                    "connectivities",
                    format!("'{}' is not PROTOCOL:PORT", truncate(p)),
                )
            })?;
            let port: u16 = port.trim().parse().map_err(|_| {
                DomainError::invalid(
                    "connectivities",
                    format!("'{}' has no valid port", truncate(p)),
                )
            })?;
            Ok(Connectivity {
                protocol: proto.trim().to_ascii_uppercase(),
                port,
            })
        })
        .collect()
}

/// The identifier namespaces owned by one door each. Only the owning door's service code writes a
/// credential whose `identifier` starts with the prefix, so no door can plant a record another door
/// trusts: `kv:` the Vault KV door, `entity:` entity credentials, `mirror:` credentials pulled from
/// external vaults by integrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    Kv,
    Entity,
    Mirror,
}

impl Reserved {
    pub const ALL: [Reserved; 3] = [Reserved::Kv, Reserved::Entity, Reserved::Mirror];

    pub fn prefix(self) -> &'static str {
        match self {
            Reserved::Kv => "kv:",
            Reserved::Entity => "entity:",
            Reserved::Mirror => "mirror:",
        }
    }

    /// The door (`Ctx::door`) that owns the namespace.
    pub fn door(self) -> &'static str {
        match self {
            Reserved::Kv => "vaultkv",
            Reserved::Entity => "entity",
            Reserved::Mirror => "integration",
        }
    }

    /// The namespace an identifier lies in, if any.
    pub fn of(identifier: &str) -> Option<Reserved> {
        Self::ALL
            .into_iter()
            .find(|r| identifier.starts_with(r.prefix()))
    }

    /// The identifier `<prefix><rest>`.
    pub fn identifier(self, rest: &str) -> String {
        format!("{}{rest}", self.prefix())
    }
}

/// Refuse an `identifier` whose prefix is reserved for a door other than `door`.
pub fn identifier_for_door(identifier: &str, door: &str) -> Result<(), DomainError> {
    match Reserved::of(identifier) {
        Some(r) if r.door() != door => Err(DomainError::invalid(
            "identifier",
            format!("the prefix '{}' is reserved", r.prefix()),
        )),
        _ => Ok(()),
    }
}

/// Validate a whole credential before it is stored.
pub fn credential(meta: &CredentialMeta, payload: &SecretPayload) -> Result<(), DomainError> {
    if let Some(id) = &meta.identifier {
        text("identifier", id, MAX_NAME, true)?;
    }
    text("name", &meta.name, MAX_NAME, true)?;
    text("username", &meta.username, MAX_NAME, false)?;
    opt_text("additional_info", &meta.additional_info, MAX_TEXT)?;
    tags("tags", &meta.tags)?;
    opt_text("credential_type", &meta.credential_type, MAX_NAME)?;
    opt_text("domain", &meta.domain, MAX_NAME)?;
    opt_text("folder", &meta.folder, MAX_NAME)?;
    if let Some(s) = &meta.safe {
        principal_name("safe", s)?;
    }
    if let Some(o) = &meta.owner {
        principal_name("owner", &o.name)?;
    }
    if let Some(d) = &meta.device {
        text("device.hostname", &d.hostname, MAX_NAME, false)?;
        text("device.ip", &d.ip, MAX_NAME, false)?;
        for (f, v) in [
            ("device.type", &d.device_type),
            ("device.vendor", &d.vendor),
            ("device.model", &d.model),
            ("device.site", &d.site),
            ("device.domain", &d.domain),
        ] {
            opt_text(f, v, MAX_NAME)?;
        }
        tags("device.tags", &d.tags)?;
    }
    if payload.secret.len() > MAX_SECRET {
        return Err(DomainError::invalid(
            "secret",
            format!("is longer than {MAX_SECRET} bytes"),
        ));
    }
    if payload.parameters.len() > MAX_PARAMS {
        return Err(DomainError::invalid(
            "parameters",
            format!("more than {MAX_PARAMS} parameters"),
        ));
    }
    for (k, v) in &payload.parameters {
        parameter_key(k)?;
        if v.len() > MAX_SECRET {
            return Err(DomainError::invalid(
                "parameters",
                format!("value of '{k}' is too long"),
            ));
        }
    }
    if meta.properties.len() > MAX_PARAMS {
        return Err(DomainError::invalid(
            "properties",
            format!("more than {MAX_PARAMS} properties"),
        ));
    }
    for (k, v) in &meta.properties {
        property_key(k)?;
        text("properties", v, MAX_TEXT, false)?;
    }
    if !(meta.settings.is_null() || meta.settings.is_object()) {
        return Err(DomainError::invalid("settings", "must be a JSON object"));
    }
    if meta.settings.to_string().len() > MAX_SETTINGS_BYTES {
        return Err(DomainError::invalid("settings", "is too large"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connectivities_parse_and_reject() {
        let c = parse_connectivities("SSH:22, https:443").unwrap_or_default();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].protocol, "HTTPS");
        assert_eq!(c[1].port, 443);
        assert!(parse_connectivities("SSH").is_err());
        assert!(parse_connectivities("SSH:99999").is_err());
    }

    #[test]
    fn names_and_keys() {
        assert!(principal_name("name", "alice.ops").is_ok());
        assert!(principal_name("name", "").is_err());
        assert!(principal_name("name", "a b").is_err());
        assert!(principal_name("name", "root").is_err());
        assert!(parameter_key("db_password").is_ok());
        assert!(parameter_key("1abc").is_err());
        assert!(parameter_key("a b").is_err());
    }

    #[test]
    fn reserved_identifiers_belong_to_their_door() {
        assert!(identifier_for_door("kv:secret/app", "native").is_err());
        assert!(identifier_for_door("kv:secret/app", "vaultkv").is_ok());
        assert!(identifier_for_door("entity:pkg", "a2a").is_err());
        assert!(identifier_for_door("mirror:vault/x", "entity").is_err());
        assert!(identifier_for_door("srv-01-admin", "native").is_ok());
        // only a prefix is reserved, not the word anywhere
        assert!(identifier_for_door("my-kv:thing", "native").is_ok());
    }
}
