//! What Bitrix24 itself calls: the install handler (page and `ONAPPINSTALL`), the event
//! handler, and the connector's settings page inside Open Lines.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use minijinja::HtmlEscape;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::connectors::render_connectors;
use super::placement::error_page;
use crate::app::install::{InstallGrant, connect_line, install_from_page};
use crate::app::placement::PlacementQuery;
use crate::app::{AppError, automation, connectors, events};
use crate::crypto::Secret;
use crate::i18n::{Lang, text};
use crate::repo::portals::UserAuth;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/bitrix/install", post(install))
        .route("/bitrix/events", post(event))
        .route("/bitrix/connector", post(connector_settings))
        .route("/bitrix/robot", post(robot))
        .route("/bitrix/provider", post(provider))
}

/// The install page's form: the same POST as any app page, with `PLACEMENT=DEFAULT`.
#[derive(Deserialize)]
struct InstallForm {
    #[serde(rename = "AUTH_ID")]
    auth_id: Secret,
    #[serde(rename = "REFRESH_ID", default)]
    refresh_id: Option<Secret>,
    #[serde(rename = "APPLICATION_TOKEN", default)]
    application_token: Option<Secret>,
    member_id: String,
    #[serde(rename = "PLACEMENT")]
    placement: String,
}

fn parse_query(query: Option<String>) -> Result<PlacementQuery, AppError> {
    serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| AppError::bad_request("bad_query", format!("The query is incomplete: {e}.")))
}

fn ok() -> Response {
    (StatusCode::OK, Json(json!({ "ok": true }))).into_response()
}

async fn install(State(svc): State<AppState>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    if events::is_event(&body) {
        return events::on_install(&svc, &body).await.map_or_else(IntoResponse::into_response, |()| ok());
    }
    let parsed = parse_query(query).and_then(|q| {
        let form: InstallForm = serde_urlencoded::from_bytes(&body)
            .map_err(|e| AppError::bad_request("bad_form", format!("The install form is incomplete: {e}.")))?;
        Ok((q, form))
    });
    let (query, form) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return error_page(e),
    };
    let lang = Lang::from_portal(&query.lang);
    let grant = InstallGrant {
        member_id: form.member_id,
        domain: query.domain,
        access_token: form.auth_id,
        refresh_token: form.refresh_id,
        application_token: form.application_token,
        lang,
    };
    match install_from_page(&svc, grant, &form.placement).await {
        Ok(()) => done_page(lang, &text(lang, "installed", &[]), true),
        Err(e) => error_page(e),
    }
}

/// A short page inside Bitrix24; `finish` tells Bitrix24 the install is complete.
fn done_page(lang: Lang, message: &str, finish: bool) -> Response {
    let finish = if finish { "<script>if (window.BX24) { BX24.init(function () { BX24.installFinish(); }); }</script>" } else { "" };
    Html(format!(
        "<!doctype html><html lang={lang}><meta charset=utf-8><title>OLChat for Telegram</title>
<link rel=stylesheet href=/assets/tab.css><script src=\"//api.bitrix24.com/api/v1/\"></script>
<main class=olc><p role=status>{message}</p></main>{finish}</html>",
        lang = lang.code(),
        message = HtmlEscape(message),
    ))
    .into_response()
}

async fn event(State(svc): State<AppState>, body: Bytes) -> Response {
    events::accept(&svc, &body).await.map_or_else(IntoResponse::into_response, |()| ok())
}

/// Our robot or workflow action reached its step (`bizproc-robot-add.md`, `HANDLER`).
async fn robot(State(svc): State<AppState>, body: Bytes) -> Response {
    automation::accept_robot(&svc, &body).await.map_or_else(IntoResponse::into_response, |()| ok())
}

/// An "SMS" through our message provider (`messageservice-sender-add.md`, `HANDLER`).
async fn provider(State(svc): State<AppState>, body: Bytes) -> Response {
    automation::accept_provider(&svc, &body).await.map_or_else(IntoResponse::into_response, |()| ok())
}

#[derive(Deserialize)]
struct ConnectorForm {
    #[serde(rename = "AUTH_ID")]
    auth_id: Secret,
    #[serde(rename = "REFRESH_ID", default)]
    refresh_id: Option<Secret>,
    member_id: String,
    #[serde(rename = "PLACEMENT_OPTIONS", default)]
    placement_options: String,
}

#[derive(Deserialize)]
struct ConnectorOptions {
    #[serde(rename = "LINE")]
    line: serde_json::Value,
}

/// `SETTING_CONNECTOR`: an administrator connects our connector to an Open Line.
async fn connector_settings(State(svc): State<AppState>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let parsed = parse_query(query).and_then(|q| {
        let form: ConnectorForm = serde_urlencoded::from_bytes(&body)
            .map_err(|e| AppError::bad_request("bad_form", format!("The settings form is incomplete: {e}.")))?;
        let options: ConnectorOptions = serde_json::from_str(&form.placement_options)
            .map_err(|_| AppError::bad_request("bad_placement_options", "PLACEMENT_OPTIONS must be JSON naming the LINE."))?;
        let line = match options.line {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        Ok((q, form, line))
    });
    let (query, form, line) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return error_page(e),
    };
    let lang = Lang::from_portal(&query.lang);
    // The administrator is confirmed, the line connected, then they manage the accounts on
    // the same page.
    let page = async {
        let auth = UserAuth { access_token: form.auth_id, refresh_token: form.refresh_id };
        let token = connectors::open_page(&svc, &form.member_id, &query.domain, &auth, lang).await?;
        connect_line(&svc, &form.member_id, &line).await?;
        Ok::<_, AppError>(token)
    };
    match page.await {
        Ok(token) => render_connectors(&token, lang).into_response(),
        Err(e) => error_page(e),
    }
}
