//! What Bitrix24 does with the automation apps register (`automation`): when an automation
//! rule or a workflow reaches a robot or an action, it calls the registered `HANDLER` with the
//! run's data, and the run waits for `bizproc.event.send`; when an employee (the card's SMS
//! form), the standard "Send SMS" robot or a CRM campaign sends a message through a provider,
//! it calls the provider's `HANDLER` (`api-reference/messageservice/messageservice-sender-add.md#handler`,
//! `tutorials/messageservice/index.md` section 4). Each call is a POST, form-encoded with
//! bracket keys as events are (`SandboxPortal::deliver`), with the auth block of events.
//! The sandbox hooks that trigger them stand for the rule, the form and the campaign.

use std::sync::{Arc, LazyLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::portal::{SandboxPortal, event_auth, form_body, form_or_json};
use super::state::{Automation, ProviderMessage, RobotRun, Sender, SimPortal, number, scalar, text_param};
use crate::clock::now_secs;
use crate::domain::{EntityRef, EntityType};

/// `{=Document:NAME}`: a document field in a property's value (`bizproc-activity-add.md`'s
/// example, `'Default': '{=Document:NAME}'`).
static DOCUMENT_FIELD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\{=Document:([A-Za-z0-9_]+)\}").expect("the field pattern compiles"));

/// A sandbox hook's refusal: `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct HookError {
    pub status: StatusCode,
    pub message: String,
}

impl IntoResponse for HookError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

fn not_found(message: impl Into<String>) -> HookError {
    HookError { status: StatusCode::NOT_FOUND, message: message.into() }
}

fn bad_request(message: impl Into<String>) -> HookError {
    HookError { status: StatusCode::BAD_REQUEST, message: message.into() }
}

/// An automation rule or a workflow reaches robot or action `code` for a record; `properties`
/// are the values its settings give (the rest take the registered `Default`).
#[derive(Deserialize)]
pub struct Fire {
    pub member_id: String,
    pub code: String,
    pub entity: String,
    pub id: u64,
    #[serde(default)]
    pub properties: Map<String, Value>,
}

/// Where a message is sent from: `crm` (a CRM card) or `bizproc` (a workflow or an automation
/// rule: the standard "Send SMS" robot), the two `module_id` values of `messageservice-sender-add.md`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Module {
    #[default]
    Crm,
    Bizproc,
}

impl Module {
    fn id(self) -> &'static str {
        match self {
            Module::Crm => "crm",
            Module::Bizproc => "bizproc",
        }
    }
}

/// An employee sends an SMS to a record through provider `code`; `phone` defaults to the
/// record's first.
#[derive(Deserialize)]
pub struct Sms {
    pub member_id: String,
    pub code: String,
    pub entity: String,
    pub id: u64,
    #[serde(default)]
    pub phone: Option<String>,
    pub text: String,
    #[serde(default = "first_employee")]
    pub user_id: u64,
    #[serde(default)]
    pub module: Module,
}

fn first_employee() -> u64 {
    1
}

/// A CRM campaign sends `text` (a template) to `records` through provider `code`.
#[derive(Deserialize)]
pub struct Campaign {
    pub member_id: String,
    pub code: String,
    pub records: Vec<CampaignRecord>,
    pub text: String,
    #[serde(default = "first_employee")]
    pub user_id: u64,
}

#[derive(Clone, Deserialize, Serialize)]
pub struct CampaignRecord {
    pub entity: String,
    pub id: u64,
}

/// The document class of a CRM record type (`bizproc-activity-add.md`, `DOCUMENT_TYPE`).
fn document_class(kind: EntityType) -> &'static str {
    match kind {
        EntityType::Lead => "CCrmDocumentLead",
        EntityType::Deal => "CCrmDocumentDeal",
        EntityType::Contact => "CCrmDocumentContact",
        EntityType::Company => "CCrmDocumentCompany",
    }
}

