//! The Central Credential Provider dialect ("Get Password", seed 002, `contracts/ccp.md`): request
//! parsing, query matching against the credential model, the success body and the error table.
//! Pure: the server's CCP door feeds it query parameters and credentials and sends what it returns.

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};

use crate::model::CredentialMeta;

/// An error in the dialect's own format: HTTP status, `ErrorCode`, `ErrorMsg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcpError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl CcpError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn app_id_required() -> Self {
        Self::new(
            400,
            "AIMWS031E",
            "Invalid request. The AppID parameter is required",
        )
    }
    pub fn bad_query(why: &str) -> Self {
        Self::new(400, "AIMWS030E", format!("Invalid query format: {why}"))
    }
    pub fn invalid_characters(param: &str) -> Self {
        Self::new(
            400,
            "CASVL010E",
            format!("Invalid characters in parameter value [{param}]"),
        )
    }
    pub fn too_many(query: &str) -> Self {
        Self::new(
            400,
            "APPAP227E",
            format!("Too many objects matching query [{query}] were found"),
        )
    }
    pub fn unknown_app(app_id: &str) -> Self {
        Self::new(
            403,
            "APPAP008E",
            format!("Problem occurred while trying to use user [{app_id}] in the Vault (Diagnostic Info: 5). User {app_id} is not defined"),
        )
    }
    pub fn authentication_failed(app_id: &str) -> Self {
        Self::new(403, "APPAP306E", format!("Failed to authenticate application [{app_id}]: the request does not satisfy its authentication rules"))
    }
    /// No match, or a match the application may not read: the same answer on purpose.
    pub fn not_found(query: &str) -> Self {
        Self::new(
            404,
            "APPAP004E",
            format!(
                "Password object matching query [{query}] was not found (Diagnostic Info: 5). Please check that there is a password object that answers your query in the Vault and that both the Provider and the application user have the appropriate permissions needed in order to use the password."
            ),
        )
    }
    pub fn password_changing(query: &str) -> Self {
        Self::new(500, "APPAP282E", format!("Password object matching query [{query}] is being changed and FailRequestOnPasswordChange was requested"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryFormat {
    Exact,
    Regexp,
}

/// One criterion: a property (canonical name for the known ones) and how its value must match.
#[derive(Debug, Clone)]
pub struct Criterion {
    pub property: String,
    pub value: String,
    pattern: Pattern,
}

#[derive(Debug, Clone)]
enum Pattern {
    /// Case-insensitive equality; a trailing `*` makes it a prefix match.
    Exact {
        lower: String,
        prefix: bool,
    },
    Regex(Regex),
}

/// A parsed Get Password request.
#[derive(Debug, Clone)]
pub struct Request {
    pub app_id: String,
    pub criteria: Vec<Criterion>,
    pub format: QueryFormat,
    /// The query as the caller sees it in error messages.
    pub query_text: String,
    pub reason: Option<String>,
    pub connection_timeout: u32,
    pub fail_on_password_change: bool,
}

/// Known properties: (lower-case name, canonical name).
const KNOWN: [(&str, &str); 9] = [
    ("safe", "Safe"),
    ("folder", "Folder"),
    ("object", "Object"),
    ("name", "Object"),
    ("username", "UserName"),
    ("address", "Address"),
    ("database", "Database"),
    ("policyid", "PolicyID"),
    ("devicetype", "DeviceType"),
];

fn canonical(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    KNOWN
        .iter()
        .find(|(l, _)| *l == lower)
        .map_or_else(|| name.to_owned(), |(_, c)| (*c).to_owned())
}

fn check_chars(param: &str, v: &str) -> Result<(), CcpError> {
    if v.chars().any(char::is_control) || v.len() > 1024 {
        return Err(CcpError::invalid_characters(param));
    }
    Ok(())
}

fn compile(format: QueryFormat, value: &str) -> Result<Pattern, CcpError> {
    Ok(match format {
        QueryFormat::Exact => match value.strip_suffix('*') {
            Some(p) => Pattern::Exact {
                lower: fold(p),
                prefix: true,
            },
            None => Pattern::Exact {
                lower: fold(value),
                prefix: false,
            },
        },
        QueryFormat::Regexp => Pattern::Regex(
            RegexBuilder::new(value)
                .size_limit(1 << 20)
                .build()
                .map_err(|_| CcpError::bad_query("invalid regular expression"))?,
        ),
    })
}

/// Parse the query parameters of `GET /AIMWebService/api/Accounts`. Names are case-insensitive;
/// unknown parameters are ignored.
pub fn parse(params: &[(String, String)]) -> Result<Request, CcpError> {
    let mut get: BTreeMap<String, &str> = BTreeMap::new();
    let mut order: Vec<(String, &str)> = Vec::new();
    for (k, v) in params {
        let lk = k.to_ascii_lowercase();
        check_chars(k, v)?;
        if KNOWN.iter().any(|(l, _)| *l == lk) {
            order.push((canonical(k), v.as_str()));
        }
        get.insert(lk, v.as_str());
    }
    let app_id = get
        .get("appid")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or_else(CcpError::app_id_required)?;
    let format = match get.get("queryformat").map(|f| f.to_ascii_lowercase()) {
        None => QueryFormat::Exact,
        Some(f) if f == "exact" || f.is_empty() => QueryFormat::Exact,
        Some(f) if f == "regexp" => QueryFormat::Regexp,
        Some(_) => return Err(CcpError::bad_query("QueryFormat must be Exact or Regexp")),
    };
    let connection_timeout = match get.get("connectiontimeout") {
        None => 30,
        Some(t) => t
            .trim()
            .parse()
            .map_err(|_| CcpError::invalid_characters("ConnectionTimeout"))?,
    };
    let fail_on_password_change = match get
        .get("failrequestonpasswordchange")
        .map(|f| f.to_ascii_lowercase())
    {
        None => false,
        Some(f) if f == "true" => true,
        Some(f) if f == "false" || f.is_empty() => false,
        Some(_) => return Err(CcpError::invalid_characters("FailRequestOnPasswordChange")),
    };
    let (pairs, query_text): (Vec<(String, String)>, String) = match get.get("query") {
        Some(q) => (parse_query(q)?, (*q).to_owned()),
        None => {
            let mut pairs: Vec<(String, String)> = order
                .iter()
                .map(|(k, v)| (k.clone(), (*v).to_owned()))
                .collect();
            if !pairs.iter().any(|(k, _)| k == "Folder")
                && pairs.iter().any(|(k, _)| k == "Safe" || k == "Object")
            {
                pairs.push(("Folder".into(), "Root".into()));
            }
            let text = pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";");
            (pairs, text)
        }
    };
    let criteria = pairs
        .into_iter()
        .map(|(property, value)| {
            Ok(Criterion {
                pattern: compile(format, &value)?,
                property,
                value,
            })
        })
        .collect::<Result<Vec<_>, CcpError>>()?;
    Ok(Request {
        app_id: app_id.to_owned(),
        criteria,
        format,
        query_text,
        reason: get.get("reason").map(|r| (*r).to_owned()),
        connection_timeout,
        fail_on_password_change,
    })
}

/// Parse `Property=Value;Property=Value`. Values may contain `=`; empty segments are skipped.
pub fn parse_query(q: &str) -> Result<Vec<(String, String)>, CcpError> {
    let mut out = Vec::new();
    for seg in q.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = seg
            .split_once('=')
            .ok_or_else(|| CcpError::bad_query("expected Property=Value"))?;
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(CcpError::bad_query(
                "a property name is empty or not alphanumeric",
            ));
        }
        out.push((canonical(k), v.to_owned()));
    }
    if out.is_empty() {
        return Err(CcpError::bad_query("the query names no property"));
    }
    Ok(out)
}

