//! The sandbox portal's app platform: install state (placements, event bindings, the
//! connector), Open Lines (lines, chats, sessions, messages), configurable CRM activities,
//! and events POSTed to the app the way Bitrix24 sends them (bracket form).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::portal::{Grant, PortalState, RestError, SandboxPortal};
use crate::clock::now_secs;

/// What an app installed on a portal registered there.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Installation {
    pub installed: bool,
    pub application_token: Option<String>,
    /// `placement.get` rows.
    pub placements: Vec<Value>,
    /// Connector id → the `imconnector.register` parameters.
    pub connectors: BTreeMap<String, Value>,
    /// (connector, line) pairs `imconnector.activate`d.
    pub active: Vec<(String, String)>,
    /// `event.get` rows.
    pub events: Vec<Value>,
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
    pub files: Vec<Value>,
    /// The connector's own id for a message it pushed.
    pub external_id: Option<String>,
    /// The connector confirmed delivery to the client.
    pub delivered: bool,
    /// The connector reported that the client read it.
    pub read: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct SimActivity {
    pub id: u64,
    pub portal: String,
    pub owner_type_id: u64,
    pub owner_id: u64,
    pub fields: Value,
    pub layout: Value,
    /// Every status tag the activity showed, in order.
    pub history: Vec<Value>,
}

impl SimActivity {
    fn status(layout: &Value) -> Value {
        layout.pointer("/header/tags").and_then(Value::as_object).and_then(|t| t.values().next()).cloned().unwrap_or(Value::Null)
    }

    pub fn view(&self) -> Value {
        json!({
            "id": self.id, "portal": self.portal, "owner": { "type_id": self.owner_type_id, "id": self.owner_id },
            "subject": self.layout.pointer("/header/title").cloned().unwrap_or(Value::Null),
            "status": Self::status(&self.layout), "history": self.history,
            "completed": self.fields.get("completed").cloned().unwrap_or(Value::Null),
            "origin_id": self.fields.get("originId").cloned().unwrap_or(Value::Null), "layout": self.layout,
        })
    }
}

/// Events a call caused: the portal and the event's `data`.
type Caused = Vec<(String, Value)>;

pub(super) fn is_user(user: &Value, id: u64) -> bool {
    user["ID"].as_str().and_then(|s| s.parse().ok()) == Some(id)
}

/// An event for the app, ready to POST.
pub struct Outgoing {
    pub handler: String,
    pub body: String,
}

fn arg_error(description: impl Into<String>) -> RestError {
    RestError::new(StatusCode::BAD_REQUEST, "ERROR_ARGUMENT", description)
}

fn text_param(params: &Map<String, Value>, name: &str) -> Option<String> {
    match params.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "Y" } else { "N" }.to_owned()),
        _ => None,
    }
}

fn required(params: &Map<String, Value>, name: &str) -> Result<String, RestError> {
    text_param(params, name).filter(|s| !s.is_empty()).ok_or_else(|| arg_error(format!("{name} is required")))
}

fn number(value: Option<&Value>) -> Option<u64> {
    value.and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
}

/// Bitrix24's own marker of an operator's name before a connector message.
fn signature(name: &str, text: &str) -> String {
    format!("[b]{name}:[/b][br]{text}")
}

impl PortalState {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn employee_name(&self, member_id: &str, user_id: u64) -> Option<String> {
        let portal = self.portals.iter().find(|p| p.member_id == member_id)?;
        let user = portal.users.iter().find(|u| is_user(u, user_id))?;
        Some(format!("{} {}", user["NAME"].as_str().unwrap_or(""), user["LAST_NAME"].as_str().unwrap_or("")).trim().to_owned())
    }

