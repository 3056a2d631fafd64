//! The connectors page (the app's own page, and the `SETTING_CONNECTOR` placement after it
//! connects the line) and its JSON API. Every API route needs an administrator's token.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::placement::{error_page, render_page};
use super::{Admin, AppState, json_body};
use crate::app::placement::PlacementQuery;
use crate::app::connectors::ConnectorFlag;
use crate::app::templates::TemplateInput;
use crate::app::uploads::{UploadRequest, Uploader, create_upload};
use crate::app::{AppError, connectors, templates};
use crate::crypto::Secret;
use crate::repo::connectors::{Access, Budgets, OverBudget};
use crate::repo::portals::UserAuth;
use crate::i18n::Lang;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/connectors", post(page))
        .route("/api/connectors", get(list))
        .route("/api/connectors/login/phone", post(login_phone))
        .route("/api/connectors/login/code", post(login_code))
        .route("/api/connectors/login/password", post(login_password))
        .route("/api/connectors/login/qr", post(login_qr))
        .route("/api/connectors/{id}/disconnect", post(disconnect))
        .route("/api/connectors/{id}/line", put(line))
        .route("/api/connectors/{id}/budgets", put(budgets))
        .route("/api/connectors/{id}/over-budget", put(over_budget))
        .route("/api/connectors/provider", put(provider))
        // `accept-all`, `keep-imported-contacts` (the other settings have routes of their own, which win).
        .route("/api/connectors/{id}/{flag}", put(flag))
        .route("/api/connectors/{id}/access", put(access))
        .route("/api/connectors/people", get(people))
        .route("/api/connectors/system-messages", put(system_messages))
        .route("/api/templates/admin", get(list_templates).post(create_template))
        .route("/api/templates/admin/uploads", post(template_upload))
        .route("/api/templates/admin/{id}", put(update_template).delete(delete_template))
}

/// The form Bitrix24 POSTs to an app page.
#[derive(Deserialize)]
pub(super) struct PageForm {
    #[serde(rename = "AUTH_ID")]
    pub auth_id: Secret,
    #[serde(rename = "REFRESH_ID", default)]
    pub refresh_id: Option<Secret>,
    pub member_id: String,
}

async fn page(State(svc): State<AppState>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let query: PlacementQuery = match serde_urlencoded::from_str(query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return error_page(AppError::bad_request("bad_query", format!("The query is incomplete: {e}."))),
    };
    let form: PageForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => return error_page(AppError::bad_request("bad_form", format!("The form is incomplete: {e}."))),
    };
    let lang = Lang::from_portal(&query.lang);
    let auth = UserAuth { access_token: form.auth_id, refresh_token: form.refresh_id };
    match connectors::open_page(&svc, &form.member_id, &query.domain, &auth, lang).await {
        Ok(token) => render_connectors(&token, lang).into_response(),
        Err(e) => error_page(e),
    }
}

/// The connectors page with its token in.
pub(super) fn render_connectors(token: &str, lang: Lang) -> Html<String> {
    static PAGES: OnceLock<[String; 2]> = OnceLock::new();
    let source = include_str!("../../assets/connectors.html");
    let pages = PAGES.get_or_init(|| [render_page("connectors.html", source, Lang::En), render_page("connectors.html", source, Lang::Ru)]);
    super::placement::with_token(&pages[lang as usize], token)
}

async fn list(State(svc): State<AppState>, Admin(admin): Admin) -> Result<impl IntoResponse, AppError> {
    Ok(Json(connectors::list(&svc, &admin).await?))
}

#[derive(Deserialize)]
struct PhoneRequest {
    phone: String,
    /// Log an existing connector in again.
    reconnect: Option<String>,
}

async fn login_phone(State(svc): State<AppState>, Admin(admin): Admin, body: Result<Json<PhoneRequest>, JsonRejection>) -> Result<impl IntoResponse, AppError> {
    let r = json_body(body)?;
    Ok(Json(connectors::start_phone(&svc, &admin, &r.phone, r.reconnect.as_deref()).await?))
}

#[derive(Deserialize)]
struct CodeRequest {
    login_id: String,
    code: String,
}

async fn login_code(State(svc): State<AppState>, Admin(admin): Admin, body: Result<Json<CodeRequest>, JsonRejection>) -> Result<impl IntoResponse, AppError> {
    let r = json_body(body)?;
    Ok(Json(connectors::submit_code(&svc, &admin, &r.login_id, &r.code).await?))
}

#[derive(Deserialize)]
struct PasswordRequest {
    login_id: String,
    password: Secret,
}

async fn login_password(State(svc): State<AppState>, Admin(admin): Admin, body: Result<Json<PasswordRequest>, JsonRejection>) -> Result<impl IntoResponse, AppError> {
    let r = json_body(body)?;
    Ok(Json(connectors::submit_password(&svc, &admin, &r.login_id, &r.password).await?))
}

#[derive(Deserialize)]
struct QrRequest {
    login_id: Option<String>,
    reconnect: Option<String>,
}

