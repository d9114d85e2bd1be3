use serde_json::json;

use crate::helpers::{TestApp, assert_json};

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let app = TestApp::spawn().await;
    assert_json(
        app.get("/healthz", None).await,
        200,
        json!({ "status": "ok" }),
    )
    .await;
    assert_json(
        app.get("/readyz", None).await,
        200,
        json!({ "status": "ok", "database": "ok", "object_store": "ok" }),
    )
    .await;
}

#[tokio::test]
async fn unknown_route_is_json_404_and_wrong_method_is_405() {
    let app = TestApp::spawn().await;
    assert_json(
        app.get("/api/nope/", None).await,
        404,
        json!({ "detail": "Not found." }),
    )
    .await;
    let r = app
        .client
        .delete(format!("{}/api/auth/token/", app.base))
        .send()
        .await
        .unwrap();
    assert_json(
        r,
        405,
        json!({ "detail": "Method \"DELETE\" not allowed." }),
    )
    .await;
}