    /// The event, bracket-encoded for each handler bound to it.
    pub(super) fn event(&self, member_id: &str, event: &str, data: Value, access_token: &str, rest_url: &str) -> Vec<Outgoing> {
        let Some(portal) = self.portals.iter().find(|p| p.member_id == member_id) else { return Vec::new() };
        let install = &portal.installation;
        let bound = install.events.iter().filter(|e| e["event"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(event)));
        bound
            .map(|binding| {
                let payload = json!({
                    "event": event.to_ascii_uppercase(), "event_handler_id": binding["id"], "data": data, "ts": now_secs().to_string(),
                    "auth": {
                        "access_token": access_token, "expires_in": "3600", "scope": "crm,placement,imopenlines,imconnector,im,user",
                        "domain": portal.domain, "server_endpoint": "https://oauth.bitrix.info/rest/", "status": "L",
                        "client_endpoint": rest_url, "member_id": member_id,
                        "application_token": install.application_token.clone().unwrap_or_default(),
                    },
                });
                let body = serde_qs::Config::new().use_form_encoding(true).serialize_string(&payload).expect("events encode");
                Outgoing { handler: binding["handler"].as_str().unwrap_or("").to_owned(), body }
            })
            .collect()
    }

    /// An employee writes into an Open Line chat; the app's connector gets the event.
    pub(super) fn operator_writes(&mut self, chat_id: u64, user_id: u64, text: &str) -> Result<(String, Value), RestError> {
        let chat = self.chats.iter().find(|c| c.id == chat_id).cloned().ok_or_else(|| arg_error("No such chat"))?;
        let name = self.employee_name(&chat.portal, user_id).ok_or_else(|| arg_error("No such employee"))?;
        let id = self.next_id();
        let connector = self.installation(&chat.portal)?.connectors.get(&chat.connector).and_then(Value::as_object);
        let need_signature = connector.and_then(|c| text_param(c, "NEED_SIGNATURE")).is_some_and(|f| f == "Y" || f == "1");
        let shown = if need_signature { signature(&name, text) } else { text.to_owned() };
        self.ol_messages.push(OlMessage {
            id, portal: chat.portal.clone(), chat_id, direction: "outgoing", author: name, author_id: Some(user_id),
            text: text.to_owned(), files: Vec::new(), external_id: None, delivered: false, read: false,
        });
        Ok((chat.portal.clone(), connector_message_event(&chat, id, user_id, &shown)))
    }

    fn installation(&mut self, member_id: &str) -> Result<&mut Installation, RestError> {
        self.portals
            .iter_mut()
            .find(|p| p.member_id == member_id)
            .map(|p| &mut p.installation)
            .ok_or_else(|| RestError::new(StatusCode::UNAUTHORIZED, "invalid_token", "The portal is gone."))
    }

    /// The app-platform methods; `None` for a method that is not one of them. Events the
    /// call causes are returned beside the answer.
    pub(super) fn platform_call(&mut self, grant: &Grant, method: &str, params: &Map<String, Value>) -> Option<Result<(Value, Caused), RestError>> {
        let none = |r: Result<Value, RestError>| r.map(|v| (v, Vec::new()));
        Some(match method {
            "placement.bind" => none(self.placement_bind(grant, params)),
            "placement.get" => none(self.installation(&grant.member_id).map(|i| Value::Array(i.placements.clone()))),
            "event.bind" => none(self.event_bind(grant, params)),
            "event.get" => none(self.installation(&grant.member_id).map(|i| Value::Array(i.events.clone()))),
            "imconnector.register" => none(self.connector_register(grant, params)),
            "imconnector.activate" => none(self.connector_activate(grant, params)),
            "imopenlines.config.list.get" => none(self.lines(grant)),
            "imconnector.send.messages" => self.send_messages(grant, params),
            "imconnector.send.status.delivery" => none(self.message_status(grant, params, |m| m.delivered = true)),
            "imconnector.send.status.reading" => none(self.message_status(grant, params, |m| m.read = true)),
            "imopenlines.crm.chat.user.add" => none(self.chat_user_add(grant, params)),
            "im.message.add" => none(self.im_message_add(grant, params)),
            "user.get" => none(self.users(grant)),
            "crm.activity.configurable.add" => none(self.activity_add(grant, params)),
            "crm.activity.configurable.update" => none(self.activity_update(grant, params)),
            "crm.activity.list" => none(Ok(self.activity_list(grant, params))),
            _ => return None,
        })
    }

