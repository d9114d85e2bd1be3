//! The upload socket's client-message parser (`src/protocol.rs`, compiled here on its
//! own) on arbitrary text frames: the envelope (`type`) and `complete_multipart_upload`'s
//! parts. Every refusal is one of the page's errors and serialises; accepted parts
//! hold what the socket relies on. (`request_presigned_url`'s fields are parsed by
//! `uploads::presign_request`: the `presign_request` target.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[allow(dead_code)]
#[path = "../../src/protocol.rs"]
mod protocol;

use protocol::{MAX_PARTS, WsError, parse_client_message, parse_parts};

/// A refusal is a well-formed error message followed by a valid close code.
fn check_error(e: &WsError) {
    let message = e.to_message();
    assert_eq!(message["type"], "error");
    assert_eq!(message["error_code"], e.code());
    assert!(!e.detail().is_empty());
    assert!(matches!(e.close_code(), 1000 | 1008), "{e:?}");
    let text = message.to_string();
    assert_eq!(serde_json::from_str::<Value>(&text).ok(), Some(message));
}

fuzz_target!(|data: &[u8]| {
    // The socket only hands text frames, which are UTF-8, to the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let message = match parse_client_message(text) {
        Ok(m) => m,
        Err(e) => return check_error(&e),
    };
    assert_eq!(
        message.fields.get("type").and_then(Value::as_str),
        Some(message.kind.as_str())
    );
    if let Some(parts) = parse_parts(message.fields.get("parts")) {
        assert!(!parts.is_empty() && parts.len() as u64 <= MAX_PARTS);
        assert!(parts.windows(2).all(|w| w[0].0 < w[1].0), "sorted, unique");
        assert!(
            parts
                .iter()
                .all(|(n, tag)| (1..=MAX_PARTS as i32).contains(n) && !tag.is_empty())
        );
    }
});
