//! The Event History API: `GET /api/files/upload-url` per the seed page (every error
//! row with its exact status and body), tenants, events and their files, tenant
//! isolation, idempotency, key revocation, `serve --only` and the admin CLI.

use intake::app::Application;
use intake::http::Routes;
use reqwest::{Method, RequestBuilder, Response};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_json, test_settings};

const UPLOAD_URL: &str = "/api/files/upload-url";
const CREATE_EVENT: &str = "/api/event-bridge/create-event";
const EVENTS: &str = "/api/history/events";

const UNAUTHORIZED_KEY: &str = "Unauthorized API Key.";

/// Asserts the status and the `{"detail": …}` body every error (and most
/// successes) of this API answer with.
async fn assert_detail(r: Response, status: u16, detail: &str) {
    assert_json(r, status, json!({ "detail": detail })).await;
}

/// A request to the app with optional `X-API-Key` and `X-Client-Id`.
fn call(
    base: &str,
    method: Method,
    path: &str,
    key: Option<&str>,
    client: Option<&str>,
) -> RequestBuilder {
    let mut req = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(k) = key {
        req = req.header("X-API-Key", k);
    }
    if let Some(c) = client {
        req = req.header("X-Client-Id", c);
    }
    req
}

/// [`call`] without a body, sent.
async fn send(
    base: &str,
    method: Method,
    path: &str,
    key: Option<&str>,
    client: Option<&str>,
) -> Response {
    call(base, method, path, key, client).send().await.unwrap()
}

/// The seed page's request: GET with `Content-Type: application/json` and both headers.
async fn get_upload_url(app: &TestApp, key: Option<&str>, client: Option<&str>) -> Response {
    call(&app.base, Method::GET, UPLOAD_URL, key, client)
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap()
}

async fn api_key(app: &TestApp) -> String {
    app.state.history.create_api_key("tests").await.unwrap()
}

/// A test app with an API key and the tenant `alx_demo`: (app, key, client id).
async fn demo_tenant() -> (TestApp, String, String) {
    let app = TestApp::spawn().await;
    let key = api_key(&app).await;
    let client = tenant(&app, &key, "alx_demo").await;
    (app, key, client)
}

/// Creates a tenant; its client id.
async fn tenant(app: &TestApp, key: &str, database_name: &str) -> String {
    let r = call(&app.base, Method::POST, "/api/initialize-tenant", Some(key), None)
        .json(&json!({ "database_name": database_name, "client_label": format!("{database_name} label") }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["database_name"], database_name);
    body["client_id"].as_str().unwrap().to_string()
}

/// Gets an upload URL and PUTs `content` to it with a plain client; the file id.
async fn upload(app: &TestApp, key: &str, client: &str, content: &[u8]) -> String {
    let r = get_upload_url(app, Some(key), Some(client)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let put = reqwest::Client::new()
        .put(body["upload_url"].as_str().unwrap())
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    body["file_id"].as_str().unwrap().to_string()
}

fn envelope(
    event_id: &str,
    record_id: &str,
    event_type_id: Value,
    time: &str,
    event_data: Value,
) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Catalyst Record Event",
        "source": "catalyst.records",
        "account": "123456789012",
        "time": time,
        "region": "eu-west-2",
        "resources": [],
        "detail": {
            "event_id": event_id,
            "event_time": time,
            "event_type_id": event_type_id,
            "record_id": record_id,
            "source_id": "42",
            "source_type_id": "user",
            "event_data": event_data,
        }
    })
}

/// An event of type `"t"` at a fixed time.
fn event(event_id: &str, record_id: &str, event_data: Value) -> Value {
    envelope(
        event_id,
        record_id,
        json!("t"),
        "2024-05-01T10:00:00Z",
        event_data,
    )
}

/// An event referencing `file` that `client` must be refused for not having it; the event.
async fn refused_file_event(app: &TestApp, key: &str, client: &str, file: &str) -> Value {
    let e = event(
        &uuid::Uuid::new_v4().to_string(),
        "R",
        json!([{ "file_id": file }]),
    );
    let r = create_event(app, key, client, &e).await;
    assert_detail(r, 400, &format!("File '{file}' not found.")).await;
    e
}