    fn admin(&self, grant: &Grant) -> Result<(), RestError> {
        let portal = self.portals.iter().find(|p| p.member_id == grant.member_id);
        let user = portal.and_then(|p| p.users.iter().find(|u| is_user(u, grant.user_id)));
        match user {
            Some(u) if u["ADMIN"] == true => Ok(()),
            _ => Err(RestError::new(StatusCode::FORBIDDEN, "ACCESS_DENIED", "Access denied! Administrator permissions required")),
        }
    }

    fn placement_bind(&mut self, grant: &Grant, params: &Map<String, Value>) -> Result<Value, RestError> {
        self.admin(grant)?;
        let placement = required(params, "PLACEMENT")?;
        let handler = required(params, "HANDLER")?;
        if !placement.starts_with("CRM_") || !placement.ends_with("_DETAIL_TAB") {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "ERROR_PLACEMENT_NOT_FOUND", "Placement not found"));
        }
        let install = self.installation(&grant.member_id)?;
        if install.placements.iter().any(|p| p["placement"] == placement.as_str() && p["handler"] == handler.as_str()) {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "ERROR_PLACEMENT_HANDLER_ALREADY_BINDED", "Handler already binded"));
        }
        install.placements.push(json!({
            "placement": placement, "handler": handler, "title": text_param(params, "TITLE").unwrap_or_default(),
            "description": text_param(params, "DESCRIPTION").unwrap_or_default(),
            "langAll": params.get("LANG_ALL").cloned().unwrap_or(Value::Null),
        }));
        Ok(Value::Bool(true))
    }

    fn event_bind(&mut self, grant: &Grant, params: &Map<String, Value>) -> Result<Value, RestError> {
        self.admin(grant)?;
        let event = required(params, "event")?.to_ascii_uppercase();
        let handler = required(params, "handler")?;
        let id = self.next_id();
        let install = self.installation(&grant.member_id)?;
        if install.events.iter().any(|e| e["event"] == event.as_str() && e["handler"] == handler.as_str()) {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "", "Handler already binded"));
        }
        let offline = text_param(params, "event_type").is_some_and(|t| t == "offline");
        install.events.push(json!({ "id": id, "event": event, "handler": handler, "auth_type": "0", "offline": offline as u8 }));
        Ok(Value::Bool(true))
    }

    fn connector_register(&mut self, grant: &Grant, params: &Map<String, Value>) -> Result<Value, RestError> {
        self.admin(grant)?;
        let id = required(params, "ID")?;
        if id.contains('.') || id != id.to_ascii_lowercase() {
            return Err(arg_error("ID must be lowercase, without dots"));
        }
        required(params, "NAME")?;
        required(params, "PLACEMENT_HANDLER")?;
        params.get("ICON").and_then(|i| i.get("DATA_IMAGE")).ok_or_else(|| arg_error("ICON[DATA_IMAGE] is required"))?;
        self.installation(&grant.member_id)?.connectors.insert(id, Value::Object(params.clone()));
        Ok(json!({ "result": true }))
    }

    fn line_exists(&self, member_id: &str, line: &str) -> bool {
        self.portals.iter().any(|p| p.member_id == member_id && p.lines.iter().any(|l| l["ID"] == line))
    }

    fn connector_activate(&mut self, grant: &Grant, params: &Map<String, Value>) -> Result<Value, RestError> {
        self.admin(grant)?;
        let (connector, line) = (required(params, "CONNECTOR")?, required(params, "LINE")?);
        let active = text_param(params, "ACTIVE").is_none_or(|a| a == "1" || a == "Y");
        if !self.line_exists(&grant.member_id, &line) {
            return Err(arg_error("No such line"));
        }
        let install = self.installation(&grant.member_id)?;
        if !install.connectors.contains_key(&connector) {
            return Err(arg_error("The connector is not registered"));
        }
        install.active.retain(|(c, l)| !(c == &connector && l == &line));
        if active {
            install.active.push((connector, line));
        }
        Ok(Value::Bool(true))
    }

    fn lines(&self, grant: &Grant) -> Result<Value, RestError> {
        let portal = self.portals.iter().find(|p| p.member_id == grant.member_id).ok_or_else(|| arg_error("No portal"))?;
        Ok(Value::Array(portal.lines.clone()))
    }

    fn active_line(&mut self, grant: &Grant, params: &Map<String, Value>) -> Result<(String, String), RestError> {
        let (connector, line) = (required(params, "CONNECTOR")?, required(params, "LINE")?);
        if !self.installation(&grant.member_id)?.active.contains(&(connector.clone(), line.clone())) {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "NOT_ACTIVE_LINE", "The connector is not active on this line"));
        }
        Ok((connector, line))
    }

    /// `imconnector.send.messages`: finds or creates the chat and its session, adds each
    /// message (an employee's when `message.user_id` is given), and echoes those back.
    fn send_messages(&mut self, grant: &Grant, params: &Map<String, Value>) -> Result<(Value, Caused), RestError> {
        let (connector, line) = self.active_line(grant, params)?;
        let messages = params.get("MESSAGES").and_then(Value::as_array).cloned().ok_or_else(|| arg_error("MESSAGES is required"))?;
        let mut results = Vec::new();
        let mut events = Vec::new();
        for m in &messages {
            let user_id = m.pointer("/user/id").and_then(|v| text_param(&single("id", v), "id"));
            let chat_id = m.pointer("/chat/id").and_then(|v| text_param(&single("id", v), "id"));
            let text = m.pointer("/message/text").and_then(Value::as_str).unwrap_or("").to_owned();
            let files = m.pointer("/message/files").and_then(Value::as_array).cloned().unwrap_or_default();
            let (Some(user_id), Some(external_chat)) = (user_id, chat_id) else {
                results.push(json!({ "SUCCESS": false, "ERRORS": ["user.id and chat.id are required"] }));
                continue;
            };
            if text.is_empty() && files.is_empty() {
                results.push(json!({ "SUCCESS": false, "ERRORS": ["text or files are required"] }));
                continue;
            }
            let name = [m.pointer("/user/name"), m.pointer("/user/last_name")]
                .iter()
                .filter_map(|v| v.and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            let existing = self.chats.iter().find(|c| {
                c.portal == grant.member_id && c.connector == connector && c.line == line && c.external_chat_id == external_chat
            });
            let chat = match existing {
                Some(chat) => chat.clone(),
                None => {
                    let (id, session_id) = (self.next_id(), self.next_id());
                    let chat = SimChat {
                        id, portal: grant.member_id.clone(), connector: connector.clone(), line: line.clone(),
                        external_chat_id: external_chat.clone(), external_user_id: user_id, user_name: name.clone(),
                        session_id, members: Vec::new(),
                    };
                    self.chats.push(chat.clone());
                    if number(m.pointer("/message/user_id")).is_none() { super::tracker::client_wrote_first(&mut self.portals, &chat) }
                    chat
                }
            };
            let external_id = m.pointer("/message/id").and_then(|v| text_param(&single("id", v), "id"));
            let employee = number(m.pointer("/message/user_id"));
            let message_id = self.next_id();
            let (direction, author) = match employee {
                Some(e) => ("outgoing", self.employee_name(&grant.member_id, e).ok_or_else(|| arg_error("No such employee"))?),
                None => ("incoming", name),
            };
            self.ol_messages.push(OlMessage {
                id: message_id, portal: grant.member_id.clone(), chat_id: chat.id, direction, author, author_id: employee,
                text: text.clone(), files, external_id, delivered: false, read: false,
            });
            if let Some(e) = employee {
                events.push((grant.member_id.clone(), connector_message_event(&chat, message_id, e, &text)));
            }
            results.push(json!({
                "SUCCESS": true, "session": { "ID": chat.session_id.to_string(), "CHAT_ID": chat.id.to_string() },
                "im": { "chat_id": chat.id, "message_id": message_id },
            }));
        }
        Ok((json!({ "SUCCESS": true, "DATA": { "RESULT": results } }), events))
    }

    /// `imconnector.send.status.delivery` / `.reading`: marks each message named by its `im` ids.
    fn message_status(&mut self, grant: &Grant, params: &Map<String, Value>, mark: fn(&mut OlMessage)) -> Result<Value, RestError> {
        self.active_line(grant, params)?;
        let messages = params.get("MESSAGES").and_then(Value::as_array).cloned().ok_or_else(|| arg_error("MESSAGES is required"))?;
        for m in messages {
            let (chat, id) = (number(m.pointer("/im/chat_id")), number(m.pointer("/im/message_id")));
            let found = self.ol_messages.iter_mut().find(|o| Some(o.chat_id) == chat && Some(o.id) == id && o.portal == grant.member_id);
            mark(found.ok_or_else(|| arg_error("No such message"))?);
        }
        Ok(json!({ "SUCCESS": true }))
    }

    fn chat_user_add(&mut self, grant: &Grant, params: &Map<String, Value>) -> Result<Value, RestError> {
        let kind = required(params, "CRM_ENTITY_TYPE")?;
        let entity = number(params.get("CRM_ENTITY")).ok_or_else(|| arg_error("CRM_ENTITY is required"))?;
        let user = number(params.get("USER_ID")).ok_or_else(|| arg_error("USER_ID is required"))?;
        let chat_id = number(params.get("CHAT_ID")).ok_or_else(|| arg_error("CHAT_ID is required"))?;
        let portal = self.portals.iter().find(|p| p.member_id == grant.member_id).ok_or_else(|| arg_error("No portal"))?;
        let known = portal.records.keys().any(|(t, id)| t.as_str() == kind.to_ascii_lowercase() && *id == entity);
        if !known {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "CHAT_NOT_IN_CRM", "The CRM record has no such chat"));
        }
        if self.employee_name(&grant.member_id, user).is_none() {
            return Err(arg_error("No such user"));
        }
        let chat = self.chats.iter_mut().find(|c| c.id == chat_id && c.portal == grant.member_id).ok_or_else(|| arg_error("No such chat"))?;
        if !chat.members.contains(&user) {
            chat.members.push(user);
        }
        Ok(Value::Bool(true))
    }

    fn im_message_add(&mut self, grant: &Grant, params: &Map<String, Value>) -> Result<Value, RestError> {
        let dialog = required(params, "DIALOG_ID")?;
        let chat_id = dialog.strip_prefix("chat").and_then(|c| c.parse::<u64>().ok()).ok_or_else(|| arg_error("DIALOG_ID must be chatN"))?;
        let text = required(params, "MESSAGE")?;
        if !self.chats.iter().any(|c| c.id == chat_id && c.portal == grant.member_id) {
            return Err(arg_error("No such chat"));
        }
        let id = self.next_id();
        let system = text_param(params, "SYSTEM").is_some_and(|s| s == "Y");
        let author = if system { "System".to_owned() } else { self.employee_name(&grant.member_id, grant.user_id).unwrap_or_default() };
        self.ol_messages.push(OlMessage {
            id, portal: grant.member_id.clone(), chat_id, direction: if system { "system" } else { "outgoing" }, author,
            author_id: (!system).then_some(grant.user_id), text, files: Vec::new(), external_id: None, delivered: false, read: false,
        });
        Ok(json!(id))
    }

    fn users(&self, grant: &Grant) -> Result<Value, RestError> {
        let portal = self.portals.iter().find(|p| p.member_id == grant.member_id).ok_or_else(|| arg_error("No portal"))?;
        Ok(Value::Array(portal.users.iter().filter(|u| u["ACTIVE"] == true).cloned().collect()))
    }

    fn activity_add(&mut self, grant: &Grant, params: &Map<String, Value>) -> Result<Value, RestError> {
        let owner_type_id = number(params.get("ownerTypeId")).filter(|t| (1..=4).contains(t)).ok_or_else(|| arg_error("ownerTypeId"))?;
        let owner_id = number(params.get("ownerId")).ok_or_else(|| arg_error("ownerId"))?;
        let layout = params.get("layout").cloned().filter(Value::is_object).ok_or_else(|| arg_error("layout is required"))?;
        let id = self.next_id();
        self.activities.push(SimActivity {
            id, portal: grant.member_id.clone(), owner_type_id, owner_id,
            fields: params.get("fields").cloned().unwrap_or(json!({})),
            history: vec![SimActivity::status(&layout)], layout,
        });
        Ok(json!({ "activity": { "id": id } }))
    }

    /// `crm.activity.list` over the configurable activities, filtered by owner and origin.
    fn activity_list(&self, grant: &Grant, params: &Map<String, Value>) -> Value {
        let filter = params.get("filter").and_then(Value::as_object).cloned().unwrap_or_default();
        let wanted = |key: &str, actual: &Value| filter.get(key).is_none_or(|w| text_param(&single("v", w), "v") == text_param(&single("v", actual), "v"));
        let rows = self.activities.iter().filter(|a| a.portal == grant.member_id).map(|a| {
            json!({ "ID": a.id.to_string(), "OWNER_TYPE_ID": a.owner_type_id.to_string(), "OWNER_ID": a.owner_id.to_string(),
                    "PROVIDER_ID": "CONFIGURABLE_REST_APP", "ORIGIN_ID": a.fields.get("originId").cloned().unwrap_or(Value::Null) })
        });
        Value::Array(rows.filter(|row| ["OWNER_TYPE_ID", "OWNER_ID", "PROVIDER_ID", "ORIGIN_ID"].iter().all(|k| wanted(k, &row[*k]))).collect())
    }

    /// Replaces fields and the whole layout, as Bitrix24 does.
    fn activity_update(&mut self, grant: &Grant, params: &Map<String, Value>) -> Result<Value, RestError> {
        let id = number(params.get("id")).ok_or_else(|| arg_error("id is required"))?;
        let layout = params.get("layout").cloned().filter(Value::is_object).ok_or_else(|| arg_error("layout is required"))?;
        let activity = self.activities.iter_mut().find(|a| a.id == id && a.portal == grant.member_id);
        let activity = activity.ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "NOT_FOUND", "Activity not found"))?;
        if let Some(fields) = params.get("fields") {
            activity.fields = fields.clone();
        }
        let status = SimActivity::status(&layout);
        if activity.history.last() != Some(&status) {
            activity.history.push(status);
        }
        activity.layout = layout;
        Ok(json!({ "activity": { "id": id } }))
    }
}