/// `['crm', 'CCrmDocumentDeal', 'DEAL']` (`bizproc-activity-add.md`, `DOCUMENT_TYPE`).
pub fn document_type(kind: EntityType) -> Vec<String> {
    vec!["crm".into(), document_class(kind).into(), kind.as_str().to_ascii_uppercase()]
}

/// `['crm', 'CCrmDocumentLead', 'LEAD_1']` (`api-reference/bizproc/index.md`, "How to Start").
pub fn document_id(record: EntityRef) -> Vec<String> {
    vec!["crm".into(), document_class(record.kind).into(), format!("{}_{}", record.kind.as_str().to_ascii_uppercase(), record.id)]
}

/// A workflow's id as `bizproc-workflow-start.md` shows one: `66e81a641752f8.56521481`.
fn workflow_id() -> String {
    let n = uuid::Uuid::new_v4().as_u128();
    format!("{:014x}.{:08}", n >> 72, (n as u64) % 100_000_000)
}

/// An `EVENT_TOKEN` shaped as `bizproc-event-send.md`'s example: the workflow, the activity,
/// a secret (`55c1dc1c3f0d75.78875596|A51601_82584_96831_81132|hsyU…`).
fn event_token(workflow_id: &str) -> String {
    let n = uuid::Uuid::new_v4().as_u128();
    format!("{workflow_id}|A{}_{}|{}", n % 100_000, (n >> 64) % 100_000, uuid::Uuid::new_v4().simple())
}

/// A field's value as `crm.<type>.get` gives it, as text: a multi-field (PHONE ...) by its
/// first `VALUE`. The docs do not say what an unknown or empty field becomes; the sandbox's
/// reading is the empty string.
fn field_text(value: &Value) -> String {
    match value {
        Value::Array(items) => items.first().and_then(|item| scalar(&item["VALUE"])).unwrap_or_default(),
        other => scalar(other).unwrap_or_default(),
    }
}

/// Bitrix24 substitutes the document's fields into a value before the call.
pub fn fill_template(text: &str, record: &Value) -> String {
    DOCUMENT_FIELD.replace_all(text, |field: &regex::Captures| field_text(&record[&field[1]])).into_owned()
}

fn fill_value(value: Value, record: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(fill_template(&s, record)),
        Value::Array(items) => Value::Array(items.into_iter().map(|item| fill_value(item, record)).collect()),
        Value::Null => Value::String(String::new()),
        other => other,
    }
}

fn registered_keys(automation: &Automation, key: &str) -> Map<String, Value> {
    automation.fields.get(key).and_then(Value::as_object).cloned().unwrap_or_default()
}

/// The run's property values: the rule's, else the registered `Default`, the document's
/// fields substituted. A property the registration does not have cannot be set in a rule.
fn run_properties(automation: &Automation, given: &Map<String, Value>, record: &Value) -> Result<Map<String, Value>, HookError> {
    let registered = registered_keys(automation, "PROPERTIES");
    if let Some(unknown) = given.keys().find(|k| !registered.contains_key(*k)) {
        return Err(bad_request(format!("{} has no property {unknown}", automation.code)));
    }
    let value = |key: &String, property: &Value| given.get(key).or_else(|| property.get("Default")).cloned().unwrap_or(Value::Null);
    Ok(registered.iter().map(|(key, property)| (key.clone(), fill_value(value(key, property), record))).collect())
}

/// `USE_SUBSCRIPTION`: "By default, the parameter is empty, which is equivalent to waiting for
/// a response ... does not wait ... only when explicitly set to `N`" (`bizproc-robot-add.md`).
fn waits(automation: &Automation) -> bool {
    !text_param(&automation.fields, "USE_SUBSCRIPTION").is_some_and(|v| v.eq_ignore_ascii_case("N"))
}