async fn create_event(app: &TestApp, key: &str, client: &str, body: &Value) -> Response {
    call(
        &app.base,
        Method::POST,
        CREATE_EVENT,
        Some(key),
        Some(client),
    )
    .json(body)
    .send()
    .await
    .unwrap()
}

async fn list(app: &TestApp, key: &str, client: &str, query: &str) -> Value {
    let r = send(
        &app.base,
        Method::GET,
        &format!("{EVENTS}{query}"),
        Some(key),
        Some(client),
    )
    .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn event_file(app: &TestApp, key: &str, client: &str, event_id: &str) -> Response {
    send(
        &app.base,
        Method::GET,
        &format!("{EVENTS}/{event_id}/file"),
        Some(key),
        Some(client),
    )
    .await
}

async fn delete_tenant(app: &TestApp, key: Option<&str>, client: Option<&str>) -> Response {
    send(&app.base, Method::DELETE, "/api/delete-tenant", key, client).await
}

/// Whether `key` exists in the app's bucket.
async fn stored(app: &TestApp, key: &str) -> bool {
    app.state.store.head(key).await.unwrap().is_some()
}

/// Drops a tenant's database behind the API's back (what "a tenant whose database is
/// missing" means here) and makes the app forget what it cached.
async fn drop_database(app: &TestApp, name: &str) {
    sqlx::query("DELETE FROM history_databases WHERE name = $1")
        .bind(name)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    app.state.history.forget_cached();
}

// --- GET /api/files/upload-url: one test per row of the seed page's error table ---

#[tokio::test]
async fn upload_url_without_api_key_is_401() {
    let (app, _, client) = demo_tenant().await;
    // The key is checked first: no tenant information leaks without one.
    for (key, client) in [
        (None, Some(client.as_str())),
        (None, None),
        (None, Some("no-such-client")),
        (Some(""), Some(client.as_str())),
    ] {
        assert_detail(
            get_upload_url(&app, key, client).await,
            401,
            UNAUTHORIZED_KEY,
        )
        .await;
    }
}

#[tokio::test]
async fn upload_url_with_wrong_api_key_is_401() {
    let (app, key, client) = demo_tenant().await;
    // Well-formed but unknown, malformed, and a real key with its secret altered.
    let unknown = format!("ihk_{}_{}", "0".repeat(16), "0".repeat(64));
    let mut altered = key.clone();
    let last = if altered.ends_with('a') { "b" } else { "a" };
    altered.replace_range(altered.len() - 1.., last);
    for wrong in [unknown.as_str(), "not-a-key", altered.as_str()] {
        for client in [Some(client.as_str()), None] {
            let r = get_upload_url(&app, Some(wrong), client).await;
            assert_detail(r, 401, UNAUTHORIZED_KEY).await;
        }
    }
}

#[tokio::test]
async fn upload_url_without_client_id_is_400_unauthorized_client() {
    let app = TestApp::spawn().await;
    let key = api_key(&app).await;
    let expected = json!({ "detail": "Unauthorized Client." });
    assert_json(
        get_upload_url(&app, Some(&key), None).await,
        400,
        expected.clone(),
    )
    .await;
    assert_json(
        get_upload_url(&app, Some(&key), Some("")).await,
        400,
        expected,
    )
    .await;
}

#[tokio::test]
async fn upload_url_for_unknown_client_is_400_failed_to_connect() {
    let app = TestApp::spawn().await;
    let key = api_key(&app).await;
    tenant(&app, &key, "alx_demo").await;
    for client in ["no-such-client", &uuid::Uuid::new_v4().to_string()] {
        assert_detail(
            get_upload_url(&app, Some(&key), Some(client)).await,
            400,
            "Failed to connect to tenant db.",
        )
        .await;
    }
}

#[tokio::test]
async fn upload_url_for_tenant_without_database_is_400_tenant_not_found() {
    let (app, key, client) = demo_tenant().await;
    drop_database(&app, "alx_demo").await;
    let expected = json!({ "detail": "'alx_demo' tenant not found in database." });
    assert_json(
        get_upload_url(&app, Some(&key), Some(&client)).await,
        400,
        expected.clone(),
    )
    .await;
    // The same row answers event creation and listing.
    let body = event(&uuid::Uuid::new_v4().to_string(), "R1", json!([]));
    assert_json(
        create_event(&app, &key, &client, &body).await,
        400,
        expected.clone(),
    )
    .await;
    let r = send(&app.base, Method::GET, EVENTS, Some(&key), Some(&client)).await;
    assert_json(r, 400, expected).await;
}

#[tokio::test]
async fn upload_url_with_any_other_method_is_405() {
    let (app, key, client) = demo_tenant().await;
    for method in [
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        // Even without credentials: the method is refused before anything else.
        for (k, c) in [(Some(key.as_str()), Some(client.as_str())), (None, None)] {
            let r = send(&app.base, method.clone(), UPLOAD_URL, k, c).await;
            assert_detail(r, 405, &format!("Method \"{method}\" not allowed.")).await;
        }
    }
    let r = send(
        &app.base,
        Method::HEAD,
        UPLOAD_URL,
        Some(&key),
        Some(&client),
    )
    .await;
    assert_eq!(r.status(), 405);
}

// --- The success row and the file's way through the system ---

#[tokio::test]
async fn upload_url_accepts_a_put_and_the_file_is_attached_to_an_event() {
    let (app, key, client) = demo_tenant().await;

    let r = get_upload_url(&app, Some(&key), Some(&client)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["file_id", "upload_url"]);
    let file_id = body["file_id"].as_str().unwrap().to_string();
    let parsed = uuid::Uuid::parse_str(&file_id).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    assert_eq!(parsed.to_string(), file_id);
    let upload_url = body["upload_url"].as_str().unwrap();
    let url = url::Url::parse(upload_url).unwrap();
    assert_eq!(
        url.path(),
        format!("/{}/alx_demo/{file_id}", app.state.settings.s3.bucket)
    );
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["X-Amz-Expires"], "900");
    // Neither length nor type is bound: the caller did not tell them.
    assert_eq!(query["X-Amz-SignedHeaders"], "host");

    // Bound to PUT: a GET or POST with the same signature is refused.
    let plain = reqwest::Client::new();
    // (403 from the embedded store and AWS; Garage answers a POST with 400.)
    assert_eq!(plain.get(upload_url).send().await.unwrap().status(), 403);
    let post = plain
        .post(upload_url)
        .body("x")
        .send()
        .await
        .unwrap()
        .status();
    assert!(post == 403 || post == 400, "{post}");

    let content = b"%PDF-1.4 a small document".to_vec();
    let put = plain
        .put(upload_url)
        .header("Content-Type", "application/pdf")
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    let stored = app
        .s3
        .get_bytes(&format!("alx_demo/{file_id}"))
        .await
        .unwrap();
    assert_eq!(stored.as_ref(), content.as_slice());

    let event_id = uuid::Uuid::new_v4().to_string();
    let data = json!([{ "field": "contract", "new_value": "signed" }, { "file_id": file_id, "name": "contract.pdf" }]);
    let body = envelope(
        &event_id,
        "REC-1",
        json!(12),
        "2024-05-01T10:00:00.123Z",
        data.clone(),
    );
    assert_detail(
        create_event(&app, &key, &client, &body).await,
        201,
        "Event created.",
    )
    .await;

    let page = list(&app, &key, &client, "").await;
    assert_eq!(page["total_count"], 1);
    let event = &page["results"][0];
    assert_eq!(event["event_id"], event_id);
    assert_eq!(event["event_time"], "2024-05-01T10:00:00.123Z");
    assert_eq!(event["event_type_id"], 12);
    assert_eq!(event["record_id"], "REC-1");
    assert_eq!(event["source_id"], "42");
    assert_eq!(event["source_type_id"], "user");
    assert_eq!(event["event_data"], data);
    assert_eq!(event["file_id"], file_id);

    let r = event_file(&app, &key, &client, &event_id).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["file_id"], file_id);
    let downloaded = plain
        .get(body["download_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(downloaded.status(), 200);
    assert_eq!(
        downloaded.bytes().await.unwrap().as_ref(),
        content.as_slice()
    );
}

#[tokio::test]
async fn upload_url_lifetime_comes_from_settings() {
    let app =
        TestApp::spawn_with(|s| s.history.upload_url_ttl = std::time::Duration::from_secs(120))
            .await;
    let key = api_key(&app).await;
    let client = tenant(&app, &key, "alx_demo").await;
    let body: Value = get_upload_url(&app, Some(&key), Some(&client))
        .await
        .json()
        .await
        .unwrap();
    let url = url::Url::parse(body["upload_url"].as_str().unwrap()).unwrap();
    assert!(
        url.query_pairs()
            .any(|(k, v)| k == "X-Amz-Expires" && v == "120")
    );
    // Every call makes a new file id.
    let again: Value = get_upload_url(&app, Some(&key), Some(&client))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(again["file_id"], body["file_id"]);
}

// --- Events ---

#[tokio::test]
async fn event_referencing_a_file_never_uploaded_or_of_another_tenant_is_refused() {
    let app = TestApp::spawn().await;
    let key = api_key(&app).await;
    let alpha = tenant(&app, &key, "alpha").await;
    let beta = tenant(&app, &key, "beta").await;

    // A URL was issued, but nothing was PUT.
    let body: Value = get_upload_url(&app, Some(&key), Some(&alpha))
        .await
        .json()
        .await
        .unwrap();
    let never = body["file_id"].as_str().unwrap().to_string();
    refused_file_event(&app, &key, &alpha, &never).await;

    // Beta's file exists, but under beta's prefix.
    let betas = upload(&app, &key, &beta, b"beta's").await;
    let e = refused_file_event(&app, &key, &alpha, &betas).await;
    assert_eq!(list(&app, &key, &alpha, "").await["total_count"], 0);
    // Beta may reference it.
    assert_detail(
        create_event(&app, &key, &beta, &e).await,
        201,
        "Event created.",
    )
    .await;
}

#[tokio::test]
async fn create_event_is_idempotent_on_event_id() {
    let (app, key, client) = demo_tenant().await;
    let event_id = uuid::Uuid::new_v4().to_string();
    let body = envelope(
        &event_id,
        "R1",
        json!("status_changed"),
        "2024-05-01T10:00:00Z",
        json!([{ "x": 1 }]),
    );
    assert_detail(
        create_event(&app, &key, &client, &body).await,
        201,
        "Event created.",
    )
    .await;
    // A retried delivery (a new envelope id, the same detail) changes nothing.
    let mut retry = body.clone();
    retry["id"] = json!("another-delivery");
    for b in [&body, &retry] {
        assert_detail(
            create_event(&app, &key, &client, b).await,
            201,
            "Event already recorded.",
        )
        .await;
    }
    assert_eq!(list(&app, &key, &client, "").await["total_count"], 1);
    // The same id with another detail is refused, and the first one stays.
    let other = envelope(
        &event_id,
        "R2",
        json!("status_changed"),
        "2024-05-01T10:00:00Z",
        json!([]),
    );
    assert_detail(
        create_event(&app, &key, &client, &other).await,
        400,
        &format!("Event '{event_id}' already exists with different content."),
    )
    .await;
    let page = list(&app, &key, &client, "").await;
    assert_eq!(page["total_count"], 1);
    assert_eq!(page["results"][0]["record_id"], "R1");
}

#[tokio::test]
async fn create_event_validates_the_envelope() {
    let (app, key, client) = demo_tenant().await;
    let id = uuid::Uuid::new_v4().to_string();
    let mut bad_time = event(&id, "R", json!([]));
    bad_time["detail"]["event_time"] = json!("yesterday");
    let cases = [
        (json!({}), "detail: This field is required."),
        (
            json!({ "detail": { "event_id": "nope" } }),
            "detail.event_id: Must be a valid UUID.",
        ),
        (
            bad_time,
            "detail.event_time: Must be an ISO 8601 date-time with a time zone.",
        ),
        (
            event(&id, "R", json!([{ "file_id": "x" }])),
            "detail.event_data: file_id must be a valid UUID.",
        ),
    ];
    for (body, detail) in cases {
        assert_detail(create_event(&app, &key, &client, &body).await, 400, detail).await;
    }
    let r = call(
        &app.base,
        Method::POST,
        CREATE_EVENT,
        Some(&key),
        Some(&client),
    )
    .body("{")
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.json::<Value>().await.unwrap()["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error - ")
    );
    // Credentials before the body.
    let r = call(&app.base, Method::POST, CREATE_EVENT, None, Some(&client))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_detail(r, 401, UNAUTHORIZED_KEY).await;
    let r = call(&app.base, Method::POST, CREATE_EVENT, Some(&key), None)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_detail(r, 400, "Unauthorized Client.").await;
    let r = call(
        &app.base,
        Method::POST,
        CREATE_EVENT,
        Some(&key),
        Some("nobody"),
    )
    .body("{")
    .send()
    .await
    .unwrap();
    assert_detail(r, 400, "Failed to connect to tenant db.").await;
}