fn single(name: &str, value: &Value) -> Map<String, Value> {
    Map::from_iter([(name.to_owned(), value.clone())])
}

/// `OnImConnectorMessageAdd` data for one message written by an employee.
fn connector_message_event(chat: &SimChat, message_id: u64, user_id: u64, text: &str) -> Value {
    json!({
        "CONNECTOR": chat.connector, "LINE": chat.line,
        "MESSAGES": [{
            "im": { "chat_id": chat.id.to_string(), "message_id": message_id.to_string() },
            "message": { "id": [message_id.to_string()], "user_id": user_id.to_string(), "text": text, "date": now_secs().to_string() },
            "chat": { "id": chat.external_chat_id },
        }],
    })
}

impl SandboxPortal {
    /// POSTs `OnImConnectorMessageAdd` (and other events) to the app's bound handlers, after the
    /// answer that caused them, as Bitrix24 does: once, not retried.
    pub(super) fn deliver(&self, events: Vec<(String, Value)>, name: &str) {
        for (member_id, data) in events {
            let (access, _) = self.issue_tokens(&member_id, 1);
            let outgoing = self.lock().event(&member_id, name, data, &access, &self.rest_url);
            for Outgoing { handler, body } in outgoing {
                let http = self.http.clone();
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
        let (member_id, data) = self.lock().operator_writes(chat_id, user_id, text).map_err(|e| e.description.clone())?;
        let id = data.pointer("/MESSAGES/0/im/message_id").and_then(|v| v.as_str()?.parse().ok()).unwrap_or(0);
        self.deliver(vec![(member_id, data)], "OnImConnectorMessageAdd");
        Ok(id)
    }

    pub fn ol_messages(&self) -> Vec<OlMessage> {
        self.lock().ol_messages.clone()
    }

    pub fn chats(&self) -> Vec<SimChat> {
        self.lock().chats.clone()
    }

    pub fn activities(&self) -> Vec<Value> {
        self.lock().activities.iter().map(SimActivity::view).collect()
    }
}
