//! `request_presigned_url`'s fields (`src/uploads/presign_request.rs` and the
//! `checksums` extension it reads, `src/uploads/checksums.rs`, compiled here on their
//! own with `src/protocol.rs`) on arbitrary text frames, as the socket hands them
//! over: every refusal is one of the page's errors and serialises; an accepted request
//! holds what `docs/PROTOCOL.md` promises of it, read again from the message rather
//! than from the parser, and parses again to itself.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

#[allow(dead_code)]
#[path = "../../src/uploads/checksums.rs"]
mod checksums;
#[allow(dead_code)]
#[path = "../../src/uploads/presign_request.rs"]
mod presign_request;
#[allow(dead_code)]
#[path = "../../src/protocol.rs"]
mod protocol;

use checksums::Algorithm;
use presign_request::PresignRequest;
use protocol::{WsError, parse_client_message};

/// The page's required fields.
const REQUIRED: [&str; 7] = [
    "type",
    "temp_upload_id",
    "file_name",
    "file_size",
    "file_type",
    "object_class",
    "class_field",
];

/// A refusal is a well-formed error message followed by a valid close code, and one
/// that this parser may give, in the page's order.
fn check_error(e: &WsError, msg: &Map<String, Value>) {
    let message = e.to_message();
    assert_eq!(message["type"], "error");
    assert_eq!(message["error_code"], e.code());
    assert!(!e.detail().is_empty());
    assert_eq!(e.close_code(), 1000, "{e:?}");
    let text = message.to_string();
    assert_eq!(serde_json::from_str::<Value>(&text).ok(), Some(message));
    let missing = REQUIRED.iter().any(|f| !msg.contains_key(*f));
    let first_null = ["file_name", "file_size", "file_type"]
        .into_iter()
        .find(|f| msg.get(*f).is_some_and(Value::is_null));
    match e {
        WsError::InvalidPayload => {}
        WsError::NullField(f) => {
            assert!(!missing, "{e:?} with a field missing");
            assert_eq!(Some(f.as_str()), first_null);
        }
        WsError::EmptyField(f) => {
            assert!(!missing && first_null.is_none(), "{e:?}");
            assert!(f == "file_name" || f == "file_type", "{e:?}");
            assert!(
                msg[f.as_str()]
                    .as_str()
                    .is_some_and(|s| s.trim().is_empty())
            );
        }
        WsError::InvalidChecksums(why) => {
            assert!(!missing && first_null.is_none(), "{e:?}");
            assert!(why.starts_with("checksums."), "{e:?}");
            assert!(msg.get("checksums").is_some_and(|v| !v.is_null()));
        }
        other => panic!("not a parse error: {other:?}"),
    }
    if missing {
        assert_eq!(*e, WsError::InvalidPayload);
    } else if let Some(f) = first_null {
        assert_eq!(*e, WsError::NullField(f.into()));
    }
}

/// What the message says a primary key is: an integer, or a string of digits.
fn pk(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

/// An accepted request holds the message's fields within the documented limits.
fn check_request(req: &PresignRequest, msg: &Map<String, Value>) {
    assert!(REQUIRED.iter().all(|f| msg.contains_key(*f)));
    // temp_upload_id: a non-empty string of at most 255 bytes, or a number's text.
    match &msg["temp_upload_id"] {
        Value::String(s) => {
            assert_eq!(&req.temp_upload_id, s);
            assert!(!s.is_empty() && s.len() <= 255, "{s:?}");
        }
        Value::Number(n) => assert_eq!(req.temp_upload_id, n.to_string()),
        other => panic!("temp_upload_id {other:?} accepted"),
    }
    assert!(!req.temp_upload_id.is_empty() && req.temp_upload_id.len() <= 255);
    // file_name and file_type: strings, trimmed, not empty; the name at most 1,024
    // characters.
    for (field, value) in [("file_name", &req.file_name), ("file_type", &req.file_type)] {
        let sent = msg[field].as_str().expect("a string");
        assert_eq!(value, sent.trim());
        assert!(!value.is_empty());
        assert_eq!(value.trim(), value.as_str());
    }
    assert!(req.file_name.chars().count() <= 1024);
    // file_size: the integer sent (beyond i64: i64::MAX, "too large").
    match &msg["file_size"] {
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => assert_eq!(req.file_size, i),
            (None, Some(_)) => assert_eq!(req.file_size, i64::MAX),
            (None, None) => panic!("file_size {n} accepted"),
        },
        other => panic!("file_size {other:?} accepted"),
    }
    // object_class and class_field: an integer id or a string of digits.
    assert_eq!(Some(req.object_class), pk(&msg["object_class"]));
    assert_eq!(Some(req.class_field), pk(&msg["class_field"]));
    // checksums: present exactly when sent (not null) for a non-empty file, and then
    // of the right shape for the file's size.
    let sent = msg.get("checksums").filter(|v| !v.is_null());
    assert_eq!(
        req.checksums.is_some(),
        sent.is_some() && req.file_size > 0,
        "{req:?}"
    );
    if let (Some(c), Some(sent)) = (&req.checksums, sent) {
        let algorithm = sent["algorithm"].as_str().expect("a string");
        let algorithm = algorithm.to_ascii_lowercase();
        assert!(
            ["crc32c", "sha256", "sha-256"].contains(&algorithm.as_str()),
            "{algorithm:?}"
        );
        assert_eq!(c.algorithm.name(), algorithm.replace('-', ""));
        let digest = match c.algorithm {
            Algorithm::Crc32c => 4,
            Algorithm::Sha256 => 32,
        };
        assert_eq!(c.part_size, sent["part_size"].as_u64().expect("an integer"));
        assert!(c.part_size > 0);
        let parts = (req.file_size as u64).div_ceil(c.part_size);
        assert_eq!(c.part_count() as u64, parts);
        assert_eq!(sent["parts"].as_array().map(Vec::len), Some(c.part_count()));
        let values = (1..=parts)
            .map(|n| (c.part_value(n), &sent["parts"][(n - 1) as usize]))
            .chain(std::iter::once((c.object_value(), &sent["object"])));
        for (value, sent) in values {
            assert_eq!(Some(value), sent.as_str());
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value)
                .expect("base64");
            assert_eq!(decoded.len(), digest, "{value:?}");
        }
    }
}

/// The request written back as a message parses to itself.
fn check_round_trip(req: &PresignRequest, msg: &Map<String, Value>) {
    let mut again = Map::new();
    again.insert("type".into(), msg["type"].clone());
    again.insert("temp_upload_id".into(), req.temp_upload_id.clone().into());
    again.insert("file_name".into(), req.file_name.clone().into());
    again.insert("file_size".into(), req.file_size.into());
    again.insert("file_type".into(), req.file_type.clone().into());
    again.insert("object_class".into(), req.object_class.into());
    // A key as a string of digits where it can be one.
    let class_field = match req.class_field {
        k if k >= 0 => Value::from(k.to_string()),
        k => Value::from(k),
    };
    again.insert("class_field".into(), class_field);
    if let Some(sent) = msg.get("checksums") {
        again.insert("checksums".into(), sent.clone());
    }
    assert_eq!(PresignRequest::parse(&again).as_ref(), Ok(req));
}

fuzz_target!(|data: &[u8]| {
    // The socket only hands text frames, which are UTF-8, to the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(message) = parse_client_message(text) else {
        return;
    };
    let msg = &message.fields;
    match PresignRequest::parse(msg) {
        Ok(req) => {
            check_request(&req, msg);
            check_round_trip(&req, msg);
        }
        Err(e) => check_error(&e, msg),
    }
});
