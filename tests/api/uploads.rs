use intake::domain::AccountType;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_json};

#[tokio::test]
async fn create_upload_returns_uuid() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&admin).await;
    let (_, user) = app.user(AccountType::Internal).await;
    let r = app
        .post(
            "/api/object-records/uploads/",
            Some(&user),
            json!({ "object_class": class, "object_class_field": field }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body.as_object().unwrap().len(), 1);
    let id = body["upload_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);

    let status: Value = app
        .get(&format!("/api/object-records/uploads/{id}/"), Some(&user))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "open");
    assert_eq!(status["record_count"], 0);
    // Only the creator sees it.
    assert_eq!(
        app.get(&format!("/api/object-records/uploads/{id}/"), Some(&admin))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn create_upload_errors() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&admin).await;
    let (other_class, _) = app.class_with_document_field(&admin).await;
    let text_field: Value = app
        .post(
            &format!("/api/object-classes/{class}/fields/"),
            Some(&admin),
            json!({ "label": "Note", "alias": "note_x", "type": "text" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let text_field = text_field["id"].as_i64().unwrap();
    let (_, ext) = app.user(AccountType::External).await;
    let cases = [
        (
            json!({}),
            json!({ "object_class": ["This field is required."], "object_class_field": ["This field is required."] }),
        ),
        (
            json!({ "object_class": null, "object_class_field": null }),
            json!({ "object_class": ["This field may not be null."], "object_class_field": ["This field may not be null."] }),
        ),
        (
            json!({ "object_class": "abc", "object_class_field": field }),
            json!({ "object_class": ["Incorrect type. Expected pk value, received str."] }),
        ),
        (
            json!({ "object_class": class, "object_class_field": [1] }),
            json!({ "object_class_field": ["Incorrect type. Expected pk value, received list."] }),
        ),
        (
            json!({ "object_class": 99999, "object_class_field": field }),
            json!({ "object_class": ["Invalid pk \"99999\" - object does not exist."] }),
        ),
        (
            json!({ "object_class": class, "object_class_field": 99999 }),
            json!({ "object_class_field": ["Invalid pk \"99999\" - object does not exist."] }),
        ),
        (
            json!({ "object_class": other_class, "object_class_field": field }),
            json!({ "object_class_field": ["The field does not belong to the object class."] }),
        ),
        (
            json!({ "object_class": class, "object_class_field": text_field }),
            json!({ "object_class_field": ["The field must be of type document."] }),
        ),
    ];
    for (body, expected) in cases {
        assert_json(
            app.post("/api/object-records/uploads/", Some(&admin), body)
                .await,
            400,
            expected,
        )
        .await;
    }
    assert_json(
        app.post(
            "/api/object-records/uploads/",
            Some(&ext),
            json!({ "object_class": class, "object_class_field": field }),
        )
        .await,
        400,
        json!({ "object_class": ["You do not have permission to use this object class."] }),
    )
    .await;
    assert_json(
        app.post(
            "/api/object-records/uploads/",
            None,
            json!({ "object_class": class, "object_class_field": field }),
        )
        .await,
        401,
        json!({ "detail": "Authentication credentials were not provided." }),
    )
    .await;
}
