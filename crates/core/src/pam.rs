//! The PAM Core A2A dialect (seed 003, `shared/contracts/pam-a2a.md`): the create-or-update body,
//! its validation, and the door's error table. Pure: the server's `pam` module does the I/O.
//!
//! A body arrives as JSON or form-encoded (`form_to_value` turns `a[b]=c` and `a[b][0][c]=d` into
//! nested JSON first). Form values are all strings, so in form mode booleans and integers are also
//! taken from their text (`true`/`false`/`1`/`0`, digits); in JSON mode a value of the wrong JSON
//! type is refused. Unknown fields are refused in both, naming the field (never echoing a value).

use std::collections::BTreeMap;

use credvault_crypto::SecretString;
use serde_json::{Map, Value};

use crate::model::Connectivity;
use crate::validate;

/// The A2A door's error codes. 1004, 1005, 1007, 1008, 1009, 1017 and 1018 are the vendor's
/// (seed 003 and the contract); the others are credvault's own, in the same envelope.
pub mod code {
    /// Malformed body, wrong type, unknown field, value too long or not allowed.
    pub const INVALID: u16 = 1000;
    /// No, bad or expired access token (HTTP 401).
    pub const UNAUTHENTICATED: u16 = 1001;
    /// Too many failed authentications from this source (HTTP 429).
    pub const RATE_LIMITED: u16 = 1002;
    pub const USERNAME_MISSING: u16 = 1003;
    pub const HOSTNAME_MISSING: u16 = 1004;
    pub const IP_MISSING: u16 = 1005;
    /// `domain` or `device_domain` names a domain that is not registered.
    pub const DOMAIN_UNKNOWN: u16 = 1006;
    pub const NOT_FOUND: u16 = 1007;
    pub const INACTIVE: u16 = 1008;
    pub const NO_ACCESS: u16 = 1009;
    pub const ALREADY_INACTIVE: u16 = 1017;
    pub const NOT_IN_CUSTODY: u16 = 1018;
    /// Too many concurrent writers of one credential (HTTP 409).
    pub const BUSY: u16 = 1020;
    /// The credential cannot be changed this way (a read-only mirror of another vault; HTTP 409).
    pub const CONFLICT: u16 = 1022;
    /// Sealed, storage or audit unavailable (HTTP 503).
    pub const UNAVAILABLE: u16 = 1021;
}

/// An A2A error: a code and its text (shown as `"<code>: <text>"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamError {
    pub code: u16,
    pub text: String,
}

impl PamError {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new(code::INVALID, format!("Invalid parameter '{field}': {why}"))
    }
    pub fn hostname_missing() -> Self {
        Self::new(
            code::HOSTNAME_MISSING,
            "The device's hostname was not informed",
        )
    }
    pub fn ip_missing() -> Self {
        Self::new(code::IP_MISSING, "The device's IP address was not informed")
    }
    pub fn not_found() -> Self {
        Self::new(code::NOT_FOUND, "Credential not found")
    }
    pub fn inactive() -> Self {
        Self::new(code::INACTIVE, "Credential inactive")
    }
    pub fn no_access() -> Self {
        Self::new(code::NO_ACCESS, "No access to credential")
    }
    pub fn already_inactive() -> Self {
        Self::new(code::ALREADY_INACTIVE, "Credential already inactive")
    }
    pub fn not_in_custody() -> Self {
        Self::new(
            code::NOT_IN_CUSTODY,
            "The credential is not in the user custody",
        )
    }
    /// `"1004: The device's hostname was not informed"`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.code, self.text)
    }
}

impl From<crate::DomainError> for PamError {
    fn from(e: crate::DomainError) -> Self {
        match e {
            crate::DomainError::Invalid { field, message } => PamError::invalid(&field, message),
            crate::DomainError::NotFound(_) => PamError::not_found(),
            crate::DomainError::Forbidden => PamError::no_access(),
            crate::DomainError::Unauthenticated => {
                PamError::new(code::UNAUTHENTICATED, "Invalid or expired access token")
            }
            crate::DomainError::Conflict(m) => PamError::new(code::CONFLICT, m),
        }
    }
}

