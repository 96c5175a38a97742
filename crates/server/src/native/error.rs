//! The native door's error format: `{"error": {"code": "...", "message": "..."}}` with the right
//! status. Internal details go to the log, never to the client.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use credvault_core::DomainError;
use serde_json::json;

use credvault_service::error::ServiceError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl From<crate::edge::BodyRefusal> for ApiError {
    fn from(r: crate::edge::BodyRefusal) -> Self {
        let code = if r.status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(r.status, code, r.message)
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use StatusCode as S;
        match e {
            ServiceError::Domain(d) => match d {
                DomainError::Invalid { .. } => Self::new(S::BAD_REQUEST, "invalid_request", d.to_string()),
                DomainError::NotFound(_) => Self::new(S::NOT_FOUND, "not_found", d.to_string()),
                DomainError::Conflict(_) => Self::new(S::CONFLICT, "conflict", d.to_string()),
                DomainError::Forbidden => Self::new(S::FORBIDDEN, "forbidden", "permission denied"),
                DomainError::Unauthenticated => Self::new(
                    S::UNAUTHORIZED,
                    "unauthenticated",
                    "missing, invalid, expired or revoked token (send X-Vault-Token or Authorization: Bearer)",
                ),
            },
            ServiceError::VersionConflict { .. } => Self::new(S::CONFLICT, "version_conflict", e.to_string()),
            ServiceError::Sealed => Self::new(S::SERVICE_UNAVAILABLE, "sealed", e.to_string()),
            ServiceError::NotInitialized => Self::new(S::SERVICE_UNAVAILABLE, "not_initialized", e.to_string()),
            ServiceError::Unseal(m) => Self::new(S::BAD_REQUEST, "unseal_failed", m),
            ServiceError::RateLimited => Self::new(S::TOO_MANY_REQUESTS, "rate_limited", e.to_string()),
            ServiceError::AuditFailed => Self::new(S::SERVICE_UNAVAILABLE, "audit_unavailable", e.to_string()),
            ServiceError::Integrity => Self::new(S::INTERNAL_SERVER_ERROR, "integrity_error", e.to_string()),
            ServiceError::Integration(m) => Self::new(S::BAD_GATEWAY, "integration_unavailable", m),
            ServiceError::InsufficientStorage => Self::new(S::INSUFFICIENT_STORAGE, "insufficient_storage", e.to_string()),
            ServiceError::Store(inner) => {
                tracing::error!(error = %inner, "storage error");
                Self::new(S::SERVICE_UNAVAILABLE, "storage_unavailable", "the storage backend is unavailable; try again")
            }
        }
    }
}

/// Serde messages quote the offending input (`invalid type: string "hunter2"`, ``integer `1234` ``).
/// Blank out quoted values so a misplaced secret cannot come back in an error body or a log line;
/// back-quoted field names (`unknown field `x``) stay, they are what the caller needs to see.
pub fn scrub(msg: &str) -> String {
    const VALUE_KINDS: [&str; 5] = [
        "integer ",
        "floating point ",
        "character ",
        "boolean ",
        "bytes ",
    ];
    let mut out = String::with_capacity(msg.len());
    let mut open: Option<(char, bool)> = None;
    for c in msg.chars() {
        match open {
            Some((q, hide)) if c == q => {
                if hide {
                    out.push('…');
                }
                out.push(c);
                open = None;
            }
            Some((_, true)) => {}
            Some((_, false)) => out.push(c),
            None if c == '"' => {
                out.push(c);
                open = Some((c, true));
            }
            None if c == '`' => {
                let hide = VALUE_KINDS.iter().any(|k| out.ends_with(k));
                out.push(c);
                open = Some((c, hide));
            }
            None => out.push(c),
        }
    }
    if matches!(open, Some((_, true))) {
        out.push('…');
    }
    out
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match &r {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(_) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is too large",
                )
            }
            JsonRejection::JsonDataError(e) => {
                Self::bad_request(format!("invalid JSON body: {}", scrub(&e.body_text())))
            }
            JsonRejection::JsonSyntaxError(e) => {
                Self::bad_request(format!("malformed JSON: {}", scrub(&e.body_text())))
            }
            _ => Self::bad_request(format!("unreadable body: {}", scrub(&r.body_text()))),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        use axum::extract::path::ErrorKind;
        if let PathRejection::FailedToDeserializePathParams(e) = &r {
            // Say what the segment should be, in plain words (not the parser's own message).
            match e.kind() {
                ErrorKind::DeserializeError { key, message, .. } if message.starts_with("UUID") => {
                    return Self::bad_request(format!("the {key} in the path must be a UUID"));
                }
                ErrorKind::ParseErrorAtKey {
                    key, expected_type, ..
                } if is_integer(expected_type) => {
                    return Self::bad_request(format!(
                        "the {key} in the path must be a whole number"
                    ));
                }
                ErrorKind::ParseErrorAtIndex {
                    index,
                    expected_type,
                    ..
                } if is_integer(expected_type) => {
                    return Self::bad_request(format!(
                        "path parameter {} must be a whole number",
                        index + 1
                    ));
                }
                _ => {}
            }
        }
        Self::bad_request(format!("invalid path parameter: {}", scrub(&r.body_text())))
    }
}

fn is_integer(type_name: &str) -> bool {
    matches!(type_name, "i32" | "i64" | "u32" | "u64")
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(format!(
            "invalid query parameter: {}",
            scrub(&r.body_text())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn scrub_removes_quoted_values() {
        let m = scrub("invalid type: string \"hunter2\", expected a sequence at line 1");
        assert!(!m.contains("hunter2"));
        assert!(m.contains("expected a sequence"));
        assert!(!scrub("invalid type: integer `12345`").contains("12345"));
        assert!(!scrub("unterminated \"abc").contains("abc"));
        assert!(scrub("unknown field `colour`, expected `name`").contains("`colour`"));
    }
}
