//! The sandbox portal's contract (issue 11, item 9): one test per REST method and event the
//! sandbox implements, named after the b24restdocs file that documents it (the path under
//! `/work/b24docs`, `/` and `-` written `_`, `.md` dropped), calling the portal over real HTTP
//! as a client does (`POST /sandbox/portal/rest/METHOD` with `auth` in the JSON body) and
//! asserting what the DOCS say, refusals and their HTTP status included.
//!
//! Checks the sandbox once disagreed on are collected with `Docs`, so a test lists every
//! one that fails. Where the docs are silent and a test pins the sandbox's own stricter
//! choice, it is marked `DOCS SILENT`.

use std::time::Duration;

use olchat_tests::{TestApp, eventually, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::sandbox::portal::{OTHER_APP_CLIENT_ID, OTHER_APP_CODE};
use shared::sandbox::seed;

const DEMO: &str = seed::DEMO_MEMBER_ID;
/// The demo portal's administrator, and an employee who is not one.
const ADMIN: u64 = 1;
const EMPLOYEE: u64 = 2;
const WAIT: Duration = Duration::from_secs(10);
/// A connector of the test's own, on the demo portal's second line (the app's is on the first).
const PROBE: &str = "contract_probe";
const PROBE_LINE: &str = "2";
const IVAN: &str = "phone:+79161234567";

// ---------------------------------------------------------------------------------------------
// Calling the portal as a client would.

/// A fresh access token of our app for `user` on the demo portal.
fn token(app: &TestApp, user: u64) -> String {
    app.app.sandbox().portal.issue_tokens(DEMO, user).0
}

/// `POST /rest/METHOD` with `params` and `auth`: the HTTP status and the body.
async fn call_with(app: &TestApp, auth: &str, method: &str, params: Value) -> (StatusCode, Value) {
    let mut body = if params.is_object() { params } else { json!({}) };
    body["auth"] = json!(auth);
    let response = app.http.post(app.url(&format!("/sandbox/portal/rest/{method}"))).json(&body).send().await.expect("the portal answers");
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

/// The method called as demo user `user`.
async fn call(app: &TestApp, user: u64, method: &str, params: Value) -> (StatusCode, Value) {
    call_with(app, &token(app, user), method, params).await
}

/// The method called as `user`, which must succeed (HTTP 200, `result`, no `error`): the whole body.
async fn ok(app: &TestApp, user: u64, method: &str, params: Value) -> Value {
    let (status, body) = call(app, user, method, params).await;
    assert_eq!(status, StatusCode::OK, "{method}: {body}");
    assert!(body.get("error").is_none() && body.get("result").is_some(), "{method}: {body}");
    body
}

/// A documented refusal: its HTTP status, `error` code and, when given, `error_description`.
#[track_caller]
fn refused(answer: &(StatusCode, Value), status: u16, code: &str, description: Option<&str>) {
    let (got, body) = answer;
    assert_eq!((got.as_u16(), body["error"].as_str()), (status, Some(code)), "{body}");
    if let Some(description) = description {
        assert_eq!(body["error_description"].as_str(), Some(description), "{body}");
    }
}

/// Whether `answer` is that refusal.
fn is_refusal(answer: &(StatusCode, Value), status: u16, code: &str, description: &str) -> bool {
    let (got, body) = answer;
    got.as_u16() == status && body["error"] == code && body["error_description"] == description
}

/// The docs' word where the sandbox once disagreed: every such check of a test runs, and
/// the test fails at its end listing each that did not hold.
#[derive(Default)]
struct Docs(Vec<String>);

impl Docs {
    #[track_caller]
    fn say(&mut self, holds: bool, what: impl std::fmt::Display) {
        if !holds {
            self.0.push(format!("{}: {what}", std::panic::Location::caller()));
        }
    }
}

impl Drop for Docs {
    fn drop(&mut self) {
        if !self.0.is_empty() && !std::thread::panicking() {
            panic!("DOCS ≠ SANDBOX:\n{}", self.0.join("\n"));
        }
    }
}

/// Any refusal, for the cases whose code the docs do not give: an error body, no `result`.
#[track_caller]
fn any_refusal(answer: &(StatusCode, Value)) {
    let (status, body) = answer;
    assert!(body["error"].is_string() && body.get("result").is_none(), "{status}: {body}");
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    keys.sort();
    keys
}

/// Registers [`PROBE`] (no system messages) and activates it on [`PROBE_LINE`], as an administrator.
async fn probe_connector(app: &TestApp) {
    let register = ok(app, ADMIN, "imconnector.register", json!({
        "ID": PROBE, "NAME": "Contract probe", "ICON": { "DATA_IMAGE": "data:image/svg+xml;charset=US-ASCII,%3Csvg%2F%3E" },
        "PLACEMENT_HANDLER": app.url("/bitrix/connector"), "NEED_SYSTEM_MESSAGES": false,
    })).await;
    assert_eq!(register["result"], json!({ "result": true }));
    let activate = ok(app, ADMIN, "imconnector.activate", json!({ "CONNECTOR": PROBE, "LINE": PROBE_LINE, "ACTIVE": 1 })).await;
    assert_eq!(activate["result"], true);
}

/// One `MESSAGES` element from the external system's client `user` in chat `chat`.
fn client_message(chat: &str, user: &str, name: &str, text: &str) -> Value {
    json!({
        "user": { "id": user, "name": name, "last_name": "Meyer" },
        "message": { "id": format!("ext-{}", olchat_tests::fresh_key()), "date": 1_773_759_161, "text": text },
        "chat": { "id": chat, "name": "Support Channel" },
    })
}

/// `imconnector.send.messages` on the probe connector: the answer.
async fn send_on_probe(app: &TestApp, messages: Value) -> (StatusCode, Value) {
    call(app, ADMIN, "imconnector.send.messages", json!({ "CONNECTOR": PROBE, "LINE": PROBE_LINE, "MESSAGES": messages })).await
}

/// A client writes first on the probe connector: the Open Line chat's id and the CRM record
/// the tracker bound it to (`LEAD`, 3 …) as `entity_data_2` says.
async fn probe_chat(app: &TestApp, chat: &str, user: &str) -> (u64, (String, u64)) {
    let (status, body) = send_on_probe(app, json!([client_message(chat, user, "Klaus", "Guten Tag")])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let chat_id: u64 = body["result"]["DATA"]["RESULT"][0]["session"]["CHAT_ID"].as_str().expect("a session").parse().unwrap();
    let dialog = ok(app, ADMIN, "imopenlines.dialog.get", json!({ "CHAT_ID": chat_id })).await;
    let data = dialog["result"]["entity_data_2"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = data.split('|').collect();
    let bound = parts.chunks(2).find(|kv| kv[1] != "0").expect("the tracker bound the chat");
    (chat_id, (bound[0].to_owned(), bound[1].parse().unwrap()))
}

fn layout(icon: &str, logo: &str, value: &str) -> Value {
    json!({
        "icon": { "code": icon },
        "header": { "title": "Telegram", "tags": { "status": { "title": "sent", "type": "primary" } } },
        "body": { "logo": { "code": logo }, "blocks": { "text": { "type": "largeText", "properties": { "value": value } } } },
    })
}

/// The first code `crm.timeline.logo.list` / `crm.timeline.icon.list` offers.
async fn first_code(app: &TestApp, method: &str, key: &str) -> String {
    let body = ok(app, ADMIN, method, json!({})).await;
    body["result"][key][0]["code"].as_str().expect("a code").to_owned()
}

// ---------------------------------------------------------------------------------------------
// Answers every method shares.

/// `api-reference/data-types.md` (`time`): every answer carries `start`, `finish`, `duration`,
/// `processing`, `date_start`, `date_finish` (ISO 8601), `operating`, `operating_reset_at`.
#[tokio::test]
async fn api_reference_data_types_time() {
    let app = spawn_app().await;
    let mut docs = Docs::default();
    let body = ok(&app, ADMIN, "user.admin", json!({})).await;
    let time = &body["time"];
    for field in ["start", "finish", "duration", "processing", "operating"] {
        assert!(time[field].is_number(), "{field}: {time}");
    }
    assert!(time["operating_reset_at"].is_i64(), "{time}");
    for field in ["date_start", "date_finish"] {
        let date = time[field].as_str().unwrap_or("");
        docs.say(date.len() >= 19 && date.as_bytes()[10] == b'T', format!("{field} is ISO 8601: {time}"));
    }
}

/// `_includes/system-errors.md` (via `error-codes.md`): `NO_AUTH_FOUND` 401 "Wrong
/// authorization data" for a missing or unknown token; `expired_token` 401 "The access token
/// provided has expired"; `QUERY_LIMIT_EXCEEDED` 503 "Too many requests" (`limits.md`).
#[tokio::test]
async fn includes_system_errors() {
    let app = spawn_app().await;
    let no_auth = app.http.post(app.url("/sandbox/portal/rest/user.current")).json(&json!({})).send().await.unwrap();
    let no_auth = (no_auth.status(), no_auth.json::<Value>().await.unwrap());
    refused(&no_auth, 401, "NO_AUTH_FOUND", Some("Wrong authorization data"));
    refused(&call_with(&app, "made-up-token", "user.current", json!({})).await, 401, "NO_AUTH_FOUND", Some("Wrong authorization data"));

    app.portal_fault(json!({ "rate_limit_next": 1 })).await;
    refused(&call(&app, ADMIN, "user.current", json!({})).await, 503, "QUERY_LIMIT_EXCEEDED", Some("Too many requests"));
    ok(&app, ADMIN, "user.current", json!({})).await;

    let issued = token(&app, ADMIN);
    app.portal_fault(json!({ "expire_tokens": true })).await;
    refused(&call_with(&app, &issued, "user.current", json!({})).await, 401, "expired_token", Some("The access token provided has expired"));
}

/// `settings/performance/limits.md`: a method over its time budget answers HTTP 429
/// `OPERATION_TIME_LIMIT`; "other methods … are unaffected".
#[tokio::test]
async fn settings_performance_limits() {
    let app = spawn_app().await;
    app.portal_fault(json!({ "block_method": { "method": "user.get", "seconds": 60 } })).await;
    refused(&call(&app, ADMIN, "user.get", json!({})).await, 429, "OPERATION_TIME_LIMIT", None);
    ok(&app, ADMIN, "user.current", json!({})).await;
    // Blocked inside a batch too, for that command only; the batch itself answers 200.
    let batch = ok(&app, ADMIN, "batch", json!({ "cmd": { "a": "user.get", "b": "user.admin" } })).await;
    assert_eq!(batch["result"]["result_error"]["a"]["error"], "OPERATION_TIME_LIMIT", "{batch}");
    assert_eq!(batch["result"]["result"]["b"], true, "{batch}");
}

/// `api-reference/rest-v3.md`: an unknown method answers HTTP 404 `ERROR_METHOD_NOT_FOUND`
/// (the only page naming it; the v1 behaviour is otherwise undocumented).
#[tokio::test]
async fn api_reference_rest_v3() {
    let app = spawn_app().await;
    refused(&call(&app, ADMIN, "crm.no.such.method", json!({})).await, 404, "ERROR_METHOD_NOT_FOUND", None);
}

// ---------------------------------------------------------------------------------------------
// Users and the app.

/// `api-reference/user/user-current.md`: the token's user; `ID` a string, `ACTIVE` a boolean,
/// `UF_DEPARTMENT` an integer array; no `ADMIN` among its fields.
#[tokio::test]
async fn api_reference_user_user_current() {
    let app = spawn_app().await;
    for (user, name) in [(ADMIN, "Anna"), (EMPLOYEE, "Boris")] {
        let me = &ok(&app, user, "user.current", json!({})).await["result"];
        assert_eq!((me["ID"].clone(), me["NAME"].as_str()), (json!(user.to_string()), Some(name)), "{me}");
        assert_eq!(me["ACTIVE"], true);
        assert!(me["UF_DEPARTMENT"].as_array().is_some_and(|d| d.iter().all(Value::is_u64)), "{me}");
        assert!(me.get("ADMIN").is_none(), "user.current has no ADMIN: {me}");
    }
}

/// `api-reference/common/users/user-admin.md`: `result` is a boolean, whether the user may
/// manage the app's settings.
#[tokio::test]
async fn api_reference_common_users_user_admin() {
    let app = spawn_app().await;
    assert_eq!(ok(&app, ADMIN, "user.admin", json!({})).await["result"], true);
    assert_eq!(ok(&app, EMPLOYEE, "user.admin", json!({})).await["result"], false);
}

/// `api-reference/common/users/profile.md`: `ID`, `ADMIN` (= `user.admin`), `NAME`,
/// `LAST_NAME`, `PERSONAL_GENDER`, `TIME_ZONE` ("" when unset), `PERSONAL_PHOTO` only if uploaded.
#[tokio::test]
async fn api_reference_common_users_profile() {
    let app = spawn_app().await;
    for (user, admin, last_name) in [(ADMIN, true, "Smirnova"), (EMPLOYEE, false, "Ivanov")] {
        let profile = &ok(&app, user, "profile", json!({})).await["result"];
        assert_eq!(profile["ID"], user.to_string());
        assert_eq!(profile["ADMIN"], admin);
        assert_eq!(profile["LAST_NAME"], last_name);
        assert!(profile["PERSONAL_GENDER"].is_string() && profile["TIME_ZONE"].is_string(), "{profile}");
        assert!(profile.get("PERSONAL_PHOTO").is_none(), "no photo uploaded: {profile}");
    }
}

/// `api-reference/user/user-get.md` (+ `settings/how-to-call-rest-api/list-methods-pecularities.md`):
/// pages of exactly 50 sorted by ID, `total`, `next` = the `start` of the next page (absent on
/// the last); `FILTER` narrows.
#[tokio::test]
async fn api_reference_user_user_get() {
    let app = spawn_app().await;
    let first = ok(&app, EMPLOYEE, "user.get", json!({})).await;
    let rows = first["result"].as_array().unwrap();
    assert_eq!((rows.len(), first["total"].as_u64(), first["next"].as_u64()), (50, Some(seed::DEMO_EMPLOYEES), Some(50)));
    let ids: Vec<u64> = rows.iter().map(|u| u["ID"].as_str().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids[0] == 1, "ID ASC by default");
    let last = ok(&app, EMPLOYEE, "user.get", json!({ "start": 50 })).await;
    assert_eq!((last["result"].as_array().unwrap().len(), last["total"].as_u64()), (10, Some(seed::DEMO_EMPLOYEES)));
    assert!(last.get("next").is_none(), "no next on the last page: {last}");
    let one = ok(&app, EMPLOYEE, "user.get", json!({ "FILTER": { "ID": 3 } })).await;
    assert_eq!((one["result"][0]["NAME"].as_str(), one["total"].as_u64()), (Some("Clara"), Some(1)));

    // `settings/performance/huge-data.md`: pages by the last identifier (`>ID`, a documented
    // filter prefix) with `start = -1`, which returns up to 50 rows "without counting total".
    let mut docs = Docs::default();
    let after = ok(&app, EMPLOYEE, "user.get", json!({ "FILTER": { ">ID": 50 }, "start": -1 })).await;
    let rows = after["result"].as_array().unwrap();
    docs.say(rows.len() == 10 && rows[0]["ID"] == "51", format!(">ID 50: {} rows from {}", rows.len(), rows[0]["ID"]));
    docs.say(after["total"].as_u64().unwrap_or(0) == 0 && after.get("next").is_none(), format!("start=-1: total {} next {}", after["total"], after["next"]));
}

/// `api-reference/common/system/app-info.md`: the token's app: `ID` and `VERSION` integers,
/// `CODE`, `STATUS` one of F/D/T/P/L, `INSTALLED` boolean, `PAYMENT_EXPIRED` Y/N, `DAYS` an
/// integer or null, `LICENSE` = "<language>_<plan>"; another app's token names that app.
#[tokio::test]
async fn api_reference_common_system_app_info() {
    let app = spawn_app().await;
    let info = &ok(&app, EMPLOYEE, "app.info", json!({})).await["result"];
    assert_eq!(info["CODE"], shared::sandbox::APP_CODE);
    assert!(info["ID"].is_u64() && info["VERSION"].is_u64(), "{info}");
    assert!(["F", "D", "T", "P", "L"].contains(&info["STATUS"].as_str().unwrap_or("")), "{info}");
    assert_eq!(info["INSTALLED"], true);
    assert!(["Y", "N"].contains(&info["PAYMENT_EXPIRED"].as_str().unwrap_or("")), "{info}");
    assert!(info["DAYS"].is_i64() || info["DAYS"].is_null(), "{info}");
    assert_eq!(info["LICENSE"], "ru_project");

    let (other, _) = app.app.sandbox().portal.issue_tokens_of(OTHER_APP_CLIENT_ID, DEMO, EMPLOYEE);
    let (status, body) = call_with(&app, &other, "app.info", json!({})).await;
    assert_eq!((status, body["result"]["CODE"].as_str()), (StatusCode::OK, Some(OTHER_APP_CODE)), "{body}");
    assert_ne!(body["result"]["ID"], info["ID"]);
}

// ---------------------------------------------------------------------------------------------
// CRM records.

/// `api-reference/crm/leads/crm-lead-get.md`: strings and `Y`/`N` flags, multi-fields as
/// `{ID, VALUE_TYPE, VALUE, TYPE_ID}`, the Open Line chat as `IM` / `OPENLINE` `imol|…`;
/// refusals with an empty `error`: "ID is not defined or invalid", "Not found" (HTTP 40x).
#[tokio::test]
async fn api_reference_crm_leads_crm_lead_get() {
    let app = spawn_app().await;
    let lead = &ok(&app, EMPLOYEE, "crm.lead.get", json!({ "id": 1 })).await["result"];
    assert_eq!((lead["ID"].as_str(), lead["HAS_PHONE"].as_str()), (Some("1"), Some("Y")));
    let phone = &lead["PHONE"][0];
    assert_eq!(keys(phone), ["ID", "TYPE_ID", "VALUE", "VALUE_TYPE"]);
    assert_eq!(phone["TYPE_ID"], "PHONE");
    // Maria's lead, made by the tracker when she wrote first.
    let maria = &ok(&app, EMPLOYEE, "crm.lead.get", json!({ "id": seed::MARIA_LEAD })).await["result"];
    let imol = &maria["IM"][0];
    assert_eq!((imol["TYPE_ID"].as_str(), imol["VALUE_TYPE"].as_str(), maria["HAS_IMOL"].as_str()), (Some("IM"), Some("OPENLINE"), Some("Y")));
    assert!(imol["VALUE"].as_str().unwrap().starts_with("imol|olchat_telegram|1|"), "{imol}");
    for (params, text) in [(json!({}), "ID is not defined or invalid"), (json!({ "id": "x" }), "ID is not defined or invalid"), (json!({ "id": 999 }), "Not found")] {
        let (status, body) = call(&app, EMPLOYEE, "crm.lead.get", params).await;
        assert!(status.is_client_error(), "{status} {body}");
        assert_eq!((body["error"].as_str(), body["error_description"].as_str()), (Some(""), Some(text)));
    }
    // "Access denied": the user may not read the lead (the CRM's access rights, set in the portal).
    app.app.sandbox().portal.limit_records(DEMO, EMPLOYEE, vec![(shared::domain::EntityType::Lead, 1)]);
    let (status, body) = call(&app, EMPLOYEE, "crm.lead.get", json!({ "id": seed::MARIA_LEAD })).await;
    assert!(status.is_client_error(), "{status} {body}");
    assert_eq!((body["error"].as_str(), body["error_description"].as_str()), (Some(""), Some("Access denied")));
    assert_eq!(ok(&app, EMPLOYEE, "crm.lead.get", json!({ "id": 1 })).await["result"]["ID"], "1", "the lead they may read");
}

/// `api-reference/crm/deals/crm-deal-get.md`: `CONTACT_ID` a string; HTTP 400 with an empty
/// `error` for "ID is not defined or invalid" and "Not found".
#[tokio::test]
async fn api_reference_crm_deals_crm_deal_get() {
    let app = spawn_app().await;
    let deal = &ok(&app, EMPLOYEE, "crm.deal.get", json!({ "id": 1 })).await["result"];
    assert_eq!((deal["ID"].as_str(), deal["CONTACT_ID"].as_str()), (Some("1"), Some("1")));
    refused(&call(&app, EMPLOYEE, "crm.deal.get", json!({ "id": 0 })).await, 400, "", Some("ID is not defined or invalid"));
    refused(&call(&app, EMPLOYEE, "crm.deal.get", json!({ "id": 999 })).await, 400, "", Some("Not found"));
}

/// `api-reference/crm/contacts/crm-contact-get.md`: multi-fields; HTTP 400, empty `error`.
#[tokio::test]
async fn api_reference_crm_contacts_crm_contact_get() {
    let app = spawn_app().await;
    let contact = &ok(&app, EMPLOYEE, "crm.contact.get", json!({ "id": 3 })).await["result"];
    assert_eq!((contact["IM"][0]["TYPE_ID"].as_str(), contact["IM"][0]["VALUE_TYPE"].as_str()), (Some("IM"), Some("TELEGRAM")));
    refused(&call(&app, EMPLOYEE, "crm.contact.get", json!({})).await, 400, "", Some("ID is not defined or invalid"));
    refused(&call(&app, EMPLOYEE, "crm.contact.get", json!({ "id": 999 })).await, 400, "", Some("Not found"));
}

/// `api-reference/crm/companies/crm-company-get.md`: `WEB` multi-field; HTTP 400 "Not found".
#[tokio::test]
async fn api_reference_crm_companies_crm_company_get() {
    let app = spawn_app().await;
    let company = &ok(&app, EMPLOYEE, "crm.company.get", json!({ "id": 1 })).await["result"];
    assert_eq!(company["WEB"][1]["VALUE"], "https://t.me/acme_shop");
    refused(&call(&app, EMPLOYEE, "crm.company.get", json!({ "id": 999 })).await, 400, "", Some("Not found"));
}

/// `api-reference/crm/deals/contacts/crm-deal-contact-items-get.md`: rows of integers
/// `{CONTACT_ID, SORT, ROLE_ID, IS_PRIMARY}`; HTTP 400, empty `error`: "The parameter
/// ownerEntityID is invalid or not defined.", "Not found." (with their dots).
#[tokio::test]
async fn api_reference_crm_deals_contacts_crm_deal_contact_items_get() {
    let app = spawn_app().await;
    let mut docs = Docs::default();
    let rows = ok(&app, EMPLOYEE, "crm.deal.contact.items.get", json!({ "id": 1 })).await["result"].clone();
    assert_eq!(rows[0], json!({ "CONTACT_ID": 1, "SORT": 10, "ROLE_ID": 0, "IS_PRIMARY": "Y" }));
    assert_eq!(rows[1]["IS_PRIMARY"], "N");
    for (params, text) in [(json!({}), "The parameter ownerEntityID is invalid or not defined."), (json!({ "id": 999 }), "Not found.")] {
        let answer = call(&app, EMPLOYEE, "crm.deal.contact.items.get", params).await;
        docs.say(is_refusal(&answer, 400, "", text), format!("400 \"\" {text:?}: {}", answer.1));
    }
}

// ---------------------------------------------------------------------------------------------
// batch and OAuth.

/// `settings/how-to-call-rest-api/batch.md`: HTTP 200; `result`, `result_error`,
/// `result_total` (list commands), `result_next` (those with a next page), `result_time` (one
/// per command); empty members are `[]`; `$result[key][field]` references; `halt` stops at
/// the first error; subqueries beyond 50 end with `ERROR_BATCH_LENGTH_EXCEEDED`; a nested
/// batch with `ERROR_BATCH_METHOD_NOT_ALLOWED`.
#[tokio::test]
async fn settings_how_to_call_rest_api_batch() {
    let app = spawn_app().await;
    let mut docs = Docs::default();
    let body = ok(&app, EMPLOYEE, "batch", json!({ "cmd": {
        "me": "user.current",
        "same": "user.get?FILTER[ID]=$result[me][ID]",
        "all": "user.get",
    } })).await;
    let r = &body["result"];
    assert_eq!(keys(r), ["result", "result_error", "result_next", "result_time", "result_total"]);
    assert_eq!(r["result"]["same"][0]["NAME"], "Boris", "the reference resolved: {r}");
    assert_eq!(r["result_error"], json!([]));
    assert_eq!(r["result_total"], json!({ "same": 1, "all": seed::DEMO_EMPLOYEES }));
    assert_eq!(r["result_next"], json!({ "all": 50 }));
    docs.say(keys(&r["result_time"]) == ["all", "me", "same"], format!("result_time per command: {}", r["result_time"]));

    // Errors: each in result_error under its key; halt=0 runs them all, halt=1 stops.
    let cmd = json!({ "bad": "crm.lead.get?id=999", "good": "user.admin" });
    let all = ok(&app, EMPLOYEE, "batch", json!({ "cmd": cmd, "halt": 0 })).await;
    assert_eq!(all["result"]["result_error"]["bad"], json!({ "error": "", "error_description": "Not found" }));
    assert_eq!(all["result"]["result"]["good"], false);
    let halted = ok(&app, EMPLOYEE, "batch", json!({ "cmd": cmd, "halt": 1 })).await;
    assert!(halted["result"]["result"].get("good").is_none(), "nothing after the error ran: {halted}");
    docs.say(halted["result"]["result"] == json!([]), format!("empty result as []: {}", halted["result"]["result"]));
    assert_eq!(halted["result"]["result_total"], json!([]));

    // "Subqueries are executed sequentially", in the order given (keys sent in that order, as
    // raw JSON: this crate's `json!` sorts keys).
    let raw = format!(r#"{{"auth":"{}","cmd":{{"z_me":"user.current","a_same":"user.get?FILTER[ID]=$result[z_me][ID]"}}}}"#, token(&app, EMPLOYEE));
    let request = app.http.post(app.url("/sandbox/portal/rest/batch")).header("content-type", "application/json").body(raw);
    let ordered: Value = request.send().await.unwrap().json().await.unwrap();
    let same = &ordered["result"]["result"]["a_same"];
    docs.say(same.as_array().is_some_and(|rows| rows.len() == 1 && rows[0]["ID"] == "2"), format!("z_me ran before a_same: {same}"));

    let many: serde_json::Map<String, Value> = (0..51).map(|i| (format!("c{i:02}"), json!("user.admin"))).collect();
    let long = ok(&app, EMPLOYEE, "batch", json!({ "cmd": many })).await;
    assert_eq!(long["result"]["result"].as_object().map(|o| o.len()), Some(50), "{long}");
    docs.say(long["result"]["result_error"]["c50"]["error"] == "ERROR_BATCH_LENGTH_EXCEEDED", format!("c50: {}", long["result"]["result_error"]));
    let nested = ok(&app, EMPLOYEE, "batch", json!({ "cmd": { "inner": "batch?cmd[a]=user.admin" } })).await;
    docs.say(nested["result"]["result_error"]["inner"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED", format!("nested batch: {}", nested["result"]));
}

/// `settings/oauth/auto-renewal.md` (+ `settings/oauth/error-codes.md`): a GET to
/// `/oauth/token/` with `grant_type=refresh_token`, `client_id`, `client_secret`,
/// `refresh_token` answers new tokens (`access_token`, `refresh_token` replacing the old one,
/// `expires_in` 3600, `expires`, `domain` = the OAuth server, `client_endpoint`,
/// `server_endpoint`, `member_id`, `user_id`, `scope`, `status`); a used or unknown refresh
/// token is `invalid_grant`, wrong credentials `invalid_client`.
#[tokio::test]
async fn settings_oauth_auto_renewal() {
    let app = spawn_app().await;
    let (_, refresh) = app.app.sandbox().portal.issue_tokens(DEMO, EMPLOYEE);
    let renew = |refresh: String, secret: &'static str| {
        let query = [("grant_type", "refresh_token".to_owned()), ("client_id", shared::sandbox::CLIENT_ID.to_owned()),
            ("client_secret", secret.to_owned()), ("refresh_token", refresh)];
        let request = app.http.get(app.url("/sandbox/portal/oauth/token/")).query(&query);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let secret = shared::sandbox::CLIENT_SECRET;
    let (status, tokens) = renew(refresh.clone(), secret).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    for field in ["access_token", "refresh_token", "client_endpoint", "server_endpoint", "member_id", "scope", "status"] {
        assert!(tokens[field].is_string(), "{field}: {tokens}");
    }
    assert_eq!((tokens["expires_in"].as_u64(), tokens["domain"].as_str(), tokens["member_id"].as_str()), (Some(3600), Some("oauth.bitrix.info"), Some(DEMO)));
    assert_eq!(tokens["user_id"], EMPLOYEE);
    assert!(tokens["expires"].is_i64());
    assert_ne!(tokens["refresh_token"], refresh.as_str(), "rotated");
    let me = call_with(&app, tokens["access_token"].as_str().unwrap(), "user.current", json!({})).await;
    assert_eq!(me.1["result"]["ID"], "2");

    let (_, used) = renew(refresh, secret).await;
    assert_eq!(used["error"], "invalid_grant", "the replaced refresh token: {used}");
    let (_, unknown) = renew("made-up".into(), secret).await;
    assert_eq!(unknown["error"], "invalid_grant");
    let (_, client) = renew(tokens["refresh_token"].as_str().unwrap().to_owned(), "wrong-secret").await;
    assert_eq!(client["error"], "invalid_client");
    assert!(client["error_description"].is_string());
}

// ---------------------------------------------------------------------------------------------
// Placements and event bindings.

/// `api-reference/widgets/placement-bind.md`: administrators only; `{"result": true}`;
/// `ERROR_ARGUMENT` with HTTP 200 and `argument` naming the missing field; handlers on
/// localhost or local domains "are not acceptable" (the sandbox: only under the app's URL).
#[tokio::test]
async fn api_reference_widgets_placement_bind() {
    let app = spawn_app().await;
    let bind = |placement: &str, handler: String| json!({ "PLACEMENT": placement, "HANDLER": handler, "TITLE": "Contract" });
    let bound = ok(&app, ADMIN, "placement.bind", bind("CRM_LEAD_DETAIL_TAB", app.url("/placement?contract=1"))).await;
    assert_eq!(bound["result"], true);
    any_refusal(&call(&app, EMPLOYEE, "placement.bind", bind("CRM_DEAL_DETAIL_TAB", app.url("/placement?contract=2"))).await);
    any_refusal(&call(&app, ADMIN, "placement.bind", bind("CRM_DEAL_DETAIL_TAB", "http://localhost:1/tab".into())).await);
    let (status, body) = call(&app, ADMIN, "placement.bind", json!({ "HANDLER": app.url("/placement") })).await;
    assert_eq!((body["error"].as_str(), body["error_description"].as_str()), (Some("ERROR_ARGUMENT"), Some("Argument 'PLACEMENT' is null or empty")), "{body}");
    let mut docs = Docs::default();
    docs.say(status == StatusCode::OK && body["argument"] == "PLACEMENT", format!("HTTP 200 with argument: {status} {body}"));
}

/// `api-reference/widgets/placement-get.md`: administrators; rows of `placement`, `userId`,
/// `handler`, `options`, `title`, `description`, `langAll` (camelCase), as bound.
#[tokio::test]
async fn api_reference_widgets_placement_get() {
    let app = spawn_app().await;
    let rows = ok(&app, ADMIN, "placement.get", json!({})).await["result"].clone();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4, "the app's four card tabs: {rows:?}");
    for row in rows {
        assert_eq!(keys(row), ["description", "handler", "langAll", "options", "placement", "title", "userId"]);
        assert_eq!(row["handler"], app.url("/placement"));
    }
    assert_eq!(rows[0]["langAll"]["en"]["TITLE"], "Write in Telegram");
    any_refusal(&call(&app, EMPLOYEE, "placement.get", json!({})).await);
}

/// `api-reference/events/event-bind.md`: any user for online events (`{"result": true}`);
/// 400 `ERROR_EVENT_NOT_FOUND` "Event not found"; 403 `ACCESS_DENIED` for a non-administrator
/// binding an offline event or one with `auth_type`, in the docs' words.
#[tokio::test]
async fn api_reference_events_event_bind() {
    let app = spawn_app().await;
    let handler = app.url("/bitrix/events?contract=1");
    let bound = ok(&app, EMPLOYEE, "event.bind", json!({ "event": "OnImConnectorMessageUpdate", "handler": handler })).await;
    assert_eq!(bound["result"], true);
    refused(&call(&app, ADMIN, "event.bind", json!({ "event": "OnNoSuchEvent", "handler": handler })).await, 400, "ERROR_EVENT_NOT_FOUND", Some("Event not found"));
    let offline = call(&app, EMPLOYEE, "event.bind", json!({ "event": "OnImConnectorMessageDelete", "handler": handler, "event_type": "offline" })).await;
    refused(&offline, 403, "ACCESS_DENIED", None);
    let mut docs = Docs::default();
    docs.say(offline.1["error_description"] == "Access denied! Offline events binding requires administrator access rights", &offline.1);
    let auth_type = call(&app, EMPLOYEE, "event.bind", json!({ "event": "OnImConnectorMessageDelete", "handler": handler, "auth_type": 1 })).await;
    refused(&auth_type, 403, "ACCESS_DENIED", None);
    docs.say(auth_type.1["error_description"] == "Access denied! Event binding with AUTH_TYPE requires administrator access rights", &auth_type.1);
}

/// `api-reference/events/event-get.md`: rows `{event (upper case), handler, auth_type (a
/// string), offline (an integer)}`; "A user without administrator permissions receives only
/// the handlers registered for the current user."
#[tokio::test]
async fn api_reference_events_event_get() {
    let app = spawn_app().await;
    let rows = ok(&app, ADMIN, "event.get", json!({})).await["result"].clone();
    let message_add = rows.as_array().unwrap().iter().find(|r| r["event"] == "ONIMCONNECTORMESSAGEADD").expect("the app's binding");
    assert_eq!(message_add["handler"], app.url("/bitrix/events"));
    assert!(message_add["auth_type"].is_string() && message_add["offline"] == 0, "{message_add}");
    let own = app.url("/bitrix/events?employee=2");
    ok(&app, EMPLOYEE, "event.bind", json!({ "event": "OnImConnectorMessageUpdate", "handler": own })).await;
    let mine = ok(&app, EMPLOYEE, "event.get", json!({})).await["result"].clone();
    let handlers: Vec<&str> = mine.as_array().unwrap().iter().map(|r| r["handler"].as_str().unwrap()).collect();
    let mut docs = Docs::default();
    docs.say(handlers == [own.as_str()], format!("only the employee's own handler: {handlers:?}"));
}

// ---------------------------------------------------------------------------------------------
// The connector.

/// `api-reference/imopenlines/imconnector/imconnector-register.md`: `{"result":{"result":true}}`;
/// refusals with HTTP 200, `result: false`, `error`, `error_description`.
#[tokio::test]
async fn api_reference_imopenlines_imconnector_imconnector_register() {
    let app = spawn_app().await;
    let full = json!({ "ID": "Probe_Two", "NAME": "Probe", "ICON": { "DATA_IMAGE": "data:image/svg+xml,%3Csvg%2F%3E" }, "PLACEMENT_HANDLER": app.url("/bitrix/connector") });
    assert_eq!(ok(&app, ADMIN, "imconnector.register", full.clone()).await["result"], json!({ "result": true }));
    let without = |field: &str| {
        let mut p = full.clone();
        p.as_object_mut().unwrap().remove(field);
        p
    };
    let with = |field: &str, value: Value| {
        let mut p = full.clone();
        p[field] = value;
        p
    };
    let cases = [
        (without("ID"), "CONNECTOR_ID_REQUIRED", "Connector ID is not specified"),
        (with("ID", json!("probe.two")), "APPLICATION_REGISTRATION_ERROR_POINT", "Application registration error. Using a dot in the connector identifier is not allowed"),
        (without("NAME"), "NAME_REQUIRED", "Connector name is not specified"),
        (with("ICON", json!({ "COLOR": "#fff" })), "ICON_REQUIRED", "Connector icon is not specified"),
        (without("PLACEMENT_HANDLER"), "NO_PLACEMENT_HANDLER", "Failed to get embedding handler URL"),
    ];
    let mut docs = Docs::default();
    for (params, code, text) in cases {
        let (status, body) = call(&app, ADMIN, "imconnector.register", params).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["result"]["result"], false, "{body}");
        assert_eq!(body["result"]["error"], code, "{body}");
        docs.say(body["result"]["error_description"] == text, format!("{text:?}: {}", body["result"]));
    }
    // The ID is lower-cased by the method.
    assert!(app.portal_state(DEMO).await["connectors"].get("probe_two").is_some());
}

/// `api-reference/imopenlines/imconnector/imconnector-activate.md`: `{"result": true}`;
/// 400 `ERROR_ARGUMENT` "Argument 'CONNECTOR'|'LINE'|'ACTIVE' is null or empty".
#[tokio::test]
async fn api_reference_imopenlines_imconnector_imconnector_activate() {
    let app = spawn_app().await;
    probe_connector(&app).await;
    assert!(app.portal_state(DEMO).await["active"].as_array().unwrap().contains(&json!([PROBE, PROBE_LINE])));
    for missing in ["CONNECTOR", "LINE", "ACTIVE"] {
        let mut params = json!({ "CONNECTOR": PROBE, "LINE": PROBE_LINE, "ACTIVE": 1 });
        params.as_object_mut().unwrap().remove(missing);
        refused(&call(&app, ADMIN, "imconnector.activate", params).await, 400, "ERROR_ARGUMENT", Some(&format!("Argument '{missing}' is null or empty")));
    }
    assert_eq!(ok(&app, ADMIN, "imconnector.activate", json!({ "CONNECTOR": PROBE, "LINE": PROBE_LINE, "ACTIVE": 0 })).await["result"], true);
    assert!(!app.portal_state(DEMO).await["active"].as_array().unwrap().contains(&json!([PROBE, PROBE_LINE])), "deactivated");
}

/// `api-reference/imopenlines/imconnector/imconnector-connector-data-set.md`: `{"result": true}`;
/// 400 `ERROR_ARGUMENT` "Argument 'DATA' is null or empty" (and `CONNECTOR`, `LINE`).
#[tokio::test]
async fn api_reference_imopenlines_imconnector_imconnector_connector_data_set() {
    let app = spawn_app().await;
    probe_connector(&app).await;
    let data = json!({ "id": "probe", "url": "https://t.me/probe", "url_im": "https://t.me/probe", "name": "Probe" });
    let set = ok(&app, ADMIN, "imconnector.connector.data.set", json!({ "CONNECTOR": PROBE, "LINE": PROBE_LINE, "DATA": data })).await;
    assert_eq!(set["result"], true);
    assert_eq!(app.portal_state(DEMO).await["connector_data"][format!("{PROBE}|{PROBE_LINE}")], data);
    for (params, missing) in [
        (json!({ "CONNECTOR": PROBE, "LINE": PROBE_LINE }), "DATA"),
        (json!({ "LINE": PROBE_LINE, "DATA": data }), "CONNECTOR"),
        (json!({ "CONNECTOR": PROBE, "DATA": data }), "LINE"),
    ] {
        refused(&call(&app, ADMIN, "imconnector.connector.data.set", params).await, 400, "ERROR_ARGUMENT", Some(&format!("Argument '{missing}' is null or empty")));
    }
}

/// `api-reference/imopenlines/openlines/imopenlines-config-list-get.md`: a plain array of
/// lines (`ID` a string, `LINE_NAME`, `ACTIVE` Y/N), no `total` / `next`.
#[tokio::test]
async fn api_reference_imopenlines_openlines_imopenlines_config_list_get() {
    let app = spawn_app().await;
    let body = ok(&app, EMPLOYEE, "imopenlines.config.list.get", json!({})).await;
    let lines = body["result"].as_array().unwrap();
    assert_eq!(lines.iter().map(|l| l["ID"].as_str().unwrap()).collect::<Vec<_>>(), ["1", "2"]);
    assert!(lines.iter().all(|l| l["LINE_NAME"].is_string() && l["ACTIVE"] == "Y"), "{body}");
    assert!(body.get("total").is_none() && body.get("next").is_none(), "{body}");
    let mut docs = Docs::default();
    let filtered = ok(&app, EMPLOYEE, "imopenlines.config.list.get", json!({ "PARAMS": { "select": ["ID"], "filter": { "ID": 2 } } })).await;
    docs.say(filtered["result"] == json!([{ "ID": "2" }]), format!("select ID, filter ID 2: {}", filtered["result"]));
    let bogus = call(&app, EMPLOYEE, "imopenlines.config.list.get", json!({ "PARAMS": { "bogus": 1 } })).await;
    docs.say(bogus.0 == StatusCode::BAD_REQUEST && bogus.1["error"] == "INVALID_FORMAT", format!("PARAMS.bogus: {} {}", bogus.0, bogus.1));
    let limit = call(&app, EMPLOYEE, "imopenlines.config.list.get", json!({ "PARAMS": { "limit": -1 } })).await;
    docs.say(is_refusal(&limit, 400, "INVALID_FORMAT", "A non-negative integer is expected in the PARAMS field 'limit'"), format!("limit -1: {} {}", limit.0, limit.1));
}

/// `api-reference/imopenlines/imconnector/imconnector-send-messages.md`: `{SUCCESS, DATA:
/// {RESULT: [{user (string), message {id, date, text, files}, chat {id, name}, SUCCESS,
/// session {ID, CHAT_ID}}]}}`; `name`/`last_name` only letters, spaces, hyphens and
/// apostrophes, ≤ 25; 400 `NOT_ACTIVE_LINE`; 400 `ERROR_ARGUMENT` for a missing `MESSAGES` or
/// a message without `user`, `message` or `chat`.
#[tokio::test]
async fn api_reference_imopenlines_imconnector_imconnector_send_messages() {
    let app = spawn_app().await;
    let mut docs = Docs::default();
    probe_connector(&app).await;
    let (status, body) = send_on_probe(&app, json!([client_message("channel-123", "ext-user-42", "Klaus", "Guten Tag")])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["SUCCESS"], true);
    let item = &body["result"]["DATA"]["RESULT"][0];
    assert_eq!(item["SUCCESS"], true, "{item}");
    assert!(item["user"].is_string(), "{item}");
    assert_eq!((item["message"]["text"].as_str(), item["chat"]["id"].as_str()), (Some("Guten Tag"), Some("channel-123")));
    assert!(item["message"]["id"].is_string() && item["message"]["files"].is_array(), "{item}");
    docs.say(item["chat"]["name"] == "Support Channel", format!("chat.name: {}", item["chat"]));
    assert!(item["session"]["ID"].is_string() && item["session"]["CHAT_ID"].is_string(), "the client's message opened a session: {item}");

    // An employee's message through the connector, on behalf of manager 2.
    let mut employee = client_message("channel-123", "ext-user-42", "Klaus", "Hallo Klaus");
    employee["message"]["user_id"] = json!(EMPLOYEE);
    let (_, body) = send_on_probe(&app, json!([employee])).await;
    assert_eq!(body["result"]["DATA"]["RESULT"][0]["SUCCESS"], true, "{body}");
    // DOCS SILENT: `session` is "returned if available"; the sandbox gives none for an employee's message.

    // Name rules: digits, other symbols, more than 25 characters.
    for name in ["Klaus2", "Klaus!", "Abcdefghijklmnopqrstuvwxyz"] {
        let (status, body) = send_on_probe(&app, json!([client_message("channel-124", "ext-user-43", name, "x")])).await;
        let item = &body["result"]["DATA"]["RESULT"][0];
        assert!(body["error"].is_string() || (item["SUCCESS"] == false && item["ERRORS"].is_array()), "{name}: {status} {body}");
    }
    for name in ["Jean-Luc", "O'Brien", "Анна Мария"] {
        let (_, body) = send_on_probe(&app, json!([client_message("channel-125", "ext-user-44", name, "x")])).await;
        assert_eq!(body["result"]["DATA"]["RESULT"][0]["SUCCESS"], true, "{name}: {body}");
    }

    let message = json!([client_message("channel-123", "ext-user-42", "Klaus", "x")]);
    let inactive = call(&app, ADMIN, "imconnector.send.messages", json!({ "CONNECTOR": PROBE, "LINE": "1", "MESSAGES": message })).await;
    refused(&inactive, 400, "NOT_ACTIVE_LINE", Some("The line with this ID is inactive or does not exist"));
    let no_messages = call(&app, ADMIN, "imconnector.send.messages", json!({ "CONNECTOR": PROBE, "LINE": PROBE_LINE })).await;
    refused(&no_messages, 400, "ERROR_ARGUMENT", Some("Argument 'MESSAGES' is null or empty"));
    let broken = send_on_probe(&app, json!([{ "message": { "text": "x" }, "chat": { "id": "c" } }])).await;
    refused(&broken, 400, "ERROR_ARGUMENT", Some("The incorrect structure of a message inside MESSAGES parameter"));
}

/// `api-reference/imopenlines/imconnector/imconnector-update-messages.md`: the `message.id`
/// and `chat.id` of the `send.messages` name the message; `RESULT[]` items `{user (string),
/// message {id, date, text, files}, chat {id, name}, SUCCESS}`; 400 `ERROR_ARGUMENT` for a
/// missing `CONNECTOR`, `LINE` or `MESSAGES`, `NOT_ACTIVE_LINE` for an inactive line.
#[tokio::test]
async fn api_reference_imopenlines_imconnector_imconnector_update_messages() {
    let app = spawn_app().await;
    probe_connector(&app).await;
    let sent = client_message("channel-300", "ext-user-300", "Klaus", "Guten Tag");
    assert_eq!(send_on_probe(&app, json!([sent.clone()])).await.1["result"]["SUCCESS"], true);
    let mut edit = sent.clone();
    edit["message"]["text"] = json!("Guten Abend");
    let update = |messages: Value| call(&app, ADMIN, "imconnector.update.messages", json!({ "CONNECTOR": PROBE, "LINE": PROBE_LINE, "MESSAGES": messages }));
    let (status, body) = update(json!([edit.clone()])).await;
    assert_eq!((status, &body["result"]["SUCCESS"]), (StatusCode::OK, &json!(true)), "{body}");
    let item = &body["result"]["DATA"]["RESULT"][0];
    assert_eq!(keys(item), ["SUCCESS", "chat", "message", "user"], "{item}");
    assert!(item["user"].is_string(), "{item}");
    assert_eq!((&item["message"]["id"], &item["message"]["text"], &item["chat"]["id"]), (&sent["message"]["id"], &json!("Guten Abend"), &json!("channel-300")));
    let shown = app.ol_messages().await.into_iter().find(|m| m["external_id"] == sent["message"]["id"]).unwrap();
    assert_eq!((&shown["text"], &shown["edited"]), (&json!("Guten Abend"), &json!(true)), "{shown}");

    // "Pass either text or files".
    let mut empty = edit.clone();
    empty["message"].as_object_mut().unwrap().remove("text");
    let item = update(json!([empty])).await.1["result"]["DATA"]["RESULT"][0].clone();
    assert!(item["SUCCESS"] == false && item["ERRORS"].is_array(), "{item}");
    // DOCS SILENT: an id the line never had is refused for that element.
    let mut unknown = edit.clone();
    unknown["message"]["id"] = json!("ext-never-sent");
    let item = update(json!([unknown])).await.1["result"]["DATA"]["RESULT"][0].clone();
    assert!(item["SUCCESS"] == false && item["ERRORS"].is_array(), "{item}");

    revision_refusals(&app, "imconnector.update.messages", edit).await;
}

/// `api-reference/imopenlines/imconnector/imconnector-delete-messages.md`: `user.id`,
/// `message.id` and `chat.id` required; `RESULT[]` items `{user, message {id}, chat {id},
/// SUCCESS}`; the same refusals as the update.
#[tokio::test]
async fn api_reference_imopenlines_imconnector_imconnector_delete_messages() {
    let app = spawn_app().await;
    probe_connector(&app).await;
    let sent = client_message("channel-301", "ext-user-301", "Klaus", "Guten Tag");
    assert_eq!(send_on_probe(&app, json!([sent.clone()])).await.1["result"]["SUCCESS"], true);
    let gone = json!({ "user": { "id": "ext-user-301" }, "message": { "id": sent["message"]["id"] }, "chat": { "id": "channel-301" } });
    let delete = |messages: Value| call(&app, ADMIN, "imconnector.delete.messages", json!({ "CONNECTOR": PROBE, "LINE": PROBE_LINE, "MESSAGES": messages }));
    let (status, body) = delete(json!([gone.clone()])).await;
    assert_eq!((status, &body["result"]["SUCCESS"]), (StatusCode::OK, &json!(true)), "{body}");
    let item = &body["result"]["DATA"]["RESULT"][0];
    assert_eq!((&item["SUCCESS"], &item["message"]["id"], &item["chat"]["id"]), (&json!(true), &sent["message"]["id"], &json!("channel-301")), "{item}");
    assert!(item["user"].is_string(), "{item}");
    let shown = app.ol_messages().await.into_iter().find(|m| m["external_id"] == sent["message"]["id"]).unwrap();
    assert_eq!((&shown["deleted"], &shown["text"]), (&json!(true), &json!("")), "{shown}");

    // DOCS SILENT: a message deleted already is refused for that element.
    let item = delete(json!([gone.clone()])).await.1["result"]["DATA"]["RESULT"][0].clone();
    assert!(item["SUCCESS"] == false && item["ERRORS"].is_array(), "{item}");
    let mut anonymous = gone.clone();
    anonymous["user"] = json!({});
    let item = delete(json!([anonymous])).await.1["result"]["DATA"]["RESULT"][0].clone();
    assert!(item["SUCCESS"] == false, "user.id is required: {item}");

    revision_refusals(&app, "imconnector.delete.messages", gone).await;
}

/// What `imconnector.update.messages` and `.delete.messages` both refuse, as their pages list it.
async fn revision_refusals(app: &TestApp, method: &str, message: Value) {
    let with = |params: Value| call(app, ADMIN, method, params);
    refused(&with(json!({ "LINE": PROBE_LINE, "MESSAGES": [message.clone()] })).await, 400, "ERROR_ARGUMENT", Some("Argument 'CONNECTOR' is null or empty"));
    refused(&with(json!({ "CONNECTOR": PROBE, "MESSAGES": [message.clone()] })).await, 400, "ERROR_ARGUMENT", Some("Argument 'LINE' is null or empty"));
    refused(&with(json!({ "CONNECTOR": PROBE, "LINE": PROBE_LINE })).await, 400, "ERROR_ARGUMENT", Some("Argument 'MESSAGES' is null or empty"));
    // The two pages word this description apart ("Line with such ID …" on the delete page): the code is what they share.
    let inactive = with(json!({ "CONNECTOR": PROBE, "LINE": "1", "MESSAGES": [message] })).await;
    refused(&inactive, 400, "NOT_ACTIVE_LINE", None);
    let broken = with(json!({ "CONNECTOR": PROBE, "LINE": PROBE_LINE, "MESSAGES": [{ "message": { "id": "x" }, "chat": { "id": "c" } }] })).await;
    refused(&broken, 400, "ERROR_ARGUMENT", Some("The incorrect structure of a message inside MESSAGES parameter"));
}

/// `api-reference/imopenlines/imconnector/imconnector-send-status-delivery.md`:
/// `{"result": {"SUCCESS": true, "DATA": []}}`; 400 `ERROR_ARGUMENT` for a missing `MESSAGES`.
#[tokio::test]
async fn api_reference_imopenlines_imconnector_imconnector_send_status_delivery() {
    status_contract(&spawn_app().await, "imconnector.send.status.delivery", "delivered").await;
}

/// `api-reference/imopenlines/imconnector/imconnector-send-status-reading.md`: the same shape.
#[tokio::test]
async fn api_reference_imopenlines_imconnector_imconnector_send_status_reading() {
    status_contract(&spawn_app().await, "imconnector.send.status.reading", "read").await;
}

/// An operator's message in a probe chat confirmed by `method`; the sandbox marks it `flag`.
async fn status_contract(app: &TestApp, method: &str, flag: &str) {
    probe_connector(app).await;
    let (chat_id, _) = probe_chat(app, "channel-200", "ext-user-200").await;
    let message_id = app.operator_writes(chat_id, EMPLOYEE, "Hallo").await;
    let messages = json!([{ "im": { "chat_id": chat_id, "message_id": message_id }, "message": { "id": ["ext-1"] }, "chat": { "id": "channel-200" } }]);
    let body = ok(app, ADMIN, method, json!({ "CONNECTOR": PROBE, "LINE": PROBE_LINE, "MESSAGES": messages })).await;
    assert_eq!(body["result"]["SUCCESS"], true, "{body}");
    let mut docs = Docs::default();
    docs.say(body["result"]["DATA"] == json!([]), format!("DATA: []: {}", body["result"]));
    let marked = app.ol_messages().await.into_iter().find(|m| m["id"] == message_id).unwrap();
    assert_eq!(marked[flag], true, "{marked}");
    refused(&call(app, ADMIN, method, json!({ "CONNECTOR": PROBE, "LINE": PROBE_LINE })).await, 400, "ERROR_ARGUMENT", Some("Argument 'MESSAGES' is null or empty"));
}

// ---------------------------------------------------------------------------------------------
// Open Line chats and messages.

/// `api-reference/imopenlines/openlines/chats/imopenlines-crm-chat-get.md`: rows `{CHAT_ID
/// (string), CONNECTOR_ID, CONNECTOR_TITLE}`; `[]` when no such object exists; 400
/// `ERROR_ARGUMENT` "Argument 'CRM_ENTITY_TYPE' is null or empty".
#[tokio::test]
async fn api_reference_imopenlines_openlines_chats_imopenlines_crm_chat_get() {
    let app = spawn_app().await;
    probe_connector(&app).await;
    let (chat_id, (kind, id)) = probe_chat(&app, "channel-300", "ext-user-300").await;
    let rows = ok(&app, EMPLOYEE, "imopenlines.crm.chat.get", json!({ "CRM_ENTITY_TYPE": kind.to_lowercase(), "CRM_ENTITY": id })).await;
    assert_eq!(rows["result"], json!([{ "CHAT_ID": chat_id.to_string(), "CONNECTOR_ID": PROBE, "CONNECTOR_TITLE": "Contract probe" }]));
    let none = call(&app, EMPLOYEE, "imopenlines.crm.chat.get", json!({ "CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 999 })).await;
    let mut docs = Docs::default();
    docs.say(none.0 == StatusCode::OK && none.1["result"] == json!([]), format!("[] for no such lead: {} {}", none.0, none.1));
    let missing = call(&app, EMPLOYEE, "imopenlines.crm.chat.get", json!({ "CRM_ENTITY": id })).await;
    refused(&missing, 400, "ERROR_ARGUMENT", Some("Argument 'CRM_ENTITY_TYPE' is null or empty"));
}

/// `api-reference/imopenlines/openlines/chats/imopenlines-crm-chat-user-add.md`: `result` is
/// the chat's id; 400 `CHAT_NOT_IN_CRM` "Chat does not belong to the CRM object being
/// checked"; 400 `WRONG_REQUEST` "You don't have access or user already member in chat"; 400
/// `CRM_CHAT_USER_NOT_ACTIVE` "User not active".
#[tokio::test]
async fn api_reference_imopenlines_openlines_chats_imopenlines_crm_chat_user_add() {
    let app = spawn_app().await;
    probe_connector(&app).await;
    let (chat_id, (kind, id)) = probe_chat(&app, "channel-400", "ext-user-400").await;
    let (other_chat, _) = probe_chat(&app, "channel-401", "ext-user-401").await;
    let add = |user: u64, chat: Option<u64>| {
        let mut params = json!({ "CRM_ENTITY_TYPE": kind.to_lowercase(), "CRM_ENTITY": id, "USER_ID": user });
        if let Some(chat) = chat {
            params["CHAT_ID"] = json!(chat);
        }
        params
    };
    let added = ok(&app, ADMIN, "imopenlines.crm.chat.user.add", add(3, Some(chat_id))).await;
    let mut docs = Docs::default();
    docs.say(added["result"] == chat_id, format!("result {chat_id}: {}", added["result"]));
    let again = call(&app, ADMIN, "imopenlines.crm.chat.user.add", add(3, Some(chat_id))).await;
    refused(&again, 400, "WRONG_REQUEST", Some("You don't have access or user already member in chat"));
    let foreign = call(&app, ADMIN, "imopenlines.crm.chat.user.add", add(4, Some(other_chat))).await;
    refused(&foreign, 400, "CHAT_NOT_IN_CRM", Some("Chat does not belong to the CRM object being checked"));
    // No inactive employee is seeded; an unknown one stands in (DOCS SILENT on unknown users).
    let inactive = call(&app, ADMIN, "imopenlines.crm.chat.user.add", add(999, Some(chat_id))).await;
    refused(&inactive, 400, "CRM_CHAT_USER_NOT_ACTIVE", Some("User not active"));
    // Without CHAT_ID: the record's last chat.
    let last = ok(&app, ADMIN, "imopenlines.crm.chat.user.add", add(5, None)).await;
    docs.say(last["result"] == chat_id, format!("the last chat {chat_id}: {}", last["result"]));
}

/// `api-reference/imopenlines/openlines/sessions/imopenlines-dialog-get.md`: by `CHAT_ID`,
/// `DIALOG_ID` or `USER_CODE`; `id` an integer, `type` "lines", `entity_type` "LINES",
/// `entity_id` = the USER_CODE `connector|LINE|chat|user`, `entity_data_2`
/// "LEAD|n|COMPANY|n|CONTACT|n|DEAL|n", `dialog_id` "chatN"; 400 `ACCESS_ERROR`.
#[tokio::test]
async fn api_reference_imopenlines_openlines_sessions_imopenlines_dialog_get() {
    let app = spawn_app().await;
    probe_connector(&app).await;
    let (chat_id, (kind, id)) = probe_chat(&app, "channel-500", "ext-user-500").await;
    let code = format!("{PROBE}|{PROBE_LINE}|channel-500|ext-user-500");
    for params in [json!({ "CHAT_ID": chat_id }), json!({ "DIALOG_ID": format!("chat{chat_id}") }), json!({ "USER_CODE": code })] {
        let dialog = ok(&app, EMPLOYEE, "imopenlines.dialog.get", params).await["result"].clone();
        assert_eq!((dialog["id"].as_u64(), dialog["type"].as_str(), dialog["entity_type"].as_str()), (Some(chat_id), Some("lines"), Some("LINES")));
        assert_eq!((dialog["entity_id"].as_str(), dialog["dialog_id"].as_str()), (Some(code.as_str()), Some(format!("chat{chat_id}").as_str())));
        let data = dialog["entity_data_2"].as_str().unwrap();
        let labels: Vec<&str> = data.split('|').step_by(2).collect();
        assert_eq!(labels, ["LEAD", "COMPANY", "CONTACT", "DEAL"], "{data}");
        assert!(data.contains(&format!("{kind}|{id}")), "{data}");
        assert!(dialog["manager_list"].is_array(), "{dialog}");
    }
    refused(&call(&app, EMPLOYEE, "imopenlines.dialog.get", json!({ "CHAT_ID": 999_999 })).await, 400, "ACCESS_ERROR", Some("You do not have access to the specified dialog"));
    let (_, sent) = send_on_probe(&app, json!([client_message("channel-500", "ext-user-500", "Klaus", "again")])).await;
    let session = sent["result"]["DATA"]["RESULT"][0]["session"]["ID"].as_str().unwrap().to_owned();
    let by_session = call(&app, EMPLOYEE, "imopenlines.dialog.get", json!({ "SESSION_ID": session })).await;
    let mut docs = Docs::default();
    docs.say(by_session.0 == StatusCode::OK && by_session.1["result"]["id"] == chat_id, format!("SESSION_ID {session}: {} {}", by_session.0, by_session.1));
}

/// `api-reference/chats/messages/im-message-add.md`: `result` the message's id; 400
/// `ACCESS_ERROR` "Action unavailable" for a user who may not write in the chat (not a member);
/// 400 `MESSAGE_EMPTY` "Message can't be empty".
#[tokio::test]
async fn api_reference_chats_messages_im_message_add() {
    let app = spawn_app().await;
    probe_connector(&app).await;
    let (chat_id, (kind, id)) = probe_chat(&app, "channel-600", "ext-user-600").await;
    let dialog = format!("chat{chat_id}");
    let outsider = call(&app, 3, "im.message.add", json!({ "DIALOG_ID": dialog, "MESSAGE": "Hello" })).await;
    refused(&outsider, 400, "ACCESS_ERROR", Some("Action unavailable"));
    ok(&app, ADMIN, "imopenlines.crm.chat.user.add", json!({ "CRM_ENTITY_TYPE": kind.to_lowercase(), "CRM_ENTITY": id, "USER_ID": 3, "CHAT_ID": chat_id })).await;
    let sent = ok(&app, 3, "im.message.add", json!({ "DIALOG_ID": dialog, "MESSAGE": "Hello" })).await;
    assert!(sent["result"].is_u64(), "{sent}");
    refused(&call(&app, 3, "im.message.add", json!({ "DIALOG_ID": dialog, "MESSAGE": "" })).await, 400, "MESSAGE_EMPTY", Some("Message can't be empty"));
    let private = call(&app, 3, "im.message.add", json!({ "DIALOG_ID": "2", "MESSAGE": "Hello, Boris" })).await;
    let mut docs = Docs::default();
    docs.say(private.0 == StatusCode::OK && private.1["result"].is_u64(), format!("DIALOG_ID 2: {} {}", private.0, private.1));
}

/// `api-reference/chats/notifications/im-notify-system-add.md`: `result` the notification's
/// id; the text trimmed; 400 `USER_ID_EMPTY` "User ID can't be empty" (absent or ≤ 0), 400
/// `MESSAGE_EMPTY` "Message can't be empty".
#[tokio::test]
async fn api_reference_chats_notifications_im_notify_system_add() {
    let app = spawn_app().await;
    let sent = ok(&app, EMPLOYEE, "im.notify.system.add", json!({ "USER_ID": 3, "MESSAGE": "  Ping  " })).await;
    assert!(sent["result"].is_u64(), "{sent}");
    let notes = app.get_json("/sandbox/portal/notifications").await;
    assert_eq!(notes["notifications"][0]["message"], "Ping");
    for user in [json!(null), json!(0)] {
        let params = if user.is_null() { json!({ "MESSAGE": "x" }) } else { json!({ "USER_ID": user, "MESSAGE": "x" }) };
        refused(&call(&app, EMPLOYEE, "im.notify.system.add", params).await, 400, "USER_ID_EMPTY", Some("User ID can't be empty"));
    }
    refused(&call(&app, EMPLOYEE, "im.notify.system.add", json!({ "USER_ID": 3 })).await, 400, "MESSAGE_EMPTY", Some("Message can't be empty"));
}

// ---------------------------------------------------------------------------------------------
// The timeline.

/// `api-reference/crm/timeline/logmessage/logo/crm-timeline-logo-list.md`:
/// `{"result": {"logos": [{code, isSystem, fileUri}]}, "total": n}`.
#[tokio::test]
async fn api_reference_crm_timeline_logmessage_logo_crm_timeline_logo_list() {
    timeline_list(&spawn_app().await, "crm.timeline.logo.list", "logos").await;
}

/// `api-reference/crm/timeline/logmessage/icons/crm-timeline-icon-list.md`: the same with `icons`.
#[tokio::test]
async fn api_reference_crm_timeline_logmessage_icons_crm_timeline_icon_list() {
    timeline_list(&spawn_app().await, "crm.timeline.icon.list", "icons").await;
}

async fn timeline_list(app: &TestApp, method: &str, key: &str) {
    let body = ok(app, EMPLOYEE, method, json!({})).await;
    let rows = body["result"][key].as_array().unwrap();
    assert_eq!(body["total"].as_u64(), Some(rows.len() as u64), "{body}");
    assert!(rows.iter().any(|r| r["code"] == "call") && rows.iter().any(|r| r["code"] == "arrow-down"), "the docs' examples: {body}");
    for row in rows {
        assert_eq!(keys(row), ["code", "fileUri", "isSystem"]);
        assert!(row["isSystem"].is_boolean() && row["fileUri"].is_string(), "{row}");
    }
}

/// `api-reference/crm/timeline/activities/configurable/crm-activity-configurable-add.md` (+
/// `…/configurable/structure/*.md`): `{"result":{"activity":{"id":n}}}`; `icon.code` from
/// crm.timeline.icon.list, `body.logo.code` from crm.timeline.logo.list; required fields
/// (`FIELD_IS_REQUIRED`), unknown fields (`FIELD_IS_REDUNDANT`), ≤ 2 tags (`TOO_MANY_ITEMS`),
/// tag types warning/success/failure/primary/secondary only (`lavender` refused, `ENUM_FIELD`),
/// an empty layout (`ERROR_EMPTY_LAYOUT`); HTTP 400.
#[tokio::test]
async fn api_reference_crm_timeline_activities_configurable_crm_activity_configurable_add() {
    let app = spawn_app().await;
    let (icon, logo) = (first_code(&app, "crm.timeline.icon.list", "icons").await, first_code(&app, "crm.timeline.logo.list", "logos").await);
    let add = |layout: Value| json!({ "ownerTypeId": 1, "ownerId": 1, "fields": { "completed": false, "originId": "m-1" }, "layout": layout });
    let added = ok(&app, EMPLOYEE, "crm.activity.configurable.add", add(layout(&icon, &logo, "Hello"))).await;
    assert!(added["result"]["activity"]["id"].is_u64(), "{added}");

    let refusal = |mut l: Value, edit: fn(&mut Value)| {
        edit(&mut l);
        l
    };
    let base = layout(&icon, &logo, "Hello");
    let cases: [(Value, &str); 8] = [
        (layout(&icon, "no-such-logo", "Hello"), "ENUM_FIELD"),
        (layout("no-such-icon", &logo, "Hello"), "ENUM_FIELD"),
        (refusal(base.clone(), |l| { l["body"]["blocks"]["text"]["properties"].as_object_mut().unwrap().remove("value"); }), "FIELD_IS_REQUIRED"),
        (refusal(base.clone(), |l| l["header"]["tags"] = json!({ "a": { "title": "1", "type": "primary" }, "b": { "title": "2", "type": "primary" }, "c": { "title": "3", "type": "primary" } })), "TOO_MANY_ITEMS"),
        (refusal(base.clone(), |l| l["header"]["tags"]["status"]["type"] = json!("lavender")), "ENUM_FIELD"),
        (refusal(base.clone(), |l| l["body"]["colour"] = json!("red")), "FIELD_IS_REDUNDANT"),
        (refusal(base.clone(), |l| l["body"]["blocks"] = json!({ "a b": { "type": "text", "properties": { "value": "x" } } })), "KEY_CONTAIN_WRONG_SYMBOLS"),
        (json!({}), "ERROR_EMPTY_LAYOUT"),
    ];
    for (l, code) in cases {
        let answer = call(&app, EMPLOYEE, "crm.activity.configurable.add", add(l.clone())).await;
        assert_eq!((answer.0.as_u16(), answer.1["error"].as_str()), (400, Some(code)), "{l}: {}", answer.1);
    }
    let mut no_owner = add(layout(&icon, &logo, "Hello"));
    no_owner["ownerId"] = json!(999);
    refused(&call(&app, EMPLOYEE, "crm.activity.configurable.add", no_owner).await, 400, "NOT_FOUND", Some("Not found."));
    // DOCS SILENT: `value` is required, an empty one is not discussed; the sandbox refuses it.
    any_refusal(&call(&app, EMPLOYEE, "crm.activity.configurable.add", add(layout(&icon, &logo, ""))).await);
}

/// `api-reference/crm/timeline/activities/configurable/crm-activity-configurable-update.md`:
/// `id`, `fields`, the whole `layout`; `{"result":{"activity":{"id":n}}}`; 400 `NOT_FOUND`
/// "Element not found"; only the app that created the activity (`ERROR_WRONG_APPLICATION`).
#[tokio::test]
async fn api_reference_crm_timeline_activities_configurable_crm_activity_configurable_update() {
    let app = spawn_app().await;
    let (icon, logo) = (first_code(&app, "crm.timeline.icon.list", "icons").await, first_code(&app, "crm.timeline.logo.list", "logos").await);
    let added = ok(&app, EMPLOYEE, "crm.activity.configurable.add", json!({ "ownerTypeId": 1, "ownerId": 1, "fields": {}, "layout": layout(&icon, &logo, "v1") })).await;
    let id = added["result"]["activity"]["id"].as_u64().unwrap();
    let update = |id: u64| json!({ "id": id, "fields": { "completed": true }, "layout": layout(&icon, &logo, "v2") });
    let updated = ok(&app, EMPLOYEE, "crm.activity.configurable.update", update(id)).await;
    assert_eq!(updated["result"], json!({ "activity": { "id": id } }));
    let shown = app.activities().await.into_iter().find(|a| a["id"] == id).unwrap();
    assert_eq!(shown["layout"]["body"]["blocks"]["text"]["properties"]["value"], "v2");
    let missing = call(&app, EMPLOYEE, "crm.activity.configurable.update", update(999_999)).await;
    refused(&missing, 400, "NOT_FOUND", None);
    let mut docs = Docs::default();
    docs.say(missing.1["error_description"] == "Element not found", &missing.1);
    any_refusal(&call(&app, EMPLOYEE, "crm.activity.configurable.update", json!({ "id": id, "fields": {} })).await);
    let (other, _) = app.app.sandbox().portal.issue_tokens_of(OTHER_APP_CLIENT_ID, DEMO, EMPLOYEE);
    let foreign = call_with(&app, &other, "crm.activity.configurable.update", update(id)).await;
    docs.say(foreign.0 == StatusCode::BAD_REQUEST && foreign.1["error"] == "ERROR_WRONG_APPLICATION", format!("another app: {} {}", foreign.0, foreign.1));
}

/// `api-reference/crm/timeline/activities/activity-base/crm-activity-list.md`: UPPER_CASE
/// string fields (`ID`, `OWNER_ID`, `OWNER_TYPE_ID`, `PROVIDER_ID` `CONFIGURABLE_REST_APP`,
/// `ORIGIN_ID`), `filter`, `total`, pages of 50 with `next`.
#[tokio::test]
async fn api_reference_crm_timeline_activities_activity_base_crm_activity_list() {
    let app = spawn_app().await;
    let (icon, logo) = (first_code(&app, "crm.timeline.icon.list", "icons").await, first_code(&app, "crm.timeline.logo.list", "logos").await);
    for i in 0..52 {
        let fields = json!({ "originId": format!("origin-{i}") });
        ok(&app, EMPLOYEE, "crm.activity.configurable.add", json!({ "ownerTypeId": 1, "ownerId": 1, "fields": fields, "layout": layout(&icon, &logo, "x") })).await;
    }
    let first = ok(&app, EMPLOYEE, "crm.activity.list", json!({ "filter": { "PROVIDER_ID": "CONFIGURABLE_REST_APP", "OWNER_TYPE_ID": 1, "OWNER_ID": 1 } })).await;
    let rows = first["result"].as_array().unwrap();
    assert_eq!((rows.len(), first["total"].as_u64(), first["next"].as_u64()), (50, Some(52), Some(50)));
    let row = &rows[0];
    for field in ["ID", "OWNER_ID", "OWNER_TYPE_ID", "PROVIDER_ID", "ORIGIN_ID"] {
        assert!(row[field].is_string(), "{field}: {row}");
    }
    assert_eq!((row["OWNER_TYPE_ID"].as_str(), row["PROVIDER_ID"].as_str()), (Some("1"), Some("CONFIGURABLE_REST_APP")));
    let one = ok(&app, EMPLOYEE, "crm.activity.list", json!({ "filter": { "ORIGIN_ID": "origin-7" } })).await;
    assert_eq!((one["total"].as_u64(), one["result"][0]["ORIGIN_ID"].as_str()), (Some(1), Some("origin-7")));
    assert!(one.get("next").is_none());
}

// ---------------------------------------------------------------------------------------------
// Events, received by the app under test and observed through it.

/// The demo chat our app opened for Ivan by publishing an employee's message through
/// `imconnector.send.messages` (its `ol_chat_id`).
async fn ivans_chat(app: &TestApp) -> u64 {
    let tab = app.lead_tab().await;
    let id = app.send_published(&tab, IVAN, "Your order ships today", "outgoing", false).await;
    app.wait_for_status(&tab, &id, "sent", WAIT).await;
    let messages = eventually(WAIT, "the publication", || async { app.ol_messages().await.into_iter().next() }).await;
    messages["chat_id"].as_u64().unwrap()
}

/// `api-reference/imopenlines/imconnector/events/on-im-connector-message-add.md`: an employee's
/// message in the chat reaches the connector as `[b]Name:[/b] [br]text` when it was registered
/// with `NEED_SIGNATURE` (the default), bare otherwise; the app turns it into the Telegram
/// message. The connector's own `imconnector.send.messages` raises no event (`…-send-messages.md`).
#[tokio::test]
async fn api_reference_imopenlines_imconnector_events_on_im_connector_message_add() {
    let app = spawn_app().await;
    let chat = ivans_chat(&app).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.telegram_messages().await.len(), 1, "no event echoed the published message");

    app.operator_writes(chat, EMPLOYEE, "Guten Tag!").await;
    let received = eventually(WAIT, "the signed message in Telegram", || async {
        let received = app.telegram_messages().await;
        (received.len() == 2).then_some(received)
    })
    .await;
    assert_eq!(received[1]["text"], "Boris Ivanov:\nGuten Tag!", "signed as [b]Boris Ivanov:[/b] [br]Guten Tag!");

    // Registered again without the signature: the bare text.
    let mut registered = app.portal_state(DEMO).await["connectors"]["olchat_telegram"].clone();
    registered["NEED_SIGNATURE"] = json!(false);
    assert_eq!(ok(&app, ADMIN, "imconnector.register", registered).await["result"]["result"], true);
    app.operator_writes(chat, EMPLOYEE, "Plain").await;
    let received = eventually(WAIT, "the bare message in Telegram", || async {
        let received = app.telegram_messages().await;
        (received.len() == 3).then_some(received)
    })
    .await;
    assert_eq!(received[2]["text"], "Plain");
}

/// An employee's message in Ivan's chat, once the app confirmed its delivery: its id and the
/// Telegram message it became.
async fn delivered_reply(app: &TestApp, chat: u64, text: &str, shown: &str) -> (u64, Value) {
    let id = app.operator_writes(chat, EMPLOYEE, text).await;
    let sent = eventually(WAIT, "the reply in Telegram", || async { app.telegram_messages().await.into_iter().find(|m| m["text"] == shown) }).await;
    eventually(WAIT, "its delivery status", || async { app.ol_messages().await.into_iter().find(|m| m["id"] == id && m["delivered"] == true).map(drop) }).await;
    (id, sent)
}

async fn operator_changes(app: &TestApp, change: &str, message_id: u64, text: &str) -> StatusCode {
    app.post_json(&format!("/sandbox/portal/openlines/operator/{change}"), json!({ "message_id": message_id, "text": text })).await.status
}

/// `api-reference/imopenlines/imconnector/events/on-im-connector-message-update.md`: an
/// employee's edit reaches the connector with the new text (signed as the message was), named
/// by the ids it gave on delivery; the app edits the Telegram message and confirms with
/// `imconnector.send.status.delivery`, as the page asks. Not raised for a message the
/// connector sent ("when a message sent from the external system channel is modified").
#[tokio::test]
async fn api_reference_imopenlines_imconnector_events_on_im_connector_message_update() {
    let app = spawn_app().await;
    let chat = ivans_chat(&app).await;
    let (id, sent) = delivered_reply(&app, chat, "Guten Tag!", "Boris Ivanov:\nGuten Tag!").await;
    let delivered = app.ol_messages().await.into_iter().find(|m| m["id"] == id).unwrap()["delivered_ids"].clone();
    assert_eq!(delivered, json!([sent["id"].to_string()]), "the connector named the message by its Telegram id");
    assert_eq!(operator_changes(&app, "edit", id, "Guten Abend!").await, StatusCode::NO_CONTENT);
    let edited = eventually(WAIT, "the edit in Telegram", || async {
        app.telegram_messages().await.into_iter().find(|m| m["text"] == "Boris Ivanov:\nGuten Abend!")
    })
    .await;
    assert_eq!(edited["id"], sent["id"]);
    let published = app.ol_messages().await.into_iter().find(|m| m["external_id"].is_string()).unwrap();
    assert_eq!(operator_changes(&app, "edit", published["id"].as_u64().unwrap(), "x").await, StatusCode::BAD_REQUEST, "no event for the connector's own message");
}

/// `api-reference/imopenlines/imconnector/events/on-im-connector-message-delete.md`: an
/// employee's deletion reaches the connector (`message.id` one string here); the app deletes
/// the Telegram message for both sides. The chat keeps only the mark.
#[tokio::test]
async fn api_reference_imopenlines_imconnector_events_on_im_connector_message_delete() {
    let app = spawn_app().await;
    let chat = ivans_chat(&app).await;
    let (id, sent) = delivered_reply(&app, chat, "Falsch", "Boris Ivanov:\nFalsch").await;
    assert_eq!(operator_changes(&app, "delete", id, "").await, StatusCode::NO_CONTENT);
    eventually(WAIT, "the message gone from Telegram", || async {
        app.telegram_messages().await.iter().all(|m| m["id"] != sent["id"]).then_some(())
    })
    .await;
    let gone = app.ol_messages().await.into_iter().find(|m| m["id"] == id).unwrap();
    assert_eq!((&gone["deleted"], &gone["text"]), (&json!(true), &json!("")), "{gone}");
    assert_eq!(operator_changes(&app, "delete", id, "").await, StatusCode::BAD_REQUEST, "deleted once");
}

/// The line the app keeps for the demo portal.
async fn app_line(app: &TestApp, member_id: &str) -> Option<String> {
    app.app.services.portals.get(member_id).await.unwrap().and_then(|p| p.line)
}

/// `api-reference/imopenlines/imconnector/events/on-im-connector-status-delete.md`: data
/// `{connector, line}` when the connector is turned off on a line: the app forgets the line.
#[tokio::test]
async fn api_reference_imopenlines_imconnector_events_on_im_connector_status_delete() {
    let app = spawn_app().await;
    assert_eq!(app_line(&app, DEMO).await.as_deref(), Some("1"));
    let answer = app.post_json("/sandbox/portal/openlines/disconnect", json!({ "member_id": DEMO, "line": "1" })).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    eventually(WAIT, "the line forgotten", || async { app_line(&app, DEMO).await.is_none().then_some(()) }).await;
    // The line itself stays.
    let lines = ok(&app, ADMIN, "imopenlines.config.list.get", json!({})).await;
    assert_eq!(lines["result"].as_array().unwrap().len(), 2);
}

/// `api-reference/imopenlines/imconnector/events/on-im-connector-line-delete.md`: data is the
/// deleted line's id: the app forgets the line, and the line is gone from the portal's list.
#[tokio::test]
async fn api_reference_imopenlines_imconnector_events_on_im_connector_line_delete() {
    let app = spawn_app().await;
    let answer = app.post_json("/sandbox/portal/openlines/disconnect", json!({ "member_id": DEMO, "line": "1", "delete_line": true })).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    eventually(WAIT, "the line forgotten", || async { app_line(&app, DEMO).await.is_none().then_some(()) }).await;
    let lines = ok(&app, ADMIN, "imopenlines.config.list.get", json!({})).await;
    assert_eq!(lines["result"].as_array().unwrap().iter().map(|l| l["ID"].as_str().unwrap()).collect::<Vec<_>>(), ["2"]);
}

/// `api-reference/common/events/on-app-uninstall.md`: sent as the app is removed, with the
/// `application_token` the app verifies; "API access is already revoked": the app forgets the
/// portal, and the portal's tokens are refused with `NO_AUTH_FOUND`.
#[tokio::test]
async fn api_reference_common_events_on_app_uninstall() {
    let app = spawn_app().await;
    let issued = token(&app, ADMIN);
    let answer = app.post_json("/sandbox/portal/uninstall", json!({ "member_id": DEMO })).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    eventually(WAIT, "the portal forgotten", || async {
        app.app.services.portals.get(DEMO).await.unwrap().is_none().then_some(())
    })
    .await;
    refused(&call_with(&app, &issued, "user.current", json!({})).await, 401, "NO_AUTH_FOUND", None);
}

/// `settings/app-installation/installation-finish.md`: until the install is finished
/// (`BX24.installFinish()`), `app.info` says `INSTALLED: false` and no events are sent; after it, they are.
#[tokio::test]
async fn settings_app_installation_installation_finish() {
    let app = spawn_app().await;
    let portal = &app.app.sandbox().portal;
    let member = seed::FRESH_MEMBER_ID;
    // The administrator opens the install page; the page's installFinish() is not run yet.
    let grant = portal.install(member).unwrap();
    let query = [("DOMAIN", seed::FRESH_DOMAIN), ("PROTOCOL", "0"), ("LANG", "en")];
    let form = [("AUTH_ID", grant.access_token.as_str()), ("AUTH_EXPIRES", "3600"), ("REFRESH_ID", grant.refresh_token.as_str()),
        ("APPLICATION_TOKEN", grant.application_token.as_str()), ("member_id", member), ("status", "L"), ("PLACEMENT", "DEFAULT")];
    let page = app.http.post(app.url("/bitrix/install")).query(&query).form(&form).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(app_line(&app, member).await.as_deref(), Some("7"), "the app set up its line");
    let admin = portal.issue_tokens(member, 1).0;
    let info = call_with(&app, &admin, "app.info", json!({})).await;
    assert_eq!(info.1["result"]["INSTALLED"], false, "{}", info.1);

    let disconnect = json!({ "member_id": member, "line": "7" });
    assert_eq!(app.post_json("/sandbox/portal/openlines/disconnect", disconnect.clone()).await.status, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app_line(&app, member).await.as_deref(), Some("7"), "no OnImConnectorStatusDelete before the install finished");

    portal.finish_install(member);
    assert_eq!(call_with(&app, &admin, "app.info", json!({})).await.1["result"]["INSTALLED"], true);
    let activate = call_with(&app, &admin, "imconnector.activate", json!({ "CONNECTOR": "olchat_telegram", "LINE": "7", "ACTIVE": "Y" })).await;
    assert_eq!(activate.1["result"], true, "{}", activate.1);
    assert_eq!(app.post_json("/sandbox/portal/openlines/disconnect", disconnect).await.status, StatusCode::NO_CONTENT);
    eventually(WAIT, "the line forgotten once installed", || async { app_line(&app, member).await.is_none().then_some(()) }).await;
}

// ---------------------------------------------------------------------------------------------
// Automation: robots, workflow actions, message providers.

/// A token of no app, as an incoming webhook's would be ("Application context required").
fn webhook_token(app: &TestApp) -> String {
    app.app.sandbox().portal.issue_tokens_of("", DEMO, ADMIN).0
}

/// A registration of the test's own: its handler under the app's URL, at a path the app does
/// not serve (the fire hook reports what the app answered there).
fn robot(app: &TestApp, code: &str, use_subscription: &str) -> Value {
    json!({
        "CODE": code, "HANDLER": app.url("/contract/robot"), "AUTH_USER_ID": EMPLOYEE, "USE_SUBSCRIPTION": use_subscription,
        "NAME": { "en": "Contract robot", "ru": "Робот" },
        "PROPERTIES": {
            "text": { "Name": "Text", "Type": "string", "Default": "Hello, {=Document:TITLE}" },
            "mode": { "Name": { "en": "Mode" }, "Type": "select", "Options": { "now": "Now", "later": "Later" }, "Default": "now" },
        },
        "RETURN_PROPERTIES": { "sent": { "Name": "Sent", "Type": "bool" } },
        "DOCUMENT_TYPE": ["crm", "CCrmDocumentDeal", "DEAL"],
        "FILTER": { "INCLUDE": [["crm", "CCrmDocumentDeal"], ["crm", "CCrmDocumentLead"]] },
    })
}

/// `params` with `key` set to `value` (`Value::Null` removes it).
fn with(mut params: Value, key: &str, value: Value) -> Value {
    let object = params.as_object_mut().unwrap();
    if value.is_null() {
        object.remove(key);
    } else {
        object.insert(key.into(), value);
    }
    params
}

/// Every refusal of `bizproc-robot-add.md` / `bizproc-activity-add.md`, HTTP 400 each.
async fn registration_contract(app: &TestApp, method: &str, code: &str, already_installed: &str) {
    let valid = robot(app, code, "Y");
    assert_eq!(ok(app, ADMIN, method, valid.clone()).await["result"], true);
    let validation = |text: &'static str| ("ERROR_ACTIVITY_VALIDATION_FAILURE", text);
    let cases: Vec<(Value, (&str, &str))> = vec![
        (json!({}), validation("Empty data!")),
        (with(valid.clone(), "CODE", Value::Null), validation("Empty activity code!")),
        (with(valid.clone(), "CODE", json!("bad code!")), validation("Wrong activity code!")),
        (with(valid.clone(), "HANDLER", json!("ftp://127.0.0.1/robot")), ("ERROR_UNSUPPORTED_PROTOCOL", "Unsupported handler protocol")),
        (with(valid.clone(), "HANDLER", json!("https://elsewhere.example/robot")), ("ERROR_WRONG_HANDLER_URL", "Wrong handler URL")),
        (with(valid.clone(), "NAME", Value::Null), validation("Empty activity NAME!")),
        (with(valid.clone(), "PROPERTIES", json!("text")), validation("Wrong properties array!")),
        (with(valid.clone(), "PROPERTIES", json!({ "1text": { "Name": "Text" } })), validation("Wrong property key 1text!")),
        (with(valid.clone(), "RETURN_PROPERTIES", json!({ "sent": { "Type": "bool" } })), validation("Empty property NAME sent!")),
        (with(valid.clone(), "FILTER", json!({ "INCLUDE": "crm" })), validation("Wrong activity FILTER!")),
        (with(valid.clone(), "DOCUMENT_TYPE", json!(["crm", "CCrmDocumentDeal"])), validation("Wrong activity DOCUMENT_TYPE!")),
        (with(valid.clone(), "CODE", json!(format!("{code}.other"))), ("", "")),
        (valid.clone(), ("ERROR_ACTIVITY_ALREADY_INSTALLED", already_installed)),
    ];
    for (params, (error, text)) in cases {
        let answer = call(app, ADMIN, method, params.clone()).await;
        if error.is_empty() {
            assert_eq!(answer.1["result"], true, "{params}: {}", answer.1);
        } else {
            refused(&answer, 400, error, Some(text));
        }
    }
    refused(&call(app, EMPLOYEE, method, robot(app, "by_employee", "Y")).await, 400, "ACCESS_DENIED", Some("Access denied!"));
    let webhook = call_with(app, &webhook_token(app), method, robot(app, "by_webhook", "Y")).await;
    refused(&webhook, 400, "ACCESS_DENIED", Some("Application context required"));
}

async fn codes(app: &TestApp, method: &str) -> Vec<String> {
    serde_json::from_value(ok(app, ADMIN, method, json!({})).await["result"].clone()).unwrap()
}

/// `api-reference/bizproc/bizproc-robot/bizproc-robot-add.md`: administrators, in an app's
/// context; `{"result": true}`; each refusal of the page's table with HTTP 400. DOCS SILENT:
/// whether a robot may take the code of the app's action (they share one mechanism,
/// `bizproc-activity/index.md`): refused as already installed.
#[tokio::test]
async fn api_reference_bizproc_bizproc_robot_bizproc_robot_add() {
    let app = spawn_app().await;
    registration_contract(&app, "bizproc.robot.add", "contract_robot", "Activity or Automation rule already installed!").await;
    assert!(codes(&app, "bizproc.robot.list").await.contains(&"contract_robot".to_owned()));
    ok(&app, ADMIN, "bizproc.activity.add", robot(&app, "contract_action", "Y")).await;
    let clash = call(&app, ADMIN, "bizproc.robot.add", robot(&app, "contract_action", "Y")).await;
    refused(&clash, 400, "ERROR_ACTIVITY_ALREADY_INSTALLED", None);
}

/// `api-reference/bizproc/bizproc-activity/bizproc-activity-add.md`: the same, in its own words.
#[tokio::test]
async fn api_reference_bizproc_bizproc_activity_bizproc_activity_add() {
    let app = spawn_app().await;
    registration_contract(&app, "bizproc.activity.add", "contract_action", "Activity or Robot already installed!").await;
    assert!(codes(&app, "bizproc.activity.list").await.contains(&"contract_action".to_owned()));
}

/// `bizproc-robot-update.md` / `bizproc-activity-update.md`: `CODE` and `FIELDS`.
async fn update_contract(app: &TestApp, kind: &str, not_found: &str) {
    let (add, update) = (format!("bizproc.{kind}.add"), format!("bizproc.{kind}.update"));
    ok(app, ADMIN, &add, robot(app, "contract_update", "Y")).await;
    let renamed = ok(app, ADMIN, &update, json!({ "CODE": "contract_update", "FIELDS": { "NAME": "Renamed", "USE_SUBSCRIPTION": "N" } })).await;
    assert_eq!(renamed["result"], true);
    let validation = |text: &'static str| ("ERROR_ACTIVITY_VALIDATION_FAILURE", text);
    let cases: Vec<(Value, (&str, &str))> = vec![
        (json!({ "FIELDS": { "NAME": "x" } }), validation("Empty activity code!")),
        (json!({ "CODE": "bad code!", "FIELDS": { "NAME": "x" } }), validation("Wrong activity code!")),
        (json!({ "CODE": "no_such_robot", "FIELDS": { "NAME": "x" } }), ("ERROR_ACTIVITY_NOT_FOUND", not_found)),
        (json!({ "CODE": "contract_update", "FIELDS": {} }), validation("No fields to update")),
        (json!({ "CODE": "contract_update" }), validation("No fields to update")),
        (json!({ "CODE": "contract_update", "FIELDS": { "HANDLER": "gopher://127.0.0.1/" } }), ("ERROR_UNSUPPORTED_PROTOCOL", "Unsupported handler protocol")),
        (json!({ "CODE": "contract_update", "FIELDS": { "HANDLER": "https://elsewhere.example/" } }), ("ERROR_WRONG_HANDLER_URL", "Wrong handler URL")),
        (json!({ "CODE": "contract_update", "FIELDS": { "PROPERTIES": [1] } }), validation("Wrong properties array!")),
        (json!({ "CODE": "contract_update", "FIELDS": { "PROPERTIES": { "a-b": { "Name": "x" } } } }), validation("Wrong property key a-b!")),
        (json!({ "CODE": "contract_update", "FIELDS": { "PROPERTIES": { "ab": {} } } }), validation("Empty property NAME ab!")),
        (json!({ "CODE": "contract_update", "FIELDS": { "FILTER": { "ONLY": ["b24"] } } }), validation("Wrong activity FILTER!")),
        (json!({ "CODE": "contract_update", "FIELDS": { "DOCUMENT_TYPE": "DEAL" } }), validation("Wrong activity DOCUMENT_TYPE!")),
    ];
    for (params, (error, text)) in cases {
        refused(&call(app, ADMIN, &update, params.clone()).await, 400, error, Some(text));
    }
    refused(&call(app, EMPLOYEE, &update, json!({ "CODE": "contract_update", "FIELDS": { "NAME": "x" } })).await, 400, "ACCESS_DENIED", Some("Access denied!"));
    let webhook = call_with(app, &webhook_token(app), &update, json!({ "CODE": "contract_update", "FIELDS": { "NAME": "x" } })).await;
    refused(&webhook, 400, "ACCESS_DENIED", Some("Application context required"));
    // The other kind's methods do not find it: robots and actions are listed apart.
    let other = if kind == "robot" { "bizproc.activity.update" } else { "bizproc.robot.update" };
    refused(&call(app, ADMIN, other, json!({ "CODE": "contract_update", "FIELDS": { "NAME": "x" } })).await, 400, "ERROR_ACTIVITY_NOT_FOUND", None);
}

/// `api-reference/bizproc/bizproc-robot/bizproc-robot-update.md`.
#[tokio::test]
async fn api_reference_bizproc_bizproc_robot_bizproc_robot_update() {
    update_contract(&spawn_app().await, "robot", "Activity or Automation Rule not found!").await;
}

/// `api-reference/bizproc/bizproc-activity/bizproc-activity-update.md`.
#[tokio::test]
async fn api_reference_bizproc_bizproc_activity_bizproc_activity_update() {
    update_contract(&spawn_app().await, "activity", "Activity or Automation rule not found!").await;
}

/// `bizproc-robot-list.md` / `bizproc-activity-list.md`: the app's codes of that kind only;
/// 400 `ACCESS_DENIED` for a non-administrator and outside an app's context.
async fn list_contract(app: &TestApp, list: &str) {
    ok(app, ADMIN, "bizproc.robot.add", robot(app, "listed_robot", "Y")).await;
    ok(app, ADMIN, "bizproc.activity.add", robot(app, "listed_action", "Y")).await;
    let (mine, theirs) = if list.contains("robot") { ("listed_robot", "listed_action") } else { ("listed_action", "listed_robot") };
    let listed = codes(app, list).await;
    assert!(listed.contains(&mine.to_owned()) && !listed.contains(&theirs.to_owned()), "{listed:?}");
    let (other_app, _) = app.app.sandbox().portal.issue_tokens_of(OTHER_APP_CLIENT_ID, DEMO, ADMIN);
    let others = call_with(app, &other_app, list, json!({})).await;
    assert_eq!(others.1["result"], json!([]), "another app's list: {}", others.1);
    refused(&call(app, EMPLOYEE, list, json!({})).await, 400, "ACCESS_DENIED", Some("Access denied!"));
    refused(&call_with(app, &webhook_token(app), list, json!({})).await, 400, "ACCESS_DENIED", Some("Application context required"));
}

/// `api-reference/bizproc/bizproc-robot/bizproc-robot-list.md`.
#[tokio::test]
async fn api_reference_bizproc_bizproc_robot_bizproc_robot_list() {
    list_contract(&spawn_app().await, "bizproc.robot.list").await;
}

/// `api-reference/bizproc/bizproc-activity/bizproc-activity-list.md`.
#[tokio::test]
async fn api_reference_bizproc_bizproc_activity_bizproc_activity_list() {
    list_contract(&spawn_app().await, "bizproc.activity.list").await;
}

/// `bizproc-robot-delete.md` / `bizproc-activity-delete.md`.
async fn delete_contract(app: &TestApp, kind: &str, not_found: &str) {
    let (add, delete, list) = (format!("bizproc.{kind}.add"), format!("bizproc.{kind}.delete"), format!("bizproc.{kind}.list"));
    ok(app, ADMIN, &add, robot(app, "contract_delete", "Y")).await;
    refused(&call(app, EMPLOYEE, &delete, json!({ "CODE": "contract_delete" })).await, 400, "ACCESS_DENIED", Some("Access denied!"));
    refused(&call_with(app, &webhook_token(app), &delete, json!({ "CODE": "contract_delete" })).await, 400, "ACCESS_DENIED", Some("Application context required"));
    assert_eq!(ok(app, ADMIN, &delete, json!({ "CODE": "contract_delete" })).await["result"], true);
    assert!(!codes(app, &list).await.contains(&"contract_delete".to_owned()));
    refused(&call(app, ADMIN, &delete, json!({ "CODE": "contract_delete" })).await, 400, "ERROR_ACTIVITY_NOT_FOUND", Some(not_found));
    refused(&call(app, ADMIN, &delete, json!({})).await, 400, "ERROR_ACTIVITY_VALIDATION_FAILURE", Some("Empty activity code!"));
    refused(&call(app, ADMIN, &delete, json!({ "CODE": "a b" })).await, 400, "ERROR_ACTIVITY_VALIDATION_FAILURE", Some("Wrong activity code!"));
}

/// `api-reference/bizproc/bizproc-robot/bizproc-robot-delete.md`; and "When the application is
/// deleted ... the associated robots are removed": gone with the app, back only if it
/// registers them again.
#[tokio::test]
async fn api_reference_bizproc_bizproc_robot_bizproc_robot_delete() {
    let app = spawn_app().await;
    delete_contract(&app, "robot", "Activity or Robot not found!").await;
    ok(&app, ADMIN, "bizproc.robot.add", robot(&app, "left_with_the_app", "Y")).await;
    ok(&app, ADMIN, "bizproc.activity.add", robot(&app, "left_too", "Y")).await;
    ok(&app, ADMIN, "messageservice.sender.add", provider(&app, "left_sender")).await;
    assert_eq!(app.post_json("/sandbox/portal/uninstall", json!({ "member_id": DEMO })).await.status, StatusCode::NO_CONTENT);
    app.install(DEMO, "page").await;
    assert!(!codes(&app, "bizproc.robot.list").await.contains(&"left_with_the_app".to_owned()));
    assert!(!codes(&app, "bizproc.activity.list").await.contains(&"left_too".to_owned()));
    assert!(!codes(&app, "messageservice.sender.list").await.contains(&"left_sender".to_owned()));
}

/// `api-reference/bizproc/bizproc-activity/bizproc-activity-delete.md`.
#[tokio::test]
async fn api_reference_bizproc_bizproc_activity_bizproc_activity_delete() {
    delete_contract(&spawn_app().await, "activity", "Activity or Automation rule not found!").await;
}

/// Fires robot or action `code` for deal 1, as an automation rule reaching it: the hook's answer.
async fn fire(app: &TestApp, code: &str, properties: Value) -> Value {
    let answer = app.post_json("/sandbox/portal/automation/fire", json!({ "member_id": DEMO, "code": code, "entity": "deal", "id": 1, "properties": properties })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

async fn run_of(app: &TestApp, workflow_id: &Value) -> Value {
    let runs = app.get_json("/sandbox/portal/automation/runs").await;
    runs["runs"].as_array().unwrap().iter().find(|r| r["workflow_id"] == *workflow_id).cloned().expect("the run is kept")
}

/// `tutorials/bizproc/activity.md`: when a rule reaches a robot, its handler is called (the
/// fire hook reports the app's answer: 404 at a path it does not serve) with the record's
/// `document_id`, the properties, their defaults, the document's fields substituted
/// (`{=Document:TITLE}`); the run waits for `bizproc.event.send`. The form's every field is
/// checked by the sandbox's unit tests (`automation_runs`).
#[tokio::test]
async fn tutorials_bizproc_activity() {
    let app = spawn_app().await;
    ok(&app, ADMIN, "bizproc.robot.add", robot(&app, "contract_fire", "")).await;
    let fired = fire(&app, "contract_fire", json!({ "mode": "later" })).await;
    assert_eq!(fired["handler_status"], 404, "{fired}");
    assert!(fired["event_token"].as_str().unwrap().starts_with(fired["workflow_id"].as_str().unwrap()), "{fired}");
    let run = run_of(&app, &fired["workflow_id"]).await;
    assert_eq!(run["document_id"], json!(["crm", "CCrmDocumentDeal", "DEAL_1"]));
    assert_eq!(run["properties"], json!({ "text": "Hello, Chairs for Acme Shop", "mode": "later" }));
    assert_eq!((run["status"].as_str(), run["kind"].as_str(), run["handler_status"].as_u64()), (Some("waiting"), Some("robot"), Some(404)), "empty USE_SUBSCRIPTION waits: {run}");
    let unknown = app.post_json("/sandbox/portal/automation/fire", json!({ "member_id": DEMO, "code": "no_such", "entity": "deal", "id": 1 })).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    let no_record = app.post_json("/sandbox/portal/automation/fire", json!({ "member_id": DEMO, "code": "contract_fire", "entity": "deal", "id": 999 })).await;
    assert_eq!(no_record.status, StatusCode::NOT_FOUND, "{}", no_record.body);
}

/// `api-reference/bizproc/bizproc-robot/bizproc-event-send.md`: a waiting run's `EVENT_TOKEN`
/// (either case: the page's table says `EVENT_TOKEN`, its example `event_token`) takes
/// `RETURN_VALUES` (the registered `RETURN_PROPERTIES`; DOCS SILENT on others: dropped) and
/// `LOG_MESSAGE`, once; 403 `ACCESS_DENIED` "Access denied!" for an unknown token, a used
/// one, and one of a run that does not wait (`USE_SUBSCRIPTION` N).
#[tokio::test]
async fn api_reference_bizproc_bizproc_robot_bizproc_event_send() {
    let app = spawn_app().await;
    ok(&app, ADMIN, "bizproc.robot.add", robot(&app, "contract_send", "Y")).await;
    let fired = fire(&app, "contract_send", json!({})).await;
    let token = fired["event_token"].clone();
    let sent = ok(&app, EMPLOYEE, "bizproc.event.send", json!({ "event_token": token, "return_values": { "sent": "Y", "extra": "dropped" }, "log_message": "Sent to Telegram" })).await;
    assert_eq!(sent["result"], true);
    let run = run_of(&app, &fired["workflow_id"]).await;
    assert_eq!((run["status"].as_str(), &run["return_values"], &run["log"]), (Some("completed"), &json!({ "sent": "Y" }), &json!(["Sent to Telegram"])), "{run}");
    let again = call(&app, EMPLOYEE, "bizproc.event.send", json!({ "EVENT_TOKEN": token, "RETURN_VALUES": { "sent": "N" } })).await;
    refused(&again, 403, "ACCESS_DENIED", Some("Access denied!"));
    refused(&call(&app, EMPLOYEE, "bizproc.event.send", json!({ "EVENT_TOKEN": "no-such-token" })).await, 403, "ACCESS_DENIED", Some("Access denied!"));

    let second = fire(&app, "contract_send", json!({})).await;
    assert_eq!(ok(&app, ADMIN, "bizproc.event.send", json!({ "EVENT_TOKEN": second["event_token"], "RETURN_VALUES": { "sent": "N" } })).await["result"], true);
    assert_eq!(run_of(&app, &second["workflow_id"]).await["return_values"], json!({ "sent": "N" }));

    ok(&app, ADMIN, "bizproc.robot.add", robot(&app, "contract_no_wait", "N")).await;
    let no_wait = fire(&app, "contract_no_wait", json!({})).await;
    assert_eq!(run_of(&app, &no_wait["workflow_id"]).await["status"], "not_waiting");
    refused(&call(&app, ADMIN, "bizproc.event.send", json!({ "EVENT_TOKEN": no_wait["event_token"] })).await, 403, "ACCESS_DENIED", Some("Access denied!"));
}

/// `api-reference/bizproc/bizproc-activity/bizproc-activity-log.md`: `LOG_MESSAGE` into a
/// waiting run's log, which keeps waiting; 400 `ERROR_EMPTY_LOG_MESSAGE` "Empty log message!";
/// `ACCESS_DENIED` for a token not current (its status as `bizproc.event.send`'s, 403: the
/// page gives none).
#[tokio::test]
async fn api_reference_bizproc_bizproc_activity_bizproc_activity_log() {
    let app = spawn_app().await;
    ok(&app, ADMIN, "bizproc.activity.add", robot(&app, "contract_log", "Y")).await;
    let fired = fire(&app, "contract_log", json!({})).await;
    assert_eq!(ok(&app, EMPLOYEE, "bizproc.activity.log", json!({ "event_token": fired["event_token"], "log_message": "Please wait for answer!" })).await["result"], true);
    let run = run_of(&app, &fired["workflow_id"]).await;
    assert_eq!((run["status"].as_str(), run["kind"].as_str(), &run["log"]), (Some("waiting"), Some("activity"), &json!(["Please wait for answer!"])), "{run}");
    refused(&call(&app, EMPLOYEE, "bizproc.activity.log", json!({ "EVENT_TOKEN": fired["event_token"] })).await, 400, "ERROR_EMPTY_LOG_MESSAGE", Some("Empty log message!"));
    refused(&call(&app, EMPLOYEE, "bizproc.activity.log", json!({ "EVENT_TOKEN": "nope", "LOG_MESSAGE": "x" })).await, 403, "ACCESS_DENIED", Some("Access denied!"));
    ok(&app, EMPLOYEE, "bizproc.event.send", json!({ "EVENT_TOKEN": fired["event_token"] })).await;
    refused(&call(&app, EMPLOYEE, "bizproc.activity.log", json!({ "EVENT_TOKEN": fired["event_token"], "LOG_MESSAGE": "late" })).await, 403, "ACCESS_DENIED", None);
}

/// A provider of the test's own, its handler at a path of the app's URL it does not serve.
fn provider(app: &TestApp, code: &str) -> Value {
    json!({ "CODE": code, "TYPE": "SMS", "HANDLER": app.url("/contract/sms"), "NAME": { "en": "Contract SMS" }, "DESCRIPTION": "A probe" })
}

/// `api-reference/messageservice/messageservice-sender-add.md`: administrators in an app's
/// context (403 `ACCESS_DENIED`), `TYPE` `SMS` only, each refusal of the page's table (400).
#[tokio::test]
async fn api_reference_messageservice_messageservice_sender_add() {
    let app = spawn_app().await;
    let valid = provider(&app, "contract_sms");
    assert_eq!(ok(&app, ADMIN, "messageservice.sender.add", valid.clone()).await["result"], true);
    let validation = |text: &'static str| ("ERROR_SENDER_VALIDATION_FAILURE", text);
    let cases: Vec<(Value, (&str, &str))> = vec![
        (json!({}), validation("Empty data!")),
        (with(valid.clone(), "CODE", Value::Null), validation("Empty sender code!")),
        (with(valid.clone(), "CODE", json!("sms provider")), validation("Wrong sender code!")),
        (with(valid.clone(), "NAME", Value::Null), validation("Empty sender NAME!")),
        (with(valid.clone(), "TYPE", Value::Null), validation("Empty sender message TYPE!")),
        (with(valid.clone(), "TYPE", json!("VOICE")), validation("Unknown sender message TYPE!")),
        (valid.clone(), ("ERROR_SENDER_ALREADY_INSTALLED", "Sender already installed!")),
    ];
    for (params, (error, text)) in cases {
        refused(&call(&app, ADMIN, "messageservice.sender.add", params.clone()).await, 400, error, Some(text));
    }
    // DOCS SILENT on the handler's refusals: those of the robot pages for the same rule.
    refused(&call(&app, ADMIN, "messageservice.sender.add", with(provider(&app, "elsewhere"), "HANDLER", json!("https://elsewhere.example/sms"))).await, 400, "ERROR_WRONG_HANDLER_URL", None);
    refused(&call(&app, EMPLOYEE, "messageservice.sender.add", provider(&app, "by_employee")).await, 403, "ACCESS_DENIED", Some("Access denied!"));
    refused(&call_with(&app, &webhook_token(&app), "messageservice.sender.add", provider(&app, "by_webhook")).await, 403, "ACCESS_DENIED", Some("Application context required"));
}

/// `api-reference/messageservice/messageservice-sender-update.md`: `CODE` and one of `HANDLER`,
/// `NAME`, `DESCRIPTION`.
#[tokio::test]
async fn api_reference_messageservice_messageservice_sender_update() {
    let app = spawn_app().await;
    ok(&app, ADMIN, "messageservice.sender.add", provider(&app, "contract_sms")).await;
    assert_eq!(ok(&app, ADMIN, "messageservice.sender.update", json!({ "CODE": "contract_sms", "NAME": "Renamed" })).await["result"], true);
    refused(&call(&app, ADMIN, "messageservice.sender.update", json!({ "NAME": "x" })).await, 400, "ERROR_SENDER_CODE_REQUIRED", Some("CODE is required!"));
    refused(&call(&app, ADMIN, "messageservice.sender.update", json!({ "CODE": "contract_sms" })).await, 400, "ERROR_SENDER_OTHER_PARAMS_REQUIRED", Some("At least one other parameter is required!"));
    refused(&call(&app, ADMIN, "messageservice.sender.update", json!({ "CODE": "no_such", "NAME": "x" })).await, 400, "ERROR_SENDER_NOT_FOUND", Some("Sender not found!"));
    refused(&call(&app, EMPLOYEE, "messageservice.sender.update", json!({ "CODE": "contract_sms", "NAME": "x" })).await, 403, "ACCESS_DENIED", Some("Access denied!"));
    refused(&call_with(&app, &webhook_token(&app), "messageservice.sender.update", json!({ "CODE": "contract_sms", "NAME": "x" })).await, 403, "ACCESS_DENIED", Some("Application context required"));
}

/// `api-reference/messageservice/messageservice-sender-list.md`: the app's provider codes.
#[tokio::test]
async fn api_reference_messageservice_messageservice_sender_list() {
    let app = spawn_app().await;
    ok(&app, ADMIN, "messageservice.sender.add", provider(&app, "contract_sms")).await;
    assert!(codes(&app, "messageservice.sender.list").await.contains(&"contract_sms".to_owned()));
    let (other_app, _) = app.app.sandbox().portal.issue_tokens_of(OTHER_APP_CLIENT_ID, DEMO, ADMIN);
    assert_eq!(call_with(&app, &other_app, "messageservice.sender.list", json!({})).await.1["result"], json!([]));
    refused(&call(&app, EMPLOYEE, "messageservice.sender.list", json!({})).await, 403, "ACCESS_DENIED", Some("Access denied!"));
    refused(&call_with(&app, &webhook_token(&app), "messageservice.sender.list", json!({})).await, 403, "ACCESS_DENIED", Some("Application context required"));
}

/// `api-reference/messageservice/messageservice-sender-delete.md`.
#[tokio::test]
async fn api_reference_messageservice_messageservice_sender_delete() {
    let app = spawn_app().await;
    ok(&app, ADMIN, "messageservice.sender.add", provider(&app, "contract_sms")).await;
    refused(&call(&app, EMPLOYEE, "messageservice.sender.delete", json!({ "CODE": "contract_sms" })).await, 403, "ACCESS_DENIED", Some("Access denied!"));
    assert_eq!(ok(&app, ADMIN, "messageservice.sender.delete", json!({ "CODE": "contract_sms" })).await["result"], true);
    assert!(!codes(&app, "messageservice.sender.list").await.contains(&"contract_sms".to_owned()));
    refused(&call(&app, ADMIN, "messageservice.sender.delete", json!({ "CODE": "contract_sms" })).await, 400, "ERROR_SENDER_NOT_FOUND", Some("Sender not found!"));
    refused(&call(&app, ADMIN, "messageservice.sender.delete", json!({})).await, 400, "ERROR_SENDER_VALIDATION_FAILURE", Some("Empty sender code!"));
    refused(&call(&app, ADMIN, "messageservice.sender.delete", json!({ "CODE": "a/b" })).await, 400, "ERROR_SENDER_VALIDATION_FAILURE", Some("Wrong sender code!"));
}

async fn provider_messages(app: &TestApp) -> Vec<Value> {
    app.get_json("/sandbox/portal/messageservice/messages").await["messages"].as_array().cloned().unwrap()
}

/// `api-reference/messageservice/messageservice-message-status-update.md`: "message sender or
/// administrator"; the five statuses, kept in order; `ERROR_MESSAGE_NOT_FOUND`,
/// `ERROR_MESSAGE_STATUS_INCORRECT`, `ERROR_SENDER_VALIDATION_FAILURE`, 403 `ACCESS_DENIED`.
#[tokio::test]
async fn api_reference_messageservice_messageservice_message_status_update() {
    let app = spawn_app().await;
    ok(&app, ADMIN, "messageservice.sender.add", provider(&app, "contract_sms")).await;
    let sent = app.post_json("/sandbox/portal/messageservice/send", json!({ "member_id": DEMO, "code": "contract_sms", "entity": "lead", "id": 1, "text": "Hi", "user_id": EMPLOYEE })).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let id = sent.body["message_id"].as_str().unwrap().to_owned();
    assert!(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    let update = |status: &str| json!({ "CODE": "contract_sms", "MESSAGE_ID": id, "STATUS": status });
    assert_eq!(ok(&app, EMPLOYEE, "messageservice.message.status.update", update("queued")).await["result"], true);
    assert_eq!(ok(&app, ADMIN, "messageservice.message.status.update", update("sent")).await["result"], true);
    refused(&call(&app, 3, "messageservice.message.status.update", update("delivered")).await, 403, "ACCESS_DENIED", Some("Access denied!"));
    refused(&call(&app, EMPLOYEE, "messageservice.message.status.update", update("read")).await, 400, "ERROR_MESSAGE_STATUS_INCORRECT", Some("Message status incorrect!"));
    let unknown = json!({ "CODE": "contract_sms", "MESSAGE_ID": "0123456789abcdef0123456789abcdef", "STATUS": "sent" });
    refused(&call(&app, ADMIN, "messageservice.message.status.update", unknown).await, 400, "ERROR_MESSAGE_NOT_FOUND", Some("Message not found!"));
    refused(&call(&app, ADMIN, "messageservice.message.status.update", with(update("sent"), "CODE", Value::Null)).await, 400, "ERROR_SENDER_VALIDATION_FAILURE", Some("Empty sender code!"));
    refused(&call(&app, ADMIN, "messageservice.message.status.update", with(update("sent"), "CODE", json!("a b"))).await, 400, "ERROR_SENDER_VALIDATION_FAILURE", Some("Wrong sender code!"));
    refused(&call_with(&app, &webhook_token(&app), "messageservice.message.status.update", update("sent")).await, 403, "ACCESS_DENIED", Some("Application context required"));
    for status in ["delivered", "failed", "undelivered"] {
        ok(&app, EMPLOYEE, "messageservice.message.status.update", update(status)).await;
    }
    let message = provider_messages(&app).await.into_iter().find(|m| m["message_id"] == id.as_str()).unwrap();
    assert_eq!((&message["status"], &message["history"]), (&json!("undelivered"), &json!(["queued", "sent", "delivered", "failed", "undelivered"])));
    assert_eq!((message["to"].as_str(), message["module_id"].as_str(), &message["bindings"]), (Some("+7 916 123-45-67"), Some("crm"), &json!([{ "OWNER_TYPE_ID": 1, "OWNER_ID": 1 }])));
}

/// `tutorials/messageservice/index.md` (section 4): a message from a CRM card (`module_id`
/// crm, bound to the record) or from the "Send SMS" robot (`bizproc`, its text a template);
/// a campaign sends one message per record with a phone, its text filled from each record,
/// and skips the rest.
#[tokio::test]
async fn tutorials_messageservice_index() {
    let app = spawn_app().await;
    ok(&app, ADMIN, "messageservice.sender.add", provider(&app, "contract_sms")).await;
    let robot_sms = app.post_json("/sandbox/portal/messageservice/send", json!({ "member_id": DEMO, "code": "contract_sms", "entity": "contact", "id": 1, "text": "Hi {=Document:NAME}", "module": "bizproc" })).await;
    assert_eq!(robot_sms.status, StatusCode::OK, "{}", robot_sms.body);
    let message = provider_messages(&app).await.into_iter().find(|m| m["message_id"] == robot_sms.body["message_id"]).unwrap();
    assert_eq!((message["body"].as_str(), message["module_id"].as_str(), message["handler_status"].as_u64()), (Some("Hi Dmitry"), Some("bizproc"), Some(404)), "{message}");
    let no_phone = app.post_json("/sandbox/portal/messageservice/send", json!({ "member_id": DEMO, "code": "contract_sms", "entity": "contact", "id": 3, "text": "Hi" })).await;
    assert_eq!(no_phone.status, StatusCode::BAD_REQUEST, "{}", no_phone.body);

    let mut records: Vec<Value> = seed::CAMPAIGN_CONTACTS.map(|id| json!({ "entity": "contact", "id": id })).collect();
    records.push(json!({ "entity": "contact", "id": 3 }));
    let campaign = app.post_json("/sandbox/portal/messageservice/campaign", json!({ "member_id": DEMO, "code": "contract_sms", "records": records, "text": "Hello, {=Document:NAME} {=Document:LAST_NAME}" })).await;
    assert_eq!(campaign.status, StatusCode::OK, "{}", campaign.body);
    assert_eq!(campaign.body["message_ids"].as_array().unwrap().len(), 50);
    assert_eq!(campaign.body["skipped"], json!([{ "entity": "contact", "id": 3 }]));
    let sent = provider_messages(&app).await;
    let first = sent.iter().find(|m| m["message_id"] == campaign.body["message_ids"][0]).unwrap();
    assert_eq!((first["body"].as_str(), first["to"].as_str(), first["module_id"].as_str()), (Some("Hello, Campaign Client 01"), Some("+79005550000"), Some("crm")), "{first}");
    assert_eq!(first["bindings"], json!([{ "OWNER_TYPE_ID": 3, "OWNER_ID": 100 }]));
    let last = sent.iter().find(|m| m["message_id"] == campaign.body["message_ids"][49]).unwrap();
    assert_eq!(last["to"], "+79006660009");
}

/// The sandbox card page: the record, the app tab's launcher, the robots and providers our app
/// registered, and what came of them, HTML-escaped; its forms post to the hooks and come back.
#[tokio::test]
async fn sandbox_card_page() {
    let app = spawn_app().await;
    ok(&app, ADMIN, "bizproc.robot.add", with(robot(&app, "card_robot", "Y"), "NAME", json!("<b>Send</b> a Telegram message"))).await;
    ok(&app, ADMIN, "messageservice.sender.add", provider(&app, "card_sms")).await;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = [("member_id", DEMO), ("code", "card_robot"), ("entity", "deal"), ("id", "1"), ("properties[text]", "From the card")];
    let posted = no_redirects.post(app.url("/sandbox/portal/automation/fire")).form(&form).send().await.unwrap();
    assert_eq!(posted.status(), StatusCode::SEE_OTHER);
    assert_eq!(posted.headers()["location"], "/sandbox/card?entity=deal&id=1");
    let sms = [("member_id", DEMO), ("code", "card_sms"), ("entity", "deal"), ("id", "1"), ("text", "<i>hi</i>")];
    assert_eq!(no_redirects.post(app.url("/sandbox/portal/messageservice/send")).form(&sms).send().await.unwrap().status(), StatusCode::BAD_REQUEST, "deal 1 has no phone");
    let lead_sms = [("member_id", DEMO), ("code", "card_sms"), ("entity", "lead"), ("id", "1"), ("phone", "+7 (495) 100-20-30"), ("text", "<i>hi</i>")];
    assert_eq!(no_redirects.post(app.url("/sandbox/portal/messageservice/send")).form(&lead_sms).send().await.unwrap().status(), StatusCode::SEE_OTHER);

    let deal = app.http.get(app.url("/sandbox/card?entity=deal&id=1&lang=en")).send().await.unwrap().text().await.unwrap();
    assert!(deal.contains("id=run-robot") && deal.contains("/sandbox/open?entity=deal&amp;id=1&amp;lang=en"), "{deal}");
    assert!(deal.contains("&lt;b&gt;Send") && !deal.contains("<b>Send"), "escaped names");
    assert!(deal.contains("name=\"properties[mode]\"") && deal.contains("value=\"now\" selected"), "select properties: {deal}");
    let run = &app.get_json("/sandbox/portal/automation/runs").await["runs"][0];
    assert_eq!(run["properties"]["text"], "From the card");
    assert!(deal.contains(&format!("data-workflow-id=\"{}\"", run["workflow_id"].as_str().unwrap())), "{deal}");
    let lead = app.http.get(app.url("/sandbox/card?entity=lead&id=1")).send().await.unwrap().text().await.unwrap();
    let message = &provider_messages(&app).await[0];
    assert!(lead.contains("id=send-sms") && lead.contains(&format!("data-message-id=\"{}\"", message["message_id"].as_str().unwrap())), "{lead}");
    assert!(lead.contains("&lt;i&gt;hi") && !lead.contains("<i>hi"), "escaped texts");
    let campaign = app.http.get(app.url("/sandbox/campaign")).send().await.unwrap().text().await.unwrap();
    assert!(campaign.contains("id=send-campaign") && campaign.contains("name=\"records[49][id]\" value=\"149\""), "{campaign}");
    let index = app.http.get(app.url("/sandbox")).send().await.unwrap().text().await.unwrap();
    assert!(index.contains("/sandbox/card?entity=deal&amp;id=1") && index.contains("/sandbox/campaign"));
}