/// What a robot's or an action's handler gets. Documented: `document_id` and `properties`
/// (`tutorials/bizproc/activity.md`, "2. Parse Handler Data"), `auth` with `refresh_token`
/// ("Use `auth[domain]`, `auth[access_token]`, and `auth[refresh_token]`", ibid.),
/// `event_token` ("sent to the application handler when the action or Automation rule is
/// executed", `bizproc-event-send.md`), `workflow_id` and `document_type` (named beside
/// `document_id` for a workflow's call, `messageservice-sender-add.md#handler`), `ts` (as in
/// events and that table). b24restdocs does not list `code`, `use_subscription` and
/// `timeout_duration`; they are sent as Bitrix24 sends them (the run's code, Y/N, 0 seconds).
pub fn robot_payload(run: &RobotRun, waits: bool, auth: Value) -> Value {
    json!({
        "workflow_id": run.workflow_id, "code": run.code, "document_id": run.document_id,
        "document_type": document_type(run.record.kind), "event_token": run.event_token, "properties": run.properties,
        "use_subscription": if waits { "Y" } else { "N" }, "timeout_duration": 0, "ts": now_secs(), "auth": auth,
    })
}

/// What a provider's handler gets, exactly the fields of `messageservice-sender-add.md`'s
/// "What Comes to the Handler": `bindings` from a CRM card, the workflow's ids from a workflow.
pub fn provider_payload(message: &ProviderMessage, workflow_id: &str, auth: Value) -> Value {
    let mut payload = json!({
        "module_id": message.module_id, "properties": { "phone_number": message.to, "message_text": message.body },
        "type": "SMS", "code": message.code, "message_id": message.message_id, "message_to": message.to,
        "message_body": message.body, "ts": now_secs(), "auth": auth,
    });
    if message.module_id == "crm" {
        payload["bindings"] = message.bindings.clone();
    } else {
        payload["workflow_id"] = json!(workflow_id);
        payload["document_id"] = json!(document_id(message.record));
        payload["document_type"] = json!(document_type(message.record.kind));
    }
    payload
}

/// A record of the portal and its fields as `crm.<type>.get` answers them.
fn record_of(portal: &SimPortal, entity: &str, id: u64) -> Result<(EntityRef, Value), HookError> {
    let kind: EntityType = entity.parse().map_err(bad_request)?;
    let record = portal.records.get(&(kind, id)).cloned().ok_or_else(|| not_found(format!("no {entity} {id} on the portal")))?;
    Ok((EntityRef { kind, id }, record))
}

/// A message on its way to a provider: to whom, what, from whom, from where.
struct Outgoing {
    record: EntityRef,
    phone: String,
    text: String,
    user_id: u64,
    module: Module,
}

/// The record's first phone (`PHONE` multi-field).
fn first_phone(record: &Value) -> Option<String> {
    Some(field_text(&record["PHONE"])).filter(|p| !p.is_empty())
}