/// The account as the dialect sees it: every property as a string. It is also the success body,
/// with `Content` added.
pub fn account(meta: &CredentialMeta) -> BTreeMap<String, String> {
    let mut a: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &meta.properties {
        a.insert(k.clone(), v.clone());
    }
    a.insert("Safe".into(), meta.safe.clone().unwrap_or_default());
    a.insert(
        "Folder".into(),
        meta.folder
            .clone()
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "Root".into()),
    );
    a.insert("Name".into(), meta.name.clone());
    a.insert("UserName".into(), meta.username.clone());
    if let Some(d) = &meta.device {
        let addr = if d.hostname.is_empty() {
            &d.ip
        } else {
            &d.hostname
        };
        a.insert("Address".into(), addr.clone());
        if let Some(t) = &d.device_type {
            a.insert("DeviceType".into(), t.clone());
        }
    }
    a.entry("Address".into()).or_default();
    a.entry("DeviceType".into()).or_default();
    a.entry("PolicyID".into()).or_default();
    a.entry("CreationMethod".into())
        .or_insert_with(|| "credvault".into());
    a.entry("PasswordChangeInProcess".into())
        .or_insert_with(|| "False".into());
    a
}

/// The case folding exact matches use (and the store's lookup keys are written with).
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

fn value_matches(p: &Pattern, v: &str) -> bool {
    match p {
        Pattern::Exact {
            lower,
            prefix: false,
        } => fold(v) == *lower,
        Pattern::Exact {
            lower,
            prefix: true,
        } => fold(v).starts_with(lower.as_str()),
        Pattern::Regex(r) => r.is_match(v),
    }
}

