//! Service API keys (`X-API-Key`).
//!
//! A key is `ihk_<id>_<secret>`: `id` is 16 hex digits, public, and names the
//! stored row; `secret` is 64 hex digits (256 random bits). The database keeps only
//! the id and `HMAC-SHA256(pepper, "<id>:<secret>")`. The secret is random and long,
//! so a fast keyed hash is as good as a slow password hash here and costs about a
//! microsecond per request; the pepper (a server secret, not in the database) means
//! a copy of the table alone cannot even check a guess. Digests are compared in
//! constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Every key starts with this.
pub const PREFIX: &str = "ihk_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// A key split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey<'a> {
    /// The public id (row key).
    pub id: &'a str,
    /// The secret part.
    pub secret: &'a str,
}

/// A newly generated key.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// The whole key, shown once to the operator.
    pub key: String,
    /// The id to store.
    pub id: String,
    /// The keyed hash to store (hex).
    pub hash: String,
}

fn random_hex(hex_len: usize) -> String {
    let mut buf = vec![0u8; hex_len / 2];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Splits a key; `None` when it cannot be one of ours (no database lookup needed).
pub fn parse(raw: &str) -> Option<ApiKey<'_>> {
    let (id, secret) = raw.strip_prefix(PREFIX)?.split_once('_')?;
    (is_lower_hex(id, ID_HEX) && is_lower_hex(secret, SECRET_HEX)).then_some(ApiKey { id, secret })
}

/// `HMAC-SHA256(pepper, "<id>:<secret>")`.
pub fn digest(pepper: &[u8], key: &ApiKey<'_>) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(pepper).expect("HMAC takes keys of any length");
    mac.update(key.id.as_bytes());
    mac.update(b":");
    mac.update(key.secret.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Whether `key` hashes to `stored`, in constant time.
pub fn matches(pepper: &[u8], key: &ApiKey<'_>, stored: &[u8; 32]) -> bool {
    digest(pepper, key).ct_eq(stored).into()
}

/// A new random key and what to store for it.
pub fn generate(pepper: &[u8]) -> GeneratedKey {
    let id = random_hex(ID_HEX);
    let secret = random_hex(SECRET_HEX);
    let key = format!("{PREFIX}{id}_{secret}");
    let hash = hex::encode(digest(
        pepper,
        &ApiKey {
            id: &id,
            secret: &secret,
        },
    ));
    GeneratedKey { key, id, hash }
}

/// Decodes a stored hash; `None` when the row is corrupt (treated as no key).
pub fn decode_hash(stored: &str) -> Option<[u8; 32]> {
    hex::decode(stored).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_match_only_their_pepper() {
        let g = generate(b"pepper");
        let key = parse(&g.key).expect("parses");
        assert_eq!(key.id, g.id);
        let stored = decode_hash(&g.hash).unwrap();
        assert!(matches(b"pepper", &key, &stored));
        assert!(!matches(b"other pepper", &key, &stored));
        let mut wrong = g.key.clone();
        let last = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(wrong.len() - 1.., last);
        assert!(!matches(b"pepper", &parse(&wrong).unwrap(), &stored));
    }

    #[test]
    fn malformed_keys_are_refused_without_lookup() {
        for raw in [
            "",
            "ihk_",
            "nope",
            "ihk_0123_abcd",
            &format!("ihk_{}_{}", "A".repeat(16), "0".repeat(64)),
        ] {
            assert!(parse(raw).is_none(), "{raw}");
        }
    }
}
