//! Passwords (argon2), JWT access and refresh tokens, one-time WebSocket tickets.
//! The extractor that authenticates REST calls with them is at the HTTP edge
//! (`http/extractor.rs`).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// Checks a password against a PHC string; false on mismatch or a malformed hash.
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(phc) {
        Ok(hash) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash that never matches, verified against when the e-mail is unknown so that
/// a login takes as long for unknown users as for wrong passwords.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("intake-dummy-password").unwrap_or_default())
}

/// Which kind of JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    Access,
    Refresh,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    iat: i64,
    jti: String,
    token_type: TokenType,
}

/// Signs and checks JWTs (HS256).
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    access_ttl: i64,
    refresh_ttl: i64,
}

impl JwtKeys {
    /// Keys from a shared secret.
    pub fn new(secret: &[u8], access_ttl_secs: u64, refresh_ttl_secs: u64) -> JwtKeys {
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_ttl: access_ttl_secs as i64,
            refresh_ttl: refresh_ttl_secs as i64,
        }
    }

    /// Issues a token of `kind` for `user_id`.
    pub fn issue(&self, user_id: i64, kind: TokenType) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let ttl = match kind {
            TokenType::Access => self.access_ttl,
            TokenType::Refresh => self.refresh_ttl,
        };
        let claims = Claims {
            sub: user_id.to_string(),
            exp: now + ttl,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            token_type: kind,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The user id of a valid, unexpired token of `kind`.
    pub fn verify(&self, token: &str, kind: TokenType) -> Option<i64> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        (data.claims.token_type == kind)
            .then(|| data.claims.sub.parse().ok())
            .flatten()
    }
}

/// A new one-time ticket (a UUID v4, as the platform's `?uuid=`).
pub fn new_ticket() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Tickets are stored hashed: a leaked table grants no socket.
pub fn ticket_hash(ticket: &str) -> String {
    hex::encode(Sha256::digest(ticket.as_bytes()))
}
