//! A simulated Bitrix24 portal speaking the REST protocol the app calls: OAuth
//! (`settings/oauth/index.md`, `settings/oauth/auto-renewal.md`), calls and their answer
//! envelope (`settings/how-to-call-rest-api/general-principles.md`: `result`, `time`, and
//! `total`/`next` for lists, `settings/how-to-call-rest-api/list-methods-pecularities.md`),
//! `batch` (`settings/how-to-call-rest-api/batch.md`),
//! the system errors of `_includes/system-errors.md` and the limits of
//! `settings/performance/limits.md`; the users and app methods the app relies on; and the
//! events it POSTs to the app. Open Lines methods are in `openlines`, CRM ones in `crm`.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::state::{Answer, Caused, Grant, Params, PortalState, RestError, SimPortal, access_denied, page, text_param};
use crate::clock::{now_millis, now_secs};
use crate::domain::EntityType;

const TOKEN_LIFETIME: i64 = 3600;
/// Method time is counted in one-minute baskets over 10 minutes (`settings/performance/limits.md`).
const OPERATING_WINDOW_SECS: i64 = 600;

/// What Bitrix24 hands an app when an administrator installs it.
pub struct InstallGrant {
    pub domain: String,
    pub access_token: String,
    pub refresh_token: String,
    pub application_token: String,
}

/// The apps the sandbox portal knows: ours, and another installed on the same portals
/// (whose tokens must not pass as ours).
pub struct SandboxApps {
    pub client_id: String,
    pub client_secret: String,
    /// What `app.info` names as `CODE`: for a Marketplace app not its `client_id`
    /// (`api-reference/common/system/app-info.md`); the sandbox plays one.
    pub code: String,
}

/// The other app's `client_id` and `app.info` code.
pub const OTHER_APP_CLIENT_ID: &str = "app.sandbox.other";
pub const OTHER_APP_CODE: &str = "other.crm_helper";

pub struct SandboxPortal {
    state: Mutex<PortalState>,
    pub app: SandboxApps,
    /// Where this portal's REST API answers, as `client_endpoint` says.
    pub rest_url: String,
    /// Where the app answers: handlers outside it are refused (see `openlines::placement_bind`).
    pub app_url: String,
    /// Delivers events to the app.
    pub(super) http: reqwest::Client,
    /// REST requests that carried their `auth` token in the URL, which logs along the way
    /// keep (the docs allow it: `settings/how-to-call-rest-api/general-principles.md`).
    tokens_in_urls: std::sync::atomic::AtomicU64,
}

