//! The Event History API's envelope parser (`src/history/events.rs`) on arbitrary
//! JSON: an accepted event is exactly the body split in two, with the ids, time and
//! file reference the handlers store.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[path = "history.rs"]
mod history;

use history::HistoryError;
use history::events::{MAX_ID_CHARS, parse_envelope};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let event = match parse_envelope(body.clone()) {
        Ok(event) => event,
        Err(HistoryError::Invalid(text)) => return assert!(!text.is_empty()),
        Err(e) => panic!("not a validation error: {e:?}"),
    };
    // Envelope and detail together are the body as sent.
    let mut whole = event.envelope.as_object().expect("an object").clone();
    assert!(!whole.contains_key("detail"));
    whole.insert("detail".into(), event.detail.clone());
    assert_eq!(Value::Object(whole), body);
    let detail = event.detail.as_object().expect("detail is an object");
    for id in [&event.event_type_id, &event.record_id] {
        assert!(!id.trim().is_empty() && id.chars().count() <= MAX_ID_CHARS);
    }
    assert_eq!(
        detail["event_id"].as_str().map(str::to_ascii_lowercase),
        Some(event.event_id.to_string())
    );
    let time = chrono::DateTime::parse_from_rfc3339(detail["event_time"].as_str().unwrap())
        .expect("event_time parses");
    assert_eq!(time.timestamp_millis(), event.event_time_ms);
    // The file reference is the one item that has a `file_id`.
    let references: Vec<&Value> = detail
        .get("event_data")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(|i| i.get("file_id")).collect())
        .unwrap_or_default();
    match event.file_id {
        None => assert!(references.is_empty()),
        Some(id) => {
            assert_eq!(references.len(), 1);
            assert_eq!(
                references[0]
                    .as_str()
                    .and_then(|s| uuid::Uuid::parse_str(s).ok()),
                Some(id)
            );
        }
    }
});
