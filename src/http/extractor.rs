//! Extractors of the REST edge: the authenticated caller.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;

use crate::auth::TokenType;
use crate::domain::User;
use crate::error::ApiError;
use crate::state::AppState;

/// An authenticated REST caller (`Authorization: JWT <access>` or `Bearer <access>`).
pub struct AuthUser(pub User);

impl<S> FromRequestParts<S> for AuthUser
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::NotAuthenticated)?;
        let header = header.to_str().map_err(|_| ApiError::InvalidToken)?;
        let token = header
            .strip_prefix("JWT ")
            .or_else(|| header.strip_prefix("Bearer "))
            .ok_or(ApiError::NotAuthenticated)?
            .trim();
        Ok(AuthUser(
            user_of_token(&state, token, TokenType::Access).await?,
        ))
    }
}

/// The user a valid token of `kind` names; any other token is `InvalidToken`.
pub async fn user_of_token(
    state: &AppState,
    token: &str,
    kind: TokenType,
) -> Result<User, ApiError> {
    let user_id = state
        .jwt
        .verify(token, kind)
        .ok_or(ApiError::InvalidToken)?;
    state
        .db
        .user_by_id(user_id)
        .await?
        .ok_or(ApiError::InvalidToken)
}
