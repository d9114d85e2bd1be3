//! The Event History API's short-string parsers on arbitrary text: API keys
//! (`src/history/keys.rs`), stored key hashes, and tenant database names
//! (`src/history/tenants.rs`), which become a segment of object keys.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "history.rs"]
mod history;

use history::HistoryError;
use history::keys;
use history::tenants::{DatabaseName, MAX_DATABASE_NAME, RESERVED_NAMES};

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(key) = keys::parse(text) {
        assert_eq!(format!("{}{}_{}", keys::PREFIX, key.id, key.secret), text);
        assert!(lower_hex(key.id, 16) && lower_hex(key.secret, 64));
        let digest = keys::digest(b"pepper", &key);
        assert!(keys::matches(b"pepper", &key, &digest));
    }
    if let Some(hash) = keys::decode_hash(text) {
        assert!(hex::encode(hash).eq_ignore_ascii_case(text));
    }
    match DatabaseName::parse(text) {
        Ok(name) => {
            let name = name.as_str();
            assert_eq!(name, text);
            assert!(name.len() <= MAX_DATABASE_NAME);
            assert!(name.starts_with(|c: char| c.is_ascii_alphabetic()));
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            assert!(!RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name)));
        }
        Err(HistoryError::Invalid(text)) => assert!(!text.is_empty()),
        Err(e) => panic!("not a validation error: {e:?}"),
    }
});
