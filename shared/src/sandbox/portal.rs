//! A simulated Bitrix24 portal speaking the REST protocol the app calls: OAuth, users,
//! CRM records, `batch`, with Bitrix24's error shapes and rate-limit answers.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::openlines::{Installation, OlMessage, SimActivity, SimChat, is_user};
use crate::clock::{now_millis, now_secs};
use crate::domain::EntityType;

const TOKEN_LIFETIME: i64 = 3600;

/// One simulated portal: its employees and CRM records, in REST shapes.
#[derive(Clone, Debug)]
pub struct SimPortal {
    pub member_id: String,
    pub domain: String,
    /// `user.current` shapes: `{"ID":"1","NAME":...}`.
    pub users: Vec<Value>,
    pub records: HashMap<(EntityType, u64), Value>,
    /// Deal id → `crm.deal.contact.items.get` rows.
    pub deal_contacts: HashMap<u64, Vec<Value>>,
    /// Its Open Lines: `imopenlines.config.list.get` rows.
    pub lines: Vec<Value>,
    /// What our app registered here when installed.
    pub installation: Installation,
}

#[derive(Clone)]
pub(super) struct Grant {
    pub member_id: String,
    pub user_id: u64,
    expires_at: i64,
}

#[derive(Default)]
pub(super) struct PortalState {
    pub portals: Vec<SimPortal>,
    access: HashMap<String, Grant>,
    refresh: HashMap<String, (String, u64)>,
    rest_requests: u64,
    /// The next this many REST calls answer QUERY_LIMIT_EXCEEDED.
    rate_limited: u32,
    pub next_id: u64,
    pub chats: Vec<SimChat>,
    pub ol_messages: Vec<OlMessage>,
    pub activities: Vec<SimActivity>,
}

/// What Bitrix24 hands an app when an administrator installs it.
pub struct InstallGrant {
    pub domain: String,
    pub access_token: String,
    pub refresh_token: String,
    pub application_token: String,
}

pub struct SandboxPortal {
    state: Mutex<PortalState>,
    client_id: String,
    client_secret: String,
    /// Where this portal's REST API answers, as `client_endpoint` says.
    pub rest_url: String,
    /// Delivers events to the app.
    pub(super) http: reqwest::Client,
}

/// A REST error as Bitrix24 writes it.
pub(super) struct RestError {
    status: StatusCode,
    code: &'static str,
    pub description: String,
}

