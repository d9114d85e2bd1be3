//! The REST calls an upload needs: sign in, create the upload, get socket tickets,
//! read the upload's state. An expired access token is renewed once per call (with
//! the refresh token, else by signing in again) so that long uploads outlive it.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{ClientError, Credentials, error_chain};

/// Time allowed for one REST call.
const REST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed to open a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Tokens in force.
struct Tokens {
    access: SecretString,
    refresh: Option<SecretString>,
}

/// A signed-in REST client.
pub struct Api {
    http: reqwest::Client,
    base: url::Url,
    credentials: Credentials,
    tokens: Mutex<Tokens>,
}

/// The HTTP client used for REST calls and for PUTs to presigned URLs.
pub fn http_client() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("intake-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError::Connection(error_chain(&e)))
}

impl Api {
    /// Signs in to `base` (a token is checked with `GET /api/users/me/`).
    pub async fn sign_in(base: url::Url, credentials: Credentials) -> Result<Api, ClientError> {
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::Connection(format!(
                "--server must be an http:// or https:// URL, not {base}"
            )));
        }
        let http = http_client()?;
        let tokens = match &credentials {
            Credentials::Token(t) => Tokens {
                access: t.clone(),
                refresh: None,
            },
            Credentials::Password { email, password } => {
                obtain(&http, &base, email, password).await?
            }
        };
        let api = Api {
            http,
            base,
            credentials,
            tokens: Mutex::new(tokens),
        };
        api.get("/api/users/me/").await?;
        Ok(api)
    }

    /// The server's base URL.
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `POST /api/object-records/uploads/`: the new upload's id.
    pub async fn create_upload(&self, class: i64, field: i64) -> Result<String, ClientError> {
        let v = self
            .call(
                Method::POST,
                "/api/object-records/uploads/",
                Some(json!({ "object_class": class, "object_class_field": field })),
            )
            .await?;
        string_field(&v, "upload_id")
    }

    /// `GET /api/users/ws-auth/`: a one-time socket ticket.
    pub async fn ticket(&self) -> Result<String, ClientError> {
        let v = self.get("/api/users/ws-auth/").await?;
        string_field(&v, "uuid")
    }

    /// `GET /api/object-records/uploads/{id}/`.
    pub async fn upload_status(&self, upload_id: &str) -> Result<Value, ClientError> {
        self.get(&format!("/api/object-records/uploads/{upload_id}/"))
            .await
    }

    /// A GET returning JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call(Method::GET, path, None).await
    }

    /// One authenticated call; on 401 the token is renewed and the call made again.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| ClientError::Protocol(format!("{path}: {e}")))?;
        let mut renewed = false;
        loop {
            let access = self.tokens.lock().await.access.clone();
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .timeout(REST_TIMEOUT)
                .header("Authorization", format!("JWT {}", access.expose_secret()));
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| ClientError::Connection(error_chain(&e)))?;
            if resp.status() == StatusCode::UNAUTHORIZED && !renewed && self.renew().await {
                renewed = true;
                continue;
            }
            return read_json(resp).await;
        }
    }

    /// Gets a new access token; false when there is no way to.
    async fn renew(&self) -> bool {
        let mut tokens = self.tokens.lock().await;
        if let Some(refresh) = &tokens.refresh {
            let url = self.base.join("/api/auth/token/refresh/");
            if let Ok(url) = url {
                let resp = self
                    .http
                    .post(url)
                    .timeout(REST_TIMEOUT)
                    .json(&json!({ "refresh": refresh.expose_secret() }))
                    .send()
                    .await;
                if let Ok(resp) = resp
                    && let Ok(v) = read_json(resp).await
                    && let Some(access) = v["access"].as_str()
                {
                    tokens.access = SecretString::from(access.to_string());
                    return true;
                }
            }
        }
        if let Credentials::Password { email, password } = &self.credentials
            && let Ok(fresh) = obtain(&self.http, &self.base, email, password).await
        {
            *tokens = fresh;
            return true;
        }
        false
    }
}

/// `POST /api/auth/token/`.
async fn obtain(
    http: &reqwest::Client,
    base: &url::Url,
    email: &str,
    password: &SecretString,
) -> Result<Tokens, ClientError> {
    let url = base
        .join("/api/auth/token/")
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let resp = http
        .post(url)
        .timeout(REST_TIMEOUT)
        .json(&json!({ "email": email, "password": password.expose_secret() }))
        .send()
        .await
        .map_err(|e| ClientError::Connection(error_chain(&e)))?;
    let v = read_json(resp).await?;
    Ok(Tokens {
        access: SecretString::from(string_field(&v, "access")?),
        refresh: v["refresh"]
            .as_str()
            .map(|s| SecretString::from(s.to_string())),
    })
}

/// The JSON body of a 2xx answer, or the error the body describes.
async fn read_json(resp: reqwest::Response) -> Result<Value, ClientError> {
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| ClientError::Connection(error_chain(&e)))?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status == StatusCode::NO_CONTENT {
        return Ok(Value::Null);
    }
    if status.is_success() {
        if body.is_null() {
            return Err(ClientError::Protocol(format!(
                "expected JSON, got {status}: {}",
                text.chars().take(200).collect::<String>()
            )));
        }
        return Ok(body);
    }
    Err(rest_error(status, &body, &text))
}

/// A REST error answer as a `ClientError::Server`: DRF's `{"detail", "code"}` or a
/// field-to-messages map, flattened to one line.
pub fn rest_error(status: StatusCode, body: &Value, text: &str) -> ClientError {
    let code = body["code"]
        .as_str()
        .map(|c| c.to_string())
        .unwrap_or_else(|| format!("ERR_HTTP_{}", status.as_u16()));
    let detail = match body {
        Value::Object(map) if map.get("detail").is_some_and(Value::is_string) => {
            map["detail"].as_str().unwrap_or_default().to_string()
        }
        Value::Object(map) if !map.is_empty() => map
            .iter()
            .map(|(field, msgs)| {
                let msgs = match msgs {
                    Value::Array(a) => a
                        .iter()
                        .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join(" "),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("{field}: {msgs}")
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ if !text.trim().is_empty() => text.trim().chars().take(300).collect(),
        _ => status.to_string(),
    };
    ClientError::server(code, detail)
}

fn string_field(v: &Value, key: &str) -> Result<String, ClientError> {
    v[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ClientError::Protocol(format!("no \"{key}\" in {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_errors_read_like_the_server_wrote_them() {
        let e = rest_error(
            StatusCode::BAD_REQUEST,
            &json!({ "object_class": ["Invalid pk \"9\" - object does not exist."] }),
            "",
        );
        assert_eq!(e.code(), "ERR_HTTP_400");
        assert_eq!(
            e.detail(),
            "object_class: Invalid pk \"9\" - object does not exist."
        );
        let e = rest_error(
            StatusCode::UNAUTHORIZED,
            &json!({ "detail": "Given token not valid for any token type", "code": "token_not_valid" }),
            "",
        );
        assert_eq!(e.code(), "token_not_valid");
        let e = rest_error(StatusCode::BAD_GATEWAY, &Value::Null, "upstream down\n");
        assert_eq!(e.to_string(), "ERR_HTTP_502: upstream down");
    }
}
