//! Tenants: a client (`X-Client-Id`) and the database its events and files live in.
//!
//! The platform keeps one ClickHouse database per tenant and a tenants table mapping
//! `client_id` to the database name. Here the tenants table is `history_tenants` and
//! a tenant's "database" is its row in `history_databases`, the namespace that owns
//! its events and whose name is the object-key prefix of its files. The two are
//! separate on purpose: a tenant whose database row is missing, or dropped, is the
//! seed page's "Tenant not found" row (`'<database_name>' tenant not found in
//! database.`), a state the platform reaches when a tenant database is dropped or
//! lost behind the tenants table's back.

use super::HistoryError;

/// Top-level key prefixes intake itself writes to in the shared bucket; no tenant
/// may take one of these names (compared case-insensitively), or deleting the tenant
/// would delete intake's own objects.
pub const RESERVED_NAMES: &[&str] = &["uploads", "tmp", "intake", "history"];

/// The longest database name.
pub const MAX_DATABASE_NAME: usize = 64;

/// A valid database name: at most 64 characters, an ASCII letter then ASCII letters,
/// digits or underscores, and not one of [`RESERVED_NAMES`]. Such a name is a safe
/// single path segment of an object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseName(String);

impl DatabaseName {
    /// Checks `raw`.
    pub fn parse(raw: &str) -> Result<DatabaseName, HistoryError> {
        let mut chars = raw.chars();
        let valid = raw.len() <= MAX_DATABASE_NAME
            && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(HistoryError::Invalid(format!(
                "database_name: Must be at most {MAX_DATABASE_NAME} characters: a letter, then letters, digits or underscores."
            )));
        }
        if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(raw)) {
            return Err(HistoryError::Invalid(format!(
                "database_name: '{raw}' is reserved."
            )));
        }
        Ok(DatabaseName(raw.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tenant resolved from `X-Client-Id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// The `X-Client-Id` value.
    pub client_id: String,
    /// Its database name.
    pub database_name: String,
    /// Whether that database exists.
    pub database_exists: bool,
}

impl Tenant {
    /// The prefix of every object key of this tenant: `<database_name>/`.
    pub fn key_prefix(&self) -> String {
        format!("{}/", self.database_name)
    }

    /// The object key of one of its files: `<database_name>/<file_id>`.
    pub fn file_key(&self, file_id: &uuid::Uuid) -> String {
        format!("{}/{}", self.database_name, file_id)
    }

    /// This tenant, when its database exists; else the seed page's "Tenant not found".
    pub fn with_database(self) -> Result<Tenant, HistoryError> {
        if self.database_exists {
            Ok(self)
        } else {
            Err(HistoryError::TenantNotFound(self.database_name))
        }
    }
}

/// A new client id (UUID v4, as the platform issues).
pub fn new_client_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A new client secret: 256 random bits, hex.
pub fn new_client_secret() -> String {
    let mut buf = [0u8; 32];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// Client secrets are stored as SHA-256 (they are random and long).
pub fn client_secret_hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names() {
        for ok in ["a", "alx_demo", "A1_b2", &"x".repeat(64)] {
            assert!(DatabaseName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "_a",
            "a-b",
            "a/b",
            "a.b",
            "ä",
            &"x".repeat(65),
            "uploads",
            "Uploads",
        ] {
            assert!(DatabaseName::parse(bad).is_err(), "{bad}");
        }
    }
}
