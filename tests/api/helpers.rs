//! Spawning the app and talking to it.

// Shared by every test module; not each uses every helper.
#![allow(dead_code)]

#[path = "../common/clamd.rs"]
pub mod clamd;
pub mod process;
pub mod proxy;
pub mod socket;

use intake::app::Application;
use intake::config::Settings;
use intake::domain::AccountType;
use intake::state::AppState;
use intake::store::{S3Config, S3Store};
use reqwest::{Client, Response};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Which database the tests run against.
pub fn test_backend() -> String {
    std::env::var("INTAKE_TEST_DB").unwrap_or_else(|_| "sqlite".into())
}

/// A fresh PostgreSQL database for one test; its URL.
async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let base = std::env::var("INTAKE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("intake_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .expect("PostgreSQL for tests (INTAKE_TEST_POSTGRES_URL)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    format!("{base}/{name}")
}

/// Credentials of every test app's embedded S3 endpoint, so tests can reach it too.
const S3_ACCESS_KEY: &str = "test-access";
const S3_SECRET_KEY: &str = "test-secret-key";

/// Settings for a test app in `dir`.
pub async fn test_settings(dir: &std::path::Path) -> Settings {
    let database_url = match test_backend().as_str() {
        "postgres" => Some(fresh_postgres_database().await),
        _ => None,
    };
    let mut settings = Settings::ephemeral(dir.to_path_buf());
    settings.database.url = database_url.map(Into::into);
    settings.database.max_connections = 4;
    settings.s3.access_key_id = Some(S3_ACCESS_KEY.into());
    settings.s3.secret_access_key = Some(S3_SECRET_KEY.into());
    if let Some(s3) = external_s3() {
        // A real S3 server (Garage in CI): a bucket of the test's own.
        settings.s3.endpoint = Some(s3.endpoint);
        settings.s3.region = s3.region;
        settings.s3.access_key_id = Some(s3.access_key_id);
        settings.s3.secret_access_key = Some(s3.secret_access_key.into());
        settings.s3.bucket = format!("t-{}", uuid::Uuid::new_v4().simple());
    }
    settings
}

/// An external S3 server for the tests (`INTAKE_TEST_S3_ENDPOINT`, `_REGION`,
/// `_ACCESS_KEY_ID`, `_SECRET_ACCESS_KEY`; see .ci/garage.sh); none: each test app
/// serves its embedded one.
pub struct ExternalS3 {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

pub fn external_s3() -> Option<ExternalS3> {
    let var = |n: &str| std::env::var(format!("INTAKE_TEST_S3_{n}")).ok();
    Some(ExternalS3 {
        endpoint: var("ENDPOINT")?,
        region: var("REGION").unwrap_or_else(|| "garage".into()),
        access_key_id: var("ACCESS_KEY_ID")?,
        secret_access_key: var("SECRET_ACCESS_KEY")?,
    })
}

/// A running application.
pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub state: AppState,
    /// The embedded S3 endpoint.
    pub s3_endpoint: String,
    /// The app's bucket through the concrete store, for what only tests do
    /// (`get_bytes`, `put_bytes`, `list`); the app itself uses `state.store`.
    pub s3: S3Store,
    /// The data dir (held so it lives as long as the app).
    pub dir: TempDir,
}

impl TestApp {
    /// Spawns the app on default test settings.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns the app with settings adjusted by `tweak`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings(dir.path()).await;
        tweak(&mut settings);
        let app = Application::build(settings).await.expect("app builds");
        let base = format!("http://{}", app.local_addr());
        let state = app.state().clone();
        let s3_endpoint = app
            .embedded_s3_endpoint()
            .or(state.settings.s3.endpoint.clone())
            .expect("an embedded or external S3");
        let s3_settings = &state.settings.s3;
        let s3 = S3Store::new(&S3Config {
            endpoint: Some(s3_endpoint.clone()),
            region: s3_settings.region.clone(),
            bucket: s3_settings.bucket.clone(),
            access_key_id: s3_settings.access_key_id.clone().unwrap_or_default(),
            secret_access_key: s3_settings
                .secret_access_key
                .as_ref()
                .map(|s| secrecy::ExposeSecret::expose_secret(s).to_string())
                .unwrap_or_default(),
            force_path_style: true,
            public_url: None,
        })
        .expect("test store");
        tokio::spawn(app.run_until(std::future::pending()));
        TestApp {
            base,
            client: Client::new(),
            state,
            s3_endpoint,
            s3,
            dir,
        }
    }

    /// `ws://host:port` of the app.
    pub fn ws_base(&self) -> String {
        self.base.replacen("http://", "ws://", 1)
    }

    /// Creates a user directly; returns its id.
    pub async fn create_user(&self, email: &str, password: &str, account: AccountType) -> i64 {
        let hash = intake::auth::hash_password(password).unwrap();
        self.state
            .db
            .create_user(email, &hash, account)
            .await
            .unwrap()
            .id
    }

    /// Logs in over HTTP; returns the access token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .post(
                "/api/auth/token/",
                None,
                json!({ "email": email, "password": password }),
            )
            .await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["access"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A user of `account` type, logged in: (id, token).
    pub async fn user(&self, account: AccountType) -> (i64, String) {
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let id = self
            .create_user(&email, "correct horse battery", account)
            .await;
        (id, self.login(&email, "correct horse battery").await)
    }

    /// POSTs JSON with an optional JWT.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        let req = self.client.post(format!("{}{path}", self.base)).json(&body);
        send_with_jwt(req, token).await
    }

    /// GETs with an optional JWT.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        send_with_jwt(self.client.get(format!("{}{path}", self.base)), token).await
    }

    /// A class with one document field (alias `file`) and one text field; (class, field).
    pub async fn class_with_document_field(&self, token: &str) -> (i64, i64) {
        let name = format!("Docs{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let r = self
            .post("/api/object-classes/", Some(token), json!({ "name": name }))
            .await;
        assert_eq!(r.status(), 201);
        let class = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        let alias = format!("file_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let r = self
            .post(
                &format!("/api/object-classes/{class}/fields/"),
                Some(token),
                json!({ "label": "File", "alias": alias, "type": "document" }),
            )
            .await;
        assert_eq!(r.status(), 201);
        let field = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        (class, field)
    }

    /// Creates an upload; its id.
    pub async fn create_upload(&self, token: &str, class: i64, field: i64) -> String {
        let r = self
            .post(
                "/api/object-records/uploads/",
                Some(token),
                json!({ "object_class": class, "object_class_field": field }),
            )
            .await;
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["upload_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `GET /api/object-records/uploads/{upload}/` as `token`: the upload's detail.
    pub async fn upload_detail(&self, token: &str, upload: &str) -> Value {
        let r = self
            .get(
                &format!("/api/object-records/uploads/{upload}/"),
                Some(token),
            )
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Grants `user` the right to create records in `class` (as a configurator).
    pub async fn grant(&self, admin: &str, class: i64, user: i64) {
        let r = self
            .post(
                &format!("/api/object-classes/{class}/permissions/"),
                Some(admin),
                json!({ "user": user }),
            )
            .await;
        assert_eq!(r.status(), 201);
    }

    /// Creates a record named `name` in `class` over REST; returns its id.
    pub async fn create_record(&self, token: &str, class: i64, name: &str) -> i64 {
        let r = self
            .post(
                "/api/object-records/",
                Some(token),
                json!({ "object_name": name, "object_class": class }),
            )
            .await;
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    /// Gets a one-time WebSocket ticket.
    pub async fn ticket(&self, token: &str) -> String {
        let r = self.get("/api/users/ws-auth/", Some(token)).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["uuid"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// Sends `req` with `Authorization: JWT <token>` when there is a token.
async fn send_with_jwt(req: reqwest::RequestBuilder, token: Option<&str>) -> Response {
    match token {
        Some(t) => req.header("Authorization", format!("JWT {t}")),
        None => req,
    }
    .send()
    .await
    .unwrap()
}

/// Asserts status and JSON body.
pub async fn assert_json(r: Response, status: u16, body: Value) {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.json::<Value>().await.unwrap(), body);
}