/// The device part of a create-or-update: `hostname` and `ip` always, the rest when given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInput {
    pub hostname: String,
    pub ip: String,
    pub device_type: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub site: Option<String>,
    pub domain: Option<String>,
    pub tags: Option<Vec<String>>,
    pub connectivities: Option<Vec<Connectivity>>,
}

/// A checked create-or-update request. `None` = not given (an update keeps the stored value).
#[derive(Debug, Clone, Default)]
pub struct Upsert {
    pub identifier: Option<String>,
    pub username: String,
    pub content: Option<SecretString>,
    pub additional: Option<String>,
    pub tags: Option<Vec<String>>,
    pub credential_type: Option<String>,
    pub domain: Option<String>,
    pub parent_password: Option<String>,
    pub session_remote_config: Option<String>,
    pub device: DeviceInput,
    /// The settings blocks given (`execution_settings`, ...), checked and normalised to JSON types.
    /// `additional_settings.secret_key` is taken out into [`Upsert::secret_key`].
    pub settings: BTreeMap<&'static str, Map<String, Value>>,
    /// The TOTP seed (`additional_settings.secret_key`): a secret like the password.
    pub secret_key: Option<SecretString>,
    /// The values of `additional_settings.additional_authentication_fields` (an enable password,
    /// say): secrets, kept out of the metadata. `Some` when the list was given.
    pub auth_field_values: Option<Vec<Option<SecretString>>>,
}

/// The default `credential_type` of a new credential.
pub const DEFAULT_CREDENTIAL_TYPE: &str = "Local User";
/// The default criticality of a new credential.
pub const DEFAULT_CRITICALITY: &str = "Medium";
pub const CRITICALITIES: [&str; 3] = ["Low", "Medium", "High"];

const MAX_FIELD: usize = 255;
const MAX_LONG: usize = validate::MAX_TEXT;
const MAX_IDENTIFIER: usize = 128;
const MAX_LIST: usize = 32;

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Long,
    Bool,
    Criticality,
    /// A whole number from 0 to 100,000 (a form body's text is read as one).
    Count,
    Secret,
    /// Array of objects with these string fields.
    Objects(&'static [&'static str]),
}

type Spec = &'static [(&'static str, Ty)];

const AUTH: [(&str, Ty); 4] = [
    ("use_own_credential_to_connect", Ty::Bool),
    ("authentication_credential", Ty::Str),
    ("authentication_hostname", Ty::Str),
    ("authentication_ip", Ty::Str),
];

const EXECUTION: Spec = &[
    ("parent_credential", Ty::Str),
    ("parent_hostname", Ty::Str),
    ("parent_ip", Ty::Str),
    ("automatic_change", Ty::Bool),
    ("agent_based_password_change", Ty::Bool),
    ("change_plugin", Ty::Str),
    ("change_template", Ty::Str),
    AUTH[0],
    AUTH[1],
    AUTH[2],
    AUTH[3],
    ("status", Ty::Bool),
    ("reconciliation_credential", Ty::Str),
    ("reconciliation_hostname", Ty::Str),
    ("reconciliation_ip", Ty::Str),
    ("reconciliation_plugin", Ty::Str),
    ("reconciliation_template", Ty::Str),
    // credvault's own (issue 17): the automatic change's schedule.
    ("change_every_hours", Ty::Count),
    ("change_every_days", Ty::Count),
    ("change_after_release", Ty::Bool),
    ("password_length", Ty::Count),
    ("password_avoid", Ty::Str),
];

