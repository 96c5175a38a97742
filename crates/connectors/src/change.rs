//! Password-change plugins (issue 17): each one knows how to set an account's password on one kind
//! of target system and how to check a password by logging in with it.
//!
//! A plugin is a [`ChangePlugin`]; the [`registry`] holds every plugin by name, each with its named
//! templates (what the plugin does on the target; seed 003's `change_template`). A credential's
//! settings name a plugin and a template (`execution_settings.change_plugin` / `change_template`,
//! `reconciliation_plugin` / `reconciliation_template`, and JIT's `credential_*_plugin` /
//! `_template`); [`check`] refuses unknown names at write time.
//!
//! To add a plugin: implement [`ChangePlugin`] in a module beside [`postgresql`], add a `static` of
//! it to [`PLUGINS`], and test it against a real server of its kind (see `ARCHITECTURE.md`).
//!
//! No secret reaches an error message or `Debug` output: passwords travel as [`SecretString`] and
//! errors carry only the target's own error text (which never echoes a password).

use std::time::Duration;

use async_trait::async_trait;
use credvault_crypto::SecretString;

pub mod postgresql;

/// Where a plugin connects: the device's address and the port and database (or other
/// plugin-specific place) from the credential's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    /// `None`: the plugin's default port.
    pub port: Option<u16>,
    /// PostgreSQL: the database to log in to (default `postgres`).
    pub database: Option<String>,
    /// How long one connection attempt may take.
    pub timeout: Duration,
}

/// A user name and its password (`Debug` shows only the name).
#[derive(Debug, Clone)]
pub struct Login {
    pub username: String,
    pub password: SecretString,
}

/// Why a plugin call failed. The texts are the target's own messages or ours, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The target could not be reached (down, refused, timed out): nothing is known to have changed.
    #[error("target unreachable: {0}")]
    Unreachable(String),
    /// The target refused the login (wrong password or no such account).
    #[error("login refused: {0}")]
    Rejected(String),
    /// The target answered but the change failed (no privilege, no such role, ...).
    #[error("change failed: {0}")]
    Failed(String),
    /// The change was sent but its answer was lost (a timeout): the target may or may not have
    /// taken it; only a login can tell.
    #[error("no answer to the change: {0}")]
    Uncertain(String),
    /// The plugin does not do this (yet).
    #[error("the {0} plugin does not support this")]
    Unsupported(&'static str),
}

/// One template of a plugin: what it does on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Template {
    pub name: &'static str,
    pub description: &'static str,
}

/// A way to change passwords on one kind of system. Object-safe: the registry holds `&dyn`.
#[async_trait]
pub trait ChangePlugin: Send + Sync {
    /// The name settings use (`change_plugin`), matched without regard to case.
    fn name(&self) -> &'static str;
    /// Its templates; the first is the default when a credential names none.
    fn templates(&self) -> &'static [Template];
    /// Set `new` as `account`'s password on the target, logged in as `auth` (the authentication
    /// credential, or the account itself with its current password). Any error but
    /// [`ChangeError::Uncertain`] means the target did not take it.
    async fn change(
        &self,
        template: &str,
        target: &Target,
        auth: &Login,
        account: &str,
        new: &SecretString,
    ) -> Result<(), ChangeError>;
    /// Log in as `login`: `Ok` when the target accepts it, `Rejected` when it refuses it, anything
    /// else when it cannot tell.
    async fn verify(&self, target: &Target, login: &Login) -> Result<(), ChangeError>;
    /// Just-in-time accounts (issue 17.5, not done yet): create `account` with `password`, valid
    /// for `lifetime`.
    async fn create_account(
        &self,
        _target: &Target,
        _auth: &Login,
        _account: &str,
        _password: &SecretString,
        _lifetime: Duration,
    ) -> Result<(), ChangeError> {
        Err(ChangeError::Unsupported(self.name()))
    }
    /// Just-in-time accounts: remove `account`.
    async fn delete_account(
        &self,
        _target: &Target,
        _auth: &Login,
        _account: &str,
    ) -> Result<(), ChangeError> {
        Err(ChangeError::Unsupported(self.name()))
    }
}

static POSTGRESQL: postgresql::Postgresql = postgresql::Postgresql;

/// Every plugin credvault has.
pub static PLUGINS: &[&dyn ChangePlugin] = &[&POSTGRESQL];

/// The plugin called `name` (any case).
pub fn plugin(name: &str) -> Option<&'static dyn ChangePlugin> {
    PLUGINS
        .iter()
        .copied()
        .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
}

/// The registry: every plugin's name and templates (for listings and error messages).
pub fn registry() -> Vec<(&'static str, &'static [Template])> {
    PLUGINS.iter().map(|p| (p.name(), p.templates())).collect()
}

/// The template a credential's `template` setting names for `plugin`: the plugin's default when
/// unset or empty; `None` when the plugin has no such template.
pub fn template_of(plugin: &dyn ChangePlugin, template: Option<&str>) -> Option<&'static str> {
    match template.map(str::trim).filter(|t| !t.is_empty()) {
        None => plugin.templates().first().map(|t| t.name),
        Some(t) => plugin
            .templates()
            .iter()
            .find(|x| x.name.eq_ignore_ascii_case(t))
            .map(|x| x.name),
    }
}

/// Check a plugin and template pair as a credential's settings give them. The error says what is
/// known, so the writer can correct it.
pub fn check(plugin_name: &str, template: Option<&str>) -> Result<(), String> {
    let known = || {
        PLUGINS
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(p) = plugin(plugin_name) else {
        return Err(format!(
            "unknown plugin '{}' (known: {})",
            plugin_name.chars().take(64).collect::<String>(),
            known()
        ));
    };
    match template_of(p, template) {
        Some(_) => Ok(()),
        None => Err(format!(
            "unknown template '{}' for plugin {} (known: {})",
            template
                .unwrap_or_default()
                .chars()
                .take(64)
                .collect::<String>(),
            p.name(),
            p.templates()
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_knows_its_plugins_and_templates_and_nothing_else() {
        assert!(check("postgresql", None).is_ok());
        assert!(check("PostgreSQL", Some("alter-role")).is_ok());
        assert!(check("postgresql", Some("")).is_ok());
        let e = check("postgresql", Some("3COM")).unwrap_err();
        assert!(
            e.contains("unknown template '3COM'") && e.contains("alter-role"),
            "{e}"
        );
        let e = check("SSH", Some("3COM")).unwrap_err();
        assert!(
            e.contains("unknown plugin 'SSH'") && e.contains("postgresql"),
            "{e}"
        );
        assert_eq!(registry()[0].0, "postgresql");
    }
}