async fn login_qr(State(svc): State<AppState>, Admin(admin): Admin, body: Result<Json<QrRequest>, JsonRejection>) -> Result<impl IntoResponse, AppError> {
    let r = json_body(body)?;
    Ok(Json(connectors::qr(&svc, &admin, r.login_id.as_deref(), r.reconnect.as_deref()).await?))
}

async fn disconnect(State(svc): State<AppState>, Admin(admin): Admin, Path(id): Path<String>) -> Result<impl IntoResponse, AppError> {
    connectors::disconnect(&svc, &admin, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct LineRequest {
    line: Option<String>,
}

#[derive(Deserialize)]
struct BudgetsRequest {
    /// `null`: back to the defaults.
    budgets: Option<Budgets>,
}

async fn budgets(
    State(svc): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    body: Result<Json<BudgetsRequest>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let r = json_body(body)?;
    Ok(Json(connectors::set_budgets(&svc, &admin, &id, r.budgets).await?))
}

/// One of a connector's yes-or-no settings: `PUT /api/connectors/{id}/accept-all` with
/// `{"accept_all": true}`, `.../keep-imported-contacts` with `{"keep_imported_contacts": false}`.
async fn flag(
    State(svc): State<AppState>,
    Admin(admin): Admin,
    Path((id, flag)): Path<(String, ConnectorFlag)>,
    body: Result<Json<serde_json::Map<String, serde_json::Value>>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let field = flag.field();
    let on = json_body(body)?
        .get(field)
        .and_then(serde_json::Value::as_bool)
        .ok_or_else(|| AppError::bad_request("bad_json", format!("{field} must be true or false")))?;
    Ok(Json(connectors::set_flag(&svc, &admin, &id, flag, on).await?))
}

#[derive(Deserialize)]
struct OverBudgetRequest {
    over_budget: OverBudget,
}

/// `PUT /api/connectors/{id}/over-budget` with `{"over_budget": "wait"}` or `"fail"`.
async fn over_budget(
    State(svc): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    body: Result<Json<OverBudgetRequest>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let r = json_body(body)?;
    Ok(Json(connectors::set_over_budget(&svc, &admin, &id, r.over_budget).await?))
}

#[derive(Deserialize)]
struct ProviderRequest {
    /// `null`: the portal's only connector.
    connector_id: Option<String>,
}

/// `PUT /api/connectors/provider` with `{"connector_id": "..."}`: who sends the portal's SMS.
async fn provider(
    State(svc): State<AppState>,
    Admin(admin): Admin,
    body: Result<Json<ProviderRequest>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let r = json_body(body)?;
    Ok(Json(connectors::set_provider_connector(&svc, &admin, r.connector_id.as_deref()).await?))
}

#[derive(Deserialize)]
struct AccessRequest {
    access: Access,
}

async fn access(
    State(svc): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    body: Result<Json<AccessRequest>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let r = json_body(body)?;
    Ok(Json(connectors::set_access(&svc, &admin, &id, r.access).await?))
}

async fn people(State(svc): State<AppState>, Admin(admin): Admin) -> Result<impl IntoResponse, AppError> {
    Ok(Json(connectors::people(&svc, &admin).await?))
}

#[derive(Deserialize)]
struct SystemMessagesRequest {
    system_messages: bool,
}

async fn system_messages(
    State(svc): State<AppState>,
    Admin(admin): Admin,
    body: Result<Json<SystemMessagesRequest>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let r = json_body(body)?;
    Ok(Json(connectors::set_system_messages(&svc, &admin, r.system_messages).await?))
}

async fn line(
    State(svc): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    body: Result<Json<LineRequest>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let r = json_body(body)?;
    Ok(Json(connectors::link_line(&svc, &admin, &id, r.line.as_deref()).await?))
}

async fn list_templates(State(svc): State<AppState>, Admin(admin): Admin) -> Result<impl IntoResponse, AppError> {
    Ok(Json(serde_json::json!({ "templates": templates::list(&svc, &admin).await? })))
}

async fn create_template(State(svc): State<AppState>, Admin(admin): Admin, body: Result<Json<TemplateInput>, JsonRejection>) -> Result<impl IntoResponse, AppError> {
    let input = json_body(body)?;
    Ok((StatusCode::CREATED, Json(templates::create(&svc, &admin, input).await?)))
}

async fn update_template(
    State(svc): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    body: Result<Json<TemplateInput>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let input = json_body(body)?;
    Ok(Json(templates::update(&svc, &admin, &id, input).await?))
}

/// A file for a template, uploaded as the tab uploads one, into the portal's template files.
async fn template_upload(State(svc): State<AppState>, Admin(admin): Admin, body: Result<Json<UploadRequest>, JsonRejection>) -> Result<impl IntoResponse, AppError> {
    let request = json_body(body)?;
    Ok(Json(create_upload(&svc, &Uploader::administrator(&admin), request).await?))
}

async fn delete_template(State(svc): State<AppState>, Admin(admin): Admin, Path(id): Path<String>) -> Result<impl IntoResponse, AppError> {
    templates::delete(&svc, &admin, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
