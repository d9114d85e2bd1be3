use intake::domain::AccountType;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_json};

#[tokio::test]
async fn create_get_and_list_classes() {
    let app = TestApp::spawn().await;
    let (admin_id, admin) = app.user(AccountType::ConfigAdmin).await;
    let r = app
        .post(
            "/api/object-classes/",
            Some(&admin),
            json!({ "name": "Invoices", "description": "Bills" }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let class: Value = r.json().await.unwrap();
    let id = class["id"].as_i64().unwrap();
    assert_eq!(class["name"], "Invoices");
    assert_eq!(class["description"], "Bills");
    assert_eq!(class["created_by"], admin_id);
    assert_eq!(class["modified_by"], admin_id);
    assert_eq!(class["record_count"], 0);
    assert!(class["identifier"].as_str().is_some());
    assert!(class["created_at"].as_str().unwrap().ends_with("+00:00"));

    let got: Value = app
        .get(&format!("/api/object-classes/{id}/"), Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, class);

    for n in 0..3 {
        app.post(
            "/api/object-classes/",
            Some(&admin),
            json!({ "name": format!("Class{n}") }),
        )
        .await;
    }
    let page: Value = app
        .get("/api/object-classes/?limit=2&offset=1", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total_count"], 4);
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert!(
        page["next"]
            .as_str()
            .unwrap()
            .ends_with("/api/object-classes/?limit=2&offset=3")
    );
    assert!(
        page["previous"]
            .as_str()
            .unwrap()
            .ends_with("/api/object-classes/?limit=2&offset=0")
    );
}

#[tokio::test]
async fn class_errors() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(AccountType::ConfigAdmin).await;
    let (_, internal) = app.user(AccountType::Internal).await;
    assert_json(
        app.post(
            "/api/object-classes/",
            Some(&internal),
            json!({ "name": "X" }),
        )
        .await,
        403,
        json!({ "detail": "You do not have permission to perform this action." }),
    )
    .await;
    for (body, status, expected) in [
        (
            json!({}),
            400,
            json!({ "name": ["This field is required."] }),
        ),
        (
            json!({ "name": "1abc" }),
            400,
            json!({ "name": ["Name must start with a letter."] }),
        ),
        (
            json!({ "name": "a".repeat(101) }),
            400,
            json!({ "name": ["Ensure this field has no more than 100 characters."] }),
        ),
        (
            json!({ "name": "Ok", "description": "d".repeat(501) }),
            400,
            json!({ "description": ["Ensure this field has no more than 500 characters."] }),
        ),
    ] {
        assert_json(
            app.post("/api/object-classes/", Some(&admin), body).await,
            status,
            expected,
        )
        .await;
    }
    assert_eq!(
        app.post(
            "/api/object-classes/",
            Some(&admin),
            json!({ "name": "Dup" })
        )
        .await
        .status(),
        201
    );
    assert_json(
        app.post(
            "/api/object-classes/",
            Some(&admin),
            json!({ "name": "Dup" }),
        )
        .await,
        400,
        json!({ "name": ["object class with this name already exists."] }),
    )
    .await;
    assert_json(
        app.get("/api/object-classes/99999/", Some(&admin)).await,
        404,
        json!({ "detail": "Not found." }),
    )
    .await;
    assert_json(
        app.get("/api/object-classes/abc/", Some(&admin)).await,
        404,
        json!({ "detail": "Not found." }),
    )
    .await;
}

#[tokio::test]
async fn fields_create_list_and_errors() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(AccountType::SuperAdmin).await;
    let (_, internal) = app.user(AccountType::Internal).await;
    let class: Value = app
        .post(
            "/api/object-classes/",
            Some(&admin),
            json!({ "name": "Cases" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = class["id"].as_i64().unwrap();
    let path = format!("/api/object-classes/{id}/fields/");
    let r = app
        .post(
            &path,
            Some(&admin),
            json!({ "label": "Scan", "alias": "scan", "type": "document" }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let field: Value = r.json().await.unwrap();
    assert_eq!(field["object_class"], id);
    assert_eq!(field["type"], "document");
    assert_eq!(field["alias"], "scan");

    for (body, status, expected) in [
        (
            json!({ "label": "Scan", "alias": "scan2", "type": "text" }),
            400,
            json!({ "label": ["A field with this label already exists in the object class."] }),
        ),
        (
            json!({ "label": "Other", "alias": "scan", "type": "text" }),
            400,
            json!({ "alias": ["A field with this alias already exists."] }),
        ),
        (
            json!({ "label": "T", "alias": "t", "type": "blob" }),
            400,
            json!({ "type": ["\"blob\" is not a valid choice."] }),
        ),
        (
            json!({ "label": "T", "alias": "Bad Alias", "type": "text" }),
            400,
            json!({ "alias": ["Alias must start with a lowercase letter and contain only lowercase letters, digits and underscores."] }),
        ),
    ] {
        assert_json(app.post(&path, Some(&admin), body).await, status, expected).await;
    }
    assert_json(
        app.post(
            &path,
            Some(&internal),
            json!({ "label": "T", "alias": "t", "type": "text" }),
        )
        .await,
        403,
        json!({ "detail": "You do not have permission to perform this action." }),
    )
    .await;
    assert_eq!(
        app.post("/api/object-classes/999/fields/", Some(&admin), json!({}))
            .await
            .status(),
        404
    );

    let list: Value = app.get(&path, Some(&internal)).await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["alias"], "scan");
}