#[tokio::test]
async fn tenants_are_isolated() {
    let app = TestApp::spawn().await;
    let key = api_key(&app).await;
    let alpha = tenant(&app, &key, "alpha").await;
    let beta = tenant(&app, &key, "beta").await;
    let file = upload(&app, &key, &alpha, b"alpha's secret").await;
    let event_id = uuid::Uuid::new_v4().to_string();
    let body = event(&event_id, "R1", json!([{ "file_id": file }]));
    assert_detail(
        create_event(&app, &key, &alpha, &body).await,
        201,
        "Event created.",
    )
    .await;

    // Beta can neither list nor read alpha's event or file.
    let page = list(&app, &key, &beta, "").await;
    assert_eq!(page["total_count"], 0);
    assert_eq!(page["results"], json!([]));
    assert_eq!(
        list(&app, &key, &beta, "?record_id=R1").await["total_count"],
        0
    );
    assert_detail(
        event_file(&app, &key, &beta, &event_id).await,
        404,
        "Event not found.",
    )
    .await;

    // The same event id is independent per tenant: beta's copy is its own (and
    // cannot reference alpha's file).
    assert_detail(
        create_event(&app, &key, &beta, &body).await,
        400,
        &format!("File '{file}' not found."),
    )
    .await;
    let own = event(&event_id, "B1", json!([]));
    assert_detail(
        create_event(&app, &key, &beta, &own).await,
        201,
        "Event created.",
    )
    .await;
    assert_eq!(
        list(&app, &key, &beta, "").await["results"][0]["record_id"],
        "B1"
    );
    assert_eq!(
        list(&app, &key, &alpha, "").await["results"][0]["record_id"],
        "R1"
    );
    assert_detail(
        event_file(&app, &key, &beta, &event_id).await,
        404,
        "Event has no file.",
    )
    .await;
    assert_eq!(
        event_file(&app, &key, &alpha, &event_id).await.status(),
        200
    );

    // Deleting beta leaves alpha whole.
    assert_detail(
        delete_tenant(&app, Some(&key), Some(&beta)).await,
        200,
        "Tenant deleted.",
    )
    .await;
    assert_eq!(list(&app, &key, &alpha, "").await["total_count"], 1);
    assert!(stored(&app, &format!("alpha/{file}")).await);
}