/// Whether every criterion holds for the credential. `Address` also matches the device's IP address.
pub fn matches(req: &Request, meta: &CredentialMeta) -> bool {
    // A deactivated credential is not handed out (as if it were not there).
    if !meta.is_active() {
        return false;
    }
    let acc = account(meta);
    req.criteria.iter().all(|c| {
        let key = if c.property == "Object" {
            "Name"
        } else {
            c.property.as_str()
        };
        let direct = acc
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str());
        if direct.is_some_and(|v| value_matches(&c.pattern, v)) {
            return true;
        }
        key == "Address"
            && meta
                .device
                .as_ref()
                .is_some_and(|d| value_matches(&c.pattern, &d.ip))
    })
}

/// Whether a credential of safe `safe` can match the query at all: false when the query names a
/// safe (`Safe=`, exact, prefix or regexp) that `safe` does not match. A query without an indexed
/// criterion scans its application's granted safes; this skips the ones it cannot be about, so a
/// `Safe=A;Folder=F` query does not read safe B.
pub fn may_match_safe(req: &Request, safe: &str) -> bool {
    req.criteria
        .iter()
        .filter(|c| c.property == "Safe")
        .all(|c| value_matches(&c.pattern, safe))
}

/// The first criterion an index can answer: an exact (not prefix) match on the object name, the user
/// name or the address, with its folded value. Regexp queries and prefix matches have none.
pub fn index_hint(req: &Request) -> Option<(&'static str, String)> {
    ["Object", "UserName", "Address"]
        .into_iter()
        .find_map(|prop| {
            req.criteria.iter().find_map(|c| match &c.pattern {
                Pattern::Exact {
                    lower,
                    prefix: false,
                } if c.property == prop => Some((prop, lower.clone())),
                _ => None,
            })
        })
}

