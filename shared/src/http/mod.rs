//! The HTTP routers. Each function family is one router, so `local` merges them on one
//! server and Lambda runs each alone.

pub mod api;
pub mod assets;
pub mod bitrix;
pub mod connectors;
pub mod blobs;
pub mod guard;
pub mod placement;
pub mod server;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

use crate::app::portal::{current_install, recheck_admin};
use crate::app::{AppError, ErrorKind, Services};
use crate::auth::{AdminClaims, Claims, Expiring, TokenError};

pub type AppState = Arc<Services>;

/// `POST /placement`, `GET /api/card`, the tab's assets, the connectors page and its API.
pub fn placement_router(svc: AppState) -> Router {
    let routes = Router::new().merge(placement::routes()).merge(connectors::routes()).merge(api::card_routes()).merge(assets::routes());
    with_security_headers(routes.with_state(svc))
}

/// `POST /api/send`, `POST /api/uploads`, `GET /api/messages[/{id}]`, `POST /api/chats`, `GET /api/employees`,
/// and `GET /blobs/{key}` (the published files' links).
pub fn send_router(svc: AppState) -> Router {
    with_security_headers(api::send_routes().merge(blobs::download_routes()).with_state(svc))
}

/// `POST /bitrix/install`, `POST /bitrix/events`, `POST /bitrix/connector`.
pub fn bitrix_events_router(svc: AppState) -> Router {
    with_security_headers(bitrix::routes().with_state(svc))
}

/// Every router's responses, here and on Lambda, carry the security headers.
pub fn with_security_headers(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(guard::security_headers))
}

impl ErrorKind {
    fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Upstream => StatusCode::BAD_GATEWAY,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.code, "message": self.message }));
        (self.kind.status(), retry_after(&self), body).into_response()
    }
}

/// `Retry-After` in whole seconds (at least one) when the error says when to come back.
pub(crate) fn retry_after(e: &AppError) -> Option<[(header::HeaderName, String); 1]> {
    e.retry_after.map(|d| [(header::RETRY_AFTER, d.as_secs_f64().ceil().max(1.0).to_string())])
}

/// A JSON body, or a 400 saying what is wrong with it.
pub fn json_body<T>(body: Result<Json<T>, axum::extract::rejection::JsonRejection>) -> Result<T, AppError> {
    body.map(|Json(b)| b).map_err(|e| AppError::bad_request("bad_json", e.body_text()))
}

/// The verified session of an `/api/*` call from the tab.
pub struct Session(pub Claims);

/// The verified session of an administrator on the connectors page.
pub struct Admin(pub AdminClaims);

/// The token's claims, if its signature holds, it has not expired, and the install it was
/// issued under still stands.
async fn bearer<C: Expiring>(parts: &Parts, svc: &AppState) -> Result<C, AppError> {
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(TokenError::Missing);
    let claims: C = token
        .and_then(|t| svc.sessions.verify(t.trim()))
        .map_err(|e| AppError::new(ErrorKind::Unauthorized, "bad_session", e.to_string()))?;
    current_install(svc, claims.installation()).await?;
    Ok(claims)
}

impl FromRequestParts<AppState> for Session {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, svc: &AppState) -> Result<Self, Self::Rejection> {
        bearer(parts, svc).await.map(Session)
    }
}

/// Administrators are asked about again on every call, not only when the page opened.
impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, svc: &AppState) -> Result<Self, Self::Rejection> {
        let admin: AdminClaims = bearer(parts, svc).await?;
        recheck_admin(svc, &admin).await?;
        Ok(Admin(admin))
    }
}
