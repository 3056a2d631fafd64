//! The tab's JSON API. Every route needs the session token issued by `/placement`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, Session, json_body};
use crate::app::openlines::{self, ChatRequest};
use crate::app::send::SendRequest;
use crate::app::uploads::UploadRequest;
use crate::app::schedule::EditRequest;
use crate::app::conversation::{self, ConversationQuery, Looked};
use crate::app::{AppError, card, schedule, send, templates, uploads};

pub fn card_routes() -> Router<AppState> {
    Router::new()
        .route("/api/card", get(get_card))
        .route("/api/templates", get(list_templates))
        .route("/api/templates/{id}/fill", post(fill_template))
}

pub fn send_routes() -> Router<AppState> {
    Router::new()
        .route("/api/send", post(post_send))
        .route("/api/uploads", post(post_upload))
        .route("/api/messages", get(list_messages))
        .route("/api/messages/{id}", get(get_message).put(put_message))
        .route("/api/messages/{id}/cancel", post(cancel_message))
        .route("/api/conversation", get(get_conversation))
        .route("/api/chats", post(post_chat))
        .route("/api/employees", get(list_employees))
}

#[derive(Deserialize)]
struct CardQuery {
    connector: Option<String>,
}

async fn get_card(
    State(svc): State<AppState>,
    Session(claims): Session,
    query: Result<Query<CardQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, AppError> {
    let Query(query) = query.map_err(|e| AppError::bad_request("bad_query", e.body_text()))?;
    Ok(Json(card::load_card(&svc, &claims, query.connector.as_deref()).await?))
}

async fn list_templates(State(svc): State<AppState>, Session(claims): Session) -> Result<impl IntoResponse, AppError> {
    Ok(Json(json!({ "templates": templates::offered(&svc, &claims).await? })))
}

async fn fill_template(State(svc): State<AppState>, Session(claims): Session, Path(id): Path<String>) -> Result<impl IntoResponse, AppError> {
    Ok(Json(templates::fill_for_card(&svc, &claims, &id).await?))
}

async fn post_send(
    State(svc): State<AppState>,
    Session(claims): Session,
    body: Result<Json<SendRequest>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let request = json_body(body)?;
    let message_id = send::accept(&svc, &claims, request).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "message_id": message_id }))))
}

async fn post_upload(
    State(svc): State<AppState>,
    Session(claims): Session,
    body: Result<Json<UploadRequest>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let request = json_body(body)?;
    Ok(Json(uploads::create_upload(&svc, &uploads::Uploader::manager(&claims), request).await?))
}

async fn list_messages(State(svc): State<AppState>, Session(claims): Session) -> Result<impl IntoResponse, AppError> {
    Ok(Json(json!({ "messages": send::recent_on_card(&svc, &claims).await? })))
}

async fn get_message(
    State(svc): State<AppState>,
    Session(claims): Session,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(send::message_view(&svc, &claims, &id).await?))
}

async fn put_message(
    State(svc): State<AppState>,
    Session(claims): Session,
    Path(id): Path<String>,
    body: Result<Json<EditRequest>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let request = json_body(body)?;
    Ok(Json(schedule::edit(&svc, &claims, &id, request).await?))
}

async fn cancel_message(
    State(svc): State<AppState>,
    Session(claims): Session,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(schedule::cancel(&svc, &claims, &id).await?))
}

/// 304 while the conversation is as the tab has it: an open tab's poll reads one marker.
async fn get_conversation(
    State(svc): State<AppState>,
    Session(claims): Session,
    query: Result<Query<ConversationQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, AppError> {
    let Query(query) = query.map_err(|e| AppError::bad_request("bad_query", e.body_text()))?;
    let answer = match conversation::look(&svc, &claims, &query).await? {
        Looked::Unchanged => StatusCode::NOT_MODIFIED.into_response(),
        Looked::Changed(view) => Json(view).into_response(),
    };
    let within = svc.site.arrivals.look_within_ms(crate::clock::now_millis());
    Ok(([(LOOK_WITHIN, within.to_string())], answer).into_response())
}

/// How long a quiet tab may wait before it looks again (ms): the next catch-ups' news then.
const LOOK_WITHIN: &str = "x-olchat-look-within";

async fn post_chat(
    State(svc): State<AppState>,
    Session(claims): Session,
    body: Result<Json<ChatRequest>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let request = json_body(body)?;
    Ok(Json(openlines::create_chat(&svc, &claims, request).await?))
}

async fn list_employees(State(svc): State<AppState>, Session(claims): Session) -> Result<impl IntoResponse, AppError> {
    Ok(Json(json!({ "employees": openlines::employees(&svc, &claims).await? })))
}
