//! What the sandbox portal keeps, and what every one of its REST methods shares: Bitrix24's
//! error shape and system errors (`_includes/system-errors.md`, `_includes/error-info.md` of
//! b24restdocs) and the reading of parameters. The methods themselves live in `portal`,
//! `openlines` and `crm`; this module depends on none of them.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::domain::{EntityRef, EntityType};

/// A REST error as Bitrix24 writes it: `{"error": CODE, "error_description": TEXT}`.
#[derive(Debug)]
pub struct RestError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
    /// `placement-bind.md`: ERROR_ARGUMENT names the parameter in an `argument` key.
    pub argument: Option<&'static str>,
}

impl RestError {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self { status, code, description: description.into(), argument: None }
    }

    pub fn body(&self) -> Value {
        let mut body = json!({ "error": self.code, "error_description": self.description });
        if let Some(argument) = self.argument {
            body["argument"] = json!(argument);
        }
        body
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// `ERROR_ARGUMENT` (400), the code most methods give a missing or malformed parameter.
pub fn arg_error(description: impl Into<String>) -> RestError {
    RestError::new(StatusCode::BAD_REQUEST, "ERROR_ARGUMENT", description)
}

pub fn access_denied(description: impl Into<String>) -> RestError {
    RestError::new(StatusCode::FORBIDDEN, "ACCESS_DENIED", description)
}

pub type Params = Map<String, Value>;

/// The scopes the app asks for (the install grant and its tokens say them).
pub const APP_SCOPE: &str = "crm,placement,imopenlines,imconnector,im,user,department,bizproc,messageservice";

/// A scalar parameter as text (Bitrix24 takes `1`, `"1"`, `true` and `"Y"` alike).
pub fn text_param(params: &Params, name: &str) -> Option<String> {
    scalar(params.get(name)?)
}

pub fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "Y" } else { "N" }.to_owned()),
        _ => None,
    }
}

/// A required parameter, refused as b24restdocs words it: "Argument 'X' is null or empty".
pub fn required(params: &Params, name: &str) -> Result<String, RestError> {
    text_param(params, name).filter(|s| !s.trim().is_empty()).ok_or_else(|| arg_error(format!("Argument '{name}' is null or empty")))
}

pub fn number(value: Option<&Value>) -> Option<u64> {
    value.and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
}

/// A required positive integer parameter.
pub fn required_id(params: &Params, name: &str) -> Result<u64, RestError> {
    required(params, name)?;
    number(params.get(name)).filter(|&n| n > 0).ok_or_else(|| arg_error(format!("The value of an argument '{name}' has an invalid type")))
}

/// A boolean flag as Bitrix24 reads it: `Y`/`N`, `1`/`0`, `true`/`false`.
pub fn flag(params: &Params, name: &str) -> Option<bool> {
    text_param(params, name).map(|v| matches!(v.to_ascii_lowercase().as_str(), "y" | "1" | "true"))
}

/// Who a token speaks for.
#[derive(Clone, Debug)]
pub struct Grant {
    pub member_id: String,
    pub user_id: u64,
    pub expires_at: i64,
    /// An app's token (OAuth, from its page, install or events) rather than an incoming webhook's.
    pub app: String,
}

/// One simulated portal: its employees and CRM records, in REST shapes.
#[derive(Clone, Debug)]
pub struct SimPortal {
    pub member_id: String,
    pub domain: String,
    /// `user.get` shapes: `{"ID":"1","NAME":...}` (no `ADMIN`: `user.current` has none).
    pub users: Vec<Value>,
    /// Who may manage apps (`user.admin`).
    pub admins: Vec<u64>,
    /// `department.get` rows: `{"ID":"1","NAME":...,"SORT":500,"PARENT":...}`; employees name
    /// theirs in `UF_DEPARTMENT`.
    pub departments: Vec<Value>,
    /// `app.info` `LICENSE`: the portal's region as a prefix (`ru_project`).
    pub license: String,
    pub records: HashMap<(EntityType, u64), Value>,
    /// Deal id → `crm.deal.contact.items.get` rows.
    pub deal_contacts: HashMap<u64, Vec<Value>>,
    /// Who may read which records; a user absent here reads every record.
    pub record_access: HashMap<u64, Vec<(EntityType, u64)>>,
    /// Its Open Lines: `imopenlines.config.list.get` rows.
    pub lines: Vec<Value>,
    /// What our app registered here when installed.
    pub installation: Installation,
}

impl SimPortal {
    pub fn user(&self, id: u64) -> Option<&Value> {
        self.users.iter().find(|u| is_user(u, id))
    }

    pub fn is_admin(&self, id: u64) -> bool {
        self.admins.contains(&id)
    }

    pub fn can_read(&self, user: u64, kind: EntityType, id: u64) -> bool {
        self.record_access.get(&user).is_none_or(|records| records.contains(&(kind, id)))
    }
}

pub fn is_user(user: &Value, id: u64) -> bool {
    user["ID"].as_str().and_then(|s| s.parse().ok()) == Some(id)
}

