//! The `postgresql` plugin: `ALTER ROLE … PASSWORD` over a login as the authentication credential
//! (a role allowed to alter the account: a superuser or one with `CREATEROLE`) or as the role
//! itself, verified by logging in as the role with the new value.
//!
//! The password never travels to the server in clear: the plugin sends a SCRAM-SHA-256 verifier
//! (as `psql`'s `\password` does), so it reaches neither the server's statement log nor
//! `pg_stat_activity`. The role name is quoted as an identifier; the verifier is quoted as a
//! literal. Statement logging of the client is off for these connections.

use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use credvault_crypto::SecretString;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor};
use zeroize::Zeroizing;

use super::{ChangeError, ChangePlugin, Login, Target, Template};

/// The SCRAM iteration count PostgreSQL itself uses by default (`scram_iterations`).
const SCRAM_ITERATIONS: u32 = 4096;

pub struct Postgresql;

static TEMPLATES: &[Template] = &[Template {
    name: "alter-role",
    description: "ALTER ROLE <account> PASSWORD, logged in as the authentication credential or the role itself; verified by a login as the role",
}];

/// `"name"` with inner quotes doubled: a PostgreSQL identifier whatever the name holds.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled (standard-conforming strings, the default since 9.1; the
/// text never holds a backslash, see `scram_verifier`).
fn quote_literal(text: &str) -> Zeroizing<String> {
    Zeroizing::new(format!("'{}'", text.replace('\'', "''")))
}

fn hmac(key: &[u8], data: &[&[u8]]) -> Result<[u8; 32], ChangeError> {
    let mut m =
        Hmac::<Sha256>::new_from_slice(key).map_err(|_| ChangeError::Failed("HMAC key".into()))?;
    for d in data {
        m.update(d);
    }
    Ok(m.finalize().into_bytes().into())
}

/// PBKDF2-HMAC-SHA-256 with one output block (RFC 8018), as SCRAM's `Hi()`.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> Result<Zeroizing<[u8; 32]>, ChangeError> {
    let mut u = Zeroizing::new(hmac(password, &[salt, &1u32.to_be_bytes()])?);
    let mut out = Zeroizing::new(*u);
    for _ in 1..iterations {
        *u = hmac(password, &[u.as_slice()])?;
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    Ok(out)
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password`:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (RFC 5802/7677; base64 has no
/// quote or backslash). The password is used as given (no SASLprep): generated passwords are
/// ASCII, where SASLprep changes nothing.
pub fn scram_verifier(password: &SecretString) -> Result<Zeroizing<String>, ChangeError> {
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let salted = hi(password.expose().as_bytes(), &salt, SCRAM_ITERATIONS)?;
    let client_key = Zeroizing::new(hmac(salted.as_slice(), &[b"Client Key"])?);
    let stored_key = Sha256::digest(client_key.as_slice());
    let server_key = hmac(salted.as_slice(), &[b"Server Key"])?;
    Ok(Zeroizing::new(format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored_key),
        B64.encode(server_key)
    )))
}

/// What a connection error means: unreachable, refused, or something else. sqlx's texts here are
/// the server's messages or I/O errors; none of them holds the password.
fn classify(e: sqlx::Error) -> ChangeError {
    match e {
        sqlx::Error::Io(io) => ChangeError::Unreachable(io.to_string()),
        sqlx::Error::Tls(t) => ChangeError::Unreachable(format!("TLS: {t}")),
        sqlx::Error::PoolTimedOut => ChangeError::Unreachable("timed out".into()),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // 28P01 invalid_password, 28000 invalid_authorization_specification (no such role,
            // not allowed to log in).
            if code == "28P01" || code == "28000" {
                ChangeError::Rejected(format!("{} ({code})", db.message()))
            } else if code.starts_with("57P0") || code.starts_with("08") {
                ChangeError::Unreachable(format!("{} ({code})", db.message()))
            } else {
                ChangeError::Failed(format!("{} ({code})", db.message()))
            }
        }
        other => ChangeError::Failed(other.to_string()),
    }
}

async fn connect(target: &Target, login: &Login) -> Result<PgConnection, ChangeError> {
    let opts = PgConnectOptions::new_without_pgpass()
        .host(&target.host)
        .port(target.port.unwrap_or(5432))
        .username(&login.username)
        .password(login.password.expose())
        .database(target.database.as_deref().unwrap_or("postgres"))
        .application_name("credvault")
        .disable_statement_logging();
    match tokio::time::timeout(target.timeout, opts.connect()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(classify(e)),
        Err(_) => Err(ChangeError::Unreachable(format!(
            "no answer within {} s",
            target.timeout.as_secs_f32()
        ))),
    }
}

#[async_trait]
impl ChangePlugin for Postgresql {
    fn name(&self) -> &'static str {
        "postgresql"
    }

    fn templates(&self) -> &'static [Template] {
        TEMPLATES
    }

    async fn change(
        &self,
        _template: &str,
        target: &Target,
        auth: &Login,
        account: &str,
        new: &SecretString,
    ) -> Result<(), ChangeError> {
        let verifier = scram_verifier(new)?;
        let sql = Zeroizing::new(format!(
            "ALTER ROLE {} PASSWORD {}",
            quote_ident(account),
            quote_literal(&verifier).as_str()
        ));
        let mut conn = connect(target, auth).await?;
        let res = tokio::time::timeout(target.timeout, conn.execute(sql.as_str())).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
        match res {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(match classify(e) {
                // A refusal here is of the statement, not of the login.
                ChangeError::Rejected(m) => ChangeError::Failed(m),
                // The connection broke with the statement sent: did it commit?
                ChangeError::Unreachable(m) => ChangeError::Uncertain(m),
                other => other,
            }),
            // The statement may or may not have run: the engine finds out by logging in.
            Err(_) => Err(ChangeError::Uncertain("ALTER ROLE timed out".into())),
        }
    }

    async fn verify(&self, target: &Target, login: &Login) -> Result<(), ChangeError> {
        let conn = connect(target, login).await?;
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("app"), "\"app\"");
        assert_eq!(
            quote_ident("a\"; DROP ROLE x; --"),
            "\"a\"\"; DROP ROLE x; --\""
        );
        assert_eq!(quote_literal("it's").as_str(), "'it''s'");
    }

    /// RFC 7677's example: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==,
    /// 4096 iterations: ClientKey/ServerKey as the RFC's exchange implies.
    #[test]
    fn pbkdf2_matches_the_rfc_7677_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = hi(b"pencil", &salt, 4096).unwrap();
        let server_key = hmac(salted.as_slice(), &[b"Server Key"]).unwrap();
        // The RFC's server signature is HMAC(ServerKey, AuthMessage) = 6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac(&server_key, &[auth.as_bytes()]).unwrap();
        assert_eq!(
            B64.encode(sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let v = scram_verifier(&SecretString::from("pencil")).unwrap();
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{}", v.as_str());
        assert!(!v.contains('\'') && !v.contains('\\'));
    }
}