const SESSION: Spec = &[
    ("SSH", Ty::Bool),
    ("Telnet", Ty::Bool),
    ("MySQL", Ty::Bool),
    ("SQL Server", Ty::Bool),
    ("HTTP", Ty::Bool),
    ("HTTPS", Ty::Bool),
    ("RDP", Ty::Bool),
    ("X11 Forward", Ty::Bool),
    ("VNC", Ty::Bool),
    ("restrict_access_to_remote_application", Ty::Bool),
    ("macros", Ty::Objects(&["remote_app", "connectivity"])),
    ("remote_app", Ty::Str),
    ("connectivity", Ty::Str),
    AUTH[0],
    AUTH[1],
    AUTH[2],
    AUTH[3],
];

const ADDITIONAL: Spec = &[
    ("identifier", Ty::Str),
    ("user_credential_owner", Ty::Str),
    // The seed's table spells it so; its example `user_credential_owner`. Both are taken.
    ("user_credentia_owner", Ty::Str),
    ("server_path", Ty::Str),
    ("secret_key", Ty::Secret),
    ("criticality", Ty::Criticality),
    (
        "additional_authentication_fields",
        Ty::Objects(&["name", "short_name", "value"]),
    ),
    ("notes", Ty::Long),
];

const JIT: Spec = &[
    ("jit", Ty::Bool),
    ("credential_creation_and_deletion", Ty::Bool),
    ("enable_disable_credential", Ty::Bool),
    AUTH[0],
    AUTH[1],
    AUTH[2],
    AUTH[3],
    ("credential_creation_plugin", Ty::Str),
    ("credential_creation_template", Ty::Str),
    ("credential_deletion_plugin", Ty::Str),
    ("credential_deletion_template", Ty::Str),
    ("credential_enable_plugin", Ty::Str),
    ("credential_enable_template", Ty::Str),
    ("credential_disable_plugin", Ty::Str),
    ("credential_disable_template", Ty::Str),
];

/// The settings blocks, in the order they are shown.
pub const SETTINGS_BLOCKS: [&str; 4] = [
    "execution_settings",
    "session_settings",
    "additional_settings",
    "jit_settings",
];

fn block_spec(name: &str) -> Option<Spec> {
    match name {
        "execution_settings" => Some(EXECUTION),
        "session_settings" => Some(SESSION),
        "additional_settings" => Some(ADDITIONAL),
        "jit_settings" => Some(JIT),
        _ => None,
    }
}

const TOP_LEVEL: &[&str] = &[
    "identifier",
    "username",
    "content",
    "additional",
    "tags",
    "credential_type",
    "domain",
    "parent_password",
    "hostname",
    "ip",
    "type",
    "vendor",
    "model",
    "site",
    "device_domain",
    "device_tags",
    "connectivities",
    "session_remote_config",
    "execution_settings",
    "session_settings",
    "additional_settings",
    "jit_settings",
];

/// Reads the top-level fields of one body.
struct Reader<'a> {
    obj: &'a Map<String, Value>,
}

fn check_text(field: &str, s: &str, max: usize) -> Result<(), PamError> {
    if s.len() > max {
        return Err(PamError::invalid(
            field,
            format!("longer than {max} characters"),
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(PamError::invalid(field, "contains control characters"));
    }
    Ok(())
}

impl Reader<'_> {
    /// A string field; an empty string counts as not given.
    fn string(&self, field: &str, max: usize) -> Result<Option<String>, PamError> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                check_text(field, s, max)?;
                let t = s.trim();
                Ok((!t.is_empty()).then(|| t.to_owned()))
            }
            Some(_) => Err(PamError::invalid(field, "must be a string")),
        }
    }

    fn secret(&self, field: &str, max: usize) -> Result<Option<SecretString>, PamError> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) if s.len() > max => Err(PamError::invalid(
                field,
                format!("longer than {max} characters"),
            )),
            Some(Value::String(s)) => Ok(Some(SecretString::from(s.as_str()))),
            Some(_) => Err(PamError::invalid(field, "must be a string")),
        }
    }

    /// An integer field (JSON number, or digits in a string).
    fn int(&self, field: &str) -> Result<Option<String>, PamError> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s))
                if s.len() <= 19 && s.trim().chars().all(|c| c.is_ascii_digit()) =>
            {
                Ok(Some(s.trim().to_owned()))
            }
            Some(_) => Err(PamError::invalid(field, "must be a positive integer")),
        }
    }

    fn list(&self, field: &str) -> Result<Option<Vec<String>>, PamError> {
        Ok(self.string(field, MAX_LONG)?.map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        }))
    }
}