/// What an app installed on a portal registered there.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Installation {
    /// The install finished (`BX24.installFinish()` on the install page, or an app without
    /// UI installed): until then Bitrix24 sends the app no events
    /// (`settings/app-installation/installation-finish.md`).
    pub installed: bool,
    pub application_token: Option<String>,
    /// `placement.get` rows.
    pub placements: Vec<Value>,
    /// Connector id → the `imconnector.register` parameters.
    pub connectors: BTreeMap<String, Value>,
    /// (connector, line) pairs `imconnector.activate`d.
    pub active: Vec<(String, String)>,
    /// (connector, line) → `imconnector.connector.data.set` `DATA`.
    pub connector_data: BTreeMap<String, Value>,
    /// `event.get` rows.
    pub events: Vec<Value>,
    /// Robots and workflow actions (`bizproc.robot.add`, `bizproc.activity.add`). They go with
    /// the app (`bizproc-robot-delete.md`: "When the application is deleted ... the associated
    /// robots are removed"); the app cannot delete them itself as it leaves, since
    /// `OnAppUninstall` carries no access token (`common/events/on-app-uninstall.md`).
    pub automations: Vec<Automation>,
    /// Message providers (`messageservice.sender.add`), which go with the app likewise.
    pub senders: Vec<Sender>,
}

/// A robot or a workflow action an app registered: the two share one model and are told apart
/// by `IS_ROBOT` (`api-reference/bizproc/bizproc-activity/index.md`).
#[derive(Clone, Debug, Serialize)]
pub struct Automation {
    /// The `client_id` of the app that registered it: codes are unique within an app.
    pub app: String,
    pub code: String,
    pub is_robot: bool,
    /// The registration's documented fields (`HANDLER`, `NAME`, `PROPERTIES` ...), as given.
    pub fields: Params,
}

/// A message provider an app registered (`messageservice-sender-add.md`).
#[derive(Clone, Debug, Serialize)]
pub struct Sender {
    pub app: String,
    pub code: String,
    /// `TYPE`, `HANDLER`, `NAME`, `DESCRIPTION`.
    pub fields: Params,
}

/// One run of a robot or an action for a record: what the handler got and what the app sent back.
#[derive(Clone, Debug, Serialize)]
pub struct RobotRun {
    pub workflow_id: String,
    pub member_id: String,
    pub code: String,
    /// `robot` or `activity`.
    pub kind: &'static str,
    pub document_id: Vec<String>,
    pub event_token: String,
    pub properties: Value,
    /// The HTTP status the app's handler answered; none when it could not be reached.
    pub handler_status: Option<u16>,
    /// `waiting` (for `bizproc.event.send`), `completed`, or `not_waiting` (`USE_SUBSCRIPTION` N).
    pub status: &'static str,
    pub return_values: Map<String, Value>,
    /// `LOG_MESSAGE`s of `bizproc.activity.log` and `bizproc.event.send`, in order.
    pub log: Vec<String>,
    #[serde(skip)]
    pub app: String,
    #[serde(skip)]
    pub record: EntityRef,
    /// The `RETURN_PROPERTIES` keys as registered when the run started: a started process
    /// keeps its copy of the template (`api-reference/bizproc/index.md`).
    #[serde(skip)]
    pub return_keys: Vec<String>,
}

/// A message handed to a provider's handler (`messageservice-sender-add.md#handler`).
#[derive(Clone, Debug, Serialize)]
pub struct ProviderMessage {
    pub message_id: String,
    pub code: String,
    pub member_id: String,
    /// `crm` or `bizproc`.
    pub module_id: &'static str,
    /// Set when `module_id` is `crm`.
    pub bindings: Value,
    pub to: String,
    pub body: String,
    /// The last status `messageservice.message.status.update` reported; none until then.
    pub status: Option<String>,
    pub history: Vec<String>,
    pub handler_status: Option<u16>,
    /// The employee who sent it: with an administrator, the one who may update its status
    /// (`messageservice-message-status-update.md`).
    pub user_id: u64,
    #[serde(skip)]
    pub app: String,
    #[serde(skip)]
    pub record: EntityRef,
}

