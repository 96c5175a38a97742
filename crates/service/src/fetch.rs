//! The fetch-credentials contract served (seeds 000/001): `GET /api/fetch-credentials` answers a
//! list of `{user, password, name}` for an automation platform's vault integration.
//!
//! - `?credential_names=a,b`: fetch all: every credential the caller may read whose `name` is listed,
//!   less those it sees only through the `all-users` ownership and did not create
//!   (`policy::resolves_name_for`: nobody's credential shadows or joins another caller's name).
//! - `?identifier=a`: fetch one: a list of zero or one; several matches, a refusal, a failing remote
//!   (for a mirror) or any other error yield `[]`, never an error answer.
//!
//! The caller authenticates with a native token (errors in the native format); every secret read is
//! audited through `Vault::read_secret` with the door `fetch`.

use credvault_core::model::Credential;
use credvault_crypto::SecretString;
use serde::Serialize;

use crate::error::ServiceResult;
use crate::{Ctx, Vault};

pub const DOOR: &str = "fetch";

/// One credential as the contract shapes it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FetchedCredential {
    pub user: String,
    #[schema(value_type = String)]
    pub password: SecretString,
    pub name: String,
}

impl Vault {
    async fn named(&self, ctx: &Ctx, name: &str) -> ServiceResult<Vec<Credential>> {
        self.credentials_named(ctx, name).await
    }

    async fn fetched(&self, ctx: &Ctx, c: &Credential) -> ServiceResult<FetchedCredential> {
        let read = self.read_secret(ctx, c.id, None).await?;
        Ok(FetchedCredential {
            user: c.meta.username.clone(),
            password: read.secret,
            name: c.meta.name.clone(),
        })
    }

    /// Fetch all: every readable credential with one of these names; unreadable ones are left out.
    pub async fn fetch_credentials(
        &self,
        ctx: &Ctx,
        names: &[String],
    ) -> ServiceResult<Vec<FetchedCredential>> {
        let mut out = Vec::new();
        for name in names {
            for c in self.named(ctx, name).await? {
                if let Ok(f) = self.fetched(ctx, &c).await {
                    out.push(f);
                }
            }
        }
        Ok(out)
    }

    /// Fetch one: zero or one credential; every failure is an empty list.
    pub async fn fetch_credential(&self, ctx: &Ctx, identifier: &str) -> Vec<FetchedCredential> {
        let Ok(mut found) = self.named(ctx, identifier).await else {
            return vec![];
        };
        match (found.pop(), found.is_empty()) {
            (Some(c), true) => self.fetched(ctx, &c).await.into_iter().collect(),
            _ => vec![],
        }
    }
}