impl SandboxPortal {
    /// Of the registrations named `code`, our app's first.
    fn ours_first<'a, T>(&self, items: impl Iterator<Item = &'a T>, app_of: impl Fn(&T) -> &str) -> Option<&'a T> {
        items.min_by_key(|item| app_of(item) != self.app.client_id)
    }

    fn sandbox_portal(&self, member_id: &str) -> Result<SimPortal, HookError> {
        self.portal(member_id).ok_or_else(|| not_found(format!("no sandbox portal {member_id}")))
    }

    /// The auth block of events (`_includes/auth-params-in-events.md`) for `user`, with the
    /// refresh token the tutorial's handler uses.
    fn handler_auth(&self, portal: &SimPortal, app: &str, user: u64) -> Value {
        let (access, refresh) = self.issue_tokens_of(app, &portal.member_id, user);
        let mut auth = event_auth(portal, &access, &self.rest_url, user);
        auth["refresh_token"] = json!(refresh);
        auth
    }

    /// POSTs a handler's form; the HTTP status it answered, none when it could not be reached.
    /// Bitrix24 waits for nothing but that answer.
    async fn post_form(&self, handler: &str, payload: &Value) -> Option<u16> {
        let sent = self.http.post(handler).header("content-type", "application/x-www-form-urlencoded").body(form_body(payload)).send().await;
        match sent {
            Ok(answer) => Some(answer.status().as_u16()),
            Err(e) => {
                tracing::warn!("a sandbox handler was not reached: {}", e.without_url());
                None
            }
        }
    }

    /// Runs robot or action `fire.code` for a record: the run is kept (waiting unless
    /// `USE_SUBSCRIPTION` is N), its handler called as the registration's `AUTH_USER_ID`
    /// (else the first administrator). `{workflow_id, event_token, handler_status}`.
    pub async fn fire_robot(&self, fire: &Fire) -> Result<Value, HookError> {
        let portal = self.sandbox_portal(&fire.member_id)?;
        let (record, fields) = record_of(&portal, &fire.entity, fire.id)?;
        let automations = portal.installation.automations.iter().filter(|a| a.code == fire.code);
        let automation = self.ours_first(automations, |a| &a.app).ok_or_else(|| not_found(format!("no robot or action {}", fire.code)))?;
        let properties = run_properties(automation, &fire.properties, &fields)?;
        let user = number(automation.fields.get("AUTH_USER_ID")).or_else(|| portal.admins.first().copied()).unwrap_or(1);
        let workflow_id = workflow_id();
        let run = RobotRun {
            event_token: event_token(&workflow_id), workflow_id: workflow_id.clone(), member_id: portal.member_id.clone(),
            code: automation.code.clone(), kind: if automation.is_robot { "robot" } else { "activity" }, document_id: document_id(record),
            properties: Value::Object(properties), handler_status: None, status: if waits(automation) { "waiting" } else { "not_waiting" },
            return_values: Map::new(), log: Vec::new(), app: automation.app.clone(), record,
            return_keys: registered_keys(automation, "RETURN_PROPERTIES").keys().cloned().collect(),
        };
        let payload = robot_payload(&run, waits(automation), self.handler_auth(&portal, &automation.app, user));
        let event_token = run.event_token.clone();
        self.lock().robot_runs.push(run);
        let handler_status = self.post_form(&text_param(&automation.fields, "HANDLER").unwrap_or_default(), &payload).await;
        if let Some(run) = self.lock().robot_runs.iter_mut().find(|r| r.workflow_id == workflow_id) {
            run.handler_status = handler_status;
        }
        Ok(json!({ "workflow_id": workflow_id, "event_token": event_token, "handler_status": handler_status }))
    }

    fn provider(&self, portal: &SimPortal, code: &str) -> Result<Sender, HookError> {
        let senders = portal.installation.senders.iter().filter(|s| s.code == code);
        self.ours_first(senders, |s| &s.app).cloned().ok_or_else(|| not_found(format!("no message provider {code}")))
    }

    /// An employee sends an SMS from a card (module `crm`), or the "Send SMS" robot does
    /// (`bizproc`, its text a template): the provider's message id.
    pub async fn send_sms(&self, sms: &Sms) -> Result<String, HookError> {
        let portal = self.sandbox_portal(&sms.member_id)?;
        let sender = self.provider(&portal, &sms.code)?;
        let (record, fields) = record_of(&portal, &sms.entity, sms.id)?;
        let phone = sms.phone.clone().filter(|p| !p.trim().is_empty()).or_else(|| first_phone(&fields));
        let phone = phone.ok_or_else(|| bad_request(format!("{} {} has no phone", sms.entity, sms.id)))?;
        let text = match sms.module {
            Module::Crm => sms.text.clone(),
            Module::Bizproc => fill_template(&sms.text, &fields),
        };
        self.hand_to_provider(&portal, &sender, Outgoing { record, phone, text, user_id: sms.user_id, module: sms.module }).await
    }

    /// A CRM campaign: one provider call per record with a phone, its text filled from the
    /// record. The docs name only `crm` and `bizproc` as `module_id`: a campaign is sent as
    /// from the CRM (`crm`), bound to its record. `{message_ids, skipped}`.
    pub async fn campaign(&self, campaign: &Campaign) -> Result<Value, HookError> {
        let portal = self.sandbox_portal(&campaign.member_id)?;
        let sender = self.provider(&portal, &campaign.code)?;
        let (mut message_ids, mut skipped) = (Vec::new(), Vec::new());
        for target in &campaign.records {
            let reachable = record_of(&portal, &target.entity, target.id).ok().and_then(|(record, fields)| Some((record, first_phone(&fields)?, fields)));
            let Some((record, phone, fields)) = reachable else {
                skipped.push(target.clone());
                continue;
            };
            let text = fill_template(&campaign.text, &fields);
            let outgoing = Outgoing { record, phone, text, user_id: campaign.user_id, module: Module::Crm };
            message_ids.push(self.hand_to_provider(&portal, &sender, outgoing).await?);
        }
        Ok(json!({ "message_ids": message_ids, "skipped": skipped }))
    }

    /// Keeps the message (no status until the app reports one) and calls the provider's handler
    /// with the sending employee's token.
    async fn hand_to_provider(&self, portal: &SimPortal, sender: &Sender, outgoing: Outgoing) -> Result<String, HookError> {
        let Outgoing { record, phone, text, user_id, module } = outgoing;
        if portal.user(user_id).is_none() {
            return Err(bad_request(format!("no employee {user_id} on the portal")));
        }
        let message = ProviderMessage {
            message_id: uuid::Uuid::new_v4().simple().to_string(), code: sender.code.clone(), member_id: portal.member_id.clone(),
            module_id: module.id(), bindings: json!([{ "OWNER_TYPE_ID": record.kind.type_id(), "OWNER_ID": record.id }]),
            to: phone, body: text, status: None, history: Vec::new(), handler_status: None, user_id,
            app: sender.app.clone(), record,
        };
        let payload = provider_payload(&message, &workflow_id(), self.handler_auth(portal, &sender.app, user_id));
        let message_id = message.message_id.clone();
        self.lock().provider_messages.push(message);
        let handler_status = self.post_form(&text_param(&sender.fields, "HANDLER").unwrap_or_default(), &payload).await;
        if let Some(message) = self.lock().provider_messages.iter_mut().find(|m| m.message_id == message_id) {
            message.handler_status = handler_status;
        }
        Ok(message_id)
    }

    pub fn robot_runs(&self) -> Vec<RobotRun> {
        self.lock().robot_runs.clone()
    }

    pub fn provider_messages(&self) -> Vec<ProviderMessage> {
        self.lock().provider_messages.clone()
    }
}

