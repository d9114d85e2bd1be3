//! Record history (`GET /api/object-records/{id}/history/`): every record has one
//! `record_created` event naming what made it (its upload, or the REST user), a
//! retried records batch writes no second one, and the history is readable by
//! whoever may read the record.

use intake::domain::{AccountType, EventSource};
use intake_archive::testkit;
use serde_json::{Value, json};

use crate::helpers::socket::Socket;
use crate::helpers::{TestApp, assert_json};

async fn history(app: &TestApp, token: &str, record: i64, query: &str) -> Value {
    let r = app
        .get(
            &format!("/api/object-records/{record}/history/{query}"),
            Some(token),
        )
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// How many `record_created` events each of `ids` has, straight from the table.
async fn created_counts(app: &TestApp, ids: &[i64]) -> Vec<i64> {
    let mut out = Vec::new();
    for id in ids {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) AS n FROM record_events WHERE record_id = $1 AND event_type = 'record_created'",
        )
        .bind(*id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        out.push(n);
    }
    out
}

#[tokio::test]
async fn every_record_of_an_upload_has_one_created_event_pointing_at_it() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&token).await;
    let upload = app.create_upload(&token, class, field).await;
    let names = ["a.txt", "docs/b.txt", "docs/deep/c.txt", "d.txt"];
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (*n, n.as_bytes())).collect();
    let zip = testkit::zip_of(&files);
    let mut sock = Socket::connect(&app, &token, &upload).await;
    let ready = sock.upload(&app, class, field, "batch.zip", &zip).await;
    let msgs = sock.until_final().await;
    assert_eq!(
        msgs.last().unwrap()["message"]["status"],
        "success",
        "{msgs:#?}"
    );
    let session = ready["message"]["upload_id"].as_str().unwrap().to_string();

    let ids = app.state.db.upload_record_ids(&upload).await.unwrap();
    assert_eq!(ids.len(), names.len());
    assert_eq!(created_counts(&app, &ids).await, vec![1; names.len()]);
    let mut event_ids = Vec::new();
    for (entry, id) in ids.iter().enumerate() {
        let page = history(&app, &token, *id, "").await;
        let keys: Vec<&str> = page
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for k in [
            "limit",
            "offset",
            "total_count",
            "filtered_count",
            "next",
            "previous",
            "results",
        ] {
            assert!(keys.contains(&k), "{k} missing from {page}");
        }
        assert_eq!(page["total_count"], 1);
        assert_eq!(page["filtered_count"], 1);
        assert_eq!(page["offset"], 0);
        assert!(page["next"].is_null() && page["previous"].is_null());
        let results = page["results"].as_array().unwrap();
        assert_eq!(results.len(), 1);
        let e = &results[0];
        assert!(uuid::Uuid::parse_str(e["event_id"].as_str().unwrap()).is_ok());
        assert!(
            chrono::DateTime::parse_from_rfc3339(e["event_datetime"].as_str().unwrap()).is_ok()
        );
        assert_eq!(e["event_type"], "record_created");
        assert_eq!(e["source_type"], "system");
        assert_eq!(e["source_name"], "upload");
        assert_eq!(e["source_id"], upload.as_str());
        assert_eq!(
            e["source_info"],
            json!({
                "upload_id": upload,
                "file_session": session,
                "file_name": "batch.zip",
                "entry_index": entry,
                "entry_name": names[entry],
            })
        );
        let base = names[entry].rsplit('/').next().unwrap();
        assert_eq!(
            e["event_data"],
            json!({ "object_name": base, "object_class": class, "owner": user_id })
        );
        event_ids.push(e["event_id"].clone());
    }

    // A retried batch (a rescued job re-running `creating_records`) inserts no
    // record and no event.
    let batch: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| intake::db::records::NewUploadRecord {
            object_name: n.to_string(),
            field_values: serde_json::Map::new(),
            entry_index: i as i64,
            entry_name: n.to_string(),
        })
        .collect();
    let source = EventSource::upload(&upload, &session, "batch.zip");
    let new = app
        .state
        .db
        .insert_upload_records(class, user_id, &session, &batch, &source)
        .await
        .unwrap();
    assert_eq!(new, 0);
    assert_eq!(app.state.db.upload_record_ids(&upload).await.unwrap(), ids);
    assert_eq!(created_counts(&app, &ids).await, vec![1; names.len()]);
    for (id, event_id) in ids.iter().zip(&event_ids) {
        assert_eq!(
            history(&app, &token, *id, "").await["results"][0]["event_id"],
            *event_id
        );
    }
}