impl RestError {
    pub(super) fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self { status, code, description: description.into() }
    }

    fn body(&self) -> Value {
        json!({ "error": self.code, "error_description": self.description })
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

fn time_block(started: i64) -> Value {
    let now = now_millis();
    json!({ "start": started as f64 / 1000.0, "finish": now as f64 / 1000.0, "duration": (now - started) as f64 / 1000.0,
            "processing": 0.0, "date_start": "", "date_finish": "" })
}

fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl SandboxPortal {
    pub fn new(portals: Vec<SimPortal>, client_id: &str, client_secret: &str, rest_url: String) -> Self {
        Self {
            state: Mutex::new(PortalState { portals, ..PortalState::default() }),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            rest_url,
            http: reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().expect("the HTTP client builds"),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, PortalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What Bitrix24 does when a user opens an app: fresh `AUTH_ID` and `REFRESH_ID`.
    pub fn issue_tokens(&self, member_id: &str, user_id: u64) -> (String, String) {
        let (access, refresh) = (token(), token());
        let mut state = self.lock();
        let grant = Grant { member_id: member_id.to_owned(), user_id, expires_at: now_secs() + TOKEN_LIFETIME };
        state.access.insert(access.clone(), grant);
        state.refresh.insert(refresh.clone(), (member_id.to_owned(), user_id));
        (access, refresh)
    }

    /// An administrator installs the app: tokens for user 1 and the app's `application_token`
    /// (kept across reinstalls).
    pub fn install(&self, member_id: &str) -> Option<InstallGrant> {
        let (access_token, refresh_token) = self.issue_tokens(member_id, 1);
        let mut state = self.lock();
        let portal = state.portals.iter_mut().find(|p| p.member_id == member_id)?;
        let install = &mut portal.installation;
        install.installed = true;
        let application_token = install.application_token.get_or_insert_with(token).clone();
        Some(InstallGrant { domain: portal.domain.clone(), access_token, refresh_token, application_token })
    }

    /// An administrator removes the app: `OnAppUninstall` goes out, then everything it registered is dropped.
    pub fn uninstall(&self, member_id: &str) {
        self.deliver(vec![(member_id.to_owned(), json!({ "LANGUAGE_ID": "en", "CLEAN": "0" }))], "OnAppUninstall");
        let mut state = self.lock();
        if let Some(portal) = state.portals.iter_mut().find(|p| p.member_id == member_id) {
            portal.installation = Installation::default();
        }
    }

    /// Every access token issued so far expires now (refresh tokens stay valid).
    pub fn expire_access_tokens(&self) {
        for grant in self.lock().access.values_mut() {
            grant.expires_at = now_secs() - 1;
        }
    }

    pub fn rate_limit_next(&self, calls: u32) {
        self.lock().rate_limited = calls;
    }

    /// REST requests served so far, OAuth included.
    pub fn rest_requests(&self) -> u64 {
        self.lock().rest_requests
    }

    pub fn portal(&self, member_id: &str) -> Option<SimPortal> {
        self.lock().portals.iter().find(|p| p.member_id == member_id).cloned()
    }

    fn authenticate(&self, params: &Map<String, Value>) -> Result<Grant, RestError> {
        let auth = params.get("auth").and_then(Value::as_str).unwrap_or("");
        if auth.is_empty() {
            return Err(RestError::new(StatusCode::UNAUTHORIZED, "NO_AUTH_FOUND", "Wrong authorization data"));
        }
        let mut state = self.lock();
        if state.rate_limited > 0 {
            state.rate_limited -= 1;
            return Err(RestError::new(StatusCode::SERVICE_UNAVAILABLE, "QUERY_LIMIT_EXCEEDED", "Too many requests"));
        }
        let grant = state
            .access
            .get(auth)
            .cloned()
            .ok_or_else(|| RestError::new(StatusCode::UNAUTHORIZED, "invalid_token", "The access token provided is invalid."))?;
        if grant.expires_at <= now_secs() {
            return Err(RestError::new(StatusCode::UNAUTHORIZED, "expired_token", "The access token provided has expired."));
        }
        Ok(grant)
    }

    fn call(&self, grant: &Grant, method: &str, params: &Map<String, Value>, events: &mut Vec<(String, Value)>) -> Result<Value, RestError> {
        if let Some(answer) = self.lock().platform_call(grant, method, params) {
            let (value, caused) = answer?;
            events.extend(caused);
            return Ok(value);
        }
        let portal = self
            .portal(&grant.member_id)
            .ok_or_else(|| RestError::new(StatusCode::UNAUTHORIZED, "invalid_token", "The portal is gone."))?;
        let id = || -> Result<u64, RestError> {
            let raw = params.get("id").or_else(|| params.get("ID"));
            let id = raw.and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok())).filter(|&i| i > 0);
            id.ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "", "ID is not defined or invalid."))
        };
        match method {
            "user.current" => portal
                .users
                .iter()
                .find(|u| is_user(u, grant.user_id))
                .cloned()
                .ok_or_else(|| RestError::new(StatusCode::UNAUTHORIZED, "invalid_token", "No such user.")),
            "app.info" => Ok(json!({
                "ID": 1, "CODE": self.client_id, "VERSION": 1, "STATUS": "L", "INSTALLED": true,
                "PAYMENT_EXPIRED": "N", "DAYS": null, "LANGUAGE_ID": "en", "LICENSE": "en_project",
            })),
            "crm.deal.contact.items.get" => {
                let id = id()?;
                portal.records.get(&(EntityType::Deal, id)).ok_or_else(not_found)?;
                Ok(Value::Array(portal.deal_contacts.get(&id).cloned().unwrap_or_default()))
            }
            "batch" => Ok(self.batch(grant, params, events)),
            other => {
                let kind = EntityType::ALL
                    .into_iter()
                    .find(|t| t.get_method() == other)
                    .ok_or_else(|| RestError::new(StatusCode::NOT_FOUND, "ERROR_METHOD_NOT_FOUND", "Method not found!"))?;
                portal.records.get(&(kind, id()?)).cloned().ok_or_else(not_found)
            }
        }
    }

    /// `batch`: `cmd` of `method?query`, with `$result[key][field]` references to earlier results.
    fn batch(&self, grant: &Grant, params: &Map<String, Value>, events: &mut Vec<(String, Value)>) -> Value {
        let mut results = Map::new();
        let mut errors = Map::new();
        let commands = params.get("cmd").and_then(Value::as_object).cloned().unwrap_or_default();
        for (key, command) in commands.iter().take(50) {
            let command = command.as_str().unwrap_or("");
            let (method, query) = command.split_once('?').unwrap_or((command, ""));
            let mut sub: Map<String, Value> = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, Value::String(substitute(&v, &results))))
                .collect();
            sub.insert("auth".into(), Value::Null);
            match self.call(grant, method, &sub, events) {
                Ok(result) => {
                    results.insert(key.clone(), result);
                }
                Err(e) => {
                    errors.insert(key.clone(), e.body());
                }
            }
        }
        let errors = if errors.is_empty() { json!([]) } else { Value::Object(errors) };
        json!({ "result": results, "result_error": errors, "result_total": [], "result_next": [], "result_time": [] })
    }
}

