use intake::domain::AccountType;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_json};

#[tokio::test]
async fn login_refresh_and_me() {
    let app = TestApp::spawn().await;
    app.create_user(
        "ada@example.com",
        "correct horse battery",
        AccountType::Internal,
    )
    .await;
    let r = app
        .post(
            "/api/auth/token/",
            None,
            json!({ "email": "ADA@example.com", "password": "correct horse battery" }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    let access = tokens["access"].as_str().unwrap();
    let refresh = tokens["refresh"].as_str().unwrap();

    let me: Value = app
        .get("/api/users/me/", Some(access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["account_type"], "internal");

    // Bearer works as well as JWT.
    let r = app
        .client
        .get(format!("{}/api/users/me/", app.base))
        .header("Authorization", format!("Bearer {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = app
        .post(
            "/api/auth/token/refresh/",
            None,
            json!({ "refresh": refresh }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let new_access: Value = r.json().await.unwrap();
    assert_eq!(
        app.get("/api/users/me/", new_access["access"].as_str())
            .await
            .status(),
        200
    );

    // An access token is not a refresh token, and vice versa.
    let r = app
        .post(
            "/api/auth/token/refresh/",
            None,
            json!({ "refresh": access }),
        )
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(app.get("/api/users/me/", Some(refresh)).await.status(), 401);
}

#[tokio::test]
async fn login_errors() {
    let app = TestApp::spawn().await;
    app.create_user(
        "bob@example.com",
        "correct horse battery",
        AccountType::Internal,
    )
    .await;
    for (body, status, expected) in [
        (
            json!({ "email": "bob@example.com", "password": "wrong" }),
            401,
            json!({ "detail": "No active account found with the given credentials" }),
        ),
        (
            json!({ "email": "nobody@example.com", "password": "wrong" }),
            401,
            json!({ "detail": "No active account found with the given credentials" }),
        ),
        (
            json!({ "password": null }),
            400,
            json!({ "email": ["This field is required."], "password": ["This field may not be null."] }),
        ),
    ] {
        assert_json(
            app.post("/api/auth/token/", None, body).await,
            status,
            expected,
        )
        .await;
    }
    let r = app
        .client
        .post(format!("{}/api/auth/token/", app.base))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error - ")
    );
    assert_json(
        app.post("/api/auth/token/", None, json!([1, 2])).await,
        400,
        json!({ "non_field_errors": ["Invalid data. Expected a dictionary, but got list."] }),
    )
    .await;
}

#[tokio::test]
async fn missing_and_bad_tokens_are_401() {
    let app = TestApp::spawn().await;
    assert_json(
        app.get("/api/users/ws-auth/", None).await,
        401,
        json!({ "detail": "Authentication credentials were not provided." }),
    )
    .await;
    assert_json(
        app.get("/api/users/ws-auth/", Some("garbage")).await,
        401,
        json!({ "detail": "Given token not valid for any token type", "code": "token_not_valid" }),
    )
    .await;
}

#[tokio::test]
async fn ws_tickets_are_distinct_uuids_stored_hashed() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(AccountType::Internal).await;
    let a = app.ticket(&token).await;
    let b = app.ticket(&token).await;
    assert_ne!(a, b);
    assert!(uuid::Uuid::parse_str(&a).is_ok());
    // The raw ticket is never stored; it is spent once.
    let user = app
        .state
        .db
        .consume_ticket(&intake::auth::ticket_hash(&a))
        .await
        .unwrap();
    assert!(user.is_some());
    let again = app
        .state
        .db
        .consume_ticket(&intake::auth::ticket_hash(&a))
        .await
        .unwrap();
    assert!(again.is_none());
    assert!(app.state.db.consume_ticket(&a).await.unwrap().is_none());
}

#[tokio::test]
async fn expired_tickets_are_refused() {
    let app = TestApp::spawn().await;
    let (id, _) = app.user(AccountType::Internal).await;
    let hash = intake::auth::ticket_hash("11111111-1111-4111-8111-111111111111");
    app.state.db.create_ticket(&hash, id, -1).await.unwrap();
    assert!(app.state.db.consume_ticket(&hash).await.unwrap().is_none());
}