/// Whether the account says its password is being changed.
pub fn password_changing(meta: &CredentialMeta) -> bool {
    meta.properties
        .get("PasswordChangeInProcess")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Device;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn meta() -> CredentialMeta {
        CredentialMeta {
            identifier: None,
            name: "Operating System-WinDesktopLocal-10.30.40.55-cyberarktsouser1".into(),
            username: "cyberarktsouser1".into(),
            additional_info: None,
            tags: vec![],
            credential_type: None,
            domain: None,
            device: Some(Device {
                hostname: "host55".into(),
                ip: "10.30.40.55".into(),
                device_type: Some("Operating System".into()),
                ..Default::default()
            }),
            safe: Some("TSOCyberArkSystemDemo".into()),
            folder: None,
            owner: None,
            parameter_names: vec![],
            properties: [
                ("PolicyID".to_owned(), "WinDesktopLocal".to_owned()),
                ("LogonDomain".to_owned(), "CORP".to_owned()),
            ]
            .into(),
            settings: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_query_naming_a_safe_skips_the_other_safes() {
        let q = |query: &str| parse(&p(&[("AppID", "a"), ("Query", query)])).ok();
        let table = [
            ("Safe=Sales;Folder=Root", "Sales", true),
            ("Safe=sales;Folder=Root", "Sales", true),
            ("Safe=Sales;Folder=Root", "Finance", false),
            ("Safe=Sal*", "Sales", true),
            ("Safe=Sal*", "Finance", false),
            ("Folder=Root", "Finance", true),
        ];
        for (query, safe, want) in table {
            let req = q(query);
            assert_eq!(
                req.map(|r| may_match_safe(&r, safe)),
                Some(want),
                "{query} in {safe}"
            );
        }
    }

    #[test]
    fn app_id_is_required_and_names_are_case_insensitive() {
        assert_eq!(
            parse(&p(&[("Safe", "x")])).err().map(|e| e.code),
            Some("AIMWS031E")
        );
        assert_eq!(
            parse(&p(&[("AppID", " ")]))
                .err()
                .map(|e| (e.status, e.code)),
            Some((400, "AIMWS031E"))
        );
        for name in ["AppID", "AppId", "appid"] {
            let r = parse(&p(&[
                (name, "app1"),
                ("query_format", "ignored"),
                ("SAFE", "s"),
            ]))
            .ok();
            assert_eq!(r.map(|r| r.app_id), Some("app1".to_owned()));
        }
    }

    #[test]
    fn seed_query_matches_and_mismatches() {
        let m = meta();
        let ok = parse(&p(&[
            ("AppID", "a"),
            ("Query", "Address=10.30.40.55;Username=cyberarktsouser1"),
        ]))
        .ok();
        assert!(
            ok.as_ref().is_some_and(|r| matches(r, &m)),
            "address matches the device IP, names are case-insensitive"
        );
        let miss = parse(&p(&[
            ("AppID", "a"),
            ("Query", "Address=10.0.1.20;Username=InvalidUser"),
        ]))
        .ok();
        assert!(miss.as_ref().is_some_and(|r| !matches(r, &m)));
        let by_params = parse(&p(&[
            ("AppID", "a"),
            ("Safe", "tsocyberarksystemdemo"),
            ("UserName", "CYBERARKTSOUSER1"),
        ]))
        .ok();
        assert!(
            by_params.as_ref().is_some_and(|r| matches(r, &m)),
            "Folder defaults to Root and values are case-insensitive"
        );
        let r = by_params.map(|r| r.query_text).unwrap_or_default();
        assert_eq!(
            r,
            "Safe=tsocyberarksystemdemo;UserName=CYBERARKTSOUSER1;Folder=Root"
        );
        let prop = parse(&p(&[
            ("AppID", "a"),
            ("Query", "LogonDomain=corp;PolicyID=WinDesktop*"),
        ]))
        .ok();
        assert!(
            prop.as_ref().is_some_and(|r| matches(r, &m)),
            "extra properties and a trailing * prefix"
        );
        let obj = parse(&p(&[
            ("AppID", "a"),
            (
                "Query",
                "Object=Operating System-WinDesktopLocal-10.30.40.55-cyberarktsouser1",
            ),
        ]))
        .ok();
        assert!(obj.as_ref().is_some_and(|r| matches(r, &m)));
    }

    #[test]
    fn index_hints_prefer_object_then_user_then_address() {
        let hint = |q: &str, f: &str| {
            parse(&p(&[("AppID", "a"), ("Query", q), ("QueryFormat", f)]))
                .ok()
                .and_then(|r| index_hint(&r))
        };
        assert_eq!(
            hint("Address=H1;UserName=Bob;Object=X", "Exact"),
            Some(("Object", "x".to_owned()))
        );
        assert_eq!(
            hint("Address=H1;UserName=Bob", "Exact"),
            Some(("UserName", "bob".to_owned()))
        );
        assert_eq!(
            hint("Address=H1;Safe=S", "Exact"),
            Some(("Address", "h1".to_owned()))
        );
        assert_eq!(
            hint("UserName=bo*;Safe=S", "Exact"),
            None,
            "a prefix is not an index lookup"
        );
        assert_eq!(hint("UserName=bob", "Regexp"), None);
        assert_eq!(hint("Safe=S", "Exact"), None);
    }

    #[test]
    fn regexp_format() {
        let m = meta();
        let r = parse(&p(&[
            ("AppID", "a"),
            ("Query", "UserName=^cyber.*1$;Safe=Demo"),
            ("QueryFormat", "Regexp"),
        ]))
        .ok();
        assert!(r.as_ref().is_some_and(|r| matches(r, &m)));
        let r = parse(&p(&[
            ("AppID", "a"),
            ("Query", "UserName=^nobody$"),
            ("QueryFormat", "regexp"),
        ]))
        .ok();
        assert!(r.as_ref().is_some_and(|r| !matches(r, &m)));
        let bad = parse(&p(&[
            ("AppID", "a"),
            ("Query", "UserName=(unclosed"),
            ("QueryFormat", "Regexp"),
        ]));
        assert_eq!(bad.err().map(|e| e.code), Some("AIMWS030E"));
    }

    #[test]
    fn malformed_input_gets_the_table_codes() {
        let code = |pairs: &[(&str, &str)]| parse(&p(pairs)).err().map(|e| (e.status, e.code));
        assert_eq!(
            code(&[("AppID", "a"), ("Query", "Safe")]),
            Some((400, "AIMWS030E"))
        );
        assert_eq!(
            code(&[("AppID", "a"), ("Query", ";;")]),
            Some((400, "AIMWS030E"))
        );
        assert_eq!(
            code(&[("AppID", "a"), ("Query", "=x")]),
            Some((400, "AIMWS030E"))
        );
        assert_eq!(
            code(&[("AppID", "a"), ("QueryFormat", "Fuzzy"), ("Safe", "s")]),
            Some((400, "AIMWS030E"))
        );
        assert_eq!(
            code(&[("AppID", "a"), ("Safe", "s\u{0}")]),
            Some((400, "CASVL010E"))
        );
        assert_eq!(
            code(&[("AppID", "a"), ("ConnectionTimeout", "soon")]),
            Some((400, "CASVL010E"))
        );
        assert_eq!(
            code(&[("AppID", "a"), ("FailRequestOnPasswordChange", "maybe")]),
            Some((400, "CASVL010E"))
        );
        let ok = parse(&p(&[
            ("AppID", "a"),
            ("Query", "Safe=a=b;"),
            ("FailRequestOnPasswordChange", "True"),
        ]))
        .ok();
        assert_eq!(
            ok.as_ref()
                .map(|r| (r.criteria[0].value.as_str(), r.fail_on_password_change)),
            Some(("a=b", true))
        );
    }

    #[test]
    fn response_has_every_field_as_strings() {
        let f = account(&meta());
        for k in [
            "UserName",
            "Address",
            "Safe",
            "Folder",
            "Name",
            "PolicyID",
            "DeviceType",
            "PasswordChangeInProcess",
            "CreationMethod",
            "LogonDomain",
        ] {
            assert!(f.contains_key(k), "{k}");
        }
        assert_eq!(f["Folder"], "Root");
        assert_eq!(f["Address"], "host55");
        assert_eq!(f["PasswordChangeInProcess"], "False");
        assert!(!password_changing(&meta()));
        let e = CcpError::not_found("Address=10.0.1.20;Username=InvalidUser");
        assert!(e.message.starts_with("Password object matching query [Address=10.0.1.20;Username=InvalidUser] was not found (Diagnostic Info: 5)."));
    }
}