#[tokio::test]
async fn events_list_filters_and_pages() {
    let (app, key, client) = demo_tenant().await;
    let mut ids = Vec::new();
    for (i, (record, kind)) in [
        ("R1", "created"),
        ("R1", "updated"),
        ("R2", "created"),
        ("R1", "updated"),
        ("R2", "deleted"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = uuid::Uuid::new_v4().to_string();
        let time = format!("2024-05-0{}T10:00:00Z", i + 1);
        let r = create_event(
            &app,
            &key,
            &client,
            &envelope(&id, record, json!(kind), &time, json!([])),
        )
        .await;
        assert_eq!(r.status(), 201);
        ids.push(id);
    }
    let page = list(&app, &key, &client, "").await;
    assert_eq!(page["total_count"], 5);
    // Newest first.
    let got: Vec<&str> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(got, want);

    assert_eq!(
        list(&app, &key, &client, "?record_id=R1").await["total_count"],
        3
    );
    assert_eq!(
        list(&app, &key, &client, "?event_type_id=created").await["total_count"],
        2
    );
    assert_eq!(
        list(&app, &key, &client, "?record_id=R1&event_type_id=updated").await["total_count"],
        2
    );
    let range = list(
        &app,
        &key,
        &client,
        "?event_time_after=2024-05-02T10:00:00Z&event_time_before=2024-05-04T10:00:00%2B00:00",
    )
    .await;
    assert_eq!(range["total_count"], 3);
    assert_eq!(
        list(
            &app,
            &key,
            &client,
            "?event_time_after=2024-05-04T00:00:00Z"
        )
        .await["total_count"],
        2
    );

    let page = list(&app, &key, &client, "?record_id=R1&limit=2").await;
    assert_eq!(page["limit"], 2);
    assert_eq!(page["offset"], 0);
    assert_eq!(page["total_count"], 3);
    assert!(page["previous"].is_null());
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap();
    assert!(
        next.ends_with("/api/history/events?record_id=R1&limit=2&offset=2"),
        "{next}"
    );
    let next = send(
        &app.base,
        Method::GET,
        &next[next.find("/api/").unwrap()..],
        Some(&key),
        Some(&client),
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    assert_eq!(next["results"].as_array().unwrap().len(), 1);
    assert!(next["next"].is_null());
    assert!(
        next["previous"]
            .as_str()
            .unwrap()
            .ends_with("?record_id=R1&limit=2&offset=0")
    );

    let r = send(
        &app.base,
        Method::GET,
        &format!("{EVENTS}?event_time_after=soon"),
        Some(&key),
        Some(&client),
    )
    .await;
    assert_detail(
        r,
        400,
        "event_time_after: Must be an ISO 8601 date-time with a time zone.",
    )
    .await;
    let r = send(&app.base, Method::GET, EVENTS, None, Some(&client)).await;
    assert_detail(r, 401, UNAUTHORIZED_KEY).await;
}

#[tokio::test]
async fn event_file_is_404_without_event_or_file() {
    let (app, key, client) = demo_tenant().await;
    let event_id = uuid::Uuid::new_v4().to_string();
    let body = event(&event_id, "R1", json!([{ "note": "no file" }]));
    assert_eq!(create_event(&app, &key, &client, &body).await.status(), 201);
    assert_detail(
        event_file(&app, &key, &client, &event_id).await,
        404,
        "Event has no file.",
    )
    .await;
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_detail(
        event_file(&app, &key, &client, &unknown).await,
        404,
        "Event not found.",
    )
    .await;
    assert_detail(
        event_file(&app, &key, &client, "not-a-uuid").await,
        404,
        "Event not found.",
    )
    .await;
    let r = send(
        &app.base,
        Method::GET,
        &format!("{EVENTS}/{event_id}/file"),
        Some("wrong"),
        Some(&client),
    )
    .await;
    assert_detail(r, 401, UNAUTHORIZED_KEY).await;
}

// --- Tenants ---

#[tokio::test]
async fn initialize_tenant_answers_and_errors() {
    let app = TestApp::spawn().await;
    let key = api_key(&app).await;
    let post = |k: Option<&str>, body: Value| {
        call(&app.base, Method::POST, "/api/initialize-tenant", k, None)
            .json(&body)
            .send()
    };
    let r = post(
        Some(&key),
        json!({ "database_name": "alx_demo", "client_label": "ALX demo" }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["client_id", "client_secret", "database_name"]);
    assert_eq!(body["database_name"], "alx_demo");
    assert!(uuid::Uuid::parse_str(body["client_id"].as_str().unwrap()).is_ok());
    assert_eq!(body["client_secret"].as_str().unwrap().len(), 64);

    assert_detail(
        post(
            Some(&key),
            json!({ "database_name": "alx_demo", "client_label": "again" }),
        )
        .await
        .unwrap(),
        400,
        "Client already exist.",
    )
    .await;
    assert_detail(
        post(
            None,
            json!({ "database_name": "other", "client_label": "x" }),
        )
        .await
        .unwrap(),
        401,
        UNAUTHORIZED_KEY,
    )
    .await;
    assert_detail(
        post(Some("wrong"), json!({})).await.unwrap(),
        401,
        UNAUTHORIZED_KEY,
    )
    .await;
    let name_rule = "database_name: Must be at most 64 characters: a letter, then letters, digits or underscores.";
    for (body, detail) in [
        (
            json!({ "client_label": "x" }),
            "database_name: This field is required.".to_string(),
        ),
        (
            json!({ "database_name": 5, "client_label": "x" }),
            "database_name: Must be a string.".to_string(),
        ),
        (
            json!({ "database_name": "1abc", "client_label": "x" }),
            name_rule.to_string(),
        ),
        (
            json!({ "database_name": "a/b", "client_label": "x" }),
            name_rule.to_string(),
        ),
        (
            json!({ "database_name": "x".repeat(65), "client_label": "x" }),
            name_rule.to_string(),
        ),
        (
            json!({ "database_name": "uploads", "client_label": "x" }),
            "database_name: 'uploads' is reserved.".to_string(),
        ),
        (
            json!({ "database_name": "ok_name" }),
            "client_label: This field is required.".to_string(),
        ),
        (
            json!({ "database_name": "ok_name", "client_label": " " }),
            "client_label: This field may not be blank.".to_string(),
        ),
    ] {
        assert_detail(post(Some(&key), body).await.unwrap(), 400, &detail).await;
    }
    let r = post(
        Some(&key),
        json!({ "database_name": "x".repeat(64), "client_label": "longest" }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn delete_tenant_removes_events_and_files_and_frees_the_name_after_the_purge() {
    let (app, key, client) = demo_tenant().await;
    let file = upload(&app, &key, &client, b"to be deleted").await;
    let event_id = uuid::Uuid::new_v4().to_string();
    let body = event(&event_id, "R1", json!([{ "file_id": file }]));
    assert_eq!(create_event(&app, &key, &client, &body).await.status(), 201);
    // A URL issued before the deletion, used after it.
    let late: Value = get_upload_url(&app, Some(&key), Some(&client))
        .await
        .json()
        .await
        .unwrap();

    let delete = |k, c| delete_tenant(&app, k, c);
    assert_detail(delete(None, Some(&client)).await, 401, UNAUTHORIZED_KEY).await;
    assert_detail(delete(Some(&key), None).await, 400, "Unauthorized Client.").await;
    assert_detail(
        delete(Some(&key), Some(&client)).await,
        200,
        "Tenant deleted.",
    )
    .await;
    assert!(app.s3.list("alx_demo/").await.unwrap().is_empty());
    let gone = json!({ "detail": "Failed to connect to tenant db." });
    assert_json(delete(Some(&key), Some(&client)).await, 400, gone.clone()).await;
    assert_json(
        get_upload_url(&app, Some(&key), Some(&client)).await,
        400,
        gone.clone(),
    )
    .await;
    let r = send(&app.base, Method::GET, EVENTS, Some(&key), Some(&client)).await;
    assert_json(r, 400, gone).await;

    let put = reqwest::Client::new()
        .put(late["upload_url"].as_str().unwrap())
        .body("late")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    // The name is held until the final purge, which also removes late uploads.
    let recreate = json!({ "database_name": "alx_demo", "client_label": "again" });
    let r = call(
        &app.base,
        Method::POST,
        "/api/initialize-tenant",
        Some(&key),
        None,
    )
    .json(&recreate)
    .send()
    .await
    .unwrap();
    assert_detail(
        r,
        400,
        "'alx_demo' is still being deleted; try again later.",
    )
    .await;
    let history = &app.state.history;
    assert_eq!(history.purge_due(intake::db::now_ms()).await.unwrap(), 0);
    let due = intake::db::now_ms() + history.purge_delay().as_millis() as i64 + 1;
    assert_eq!(history.purge_due(due).await.unwrap(), 1);
    assert!(app.s3.list("alx_demo/").await.unwrap().is_empty());

    let fresh = tenant(&app, &key, "alx_demo").await;
    assert_ne!(fresh, client);
    assert_eq!(list(&app, &key, &fresh, "").await["total_count"], 0);
}

#[tokio::test]
async fn a_tenant_whose_database_is_missing_can_still_be_deleted() {
    let (app, key, client) = demo_tenant().await;
    let file = upload(&app, &key, &client, b"orphan").await;
    drop_database(&app, "alx_demo").await;
    assert_detail(
        delete_tenant(&app, Some(&key), Some(&client)).await,
        200,
        "Tenant deleted.",
    )
    .await;
    assert!(!stored(&app, &format!("alx_demo/{file}")).await);
}

// --- API keys ---

#[tokio::test]
async fn revoked_keys_stop_working_within_the_cache_ttl() {
    // Without a cache, at once.
    let app = TestApp::spawn_with(|s| s.history.cache_ttl = std::time::Duration::ZERO).await;
    let key = app.state.history.create_api_key("to-revoke").await.unwrap();
    assert_detail(
        get_upload_url(&app, Some(&key), None).await,
        400,
        "Unauthorized Client.",
    )
    .await;
    assert_eq!(app.state.db.revoke_api_keys("to-revoke").await.unwrap(), 1);
    assert_detail(
        get_upload_url(&app, Some(&key), None).await,
        401,
        UNAUTHORIZED_KEY,
    )
    .await;

    // With the default cache, a key revoked behind this node's back keeps working
    // until its cache entry expires (here: until the cache is forgotten).
    let app = TestApp::spawn().await;
    let key = app.state.history.create_api_key("cached").await.unwrap();
    assert_eq!(get_upload_url(&app, Some(&key), None).await.status(), 400);
    app.state.db.revoke_api_keys("cached").await.unwrap();
    assert_eq!(get_upload_url(&app, Some(&key), None).await.status(), 400);
    app.state.history.forget_cached();
    assert_detail(
        get_upload_url(&app, Some(&key), None).await,
        401,
        UNAUTHORIZED_KEY,
    )
    .await;
}

#[tokio::test]
async fn admin_cli_creates_and_revokes_api_keys() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path()).await;
    let database_url = settings.database.url.clone();
    // Awaited, not blocking: the server below runs on this test's one thread, and a
    // CLI waiting on the write lock of a transaction that server is in the middle of
    // would wait for it forever if the thread were blocked ("database is locked"
    // after the busy timeout).
    let cli = async |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"));
        cmd.args(args)
            .env("INTAKE_DATA_DIR", dir.path())
            .env("INTAKE_LOG", "error");
        if let Some(url) = &database_url {
            cmd.env("INTAKE_DATABASE_URL", url.expose_secret());
        }
        let out = cmd.output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = cli(&["admin", "create-api-key", "--label", "ingest"]).await;
    // Exactly one JSON object on one line, with exactly one field.
    assert_eq!(out.lines().count(), 1, "{out}");
    let body: Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["api_key"]);
    let key = body["api_key"].as_str().unwrap().to_string();

    // A server on the same data dir (and so the same pepper) accepts it.
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    tokio::spawn(app.run_until(std::future::pending()));
    let r = send(&base, Method::GET, UPLOAD_URL, Some(&key), None).await;
    assert_detail(r, 400, "Unauthorized Client.").await;

    assert_eq!(
        serde_json::from_str::<Value>(
            &cli(&["admin", "revoke-api-key", "--label", "ingest"]).await
        )
        .unwrap(),
        json!({ "revoked": 1 })
    );
    state.history.forget_cached();
    let r = send(&base, Method::GET, UPLOAD_URL, Some(&key), None).await;
    assert_detail(r, 401, UNAUTHORIZED_KEY).await;
}

// --- serve --only ---

#[tokio::test]
async fn serve_only_history_or_api() {
    for (routes, history, api) in [
        (Routes::History, true, false),
        (Routes::Api, false, true),
        (Routes::All, true, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let app = Application::build(test_settings(dir.path()).await)
            .await
            .unwrap()
            .serve_only(routes);
        let base = format!("http://{}", app.local_addr());
        let key = app.state().history.create_api_key("only").await.unwrap();
        tokio::spawn(app.run_until(std::future::pending()));
        let r = send(&base, Method::GET, UPLOAD_URL, Some(&key), None).await;
        assert_eq!(r.status(), if history { 400 } else { 404 }, "{routes:?}");
        let r = send(&base, Method::GET, "/api/object-classes/", None, None).await;
        assert_eq!(r.status(), if api { 401 } else { 404 }, "{routes:?}");
        let r = send(&base, Method::GET, "/healthz", None, None).await;
        assert_eq!(r.status(), 200);
    }
}
