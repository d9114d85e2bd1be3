//! `POST /api/auth/token/`, `POST /api/auth/token/refresh/`, `GET /api/users/ws-auth/`,
//! `GET /api/users/me/`.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::json::{Fields, JsonObject};
use super::openapi::{RefreshRequest, TokenRequest};
use crate::auth::{self, TokenType};
use crate::error::{ApiError, ApiResult};
use crate::http::extractor::{AuthUser, user_of_token};
use crate::state::AppState;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/token/", post(obtain_token))
        .route("/api/auth/token/refresh/", post(refresh_token))
        .route("/api/users/ws-auth/", get(ws_ticket))
        .route("/api/users/me/", get(me))
}

#[utoipa::path(post, path = "/api/auth/token/", tag = "auth", request_body = TokenRequest, responses((status = 200, description = "{access, refresh}", body = Object), (status = 400, description = "Missing fields", body = Object), (status = 401, description = "Wrong e-mail or password", body = Object)))]
pub(super) async fn obtain_token(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let mut fields = Fields::new(&body);
    let email = fields.string("email", true, 254);
    let password = fields.string("password", true, 1024);
    fields.finish()?;
    let (email, password) = (email.unwrap_or_default(), password.unwrap_or_default());
    let found = state.db.user_by_email(&email).await?;
    // Argon2 is slow on purpose: run it off the executor.
    let user = tokio::task::spawn_blocking(move || match found {
        Some(u) if u.is_active && auth::verify_password(&password, &u.password_hash) => {
            Some(u.user)
        }
        Some(_) => None,
        None => {
            auth::verify_password(&password, auth::dummy_hash());
            None
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    let Some(user) = user else {
        // For operators watching for password guessing; never the password. Debug
        // formatting escapes control characters, so a crafted e-mail cannot forge
        // log lines.
        let email: String = email.chars().take(254).collect();
        tracing::warn!(target: "intake::auth", ?email, "failed login");
        return Err(ApiError::InvalidCredentials);
    };
    Ok(Json(json!({
        "access": state.jwt.issue(user.id, TokenType::Access)?,
        "refresh": state.jwt.issue(user.id, TokenType::Refresh)?,
    })))
}

#[utoipa::path(post, path = "/api/auth/token/refresh/", tag = "auth", request_body = RefreshRequest, responses((status = 200, description = "{access}", body = Object), (status = 400, description = "Missing refresh", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object)))]
pub(super) async fn refresh_token(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let mut fields = Fields::new(&body);
    let refresh = fields.string("refresh", true, 4096);
    fields.finish()?;
    let refresh = refresh.unwrap_or_default();
    let user = user_of_token(&state, &refresh, TokenType::Refresh).await?;
    Ok(Json(
        json!({ "access": state.jwt.issue(user.id, TokenType::Access)? }),
    ))
}

#[utoipa::path(get, path = "/api/users/ws-auth/", tag = "auth", responses((status = 200, description = "{uuid}: a one-time ticket for the upload socket", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object)), security(("jwt" = [])))]
pub(super) async fn ws_ticket(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<Value>> {
    let ticket = auth::new_ticket();
    state
        .db
        .create_ticket(
            &auth::ticket_hash(&ticket),
            user.id,
            state.settings.auth.ws_ticket_ttl.as_millis() as i64,
        )
        .await?;
    Ok(Json(json!({ "uuid": ticket })))
}

#[utoipa::path(get, path = "/api/users/me/", tag = "auth", responses((status = 200, description = "{id, email, account_type}", body = Object), (status = 401, description = "Not authenticated or invalid token", body = Object)), security(("jwt" = [])))]
pub(super) async fn me(AuthUser(user): AuthUser) -> Json<Value> {
    Json(json!({
        "id": user.id,
        "email": user.email,
        "account_type": user.account_type.as_str(),
    }))
}
