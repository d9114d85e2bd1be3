use intake::domain::AccountType;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_json};

async fn class_with_fields(app: &TestApp, admin: &str) -> i64 {
    let class: Value = app
        .post(
            "/api/object-classes/",
            Some(admin),
            json!({ "name": "People" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = class["id"].as_i64().unwrap();
    for (label, alias, t) in [
        ("Name", "full_name", "text"),
        ("Age", "age", "integer"),
        ("Doc", "doc", "document"),
    ] {
        let r = app
            .post(
                &format!("/api/object-classes/{id}/fields/"),
                Some(admin),
                json!({ "label": label, "alias": alias, "type": t }),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    id
}

#[tokio::test]
async fn create_list_and_get_records() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(AccountType::ConfigAdmin).await;
    let (user_id, user) = app.user(AccountType::Internal).await;
    let class = class_with_fields(&app, &admin).await;
    let r = app
        .post(
            "/api/object-records/",
            Some(&user),
            json!({ "object_name": "Ada", "object_class": class, "field_full_name": "Ada Lovelace", "field_age": 36 }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let rec: Value = r.json().await.unwrap();
    assert_eq!(rec["object_name"], "Ada");
    assert_eq!(rec["owner"], user_id);
    assert_eq!(rec["field_full_name"], "Ada Lovelace");
    assert_eq!(rec["field_age"], 36);
    let id = rec["id"].as_i64().unwrap();

    for n in 0..2 {
        app.post(
            "/api/object-records/",
            Some(&user),
            json!({ "object_name": format!("R{n}"), "object_class": class }),
        )
        .await;
    }
    let page: Value = app
        .get(
            &format!("/api/object-records/?object_class={class}&limit=2"),
            Some(&user),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total_count"], 3);
    assert_eq!(page["limit"], 2);
    assert_eq!(page["offset"], 0);
    assert!(page["previous"].is_null());
    assert!(
        page["next"]
            .as_str()
            .unwrap()
            .ends_with(&format!("?object_class={class}&limit=2&offset=2"))
    );
    assert_eq!(page["results"][0], rec);

    let got: Value = app
        .get(&format!("/api/object-records/{id}/"), Some(&user))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, rec);
    let class_now: Value = app
        .get(&format!("/api/object-classes/{class}/"), Some(&user))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(class_now["record_count"], 3);
}

#[tokio::test]
async fn record_errors_and_permissions() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(AccountType::ConfigAdmin).await;
    let (ext_id, ext) = app.user(AccountType::External).await;
    let (_, other_ext) = app.user(AccountType::External).await;
    let class = class_with_fields(&app, &admin).await;
    for (body, status, expected) in [
        (
            json!({}),
            400,
            json!({ "object_class": ["This field is required."], "object_name": ["This field is required."] }),
        ),
        (
            json!({ "object_name": "x", "object_class": 99999 }),
            400,
            json!({ "object_class": ["Invalid pk \"99999\" - object does not exist."] }),
        ),
        (
            json!({ "object_name": "x", "object_class": "abc" }),
            400,
            json!({ "object_class": ["Incorrect type. Expected pk value, received str."] }),
        ),
        (
            json!({ "object_name": "x".repeat(256), "object_class": class }),
            400,
            json!({ "object_name": ["Ensure this field has no more than 255 characters."] }),
        ),
        (
            json!({ "object_name": "x", "object_class": class, "field_age": "old", "field_nope": 1 }),
            400,
            json!({ "field_age": ["Incorrect type for a integer field, received str."], "field_nope": ["No such field in the object class."] }),
        ),
    ] {
        assert_json(
            app.post("/api/object-records/", Some(&admin), body).await,
            status,
            expected,
        )
        .await;
    }
    assert_json(
        app.post(
            "/api/object-records/",
            Some(&ext),
            json!({ "object_name": "x", "object_class": class }),
        )
        .await,
        400,
        json!({ "object_class": ["You do not have permission to use this object class."] }),
    )
    .await;
    // Granted, the external user may create; others still may not read it.
    app.grant(&admin, class, ext_id).await;
    let id = app.create_record(&ext, class, "x").await;
    assert_eq!(
        app.get(&format!("/api/object-records/{id}/"), Some(&ext))
            .await
            .status(),
        200
    );
    assert_json(
        app.get(&format!("/api/object-records/{id}/"), Some(&other_ext))
            .await,
        404,
        json!({ "detail": "Not found." }),
    )
    .await;
    assert_eq!(
        app.get(
            &format!("/api/object-records/?object_class={class}"),
            Some(&other_ext)
        )
        .await
        .status(),
        403
    );
    assert_json(
        app.get("/api/object-records/424242/", Some(&admin)).await,
        404,
        json!({ "detail": "Not found." }),
    )
    .await;
}
