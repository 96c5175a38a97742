//! What every door shares at the HTTP edge: where the caller is, where its token is, and who it
//! is. A door module adds only its dialect: which header carries the key, which callers it serves,
//! and how it words a refusal.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use credvault_core::policy::ActorKind;
use credvault_service::error::ServiceError;
use credvault_service::Ctx;

use crate::AppState;

/// The source address of a request (unspecified when the server was not given connect info).
pub fn source_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// The source address, as an extractor that never fails.
pub struct Source(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(source_ip(parts)))
    }
}

/// A token from `X-Vault-Token` or `Authorization: Bearer`.
pub fn token_from_headers(h: &HeaderMap) -> Option<String> {
    if let Some(v) = h.get("x-vault-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned());
    }
    let v = h.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_owned())
}

/// Which callers a door serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// Users, service users and root; an application's login token is refused.
    People,
    /// Only applications (their login tokens).
    Apps,
    /// Both (the Vault KV door: native tokens and AppRole logins).
    Anyone,
}

/// Why a request has no caller; each door words it in its own dialect.
#[derive(Debug)]
pub enum Refusal {
    /// Sealed, not initialised, an unknown or expired token, rate limited, storage down.
    Service(ServiceError),
    /// A valid token of a kind this door does not serve.
    WrongKind(ActorKind),
}

/// The one caller resolution of every door: the seal, then the token, then the kind of caller.
pub async fn caller(
    s: &AppState,
    token: Option<&str>,
    ip: IpAddr,
    door: &'static str,
    serves: Serves,
) -> Result<Ctx, Refusal> {
    if let Some(e) = s.vault.sealed_error().await {
        return Err(Refusal::Service(e));
    }
    let actor = s
        .vault
        .authenticate(token, ip)
        .await
        .map_err(Refusal::Service)?;
    let is_app = actor.kind == ActorKind::App;
    match (serves, is_app) {
        (Serves::People, true) | (Serves::Apps, false) => Err(Refusal::WrongKind(actor.kind)),
        _ => Ok(Ctx {
            actor,
            source: ip.to_string(),
            door,
        }),
    }
}

/// Why a body could not be read: too large (413) or broken (400). Each door words it in its own
/// format through `From<BodyRefusal>`.
#[derive(Debug)]
pub struct BodyRefusal {
    pub status: StatusCode,
    pub message: &'static str,
}

/// A request body as bytes; a body over the limit or unreadable is refused in the door's own error
/// format `E`, never as axum's plain text.
pub struct Body<E>(pub Bytes, pub PhantomData<fn() -> E>);

impl<S, E> FromRequest<S> for Body<E>
where
    S: Send + Sync,
    E: From<BodyRefusal> + IntoResponse,
{
    type Rejection = E;

    async fn from_request(req: Request, s: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, s).await {
            Ok(b) => Ok(Body(b, PhantomData)),
            Err(rej) => {
                let status = rej.status();
                let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "the body is too large"
                } else {
                    "the body could not be read"
                };
                Err(E::from(BodyRefusal { status, message }))
            }
        }
    }
}