type PortalRef = State<Arc<SandboxPortal>>;

/// The hooks that stand for an automation rule, the card's SMS form and a campaign, and what they left.
pub fn routes() -> Router<Arc<SandboxPortal>> {
    Router::new()
        .route("/sandbox/portal/automation/fire", post(fire_hook))
        .route("/sandbox/portal/automation/runs", get(runs))
        .route("/sandbox/portal/messageservice/send", post(send_hook))
        .route("/sandbox/portal/messageservice/campaign", post(campaign_hook))
        .route("/sandbox/portal/messageservice/messages", get(messages))
}

/// A form of the card page is answered with the page again.
fn card_page(entity: &str, id: u64) -> Response {
    Redirect::to(&format!("/sandbox/card?entity={}&id={id}", url::form_urlencoded::byte_serialize(entity.as_bytes()).collect::<String>())).into_response()
}

async fn fire_hook(State(portal): PortalRef, headers: HeaderMap, body: Bytes) -> Response {
    let (fire, is_form) = form_or_json::<Fire>(&headers, &body);
    let fire = match fire {
        Ok(fire) => fire,
        Err(e) => return bad_request(e).into_response(),
    };
    match portal.fire_robot(&fire).await {
        Ok(_) if is_form => card_page(&fire.entity, fire.id),
        Ok(answer) => Json(answer).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn send_hook(State(portal): PortalRef, headers: HeaderMap, body: Bytes) -> Response {
    let (sms, is_form) = form_or_json::<Sms>(&headers, &body);
    let sms = match sms {
        Ok(sms) => sms,
        Err(e) => return bad_request(e).into_response(),
    };
    match portal.send_sms(&sms).await {
        Ok(_) if is_form => card_page(&sms.entity, sms.id),
        Ok(message_id) => Json(json!({ "message_id": message_id })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn campaign_hook(State(portal): PortalRef, headers: HeaderMap, body: Bytes) -> Response {
    let (campaign, is_form) = form_or_json::<Campaign>(&headers, &body);
    let campaign = match campaign {
        Ok(campaign) => campaign,
        Err(e) => return bad_request(e).into_response(),
    };
    match portal.campaign(&campaign).await {
        Ok(_) if is_form => Redirect::to("/sandbox/campaign").into_response(),
        Ok(answer) => Json(answer).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn runs(State(portal): PortalRef) -> Json<Value> {
    Json(json!({ "runs": portal.robot_runs() }))
}

async fn messages(State(portal): PortalRef) -> Json<Value> {
    Json(json!({ "messages": portal.provider_messages() }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The auth block as `event_auth` gives it, with the refresh token.
    fn auth() -> Value {
        json!({ "access_token": "a", "refresh_token": "r", "expires": 1, "expires_in": 3600, "scope": "bizproc", "domain": "d",
                "server_endpoint": "s", "status": "P", "client_endpoint": "c", "member_id": "m", "user_id": 1, "application_token": "t" })
    }

    fn decode<T: serde::de::DeserializeOwned>(payload: &Value) -> T {
        let body = form_body(payload);
        assert!(body.contains("document_id%5B0%5D=") || body.contains("bindings%5B0%5D"), "bracket keys: {body}");
        serde_qs::Config::new().use_form_encoding(true).deserialize_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// `_includes/auth-params-in-events.md`, and the refresh token the tutorial's handler uses.
    const AUTH_KEYS: [&str; 10] =
        ["access_token", "expires_in", "scope", "domain", "server_endpoint", "status", "client_endpoint", "member_id", "refresh_token", "application_token"];

    type Auth = BTreeMap<String, String>;

    #[track_caller]
    fn documented_auth(auth: &Auth) {
        assert!(AUTH_KEYS.iter().all(|k| auth.contains_key(*k)), "{auth:?}");
    }

    /// `tutorials/bizproc/activity.md` ("2. Parse Handler Data"), `bizproc-event-send.md`.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RobotForm {
        workflow_id: String,
        code: String,
        document_id: Vec<String>,
        document_type: Vec<String>,
        event_token: String,
        properties: BTreeMap<String, String>,
        use_subscription: String,
        timeout_duration: String,
        ts: String,
        auth: Auth,
    }

    fn deal(id: u64) -> EntityRef {
        EntityRef { kind: EntityType::Deal, id }
    }

    #[test]
    fn a_robots_handler_gets_the_documented_form() {
        let run = RobotRun {
            workflow_id: workflow_id(), member_id: "m".into(), code: "send_tg".into(), kind: "robot", document_id: document_id(deal(1)),
            event_token: "e".into(), properties: json!({ "text": "Hello, Ivan" }), handler_status: None, status: "waiting",
            return_values: Map::new(), log: Vec::new(), app: "app".into(), record: deal(1), return_keys: Vec::new(),
        };
        let form: RobotForm = decode(&robot_payload(&run, true, auth()));
        assert_eq!((form.workflow_id, form.code, form.event_token), (run.workflow_id.clone(), "send_tg".into(), "e".into()));
        assert_eq!(form.document_id, ["crm", "CCrmDocumentDeal", "DEAL_1"]);
        assert_eq!(form.document_type, ["crm", "CCrmDocumentDeal", "DEAL"]);
        assert_eq!(form.properties["text"], "Hello, Ivan");
        assert_eq!((form.use_subscription.as_str(), form.timeout_duration.as_str()), ("Y", "0"));
        assert!(form.ts.parse::<i64>().is_ok());
        documented_auth(&form.auth);
        assert_eq!((&form.auth["access_token"], &form.auth["refresh_token"], &form.auth["application_token"]), (&"a".into(), &"r".into(), &"t".into()));
        assert_eq!(robot_payload(&run, false, auth())["use_subscription"], "N");
    }

    #[test]
    fn document_ids_name_each_crm_type() {
        let lead = EntityRef { kind: EntityType::Lead, id: 7 };
        assert_eq!(document_id(lead), ["crm", "CCrmDocumentLead", "LEAD_7"]);
        assert_eq!(document_id(EntityRef { kind: EntityType::Contact, id: 2 }), ["crm", "CCrmDocumentContact", "CONTACT_2"]);
        assert_eq!(document_type(EntityType::Company), ["crm", "CCrmDocumentCompany", "COMPANY"]);
        let id = workflow_id();
        assert!(id.len() == 23 && id.as_bytes()[14] == b'.', "{id}");
    }

    /// `messageservice-sender-add.md`, "What Comes to the Handler".
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ProviderForm {
        module_id: String,
        #[serde(default)]
        bindings: Vec<BTreeMap<String, String>>,
        #[serde(default)]
        workflow_id: Option<String>,
        #[serde(default)]
        document_id: Vec<String>,
        #[serde(default)]
        document_type: Vec<String>,
        properties: BTreeMap<String, String>,
        #[serde(rename = "type")]
        kind: String,
        code: String,
        message_id: String,
        message_to: String,
        message_body: String,
        ts: String,
        auth: Auth,
    }

    fn message(module_id: &'static str) -> ProviderMessage {
        ProviderMessage {
            message_id: "65575980fa531ac284c2ee68f81ebebd".into(), code: "olchat".into(), member_id: "m".into(), module_id,
            bindings: json!([{ "OWNER_TYPE_ID": 2, "OWNER_ID": 1 }]), to: "+79161234567".into(), body: "Hi".into(), status: None,
            history: Vec::new(), handler_status: None, user_id: 1, app: "app".into(), record: deal(1),
        }
    }

    #[test]
    fn a_providers_handler_gets_the_documented_form() {
        let form: ProviderForm = decode(&provider_payload(&message("crm"), "w", auth()));
        assert_eq!((form.module_id.as_str(), form.kind.as_str(), form.code.as_str()), ("crm", "SMS", "olchat"));
        assert_eq!(form.bindings, [BTreeMap::from([("OWNER_TYPE_ID".to_owned(), "2".to_owned()), ("OWNER_ID".to_owned(), "1".to_owned())])]);
        assert!(form.workflow_id.is_none() && form.document_id.is_empty());
        assert_eq!((form.properties["phone_number"].as_str(), form.properties["message_text"].as_str()), ("+79161234567", "Hi"));
        assert_eq!((form.message_id.as_str(), form.message_to.as_str(), form.message_body.as_str()), ("65575980fa531ac284c2ee68f81ebebd", "+79161234567", "Hi"));
        documented_auth(&form.auth);
        assert!(form.ts.parse::<i64>().is_ok());

        let form: ProviderForm = decode(&provider_payload(&message("bizproc"), "w", auth()));
        assert_eq!((form.module_id.as_str(), form.workflow_id.as_deref()), ("bizproc", Some("w")));
        assert_eq!((form.document_id.len(), form.document_type[1].as_str()), (3, "CCrmDocumentDeal"));
        assert!(form.bindings.is_empty());
    }

    #[test]
    fn templates_take_the_documents_fields() {
        let record = json!({ "NAME": "Ivan", "ID": "1", "PHONE": [{ "VALUE": "+7 916", "VALUE_TYPE": "WORK" }, { "VALUE": "+7 495" }] });
        assert_eq!(fill_template("Hi {=Document:NAME}, {=Document:PHONE} #{=Document:ID}", &record), "Hi Ivan, +7 916 #1");
        assert_eq!(fill_template("[{=Document:NO_SUCH_FIELD}] {=Document:NAME", &record), "[] {=Document:NAME");
    }
}