fn check_list(field: &str, items: &[String]) -> Result<(), PamError> {
    if items.len() > MAX_LIST {
        return Err(PamError::invalid(
            field,
            format!("more than {MAX_LIST} entries"),
        ));
    }
    for t in items {
        check_text(field, t, 64)?;
    }
    Ok(())
}

fn bool_of(field: &str, v: &Value, lenient: bool) -> Result<bool, PamError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if lenient => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "on" | "yes" => Ok(true),
            "false" | "0" | "off" | "no" | "" => Ok(false),
            _ => Err(PamError::invalid(field, "must be true or false")),
        },
        _ => Err(PamError::invalid(field, "must be true or false")),
    }
}

/// Objects in a list: JSON array, or (form) an object keyed by index, in index order. With
/// `secret`, that field of each object is taken out as a secret (in list order).
fn objects(
    field: &str,
    v: &Value,
    keys: &[&str],
    secret: Option<&str>,
    lenient: bool,
) -> Result<(Value, Vec<Option<SecretString>>), PamError> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(m) => {
            let mut indexed = Vec::with_capacity(m.len());
            for (k, item) in m {
                let i: usize = k.parse().map_err(|_| {
                    PamError::invalid(field, "list entries must be numbered 0, 1, ...")
                })?;
                indexed.push((i, item));
            }
            indexed.sort_by_key(|(i, _)| *i);
            indexed.into_iter().map(|(_, item)| item).collect()
        }
        _ => return Err(PamError::invalid(field, "must be a list of objects")),
    };
    if items.len() > MAX_LIST {
        return Err(PamError::invalid(
            field,
            format!("more than {MAX_LIST} entries"),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut secrets = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(m) = item else {
            return Err(PamError::invalid(field, "must be a list of objects"));
        };
        let mut o = Map::new();
        let mut item_secret = None;
        for (k, v) in m {
            if !keys.contains(&k.as_str()) {
                return Err(PamError::invalid(
                    &format!("{field}.{}", name_of(k, lenient)),
                    format!("unknown field (allowed: {})", keys.join(", ")),
                ));
            }
            match v {
                Value::String(s) if Some(k.as_str()) == secret => {
                    if s.len() > MAX_FIELD {
                        return Err(PamError::invalid(
                            &format!("{field}.{k}"),
                            format!("longer than {MAX_FIELD} characters"),
                        ));
                    }
                    item_secret = Some(SecretString::from(s.as_str()));
                }
                Value::String(s) => {
                    check_text(&format!("{field}.{k}"), s, MAX_FIELD)?;
                    o.insert(k.clone(), Value::String(s.clone()));
                }
                Value::Null => {}
                _ => {
                    return Err(PamError::invalid(
                        &format!("{field}.{k}"),
                        "must be a string",
                    ))
                }
            }
        }
        out.push(Value::Object(o));
        secrets.push(item_secret);
    }
    Ok((Value::Array(out), secrets))
}

/// A field name shown in an error, cut short (it is the caller's text).
fn short(k: &str) -> String {
    k.chars().take(40).collect()
}

/// An unknown field's name for an error. Not from form bodies: an unencoded '&' in a value splits
/// it, and the "name" is then a piece of that value (perhaps a password).
fn name_of(k: &str, lenient: bool) -> String {
    if lenient {
        "(a form field)".to_owned()
    } else {
        short(k)
    }
}

/// Check one settings block; returns the normalised block and the secret key it held.
/// A checked settings block, with the secrets taken out of it.
struct Block {
    values: Map<String, Value>,
    secret_key: Option<SecretString>,
    /// `additional_authentication_fields[i].value`, when the list was given.
    auth_values: Option<Vec<Option<SecretString>>>,
}

fn settings_block(name: &str, v: &Value, lenient: bool) -> Result<Block, PamError> {
    let spec = block_spec(name).ok_or_else(|| PamError::invalid(name, "unknown block"))?;
    // Form bodies may carry a block as a JSON string.
    let parsed;
    let v = match v {
        Value::String(s) if lenient => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|_| PamError::invalid(name, "must be an object"))?;
            &parsed
        }
        v => v,
    };
    let Value::Object(m) = v else {
        return Err(PamError::invalid(name, "must be an object"));
    };
    let mut out = Map::new();
    let mut secret_key = None;
    let mut auth_values = None;
    for (k, v) in m {
        let Some((key, ty)) = spec.iter().find(|(f, _)| f == k) else {
            return Err(PamError::invalid(
                &format!("{name}.{}", name_of(k, lenient)),
                "unknown field",
            ));
        };
        let field = format!("{name}.{key}");
        if v.is_null() {
            continue;
        }
        let norm = match ty {
            Ty::Str | Ty::Long => {
                let Value::String(s) = v else {
                    return Err(PamError::invalid(&field, "must be a string"));
                };
                let max = if matches!(ty, Ty::Long) {
                    MAX_LONG
                } else {
                    MAX_FIELD
                };
                check_text(&field, s, max)?;
                Value::String(s.clone())
            }
            Ty::Bool => Value::Bool(bool_of(&field, v, lenient)?),
            Ty::Count => {
                let n = match v {
                    Value::String(s) if lenient => s.trim().parse::<u64>().ok(),
                    other => other.as_u64(),
                };
                match n {
                    Some(n) if n <= 100_000 => Value::from(n),
                    _ => {
                        return Err(PamError::invalid(
                            &field,
                            "must be a whole number from 0 to 100000",
                        ))
                    }
                }
            }
            Ty::Criticality => {
                let s = v.as_str().unwrap_or_default();
                let Some(c) = CRITICALITIES.iter().find(|c| c.eq_ignore_ascii_case(s)) else {
                    return Err(PamError::invalid(&field, "must be Low, Medium or High"));
                };
                Value::String((*c).to_owned())
            }
            Ty::Secret => {
                let Value::String(s) = v else {
                    return Err(PamError::invalid(&field, "must be a string"));
                };
                if s.len() > MAX_FIELD {
                    return Err(PamError::invalid(
                        &field,
                        format!("longer than {MAX_FIELD} characters"),
                    ));
                }
                if !s.is_empty() {
                    secret_key = Some(SecretString::from(s.as_str()));
                }
                continue;
            }
            Ty::Objects(keys) => {
                let secret = (*key == "additional_authentication_fields").then_some("value");
                let (list, secrets) = objects(&field, v, keys, secret, lenient)?;
                if secret.is_some() {
                    auth_values = Some(secrets);
                }
                list
            }
        };
        // The misspelt alias is stored under the right name.
        let key = if *key == "user_credentia_owner" {
            "user_credential_owner"
        } else {
            key
        };
        out.insert(key.to_owned(), norm);
    }
    Ok(Block {
        values: out,
        secret_key,
        auth_values,
    })
}