/// `api-reference/data-types.md#time`: `date_start` / `date_finish` are ISO 8601 date-times.
pub(super) fn iso8601(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn time_block(started: i64) -> Value {
    let now = now_millis();
    json!({ "start": started as f64 / 1000.0, "finish": now as f64 / 1000.0, "duration": (now - started) as f64 / 1000.0,
            "processing": 0.0, "date_start": iso8601(started), "date_finish": iso8601(now),
            "operating_reset_at": now / 1000 + OPERATING_WINDOW_SECS, "operating": 0 })
}

fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl SandboxPortal {
    pub fn new(portals: Vec<SimPortal>, app: SandboxApps, rest_url: String, app_url: String) -> Self {
        Self {
            state: Mutex::new(PortalState { portals, ..PortalState::default() }),
            app,
            rest_url,
            app_url,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("the HTTP client builds"),
            tokens_in_urls: Default::default(),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, PortalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What Bitrix24 does when a user opens our app: fresh `AUTH_ID` and `REFRESH_ID`.
    pub fn issue_tokens(&self, member_id: &str, user_id: u64) -> (String, String) {
        self.issue_tokens_of(&self.app.client_id.clone(), member_id, user_id)
    }

    /// The same for any app installed on the portal.
    pub fn issue_tokens_of(&self, client_id: &str, member_id: &str, user_id: u64) -> (String, String) {
        let (access, refresh) = (token(), token());
        let mut state = self.lock();
        let grant = Grant { member_id: member_id.to_owned(), user_id, expires_at: now_secs() + TOKEN_LIFETIME, app: client_id.to_owned() };
        state.access.insert(access.clone(), grant);
        if client_id == self.app.client_id {
            state.refresh.insert(refresh.clone(), (member_id.to_owned(), user_id));
        }
        (access, refresh)
    }

    /// An administrator installs the app: tokens for the first administrator and the app's
    /// `application_token` (kept across reinstalls). The install finishes later
    /// ([`SandboxPortal::finish_install`]).
    pub fn install(&self, member_id: &str) -> Option<InstallGrant> {
        let admin = self.portal(member_id)?.admins.first().copied()?;
        let (access_token, refresh_token) = self.issue_tokens(member_id, admin);
        let mut state = self.lock();
        let portal = state.portals.iter_mut().find(|p| p.member_id == member_id)?;
        let application_token = portal.installation.application_token.get_or_insert_with(token).clone();
        Some(InstallGrant { domain: portal.domain.clone(), access_token, refresh_token, application_token })
    }

    /// `BX24.installFinish()` on the install page, or an app without UI installed.
    pub fn finish_install(&self, member_id: &str) {
        if let Ok(install) = self.lock().installation(member_id) {
            install.installed = true;
        }
    }

    /// An administrator removes the app: `OnAppUninstall` goes out, then everything it
    /// registered is dropped (`api-reference/common/events/on-app-uninstall.md`).
    pub fn uninstall(&self, member_id: &str) {
        self.deliver(vec![(member_id.to_owned(), "OnAppUninstall", json!({ "LANGUAGE_ID": "en", "CLEAN": "0" }))]);
        let mut state = self.lock();
        if let Ok(install) = state.installation(member_id) {
            *install = Default::default();
        }
        state.access.retain(|_, g| g.member_id != member_id);
        state.refresh.retain(|_, (m, _)| m != member_id);
    }

    /// Every access token issued so far expires now (refresh tokens stay valid).
    pub fn expire_access_tokens(&self) {
        for grant in self.lock().access.values_mut() {
            grant.expires_at = now_secs() - 1;
        }
    }

    /// An administrator changes who may manage apps (the portal's settings, not REST:
    /// `api-reference/common/users/user-admin.md` only reads it).
    pub fn set_admin(&self, member_id: &str, user_id: u64, admin: bool) {
        let mut state = self.lock();
        if let Some(portal) = state.portals.iter_mut().find(|p| p.member_id == member_id) {
            portal.admins.retain(|&a| a != user_id);
            if admin {
                portal.admins.push(user_id);
            }
        }
    }

    /// An administrator limits what CRM records a user may read (the CRM's access rights, set
    /// in the portal, not by REST); `crm.<type>.get` then answers "Access denied" for the rest.
    pub fn limit_records(&self, member_id: &str, user_id: u64, readable: Vec<(EntityType, u64)>) {
        if let Some(portal) = self.lock().portals.iter_mut().find(|p| p.member_id == member_id) {
            portal.record_access.insert(user_id, readable);
        }
    }

    pub fn rate_limit_next(&self, calls: u32) {
        self.lock().rate_limited = calls;
    }

    /// `method` answers `OPERATION_TIME_LIMIT` for `seconds`.
    pub fn block_method(&self, method: &str, seconds: i64) {
        self.lock().blocked_methods.insert(method.to_ascii_lowercase(), now_secs() + seconds);
    }

    /// REST requests served so far, OAuth included.
    pub fn rest_requests(&self) -> u64 {
        self.lock().rest_requests
    }

    /// REST requests so far whose URL carried the access token.
    pub fn tokens_in_urls(&self) -> u64 {
        self.tokens_in_urls.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn portal(&self, member_id: &str) -> Option<SimPortal> {
        self.lock().portals.iter().find(|p| p.member_id == member_id).cloned()
    }

    /// The token's grant. "Wrong authorization data" for a missing or unknown token, and
    /// `expired_token` for an expired one (`_includes/system-errors.md`).
    fn authenticate(&self, params: &Params) -> Result<Grant, RestError> {
        let auth = params.get("auth").and_then(Value::as_str).unwrap_or("");
        let no_auth = || RestError::new(StatusCode::UNAUTHORIZED, "NO_AUTH_FOUND", "Wrong authorization data");
        if auth.is_empty() {
            return Err(no_auth());
        }
        let mut state = self.lock();
        if state.rate_limited > 0 {
            state.rate_limited -= 1;
            return Err(RestError::new(StatusCode::SERVICE_UNAVAILABLE, "QUERY_LIMIT_EXCEEDED", "Too many requests"));
        }
        let grant = state.access.get(auth).cloned().ok_or_else(no_auth)?;
        if grant.expires_at <= now_secs() {
            return Err(RestError::new(StatusCode::UNAUTHORIZED, "expired_token", "The access token provided has expired"));
        }
        Ok(grant)
    }

    /// One method call; the events it caused are added to `events`.
    fn call(&self, grant: &Grant, method: &str, params: &Params, events: &mut Caused) -> Result<Answer, RestError> {
        if self.lock().blocked_methods.get(method).is_some_and(|&until| now_secs() < until) {
            // `settings/performance/limits.md`: 429, the method blocked for this app.
            return Err(RestError::new(StatusCode::TOO_MANY_REQUESTS, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."));
        }
        if method == "batch" {
            return Ok(self.batch(grant, params, events).into());
        }
        if let Some(answer) = self.core_call(grant, method, params) {
            return answer;
        }
        let mut state = self.lock();
        if let Some(answer) = state.crm_call(grant, method, params) {
            return answer;
        }
        if let Some(answer) = state.automation_call(grant, method, params, &self.app_url) {
            return answer;
        }
        if let Some(answer) = state.platform_call(grant, method, params, &self.app_url) {
            let (answer, caused) = answer?;
            events.extend(caused);
            return Ok(answer);
        }
        Err(RestError::new(StatusCode::NOT_FOUND, "ERROR_METHOD_NOT_FOUND", "Method not found!"))
    }

    /// Users and the app itself.
    fn core_call(&self, grant: &Grant, method: &str, params: &Params) -> Option<Result<Answer, RestError>> {
        let state = self.lock();
        let portal = match state.portal(&grant.member_id) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let current = || portal.user(grant.user_id).cloned().ok_or_else(|| access_denied("No such user"));
        Some(match method {
            // `api-reference/user/user-current.md`: the user's fields; no `ADMIN` among them.
            "user.current" => current().map(Answer::from),
            // `api-reference/common/users/user-admin.md`: may the user manage the app's settings.
            "user.admin" => Ok(Value::Bool(portal.is_admin(grant.user_id)).into()),
            // `api-reference/common/users/profile.md`: ID, ADMIN, NAME, LAST_NAME, PERSONAL_GENDER, PERSONAL_PHOTO, TIME_ZONE, TIME_ZONE_OFFSET.
            "profile" => current().map(|u| {
                json!({ "ID": u["ID"], "ADMIN": portal.is_admin(grant.user_id), "NAME": u["NAME"], "LAST_NAME": u["LAST_NAME"],
                        "PERSONAL_GENDER": "", "TIME_ZONE": u["TIME_ZONE"], "TIME_ZONE_OFFSET": 10800 }).into()
            }),
            // `api-reference/user/user-get.md`: filters by the fields given (`FILTER` or top level), pages of 50.
            "user.get" => Ok(page(users_matching(&portal.users, params), params)),
            // `api-reference/departments/department-get.md`: any user; filters, `sort`/`order`, pages of 50 from `START`.
            "department.get" => Ok(departments_matching(&portal.departments, params)),
            // `api-reference/common/system/app-info.md`: the app of the token, its CODE and the portal's LICENSE.
            "app.info" => {
                let code = if grant.app == self.app.client_id { self.app.code.as_str() } else { OTHER_APP_CODE };
                Ok(json!({
                    "ID": if grant.app == self.app.client_id { 1 } else { 2 }, "CODE": code, "VERSION": 1, "STATUS": "P",
                    "INSTALLED": portal.installation.installed || grant.app != self.app.client_id,
                    "PAYMENT_EXPIRED": "N", "DAYS": 30, "LANGUAGE_ID": "en", "LICENSE": portal.license,
                    "LICENSE_TYPE": portal.license.split_once('_').map(|(_, t)| t).unwrap_or(""),
                })
                .into())
            }
            _ => return None,
        })
    }

    /// `settings/how-to-call-rest-api/batch.md`: up to 50 commands of `method?query`, with
    /// `$result[key][field]` references to earlier results; HTTP 200 even when commands fail.
    fn batch(&self, grant: &Grant, params: &Params, events: &mut Caused) -> Value {
        let mut results = Map::new();
        let mut errors = Map::new();
        let (mut totals, mut nexts) = (Map::new(), Map::new());
        let commands = ordered_commands(params);
        let halt = text_param(params, "halt").is_some_and(|h| h == "1" || h == "true" || h == "Y");
        let mut times = Map::new();
        for (index, (key, command)) in commands.iter().enumerate() {
            // batch.md: "subqueries beyond the limit will end with an error ERROR_BATCH_LENGTH_EXCEEDED".
            if index >= 50 {
                errors.insert(key.clone(), RestError::new(StatusCode::BAD_REQUEST, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded").body());
                continue;
            }
            let command = command.as_str().unwrap_or("");
            let (method, query) = command.split_once('?').unwrap_or((command, ""));
            let method = method.to_ascii_lowercase();
            let started = now_millis();
            // batch.md: a nested batch is refused with ERROR_BATCH_METHOD_NOT_ALLOWED.
            let outcome = if method == "batch" {
                Err(RestError::new(StatusCode::METHOD_NOT_ALLOWED, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage"))
            } else {
                let sub = batch_params(query, &results);
                self.call(grant, &method, &sub, events)
            };
            // batch.md: result_time holds each subquery's time block.
            let mut time = time_block(started);
            if let Some(t) = time.as_object_mut() {
                t.remove("operating");
                t.remove("operating_reset_at");
            }
            times.insert(key.clone(), time);
            match outcome {
                Ok(answer) => {
                    if let Some(total) = answer.total {
                        totals.insert(key.clone(), json!(total));
                    }
                    if let Some(next) = answer.next {
                        nexts.insert(key.clone(), json!(next));
                    }
                    results.insert(key.clone(), answer.result);
                }
                Err(e) => {
                    errors.insert(key.clone(), e.body());
                    if halt {
                        break;
                    }
                }
            }
        }
        let or_empty = |m: Map<String, Value>| if m.is_empty() { json!([]) } else { Value::Object(m) };
        // batch.md: empty members are [] (the halt example), `result` included.
        json!({ "result": or_empty(results), "result_error": or_empty(errors), "result_total": or_empty(totals),
                "result_next": or_empty(nexts), "result_time": or_empty(times) })
    }
}

/// Users matching a `user.get` filter (`api-reference/user/user-get.md`): each key may carry
/// one of the documented prefixes `>=`, `>`, `<=`, `<`, `@`, `!@`, `=`, `!=`, `!` on the fields
/// the sandbox's users have; values may be arrays (any of them).
fn users_matching(users: &[Value], params: &Params) -> Vec<Value> {
    let filter = params.get("FILTER").or_else(|| params.get("filter")).and_then(Value::as_object).cloned().unwrap_or_else(|| params.clone());
    const PREFIXES: [&str; 9] = [">=", "<=", "!@", "!=", ">", "<", "@", "=", "!"];
    let conditions: Vec<(&str, String, Value)> = filter.iter().filter_map(|(key, value)| {
        let prefix = PREFIXES.iter().find(|p| key.starts_with(**p)).copied().unwrap_or("");
        let field = key[prefix.len()..].to_owned();
        users.iter().any(|u| u.get(&field).is_some()).then(|| (prefix, field, value.clone()))
    }).collect();
    let text = |v: &Value| match v {
        Value::Bool(b) => Some(if *b { "Y" } else { "N" }.to_owned()),
        other => super::state::scalar(other),
    };
    let normal = |field: &str, v: &Value| -> Option<String> {
        let t = text(v)?;
        if field == "ACTIVE" { Some(if t == "true" || t == "Y" || t == "1" { "Y" } else { "N" }.to_owned()) } else { Some(t) }
    };
    let compare = |a: &str, b: &str| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    };
    let holds = |u: &Value, (prefix, field, wanted): &(&str, String, Value)| {
        let Some(actual) = normal(field, &u[field.as_str()]) else { return false };
        let values: Vec<String> = match wanted {
            Value::Array(items) => items.iter().filter_map(|w| normal(field, w)).collect(),
            w => normal(field, w).into_iter().collect(),
        };
        let any = |f: &dyn Fn(std::cmp::Ordering) -> bool| values.iter().any(|w| f(compare(&actual, w)));
        use std::cmp::Ordering::*;
        match *prefix {
            ">=" => any(&|o| o != Less),
            ">" => any(&|o| o == Greater),
            "<=" => any(&|o| o != Greater),
            "<" => any(&|o| o == Less),
            "!" | "!=" | "!@" => !any(&|o| o == Equal),
            _ => any(&|o| o == Equal),
        }
    };
    users.iter().filter(|u| conditions.iter().all(|c| holds(u, c))).cloned().collect()
}

/// `department.get`: the departments whose `ID`, `NAME` (the full name), `SORT`, `PARENT` and
/// `UF_HEAD` equal the ones given, sorted by `sort` (in `order`), one page from `START`.
fn departments_matching(departments: &[Value], params: &Params) -> Answer {
    let filters = ["ID", "NAME", "SORT", "PARENT", "UF_HEAD"];
    let wanted = |d: &Value| filters.iter().all(|k| params.get(*k).is_none_or(|w| super::state::scalar(w) == super::state::scalar(&d[*k])));
    let mut rows: Vec<Value> = departments.iter().filter(|d| wanted(d)).cloned().collect();
    if let Some(field) = text_param(params, "sort").filter(|f| filters.contains(&f.as_str())) {
        let key = |d: &Value| {
            let value = super::state::scalar(&d[field.as_str()]).unwrap_or_default();
            (value.parse::<u64>().ok(), value)
        };
        rows.sort_by_key(key);
        if text_param(params, "order").is_some_and(|o| o.eq_ignore_ascii_case("DESC")) {
            rows.reverse();
        }
    }
    let mut paging = params.clone();
    if let Some(start) = params.get("START").cloned() {
        paging.insert("start".into(), start);
    }
    page(rows, &paging)
}

/// Where the body gave `cmd` as JSON, the order of its keys (a `Map` sorts them).
const CMD_ORDER: &str = "\u{0}cmd_order";

/// `cmd` in the order it was sent: "subqueries are executed sequentially" (`batch.md`).
fn ordered_commands(params: &Params) -> Vec<(String, Value)> {
    let commands = params.get("cmd").and_then(Value::as_object).cloned().unwrap_or_default();
    let order: Vec<String> = params.get(CMD_ORDER).and_then(|o| serde_json::from_value(o.clone()).ok()).unwrap_or_else(|| commands.keys().cloned().collect());
    order.into_iter().filter_map(|k| commands.get(&k).map(|c| (k.clone(), c.clone()))).collect()
}

/// The keys of a JSON body's `cmd` object, in the order written.
fn cmd_order(body: &[u8]) -> Option<Vec<String>> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some(key) = map.next_key::<String>()? {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        keys.push(key);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    #[derive(Deserialize)]
    struct Body {
        cmd: Keys,
    }
    serde_json::from_slice::<Body>(body).ok().map(|b| b.cmd.0)
}

/// A batch command's query, bracket keys decoded into nested parameters, `$result[..]` replaced.
fn batch_params(query: &str, results: &Map<String, Value>) -> Params {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let mut out = Params::new();
    for (key, value) in pairs {
        let value = Value::String(substitute(&value, results));
        let mut path = key.split('[').map(|s| s.trim_end_matches(']').to_owned());
        let head = path.next().unwrap_or_default();
        let rest: Vec<String> = path.collect();
        insert_path(out.entry(head).or_insert(Value::Null), &rest, value);
    }
    out.values_mut().for_each(indexed_as_lists);
    out
}

/// Bitrix24 reads a query as PHP does (`parse_str`): `A[0]=x&A[1]=y` is the list `[x, y]`,
/// as the same parameter sent as JSON would be.
fn indexed_as_lists(value: &mut Value) {
    let Value::Object(map) = value else { return };
    map.values_mut().for_each(indexed_as_lists);
    let indexed = !map.is_empty() && (0..map.len()).all(|i| map.contains_key(&i.to_string()));
    if indexed {
        let items = (0..map.len()).map(|i| map.remove(&i.to_string()).expect("every index is there")).collect();
        *value = Value::Array(items);
    }
}

fn insert_path(slot: &mut Value, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *slot = value;
        return;
    };
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    let child = slot.as_object_mut().expect("made an object").entry(first.clone()).or_insert(Value::Null);
    insert_path(child, rest, value);
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

fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default()
}

/// Parameters from the query string and the body (JSON or form), as Bitrix24 accepts them.
fn params(query: Option<&str>, body: &[u8]) -> Params {
    let mut out = Params::new();
    let form = |raw: &[u8]| -> Vec<(String, String)> { serde_urlencoded::from_bytes(raw).unwrap_or_default() };
    for (k, v) in query_params(query) {
        out.insert(k, Value::String(v));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            out.extend(map);
            if let Some(order) = cmd_order(body) {
                out.insert(CMD_ORDER.into(), json!(order));
            }
        }
        _ => out.extend(form(body).into_iter().map(|(k, v)| (k, Value::String(v)))),
    }
    out
}

type PortalRef = State<Arc<SandboxPortal>>;

pub fn routes() -> Router<Arc<SandboxPortal>> {
    Router::new()
        .route("/sandbox/portal/rest/{method}", any(rest))
        .route("/sandbox/portal/oauth/token/", get(oauth_token))
        .route("/sandbox/portal/faults", post(faults))
        .route("/sandbox/portal/stats", get(stats))
        .route("/sandbox/portal/state", get(state))
        .route("/sandbox/portal/openlines/messages", get(openline_messages))
        .route("/sandbox/portal/openlines/operator", post(operator_writes))
        .route("/sandbox/portal/openlines/operator/edit", post(operator_edits))
        .route("/sandbox/portal/openlines/operator/delete", post(operator_deletes))
        .route("/sandbox/portal/openlines/disconnect", post(disconnect_line))
        .route("/sandbox/portal/activities", get(activities))
        .route("/sandbox/portal/notifications", get(notifications))
        .merge(super::automation_runs::routes())
}

async fn rest(State(portal): PortalRef, Path(method): Path<String>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let started = now_millis();
    portal.lock().rest_requests += 1;
    if query_params(query.as_deref()).iter().any(|(k, _)| k == "auth") {
        portal.tokens_in_urls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let params = params(query.as_deref(), &body);
    let method = method.trim_end_matches(".json").to_ascii_lowercase();
    let mut events = Vec::new();
    let answer = portal.authenticate(&params).and_then(|grant| portal.call(&grant, &method, &params, &mut events));
    portal.deliver(events);
    match answer {
        Ok(Answer { result, total, next }) => {
            let mut body = json!({ "result": result, "time": time_block(started) });
            if let Some(total) = total {
                body["total"] = json!(total);
            }
            if let Some(next) = next {
                body["next"] = json!(next);
            }
            Json(body).into_response()
        }
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

/// `oauth.bitrix.info/oauth/token/` (`settings/oauth/auto-renewal.md`): trades a refresh
/// token for new, rotated tokens. The docs describe one form only, "a GET request to the
/// authorization server with four parameters in the query string"
/// (`api-reference/chat-bots/send-command.md`); they are silent on a POST or a form body,
/// so the stricter reading is taken and the route answers GET with a query, nothing else.
async fn oauth_token(State(portal): PortalRef, RawQuery(query): RawQuery) -> Response {
    portal.lock().rest_requests += 1;
    let oauth_error = |code: &'static str, text: &str| RestError::new(StatusCode::BAD_REQUEST, code, text).into_response();
    let Ok(q) = serde_urlencoded::from_str::<TokenQuery>(query.as_deref().unwrap_or_default()) else {
        return oauth_error("invalid_request", "grant_type, client_id, client_secret and refresh_token are required");
    };
    if q.grant_type != "refresh_token" {
        return oauth_error("unsupported_grant_type", "Grant type is not supported");
    }
    if q.client_id != portal.app.client_id || q.client_secret != portal.app.client_secret {
        return oauth_error("invalid_client", "Invalid client credentials");
    }
    let Some((member_id, user_id)) = portal.lock().refresh.remove(&q.refresh_token) else {
        return oauth_error("invalid_grant", "Invalid refresh token");
    };
    let (access, refresh) = portal.issue_tokens(&member_id, user_id);
    let domain = portal.portal(&member_id).map(|p| p.domain).unwrap_or_default();
    Json(json!({
        "access_token": access, "refresh_token": refresh, "expires_in": TOKEN_LIFETIME,
        "expires": now_secs() + TOKEN_LIFETIME, "scope": super::state::APP_SCOPE,
        "domain": "oauth.bitrix.info", "server_endpoint": "https://oauth.bitrix.info/rest/",
        "client_endpoint": portal.rest_url, "member_id": member_id, "user_id": user_id, "status": "P",
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
    /// `{"method": "...", "seconds": N}`: the method answers OPERATION_TIME_LIMIT for N seconds.
    #[serde(default)]
    block_method: Option<BlockMethod>,
}

#[derive(Deserialize)]
struct BlockMethod {
    method: String,
    seconds: i64,
}

/// Test and demo hook: expire tokens, answer the next calls with QUERY_LIMIT_EXCEEDED, or
/// block a method as its time budget would.
async fn faults(State(portal): PortalRef, Json(f): Json<Faults>) -> StatusCode {
    if f.expire_tokens {
        portal.expire_access_tokens();
    }
    if f.rate_limit_next > 0 {
        portal.rate_limit_next(f.rate_limit_next);
    }
    if let Some(b) = f.block_method {
        portal.block_method(&b.method, b.seconds);
    }
    StatusCode::NO_CONTENT
}

async fn stats(State(portal): PortalRef) -> Json<Value> {
    Json(json!({ "rest_requests": portal.rest_requests(), "tokens_in_urls": portal.tokens_in_urls() }))
}

#[derive(Deserialize)]
struct StateQuery {
    member_id: String,
}

/// What the app registered on a portal: placements, connector, active lines, event bindings.
async fn state(State(portal): PortalRef, Query(q): Query<StateQuery>) -> Response {
    match portal.portal(&q.member_id) {
        Some(p) => Json(json!({
            "member_id": p.member_id, "domain": p.domain, "lines": p.lines,
            "installed": p.installation.installed, "application_token_set": p.installation.application_token.is_some(),
            "placements": p.installation.placements, "connectors": p.installation.connectors,
            "active": p.installation.active, "connector_data": p.installation.connector_data, "events": p.installation.events,
            "chats": portal.chats().into_iter().filter(|c| c.portal == p.member_id).collect::<Vec<_>>(),
            "records": p.records.iter().map(|((kind, id), r)| json!({ "type": kind.as_str(), "id": id, "record": r })).collect::<Vec<_>>(),
        }))
        .into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": "no such sandbox portal" }))).into_response(),
    }
}

async fn openline_messages(State(portal): PortalRef) -> Json<Value> {
    Json(json!({ "messages": portal.ol_messages() }))
}

async fn activities(State(portal): PortalRef) -> Json<Value> {
    Json(json!({ "activities": portal.activities() }))
}

async fn notifications(State(portal): PortalRef) -> Json<Value> {
    Json(json!({ "notifications": portal.lock().notifications.clone() }))
}

#[derive(Deserialize)]
struct OperatorMessage {
    chat_id: u64,
    user_id: u64,
    text: String,
}

/// An employee writes into an Open Line chat (JSON, or the form of the sandbox page).
async fn operator_writes(State(portal): PortalRef, headers: HeaderMap, body: Bytes) -> Response {
    let (parsed, is_form) = form_or_json::<OperatorMessage>(&headers, &body);
    let written = parsed
        .and_then(|m| if m.text.trim().is_empty() { Err("the text is empty".into()) } else { Ok(m) })
        .and_then(|m| portal.operator_writes(m.chat_id, m.user_id, &m.text));
    match (written, is_form) {
        (Ok(_), true) => axum::response::Redirect::to("/sandbox/openlines").into_response(),
        (Ok(id), false) => Json(json!({ "message_id": id })).into_response(),
        (Err(e), _) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response(),
    }
}

#[derive(Deserialize)]
struct OperatorRevision {
    message_id: u64,
    #[serde(default)]
    text: String,
}

/// An operator edits what they wrote (JSON, or the form of the sandbox page).
async fn operator_edits(State(portal): PortalRef, headers: HeaderMap, body: Bytes) -> Response {
    let (parsed, is_form) = form_or_json::<OperatorRevision>(&headers, &body);
    let parsed = parsed.and_then(|r| if r.text.trim().is_empty() { Err("the text is empty".into()) } else { Ok(r) });
    revised(&portal, parsed.map(|r| (r.message_id, Some(r.text))), is_form)
}

/// An operator deletes what they wrote (JSON, or the form of the sandbox page).
async fn operator_deletes(State(portal): PortalRef, headers: HeaderMap, body: Bytes) -> Response {
    let (parsed, is_form) = form_or_json::<OperatorRevision>(&headers, &body);
    revised(&portal, parsed.map(|r| (r.message_id, None)), is_form)
}

fn revised(portal: &SandboxPortal, change: Result<(u64, Option<String>), String>, is_form: bool) -> Response {
    let caused = change.and_then(|(id, text)| portal.lock().operator_revises(id, text.as_deref()).map_err(|e| e.description));
    match (caused, is_form) {
        (Ok(caused), form) => {
            portal.deliver(caused);
            if form { axum::response::Redirect::to("/sandbox/openlines").into_response() } else { StatusCode::NO_CONTENT.into_response() }
        }
        (Err(e), _) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response(),
    }
}

#[derive(Deserialize)]
struct DisconnectLine {
    member_id: String,
    line: String,
    /// `true`: the line itself is deleted (`OnImConnectorLineDelete`); otherwise the connector
    /// is turned off on it (`OnImConnectorStatusDelete`).
    #[serde(default)]
    delete_line: bool,
}

/// Test and demo hook: an administrator turns our connector off on a line, or deletes the line.
async fn disconnect_line(State(portal): PortalRef, Json(d): Json<DisconnectLine>) -> StatusCode {
    let caused = portal.lock().disconnect_line(&d.member_id, &d.line, d.delete_line);
    portal.deliver(caused);
    StatusCode::NO_CONTENT
}

/// The auth block of an event (`_includes/auth-params-in-events.md`).
pub(super) fn event_auth(portal: &SimPortal, access_token: &str, rest_url: &str, user_id: u64) -> Value {
    json!({
        "access_token": access_token, "expires": now_secs() + TOKEN_LIFETIME, "expires_in": TOKEN_LIFETIME,
        "scope": super::state::APP_SCOPE, "domain": portal.domain,
        "server_endpoint": "https://oauth.bitrix.info/rest/", "status": "P", "client_endpoint": rest_url,
        "member_id": portal.member_id, "user_id": user_id,
        "application_token": portal.installation.application_token.clone().unwrap_or_default(),
    })
}

impl SandboxPortal {
    /// POSTs each event to the app's handlers bound to it, after the answer that caused it, as
    /// Bitrix24 does: bracket-encoded, once, not retried (`api-reference/events/index.md`),
    /// and none before the install finished. `OnAppUninstall` goes out as the app leaves.
    pub(super) fn deliver(&self, events: Caused) {
        for (member_id, name, data) in events {
            let Some(portal) = self.portal(&member_id) else { continue };
            if !portal.installation.installed && name != "OnAppUninstall" {
                continue;
            }
            let Some(admin) = portal.admins.first().copied() else { continue };
            let (access, _) = self.issue_tokens(&member_id, admin);
            let bound = portal.installation.events.iter().filter(|e| e["event"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)));
            for binding in bound {
                let payload = json!({
                    "event": name.to_ascii_uppercase(), "event_handler_id": binding["id"], "data": data, "ts": now_secs().to_string(),
                    "auth": event_auth(&portal, &access, &self.rest_url, admin),
                });
                let body = form_body(&payload);
                let (http, handler) = (self.http.clone(), binding["handler"].as_str().unwrap_or("").to_owned());
                tokio::spawn(async move {
                    let sent = http.post(&handler).header("content-type", "application/x-www-form-urlencoded").body(body).send().await;
                    match sent {
                        Ok(r) if r.status().is_success() => {}
                        Ok(r) => tracing::warn!(status = r.status().as_u16(), "the app refused a sandbox event"),
                        Err(e) => tracing::warn!("sandbox event not delivered: {}", e.without_url()),
                    }
                });
            }
        }
    }

    pub fn operator_writes(&self, chat_id: u64, user_id: u64, text: &str) -> Result<u64, String> {
        let (id, caused) = self.lock().operator_writes(chat_id, user_id, text).map_err(|e| e.description.clone())?;
        self.deliver(caused);
        Ok(id)
    }

    pub fn ol_messages(&self) -> Vec<super::state::OlMessage> {
        self.lock().ol_messages.clone()
    }

    pub fn chats(&self) -> Vec<super::state::SimChat> {
        self.lock().chats.clone()
    }

    pub fn activities(&self) -> Vec<Value> {
        self.lock().activities.iter().map(super::crm::activity_view).collect()
    }

    /// The employees of a portal, for the sandbox pages.
    pub fn employees(&self, member_id: &str) -> Vec<Value> {
        self.portal(member_id).map(|p| p.users).unwrap_or_default()
    }
}

/// A sandbox page's form (bracket keys, `properties[text]=...`, read as nested fields), or the
/// same fields as JSON from a test: the fields, and whether they came from a form (whose
/// answer is the page again).
pub fn form_or_json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> (Result<T, String>, bool) {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let is_form = content_type.starts_with("application/x-www-form-urlencoded");
    let parsed = if is_form {
        serde_qs::Config::new().use_form_encoding(true).deserialize_bytes(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    };
    (parsed, is_form)
}

/// A POST body as Bitrix24 sends events and handler calls: form-encoded, bracket keys for
/// nested values (`auth[access_token]`, `document_id[0]`).
pub(super) fn form_body(payload: &Value) -> String {
    serde_qs::Config::new().use_form_encoding(true).serialize_string(payload).expect("a JSON value encodes")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_batch_command_reads_indexed_keys_as_lists_as_php_does() {
        let query = serde_qs::to_string(&json!({ "FILTER": { "INCLUDE": [["crm", "CCrmDocumentDeal"]] }, "NAME": { "en": "x" } })).unwrap();
        let params = batch_params(&query, &Map::new());
        assert_eq!(params["FILTER"], json!({ "INCLUDE": [["crm", "CCrmDocumentDeal"]] }));
        assert_eq!(params["NAME"], json!({ "en": "x" }), "named keys stay an object");
        assert_eq!(batch_params("A[1]=x", &Map::new())["A"], json!({ "1": "x" }), "a list starts at 0");
    }

    #[derive(Deserialize, Default, Debug, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Attach {
        #[default]
        None,
        Photo,
    }

    #[derive(Deserialize)]
    struct PageForm {
        user_id: i64,
        text: String,
        #[serde(default)]
        attach: Attach,
        #[serde(default)]
        properties: BTreeMap<String, String>,
    }

    /// What a browser submits: `+` for spaces, percent-encoded brackets.
    #[test]
    fn a_pages_form_reads_flat_and_bracket_fields() {
        let headers = HeaderMap::from_iter([(axum::http::header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().unwrap())]);
        let (form, is_form) = form_or_json::<PageForm>(&headers, b"user_id=1001&text=Guten+Tag%21&attach=photo&properties%5Btext%5D=Hi+%7B%3DDocument%3ANAME%7D");
        let form = form.expect("the form reads");
        assert!(is_form);
        assert_eq!((form.user_id, form.text.as_str(), form.attach), (1001, "Guten Tag!", Attach::Photo));
        assert_eq!(form.properties["text"], "Hi {=Document:NAME}");
        let (plain, _) = form_or_json::<PageForm>(&headers, b"user_id=1&text=");
        assert_eq!(plain.expect("defaults").attach, Attach::None);
    }
}