#[tokio::test]
async fn a_record_made_over_rest_gets_a_user_event() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(AccountType::ConfigAdmin).await;
    let (user_id, user) = app.user(AccountType::Internal).await;
    let (class, _) = app.class_with_document_field(&admin).await;
    let id = app.create_record(&user, class, "Ada").await;
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();

    let page = history(&app, &user, id, "").await;
    assert_eq!(page["total_count"], 1);
    assert_eq!(page["filtered_count"], 1);
    let e = &page["results"][0];
    assert_eq!(e["event_type"], "record_created");
    assert_eq!(e["source_type"], "user");
    assert_eq!(e["source_name"], email.as_str());
    assert_eq!(e["source_id"], user_id.to_string());
    assert_eq!(
        e["source_info"],
        json!({ "user_id": user_id, "account_type": "internal" })
    );
    assert_eq!(
        e["event_data"],
        json!({ "object_name": "Ada", "object_class": class, "owner": user_id })
    );
    assert_eq!(created_counts(&app, &[id]).await, vec![1]);

    // The admin reads it too (same rule as the record); the filter and paging.
    let page = history(&app, &admin, id, "?event_type=record_created&limit=1").await;
    assert_eq!(page["limit"], 1);
    assert_eq!(page["filtered_count"], 1);
    assert_eq!(page["results"].as_array().unwrap().len(), 1);
    let page = history(&app, &admin, id, "?offset=1").await;
    assert_eq!(page["total_count"], 1);
    assert_eq!(page["results"], json!([]));
    assert!(page["previous"].as_str().unwrap().ends_with(&format!(
        "/api/object-records/{id}/history/?limit=50&offset=0"
    )));
    assert_json(
        app.get(
            &format!("/api/object-records/{id}/history/?event_type=record_deleted"),
            Some(&admin),
        )
        .await,
        400,
        json!({ "event_type": ["Select a valid choice. record_deleted is not one of the available choices."] }),
    )
    .await;
}

#[tokio::test]
async fn history_is_read_like_the_record() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(AccountType::ConfigAdmin).await;
    let (ext_id, ext) = app.user(AccountType::External).await;
    let (_, other_ext) = app.user(AccountType::External).await;
    let (class, _) = app.class_with_document_field(&admin).await;
    app.grant(&admin, class, ext_id).await;
    let id = app.create_record(&ext, class, "mine").await;
    let path = format!("/api/object-records/{id}/history/");

    // (caller, path, status, body): the record's own rules, row by row.
    let not_found = json!({ "detail": "Not found." });
    let rows: Vec<(Option<&str>, String, u16, Option<Value>)> = vec![
        (Some(&ext), path.clone(), 200, None),
        (Some(&admin), path.clone(), 200, None),
        (Some(&other_ext), path.clone(), 404, Some(not_found.clone())),
        (
            Some(&admin),
            "/api/object-records/424242/history/".into(),
            404,
            Some(not_found.clone()),
        ),
        (
            Some(&admin),
            "/api/object-records/abc/history/".into(),
            404,
            Some(not_found.clone()),
        ),
        (
            None,
            path.clone(),
            401,
            Some(json!({ "detail": "Authentication credentials were not provided." })),
        ),
        (Some("not-a-token"), path.clone(), 401, None),
    ];
    for (token, path, status, body) in rows {
        let detail_path = path.replace("history/", "");
        let r = app.get(&path, token).await;
        assert_eq!(r.status().as_u16(), status, "{path} as {token:?}");
        // Same answer as reading the record itself.
        assert_eq!(
            app.get(&detail_path, token).await.status().as_u16(),
            status,
            "{detail_path} as {token:?}"
        );
        if let Some(body) = body {
            assert_eq!(r.json::<Value>().await.unwrap(), body, "{path}");
        }
    }
}
