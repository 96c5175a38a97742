//! Applications: callers identified by an AppID instead of a token (the CCP door). An application is
//! authenticated by its rules, **all** of which must hold, and an application without any rule is
//! refused (not open). It reads only what it was granted: whole safes or single credentials.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::CredentialMeta;
use crate::DomainError;

/// A client certificate rule: the issuing CA's subject plus the certificate's subject and/or serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertRule {
    /// Issuer distinguished name, as RFC 4514 text (for example `CN=Corp CA,O=Corp`).
    pub issuer: String,
    pub subject: Option<String>,
    /// Serial number in hex (case and leading zeros ignored).
    pub serial: Option<String>,
}

/// The authentication rules of an application, as stored (the header secret only as a keyed hash).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRules {
    /// Allowed source addresses: IPs or CIDRs.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Allowed client certificates (mTLS); any one of them.
    #[serde(default)]
    pub certificates: Vec<CertRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_secret_hash: Option<String>,
    /// Argon2id hash of the application's client secret (OAuth client credentials, Vault AppRole
    /// `secret_id`). Not a CCP rule: the CCP door never takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_hash: Option<String>,
}

/// A client certificate as the TLS layer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub issuer: String,
    pub subject: String,
    pub serial_hex: String,
}

impl AppRules {
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.certificates.is_empty() && self.header_secret_hash.is_none()
    }

    /// Check the shape of the rules (addresses parse, serials are hex).
    pub fn validate(&self) -> Result<(), DomainError> {
        for s in &self.sources {
            parse_net(s).ok_or_else(|| {
                DomainError::invalid("sources", format!("'{s}' is not an IP address or CIDR"))
            })?;
        }
        for c in &self.certificates {
            if c.issuer.trim().is_empty() || (c.subject.is_none() && c.serial.is_none()) {
                return Err(DomainError::invalid(
                    "certificates",
                    "each rule needs an issuer and a subject and/or a serial",
                ));
            }
            if let Some(s) = &c.serial {
                if norm_serial(s).is_empty()
                    || !norm_serial(s).chars().all(|c| c.is_ascii_hexdigit())
                {
                    return Err(DomainError::invalid(
                        "certificates",
                        format!("serial '{s}' is not hex"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether `source` is within the allowed source addresses (any, when none are configured).
    pub fn source_allowed(&self, source: std::net::IpAddr) -> bool {
        self.sources.is_empty()
            || self
                .sources
                .iter()
                .filter_map(|s| parse_net(s))
                .any(|n| n.contains(&source))
    }

    /// Whether a request satisfies every configured rule. `header_hash` is the keyed hash of the
    /// header secret the request carried (compared by the caller's constant-time `eq`).
    pub fn authenticate(
        &self,
        source: std::net::IpAddr,
        header_hash_matches: impl Fn(&str) -> bool,
        cert: Option<&ClientCert>,
    ) -> bool {
        if self.is_empty() {
            return false;
        }
        let source_ok = self.source_allowed(source);
        let header_ok = self
            .header_secret_hash
            .as_deref()
            .is_none_or(header_hash_matches);
        let cert_ok = self.certificates.is_empty()
            || cert.is_some_and(|c| self.certificates.iter().any(|r| r.matches(c)));
        source_ok && header_ok && cert_ok
    }
}

impl CertRule {
    pub fn matches(&self, c: &ClientCert) -> bool {
        same_dn(&self.issuer, &c.issuer)
            && self
                .subject
                .as_deref()
                .is_none_or(|s| same_dn(s, &c.subject))
            && self
                .serial
                .as_deref()
                .is_none_or(|s| norm_serial(s) == norm_serial(&c.serial_hex))
    }
}

fn same_dn(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    norm(a) == norm(b)
}

fn norm_serial(s: &str) -> String {
    let s: String = s
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let t = s.trim_start_matches('0');
    if t.is_empty() && !s.is_empty() {
        "0".into()
    } else {
        t.to_owned()
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// What an application was granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", content = "name", rename_all = "lowercase")]
pub enum Grant {
    /// Read (and list) the credentials of a safe.
    Safe(String),
    /// Read, create and change the credentials of a safe (the PAM A2A door writes); also reads.
    #[serde(rename = "safe-write")]
    SafeWrite(String),
    /// Read one credential, by id.
    Credential(String),
}

/// Whether an application holding `grants` may read the credential `id` with this metadata.
pub fn may_read(grants: &[Grant], id: &str, meta: &CredentialMeta) -> bool {
    grants.iter().any(|g| match g {
        Grant::Safe(s) | Grant::SafeWrite(s) => meta.safe.as_deref() == Some(s.as_str()),
        Grant::Credential(c) => c == id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn no_rule_means_refused_and_every_rule_must_hold() {
        assert!(!AppRules::default().authenticate(ip("127.0.0.1"), |_| true, None));
        let r = AppRules {
            sources: vec!["10.0.0.0/8".into(), "192.168.1.5".into()],
            ..Default::default()
        };
        assert!(r.validate().is_ok());
        assert!(r.authenticate(ip("10.1.2.3"), |_| false, None));
        assert!(r.authenticate(ip("192.168.1.5"), |_| false, None));
        assert!(!r.authenticate(ip("192.168.1.6"), |_| false, None));
        let both = AppRules {
            header_secret_hash: Some("h".into()),
            ..r.clone()
        };
        assert!(both.authenticate(ip("10.1.2.3"), |h| h == "h", None));
        assert!(
            !both.authenticate(ip("10.1.2.3"), |_| false, None),
            "header wrong"
        );
        assert!(
            !both.authenticate(ip("11.1.2.3"), |h| h == "h", None),
            "source wrong"
        );
        assert!(AppRules {
            sources: vec!["nope".into()],
            ..Default::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn certificates_match_issuer_and_subject_or_serial() {
        let cert = ClientCert {
            issuer: "CN=Corp CA, O=Corp".into(),
            subject: "CN=app1".into(),
            serial_hex: "00:1a:2b".into(),
        };
        let by_serial = CertRule {
            issuer: "cn=corp ca,o=corp".into(),
            subject: None,
            serial: Some("1A2B".into()),
        };
        let by_subject = CertRule {
            issuer: "CN=Corp CA,O=Corp".into(),
            subject: Some("CN=app1".into()),
            serial: None,
        };
        let other_ca = CertRule {
            issuer: "CN=Evil CA".into(),
            subject: Some("CN=app1".into()),
            serial: None,
        };
        assert!(by_serial.matches(&cert) && by_subject.matches(&cert) && !other_ca.matches(&cert));
        let rules = AppRules {
            certificates: vec![other_ca, by_serial],
            ..Default::default()
        };
        assert!(rules.authenticate(ip("1.2.3.4"), |_| false, Some(&cert)));
        assert!(
            !rules.authenticate(ip("1.2.3.4"), |_| false, None),
            "no certificate"
        );
        assert!(AppRules {
            certificates: vec![CertRule {
                issuer: "CN=x".into(),
                subject: None,
                serial: None
            }],
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