/// The identifier's shape: 1 to 128 of letters, digits, `-`, `_`, `.`.
pub fn check_identifier(s: &str) -> Result<(), PamError> {
    if s.is_empty()
        || s.len() > MAX_IDENTIFIER
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(PamError::invalid(
            "identifier",
            format!("must be 1 to {MAX_IDENTIFIER} letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// Check a create-or-update body (a JSON object; see [`form_to_value`] for form bodies).
pub fn parse_upsert(body: &Value, lenient: bool) -> Result<Upsert, PamError> {
    let Value::Object(obj) = body else {
        return Err(PamError::invalid("body", "must be a JSON object"));
    };
    if let Some(k) = obj.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return Err(PamError::invalid(&name_of(k, lenient), "unknown field"));
    }
    let r = Reader { obj };
    let mut up = Upsert {
        identifier: r.string("identifier", MAX_IDENTIFIER)?,
        content: r.secret("content", validate::MAX_SECRET)?,
        additional: r.string("additional", MAX_LONG)?,
        tags: r.list("tags")?,
        credential_type: r.string("credential_type", MAX_FIELD)?,
        domain: r.string("domain", MAX_FIELD)?,
        parent_password: r.int("parent_password")?,
        session_remote_config: r.string("session_remote_config", MAX_FIELD)?,
        ..Default::default()
    };
    if let Some(id) = &up.identifier {
        check_identifier(id)?;
    }
    if let Some(t) = &up.tags {
        check_list("tags", t)?;
    }
    let device_tags = r.list("device_tags")?;
    if let Some(t) = &device_tags {
        check_list("device_tags", t)?;
    }
    let connectivities = match r.string("connectivities", MAX_LONG)? {
        Some(s) => Some(validate::parse_connectivities(&s).map_err(|_| {
            PamError::invalid("connectivities", "must be like 'SSH:22, HTTPS:443'")
        })?),
        None => None,
    };
    let hostname = r.string("hostname", MAX_FIELD)?;
    let ip = r.string("ip", MAX_FIELD)?;
    let username = r.string("username", MAX_FIELD)?;
    up.device = DeviceInput {
        hostname: String::new(),
        ip: String::new(),
        device_type: r.string("type", MAX_FIELD)?,
        vendor: r.string("vendor", MAX_FIELD)?,
        model: r.string("model", MAX_FIELD)?,
        site: r.string("site", MAX_FIELD)?,
        domain: r.string("device_domain", MAX_FIELD)?,
        tags: device_tags,
        connectivities,
    };
    for name in SETTINGS_BLOCKS {
        if let Some(v) = obj.get(name).filter(|v| !v.is_null()) {
            let block = settings_block(name, v, lenient)?;
            if block.secret_key.is_some() {
                up.secret_key = block.secret_key;
            }
            if block.auth_values.is_some() {
                up.auth_field_values = block.auth_values;
            }
            up.settings.insert(name, block.values);
        }
    }
    // `additional_settings.identifier` is the same identifier (the seed lists it there too).
    let nested = up
        .settings
        .get("additional_settings")
        .and_then(|b| b.get("identifier"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if let Some(n) = nested {
        check_identifier(&n).map_err(|_| {
            PamError::invalid(
                "additional_settings.identifier",
                "must be 1 to 128 letters, digits, '-', '_' or '.'",
            )
        })?;
        match &up.identifier {
            Some(top) if *top != n => {
                return Err(PamError::invalid(
                    "additional_settings.identifier",
                    "differs from identifier",
                ))
            }
            _ => up.identifier = Some(n),
        }
    }
    // The required fields last, in the vendor's order: hostname (1004), ip (1005), username.
    up.device.hostname = hostname.ok_or_else(PamError::hostname_missing)?;
    up.device.ip = ip.ok_or_else(PamError::ip_missing)?;
    up.username = username.ok_or_else(|| {
        PamError::new(
            code::USERNAME_MISSING,
            "The credential's username was not informed",
        )
    })?;
    Ok(up)
}

/// Turn form pairs into a JSON object: `a=b` → `{"a": "b"}`, `a[b]=c` → `{"a": {"b": "c"}}`,
/// `a[b][0][c]=d` → `{"a": {"b": {"0": {"c": "d"}}}}` (lists of objects arrive keyed by index).
/// A repeated key is refused.
pub fn form_to_value(pairs: &[(String, String)]) -> Result<Value, PamError> {
    let mut root = Map::new();
    for (k, v) in pairs {
        let mut path: Vec<&str> = Vec::new();
        let (head, mut rest) = match k.find('[') {
            Some(i) => (&k[..i], &k[i..]),
            None => (k.as_str(), ""),
        };
        path.push(head);
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else {
                return Err(PamError::invalid(&short(k), "malformed form field name"));
            };
            path.push(&stripped[..end]);
            rest = &stripped[end + 1..];
        }
        if !rest.is_empty() || path.iter().any(|p| p.is_empty()) || path.len() > 4 {
            return Err(PamError::invalid(&short(k), "malformed form field name"));
        }
        let mut node = &mut root;
        for (i, p) in path.iter().enumerate() {
            if i + 1 == path.len() {
                if node.contains_key(*p) {
                    return Err(PamError::invalid(&short(k), "given more than once"));
                }
                node.insert((*p).to_owned(), Value::String(v.clone()));
            } else {
                let entry = node
                    .entry((*p).to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(m) = entry else {
                    return Err(PamError::invalid(&short(k), "given more than once"));
                };
                node = m;
            }
        }
    }
    Ok(Value::Object(root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn required_fields_in_order() {
        let e = parse_upsert(&json!({"username": "u", "ip": "1.2.3.4"}), false).err();
        assert_eq!(e.map(|e| e.code), Some(1004));
        let e = parse_upsert(&json!({"username": "u", "hostname": "h"}), false).err();
        assert_eq!(e.map(|e| e.code), Some(1005));
        let e = parse_upsert(&json!({"hostname": "h", "ip": "i"}), false).err();
        assert_eq!(e.map(|e| e.code), Some(1003));
        let e = parse_upsert(
            &json!({"username": "u", "hostname": "  ", "ip": "i"}),
            false,
        )
        .err();
        assert_eq!(
            e.map(|e| e.message()),
            Some("1004: The device's hostname was not informed".into())
        );
    }

    #[test]
    fn types_and_unknown_fields() {
        let base = || json!({"username": "u", "hostname": "h", "ip": "i"});
        let with = |k: &str, v: Value| {
            let mut b = base();
            b[k] = v;
            parse_upsert(&b, false).err().map(|e| e.code)
        };
        assert_eq!(with("hostname", json!(5)), Some(1000));
        assert_eq!(with("nope", json!("x")), Some(1000));
        assert_eq!(with("parent_password", json!("12a")), Some(1000));
        assert_eq!(with("parent_password", json!(12)), None);
        assert_eq!(with("identifier", json!("has space")), Some(1000));
        assert_eq!(with("connectivities", json!("SSH")), Some(1000));
        assert_eq!(
            with("execution_settings", json!({"automatic_change": "yes"})),
            Some(1000)
        );
        assert_eq!(
            with("execution_settings", json!({"bogus": true})),
            Some(1000)
        );
        assert_eq!(
            with("additional_settings", json!({"criticality": "Extreme"})),
            Some(1000)
        );
        assert_eq!(with("additional", json!("x".repeat(5000))), Some(1000));
        assert_eq!(
            with("session_settings", json!({"macros": [{"remote_app": 1}]})),
            Some(1000)
        );
    }

    #[test]
    fn settings_are_normalised_and_secret_key_taken_out() {
        let b = json!({"username": "u", "hostname": "h", "ip": "i", "connectivities": "SSH:22, HTTPS:443",
            "additional_settings": {"secret_key": "ABC", "criticality": "high", "user_credentia_owner": "admin"}});
        let up = parse_upsert(&b, false).unwrap_or_default();
        assert_eq!(
            up.secret_key.as_ref().map(|s| s.expose().to_owned()),
            Some("ABC".into())
        );
        let add = up
            .settings
            .get("additional_settings")
            .cloned()
            .unwrap_or_default();
        assert_eq!(add.get("criticality"), Some(&json!("High")));
        assert_eq!(add.get("user_credential_owner"), Some(&json!("admin")));
        assert!(add.get("secret_key").is_none());
        assert_eq!(up.device.connectivities.map(|c| c.len()), Some(2));
    }

    #[test]
    fn form_bodies_nest_and_coerce() {
        let pairs: Vec<(String, String)> = [
            ("username", "u"),
            ("hostname", "h"),
            ("ip", "i"),
            ("parent_password", "7"),
            ("execution_settings[automatic_change]", "true"),
            ("session_settings[macros][0][remote_app]", "MySQL"),
            ("session_settings[macros][0][connectivity]", "SSH"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        let v = form_to_value(&pairs).unwrap_or_default();
        let up = parse_upsert(&v, true);
        assert!(up.is_ok());
        let up = up.unwrap_or_default();
        assert_eq!(
            up.settings
                .get("execution_settings")
                .and_then(|m| m.get("automatic_change")),
            Some(&json!(true))
        );
        assert_eq!(
            up.settings
                .get("session_settings")
                .and_then(|m| m.get("macros")),
            Some(&json!([{"remote_app": "MySQL", "connectivity": "SSH"}]))
        );
        assert!(
            parse_upsert(&v, false).is_err(),
            "JSON mode does not coerce"
        );
        let dup = vec![
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        assert!(form_to_value(&dup).is_err());
        assert!(form_to_value(&[("a[".to_owned(), "1".to_owned())]).is_err());
    }

    #[test]
    fn review_findings_stay_fixed() {
        // A form body whose value was not URL-encoded: the piece after '&' is not echoed.
        let v = form_to_value(&[
            ("username".into(), "u".into()),
            ("hostname".into(), "h".into()),
            ("ip".into(), "i".into()),
            ("content".into(), "Pa".into()),
            ("ss-w0rd".into(), String::new()),
        ])
        .unwrap_or_default();
        let e = parse_upsert(&v, true)
            .err()
            .map(|e| e.message())
            .unwrap_or_default();
        assert!(e.starts_with("1000") && !e.contains("ss-w0rd"), "{e}");
        // Form lists come back in index order, 10 after 9.
        let mut pairs: Vec<(String, String)> = ["username", "hostname", "ip"]
            .iter()
            .map(|k| ((*k).to_owned(), "x".to_owned()))
            .collect();
        for i in 0..12 {
            pairs.push((
                format!("session_settings[macros][{i}][remote_app]"),
                format!("app{i}"),
            ));
        }
        let up = parse_upsert(&form_to_value(&pairs).unwrap_or_default(), true).unwrap_or_default();
        let macros = up
            .settings
            .get("session_settings")
            .and_then(|b| b.get("macros"))
            .cloned()
            .unwrap_or_default();
        let names: Vec<&str> = macros
            .as_array()
            .map(|a| a.iter().filter_map(|m| m["remote_app"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            names,
            (0..12).map(|i| format!("app{i}")).collect::<Vec<_>>()
        );
        // Additional authentication values are secrets; the nested identifier is the identifier.
        let b = json!({"username": "u", "hostname": "h", "ip": "i", "parent_password": "   ",
            "additional_settings": {"identifier": "nested-id", "additional_authentication_fields": [
                {"name": "enable", "short_name": "en", "value": "EnablePw-1"}, {"name": "n2"}]}});
        let up = parse_upsert(&b, false).unwrap_or_default();
        assert_eq!(up.identifier.as_deref(), Some("nested-id"));
        assert_eq!(up.parent_password, None);
        let vals = up.auth_field_values.unwrap_or_default();
        assert_eq!(vals.len(), 2);
        assert_eq!(
            vals[0].as_ref().map(|s| s.expose().to_owned()),
            Some("EnablePw-1".into())
        );
        assert!(vals[1].is_none());
        assert!(!format!("{:?}", up.settings).contains("EnablePw-1"));
        let mut b2 = b.clone();
        b2["identifier"] = json!("other-id");
        assert_eq!(parse_upsert(&b2, false).err().map(|e| e.code), Some(1000));
    }
}