#[derive(Clone, Debug, Serialize)]
pub struct SimChat {
    pub id: u64,
    pub portal: String,
    pub connector: String,
    pub line: String,
    pub external_chat_id: String,
    pub external_user_id: String,
    pub user_name: String,
    pub session_id: u64,
    /// Employees in the chat.
    pub members: Vec<u64>,
    /// The CRM record the tracker bound the chat to.
    pub crm: Option<(EntityType, u64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OlMessage {
    pub id: u64,
    pub portal: String,
    pub chat_id: u64,
    /// `incoming` (from the client), `outgoing` (an employee's), `system`.
    pub direction: &'static str,
    pub author: String,
    pub author_id: Option<u64>,
    pub text: String,
    /// How the chat shows `text` (its BBCode interpreted).
    pub shown: super::bbcode::Shown,
    pub files: Vec<Value>,
    /// The connector's own id for a message it pushed.
    pub external_id: Option<String>,
    /// The connector confirmed delivery to the client.
    pub delivered: bool,
    /// The connector reported that the client read it.
    pub read: bool,
    /// The ids the connector gave it on delivery (`imconnector-send-status-delivery.md`
    /// `message.id`): what `OnImConnectorMessageUpdate`/`Delete` name it by.
    pub delivered_ids: Vec<String>,
    /// Changed after it was written (`imconnector.update.messages`, or the operator).
    pub edited: bool,
    /// Deleted (`imconnector.delete.messages`, or the operator). The docs do not say what the
    /// chat keeps of it: the stricter reading keeps only the mark, no text and no files.
    pub deleted: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct SimActivity {
    pub id: u64,
    pub portal: String,
    pub owner_type_id: u64,
    pub owner_id: u64,
    pub fields: Value,
    pub layout: Value,
    /// The `client_id` of the app that created it (crm-activity-configurable-update.md).
    pub app: String,
    /// Every status tag the activity showed, in order.
    pub history: Vec<Value>,
}

/// A system notification (`im.notify.system.add`).
#[derive(Clone, Debug, Serialize)]
pub struct Notification {
    pub id: u64,
    pub portal: String,
    pub user_id: u64,
    pub message: String,
}

/// A message in the private chat of two employees (`im.message.add` to a user).
#[derive(Clone, Debug, Serialize)]
pub struct PrivateMessage {
    pub id: u64,
    pub portal: String,
    pub from: u64,
    pub to: u64,
    pub text: String,
}

/// An event for the app: the portal, the event's name, its `data`.
pub type Caused = Vec<(String, &'static str, Value)>;

#[derive(Default)]
pub struct PortalState {
    pub portals: Vec<SimPortal>,
    pub access: HashMap<String, Grant>,
    pub refresh: HashMap<String, (String, u64)>,
    pub rest_requests: u64,
    /// The next this many REST calls answer QUERY_LIMIT_EXCEEDED.
    pub rate_limited: u32,
    /// Method → until when it answers OPERATION_TIME_LIMIT.
    pub blocked_methods: HashMap<String, i64>,
    pub next_id: u64,
    pub chats: Vec<SimChat>,
    pub ol_messages: Vec<OlMessage>,
    pub activities: Vec<SimActivity>,
    pub notifications: Vec<Notification>,
    pub private_messages: Vec<PrivateMessage>,
    pub robot_runs: Vec<RobotRun>,
    pub provider_messages: Vec<ProviderMessage>,
}

impl PortalState {
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn portal(&self, member_id: &str) -> Result<&SimPortal, RestError> {
        self.portals.iter().find(|p| p.member_id == member_id).ok_or_else(portal_gone)
    }

    pub fn portal_mut(&mut self, member_id: &str) -> Result<&mut SimPortal, RestError> {
        self.portals.iter_mut().find(|p| p.member_id == member_id).ok_or_else(portal_gone)
    }

    pub fn installation(&mut self, member_id: &str) -> Result<&mut Installation, RestError> {
        Ok(&mut self.portal_mut(member_id)?.installation)
    }

    pub fn employee_name(&self, member_id: &str, user_id: u64) -> Option<String> {
        let user = self.portal(member_id).ok()?.user(user_id)?;
        Some(format!("{} {}", user["NAME"].as_str().unwrap_or(""), user["LAST_NAME"].as_str().unwrap_or("")).trim().to_owned())
    }

    /// Methods that need the app's administrator: placements, events, connectors.
    pub fn admin(&self, grant: &Grant) -> Result<(), RestError> {
        if self.portal(&grant.member_id)?.is_admin(grant.user_id) {
            Ok(())
        } else {
            Err(access_denied("Access denied! Administrator permissions required"))
        }
    }
}

/// `PORTAL_DELETED` (500): the portal the token named is gone.
fn portal_gone() -> RestError {
    RestError::new(StatusCode::INTERNAL_SERVER_ERROR, "PORTAL_DELETED", "Portal was deleted")
}

/// "The results page size is always static: 50 records" (`api-reference/user/user-get.md`).
pub const PAGE_SIZE: usize = 50;
/// A method's answer: `result`, and for list methods `total` and `next`.
pub struct Answer {
    pub result: Value,
    pub total: Option<usize>,
    pub next: Option<usize>,
}

impl From<Value> for Answer {
    fn from(result: Value) -> Self {
        Self { result, total: None, next: None }
    }
}

/// One page of a list method from the `start` parameter: 50 rows, `next` while more remain.
pub fn page(rows: Vec<Value>, params: &Params) -> Answer {
    // settings/performance/huge-data.md: `start = -1` gives the first 50 rows without counting (total 0, no next).
    if text_param(params, "start").is_some_and(|s| s == "-1") {
        return Answer { result: Value::Array(rows.into_iter().take(PAGE_SIZE).collect()), total: Some(0), next: None };
    }
    let start = text_param(params, "start").and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
    let total = rows.len();
    let result: Vec<Value> = rows.into_iter().skip(start).take(PAGE_SIZE).collect();
    let next = (start + PAGE_SIZE < total).then_some(start + PAGE_SIZE);
    Answer { result: Value::Array(result), total: Some(total), next }
}