fn not_found() -> RestError {
    RestError::new(StatusCode::BAD_REQUEST, "NOT_FOUND", "Not found")
}

/// Replaces `$result[key][field]...` with the referenced value of an earlier command.
fn substitute(value: &str, results: &Map<String, Value>) -> String {
    let Some(path) = value.strip_prefix("$result") else { return value.to_owned() };
    let mut current: Option<&Value> = None;
    for (i, segment) in path.trim_start_matches('[').trim_end_matches(']').split("][").enumerate() {
        current = if i == 0 {
            results.get(segment)
        } else {
            current.and_then(|c| c.get(segment).or_else(|| c.get(segment.parse::<usize>().ok()?)))
        };
    }
    match current {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Parameters from the query string and the body (JSON or form), as Bitrix24 accepts them.
fn params(query: Option<&str>, body: &[u8]) -> Map<String, Value> {
    let mut out = Map::new();
    let form = |raw: &[u8]| -> Vec<(String, String)> { serde_urlencoded::from_bytes(raw).unwrap_or_default() };
    for (k, v) in form(query.unwrap_or("").as_bytes()) {
        out.insert(k, Value::String(v));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => out.extend(map),
        _ => out.extend(form(body).into_iter().map(|(k, v)| (k, Value::String(v)))),
    }
    out
}

pub fn routes() -> Router<std::sync::Arc<SandboxPortal>> {
    Router::new()
        .route("/sandbox/portal/rest/{method}", any(rest))
        .route("/sandbox/portal/oauth/token/", get(oauth_token))
        .route("/sandbox/portal/faults", post(faults))
        .route("/sandbox/portal/stats", get(stats))
        .route("/sandbox/portal/state", get(state))
        .route("/sandbox/portal/openlines/messages", get(openline_messages))
        .route("/sandbox/portal/openlines/operator", post(operator_writes))
        .route("/sandbox/portal/activities", get(activities))
}

async fn rest(
    State(portal): State<std::sync::Arc<SandboxPortal>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let started = now_millis();
    portal.lock().rest_requests += 1;
    let params = params(query.as_deref(), &body);
    let method = method.trim_end_matches(".json").to_ascii_lowercase();
    let mut events = Vec::new();
    let answer = portal.authenticate(&params).and_then(|grant| portal.call(&grant, &method, &params, &mut events));
    portal.deliver(events, "OnImConnectorMessageAdd");
    match answer {
        Ok(result) => Json(json!({ "result": result, "time": time_block(started) })).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    grant_type: String,
    client_id: String,
    client_secret: String,
    refresh_token: String,
}

/// `oauth.bitrix.info/oauth/token/`: trades a refresh token for new, rotated tokens.
async fn oauth_token(State(portal): State<std::sync::Arc<SandboxPortal>>, Query(q): Query<TokenQuery>) -> Response {
    portal.lock().rest_requests += 1;
    let oauth_error = |code: &'static str, text: &str| RestError::new(StatusCode::BAD_REQUEST, code, text).into_response();
    if q.grant_type != "refresh_token" {
        return oauth_error("unsupported_grant_type", "Grant type is not supported");
    }
    if q.client_id != portal.client_id || q.client_secret != portal.client_secret {
        return oauth_error("invalid_client", "Invalid client credentials");
    }
    let Some((member_id, user_id)) = portal.lock().refresh.remove(&q.refresh_token) else {
        return oauth_error("invalid_grant", "Invalid refresh token");
    };
    let (access, refresh) = portal.issue_tokens(&member_id, user_id);
    let domain = portal.portal(&member_id).map(|p| p.domain).unwrap_or_default();
    Json(json!({
        "access_token": access, "refresh_token": refresh, "expires_in": TOKEN_LIFETIME,
        "expires": now_secs() + TOKEN_LIFETIME, "scope": "crm,placement,imopenlines,imconnector,im,user",
        "domain": "oauth.bitrix.info", "server_endpoint": "https://oauth.bitrix.info/rest/",
        "client_endpoint": portal.rest_url, "member_id": member_id, "user_id": user_id, "status": "L",
        "portal_domain": domain,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct Faults {
    #[serde(default)]
    expire_tokens: bool,
    #[serde(default)]
    rate_limit_next: u32,
}

/// Test and demo hook: expire tokens, or answer the next calls with QUERY_LIMIT_EXCEEDED.
async fn faults(State(portal): State<std::sync::Arc<SandboxPortal>>, Json(f): Json<Faults>) -> StatusCode {
    if f.expire_tokens {
        portal.expire_access_tokens();
    }
    if f.rate_limit_next > 0 {
        portal.rate_limit_next(f.rate_limit_next);
    }
    StatusCode::NO_CONTENT
}

async fn stats(State(portal): State<std::sync::Arc<SandboxPortal>>) -> Json<Value> {
    Json(json!({ "rest_requests": portal.rest_requests() }))
}

#[derive(Deserialize)]
struct StateQuery {
    member_id: String,
}

/// What the app registered on a portal: placements, connector, active lines, event bindings.
async fn state(State(portal): State<std::sync::Arc<SandboxPortal>>, Query(q): Query<StateQuery>) -> Response {
    match portal.portal(&q.member_id) {
        Some(p) => Json(json!({
            "member_id": p.member_id, "domain": p.domain, "lines": p.lines,
            "installed": p.installation.installed, "application_token_set": p.installation.application_token.is_some(),
            "placements": p.installation.placements, "connectors": p.installation.connectors,
            "active": p.installation.active, "events": p.installation.events,
            "chats": portal.chats().into_iter().filter(|c| c.portal == p.member_id).collect::<Vec<_>>(),
        }))
        .into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": "no such sandbox portal" }))).into_response(),
    }
}

async fn openline_messages(State(portal): State<std::sync::Arc<SandboxPortal>>) -> Json<Value> {
    Json(json!({ "messages": portal.ol_messages() }))
}

async fn activities(State(portal): State<std::sync::Arc<SandboxPortal>>) -> Json<Value> {
    Json(json!({ "activities": portal.activities() }))
}

#[derive(Deserialize)]
struct OperatorMessage {
    chat_id: u64,
    user_id: u64,
    text: String,
}

/// An employee writes into an Open Line chat (JSON, or the form of the sandbox page).
async fn operator_writes(State(portal): State<std::sync::Arc<SandboxPortal>>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let (parsed, is_form) = super::form_or_json::<OperatorMessage>(&headers, &body);
    let written = parsed.and_then(|m| if m.text.trim().is_empty() { Err("the text is empty".into()) } else { Ok(m) })
        .and_then(|m| portal.operator_writes(m.chat_id, m.user_id, &m.text));
    match (written, is_form) {
        (Ok(_), true) => axum::response::Redirect::to("/sandbox/openlines").into_response(),
        (Ok(id), false) => Json(json!({ "message_id": id })).into_response(),
        (Err(e), _) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response(),
    }
}
