//! The sandbox portal's app platform and Open Lines, each method as b24restdocs documents it:
//! placements (`api-reference/widgets/placement-bind.md`, `placement-get.md`), event
//! bindings (`api-reference/events/event-bind.md`, `event-get.md`), the connector
//! (`api-reference/imopenlines/imconnector/imconnector-register.md`, `-activate.md`,
//! `-connector-data-set.md`, `-send-messages.md`, `-send-status-delivery.md`,
//! `-send-status-reading.md`, `-update-messages.md`, `-delete-messages.md`,
//! `events/on-im-connector-*.md`), lines
//! (`api-reference/imopenlines/openlines/imopenlines-config-list-get.md`), CRM chats
//! (`…/openlines/chats/imopenlines-crm-chat-get.md`, `-user-add.md`,
//! `…/openlines/sessions/imopenlines-dialog-get.md`), chat messages and notifications
//! (`api-reference/chats/messages/im-message-add.md`,
//! `api-reference/chats/notifications/im-notify-system-add.md`), and the CRM tracker that
//! binds a new chat to a record (`tracker`). Each message keeps how the chat shows its
//! BBCode (`bbcode`).

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::bbcode::show;
use super::state::{
    Answer, Caused, Grant, OlMessage, Params, PortalState, RestError, SimChat, access_denied, arg_error, flag, number, required, required_id,
    scalar, text_param,
};
use crate::domain::EntityType;

/// The events an app can bind that the sandbox portal raises or knows.
const KNOWN_EVENTS: [&str; 9] = [
    "ONAPPINSTALL", "ONAPPUNINSTALL", "ONAPPUPDATE", "ONIMCONNECTORMESSAGEADD", "ONIMCONNECTORMESSAGEUPDATE",
    "ONIMCONNECTORMESSAGEDELETE", "ONIMCONNECTORSTATUSDELETE", "ONIMCONNECTORLINEDELETE", "ONIMCONNECTORDIALOGFINISH",
];
/// What Open Lines says to a client when a dialog starts: sent through the connector only when
/// it was registered with `NEED_SYSTEM_MESSAGES` (default `true`).
pub const GREETING: &str = "Hello! Thank you for contacting us. An operator will answer you shortly.";

/// `{"result":false,"error":...}` with HTTP 200: how `imconnector.register` refuses.
fn register_refusal(code: &str, description: &str) -> Result<Value, RestError> {
    Ok(json!({ "result": false, "error": code, "error_description": description }))
}

/// A connector flag as registered, with its documented default.
fn connector_flag(connector: Option<&Value>, name: &str, default: bool) -> bool {
    connector.and_then(Value::as_object).and_then(|c| flag(c, name)).unwrap_or(default)
}

/// Whether `handler` is a URL of the app: the same scheme, host and port, no credentials, a
/// path under the app's (a plain prefix would let `http://app:80@elsewhere/` through).
pub(super) fn under_app(handler: &str, app_url: &str) -> bool {
    let (Ok(handler), Ok(app)) = (url::Url::parse(handler), url::Url::parse(app_url)) else { return false };
    handler.scheme() == app.scheme()
        && handler.host_str() == app.host_str()
        && handler.port_or_known_default() == app.port_or_known_default()
        && handler.username().is_empty()
        && handler.password().is_none()
        && handler.path().starts_with(app.path().trim_end_matches('/'))
}

/// Bitrix24's own marker of an operator's name before a connector message
/// (`on-im-connector-message-add.md`: `[b]Klaus Weber:[/b] [br]Guten Tag!`).
fn signature(name: &str, text: &str) -> String {
    format!("[b]{name}:[/b] [br]{text}")
}

/// `imconnector-send-messages.md`: names hold letters, spaces, hyphens and apostrophes, ≤ 25.
fn valid_name(name: &str) -> bool {
    name.chars().count() <= 25 && name.chars().all(|c| c.is_alphabetic() || matches!(c, ' ' | '-' | '\''))
}

impl PortalState {
    /// The app-platform and Open Lines methods; `None` for a method that is not one of them.
    /// Events a call causes are returned beside the answer.
    pub(super) fn platform_call(&mut self, grant: &Grant, method: &str, params: &Params, app_url: &str) -> Option<Result<(Answer, Caused), RestError>> {
        let plain = |r: Result<Value, RestError>| r.map(|v| (Answer::from(v), Vec::new()));
        Some(match method {
            "placement.bind" => plain(self.placement_bind(grant, params, app_url)),
            "placement.get" => plain(self.admin(grant).and_then(|()| Ok(Value::Array(self.installation(&grant.member_id)?.placements.clone())))),
            "event.bind" => plain(self.event_bind(grant, params, app_url)),
            "event.get" => plain(self.event_get(grant)),
            "imconnector.register" => plain(self.connector_register(grant, params)),
            "imconnector.activate" => plain(self.connector_activate(grant, params)),
            "imconnector.connector.data.set" => plain(self.connector_data_set(grant, params)),
            "imopenlines.config.list.get" => plain(self.lines(grant, params)),
            "imconnector.send.messages" => self.send_messages(grant, params),
            "imconnector.send.status.delivery" => plain(self.message_status(grant, params, |m, ids| {
                m.delivered = true;
                m.delivered_ids = ids;
            })),
            "imconnector.send.status.reading" => plain(self.message_status(grant, params, |m, _| m.read = true)),
            "imconnector.update.messages" => plain(self.revise_messages(grant, params, Revision::Update)),
            "imconnector.delete.messages" => plain(self.revise_messages(grant, params, Revision::Delete)),
            "imopenlines.crm.chat.get" => plain(self.crm_chats(grant, params)),
            "imopenlines.crm.chat.user.add" => plain(self.chat_user_add(grant, params)),
            "imopenlines.dialog.get" => plain(self.dialog(grant, params)),
            "im.message.add" => plain(self.im_message_add(grant, params)),
            "im.notify.system.add" => plain(self.notify(grant, params)),
            _ => return None,
        })
    }

    /// `placement-bind.md`: administrators only. The sandbox's app answers on loopback, which
    /// Bitrix24 refuses ("Links to localhost ... are not acceptable"): stricter in its stead,
    /// only handlers under the app's own URL are taken.
    fn placement_bind(&mut self, grant: &Grant, params: &Params, app_url: &str) -> Result<Value, RestError> {
        self.admin(grant)?;
        // placement-bind.md: ERROR_ARGUMENT with HTTP 200 and `"argument": "PLACEMENT"`.
        let placement = text_param(params, "PLACEMENT").filter(|p| !p.is_empty()).ok_or_else(|| {
            let mut e = RestError::new(StatusCode::OK, "ERROR_ARGUMENT", "Argument 'PLACEMENT' is null or empty");
            e.argument = Some("PLACEMENT");
            e
        })?;
        let handler = required(params, "HANDLER")?;
        if !under_app(&handler, app_url) {
            return Err(arg_error("HANDLER must be a URL of the application"));
        }
        // The card tabs are the placements simulated; `SETTING_CONNECTOR` is made by
        // `imconnector.register`'s `PLACEMENT_HANDLER`, not bound (`imconnector-register.md`).
        if !(placement.starts_with("CRM_") && placement.ends_with("_DETAIL_TAB")) {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "ERROR_PLACEMENT_NOT_FOUND", "Placement not found"));
        }
        let install = self.installation(&grant.member_id)?;
        // The docs are silent on binding the same handler twice: the stricter reading refuses it.
        if install.placements.iter().any(|p| p["placement"] == placement.as_str() && p["handler"] == handler.as_str()) {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "ERROR_PLACEMENT_HANDLER_ALREADY_BINDED", "Handler already binded"));
        }
        install.placements.push(json!({
            "placement": placement, "userId": 0, "handler": handler, "options": [],
            "title": text_param(params, "TITLE").unwrap_or_default(), "description": text_param(params, "DESCRIPTION").unwrap_or_default(),
            "langAll": params.get("LANG_ALL").cloned().unwrap_or(Value::Null),
        }));
        Ok(Value::Bool(true))
    }

    /// `event-get.md`: an administrator sees every handler of the app, another user only their own.
    fn event_get(&mut self, grant: &Grant) -> Result<Value, RestError> {
        let admin = self.portal(&grant.member_id)?.is_admin(grant.user_id);
        let rows = self.installation(&grant.member_id)?.events.iter()
            .filter(|e| admin || e["user_id"] == grant.user_id)
            .map(|e| { let mut row = e.clone(); if let Some(o) = row.as_object_mut() { o.remove("user_id"); } row })
            .collect();
        Ok(Value::Array(rows))
    }

    /// `event-bind.md`: any user for online events; `ERROR_EVENT_NOT_FOUND` for an unknown one.
    fn event_bind(&mut self, grant: &Grant, params: &Params, app_url: &str) -> Result<Value, RestError> {
        let event = required(params, "event")?.to_ascii_uppercase();
        let handler = required(params, "handler")?;
        let offline = text_param(params, "event_type").is_some_and(|t| t == "offline");
        // event-bind.md: the 403 texts for offline events and AUTH_TYPE without administrator rights.
        let is_admin = self.portal(&grant.member_id)?.is_admin(grant.user_id);
        if offline && !is_admin {
            return Err(access_denied("Access denied! Offline events binding requires administrator access rights"));
        }
        if params.contains_key("auth_type") && !is_admin {
            return Err(access_denied("Access denied! Event binding with AUTH_TYPE requires administrator access rights"));
        }
        if !KNOWN_EVENTS.contains(&event.as_str()) {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "ERROR_EVENT_NOT_FOUND", "Event not found"));
        }
        if !under_app(&handler, app_url) {
            return Err(arg_error("handler must be a URL of the application"));
        }
        let id = self.next_id();
        let install = self.installation(&grant.member_id)?;
        // Silent on a repeated binding: refused, the stricter reading.
        if install.events.iter().any(|e| e["event"] == event.as_str() && e["handler"] == handler.as_str()) {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "ERROR_HANDLER_ALREADY_BINDED", "Handler already binded"));
        }
        install.events.push(json!({ "id": id, "event": event, "handler": handler, "auth_type": "0", "offline": offline as u8, "user_id": grant.user_id }));
        Ok(Value::Bool(true))
    }

    /// `imconnector-register.md`: refusals come back with HTTP 200 and `result: false`.
    fn connector_register(&mut self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        let Some(id) = text_param(params, "ID").filter(|s| !s.is_empty()).map(|s| s.to_ascii_lowercase()) else {
            return register_refusal("CONNECTOR_ID_REQUIRED", "Connector ID is not specified");
        };
        if id.contains('.') {
            return register_refusal("APPLICATION_REGISTRATION_ERROR_POINT", "Application registration error. Using a dot in the connector identifier is not allowed" /* imconnector-register.md */);
        }
        if text_param(params, "NAME").is_none_or(|n| n.is_empty()) {
            return register_refusal("NAME_REQUIRED", "Connector name is not specified");
        }
        if params.get("ICON").and_then(|i| i.get("DATA_IMAGE")).and_then(Value::as_str).is_none() {
            return register_refusal("ICON_REQUIRED", "Connector icon is not specified");
        }
        if text_param(params, "PLACEMENT_HANDLER").is_none_or(|h| h.is_empty()) {
            return register_refusal("NO_PLACEMENT_HANDLER", "Failed to get embedding handler URL");
        }
        self.installation(&grant.member_id)?.connectors.insert(id, Value::Object(params.clone()));
        Ok(json!({ "result": true }))
    }

    /// `imopenlines-config-list-get.md`: `PARAMS` `select` (fields), `filter` (equal values),
    /// `limit` (a non-negative integer); anything else in `PARAMS` is `INVALID_FORMAT`.
    fn lines(&self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        let invalid = |what: String| RestError::new(StatusCode::BAD_REQUEST, "INVALID_FORMAT", what);
        let options = params.get("PARAMS").and_then(Value::as_object).cloned().unwrap_or_default();
        if let Some(unknown) = options.keys().find(|k| !["select", "filter", "order", "limit"].contains(&k.as_str())) {
            return Err(invalid(format!("Unknown field '{unknown}' in PARAMS")));
        }
        let limit = match options.get("limit") {
            None => None,
            Some(l) => Some(l.as_u64().ok_or_else(|| invalid("A non-negative integer is expected in the PARAMS field 'limit'".into()))? as usize),
        };
        let filter = options.get("filter").and_then(Value::as_object).cloned().unwrap_or_default();
        let select: Option<Vec<String>> = options.get("select").and_then(|s| serde_json::from_value(s.clone()).ok());
        let rows = self.portal(&grant.member_id)?.lines.iter().filter(|l| filter.iter().all(|(k, v)| scalar(v) == scalar(&l[k]))).map(|l| match &select {
            Some(fields) => Value::Object(fields.iter().filter_map(|f| Some((f.clone(), l.get(f)?.clone()))).collect()),
            None => l.clone(),
        });
        Ok(Value::Array(rows.take(limit.unwrap_or(usize::MAX)).collect()))
    }

    fn line_exists(&self, member_id: &str, line: &str) -> bool {
        self.portal(member_id).is_ok_and(|p| p.lines.iter().any(|l| scalar(&l["ID"]).as_deref() == Some(line)))
    }

    /// `imconnector-activate.md`: `CONNECTOR`, `LINE`, `ACTIVE` all required.
    fn connector_activate(&mut self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        let (connector, line) = (required(params, "CONNECTOR")?.to_ascii_lowercase(), required(params, "LINE")?);
        let active = text_param(params, "ACTIVE").ok_or_else(|| arg_error("Argument 'ACTIVE' is null or empty"))?;
        let active = !active.is_empty() && active != "0" && active != "N";
        if !self.line_exists(&grant.member_id, &line) {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "NOT_ACTIVE_LINE", "The line with this ID is inactive or does not exist"));
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

    /// `imconnector-connector-data-set.md`: the whole `DATA` object, overwritten.
    fn connector_data_set(&mut self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        let (connector, line) = (required(params, "CONNECTOR")?.to_ascii_lowercase(), required(params, "LINE")?);
        let data = params.get("DATA").filter(|d| d.as_object().is_some_and(|o| !o.is_empty())).cloned().ok_or_else(|| arg_error("Argument 'DATA' is null or empty"))?;
        let install = self.installation(&grant.member_id)?;
        if !install.connectors.contains_key(&connector) {
            return Err(arg_error("The connector is not registered"));
        }
        install.connector_data.insert(format!("{connector}|{line}"), data);
        Ok(Value::Bool(true))
    }

    fn active_line(&mut self, grant: &Grant, params: &Params) -> Result<(String, String), RestError> {
        let (connector, line) = (required(params, "CONNECTOR")?.to_ascii_lowercase(), required(params, "LINE")?);
        if !self.installation(&grant.member_id)?.active.contains(&(connector.clone(), line.clone())) {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "NOT_ACTIVE_LINE", "The line with this ID is inactive or does not exist"));
        }
        Ok((connector, line))
    }

    /// `imconnector-send-messages.md`: finds or creates the chat (the CRM tracker binding a new
    /// one) and adds each message, the client's or, with `message.user_id`, an employee's.
    /// `OnImConnectorMessageAdd` is not raised for them ("The event does not trigger when
    /// receiving an incoming message from an external system channel"). `session` is
    /// "returned if available": the stricter reading gives it only for the client's messages,
    /// which open or continue a session; an employee's does not.
    fn send_messages(&mut self, grant: &Grant, params: &Params) -> Result<(Answer, Caused), RestError> {
        let (connector, line) = self.active_line(grant, params)?;
        let messages = params.get("MESSAGES").and_then(Value::as_array).cloned().ok_or_else(|| arg_error("Argument 'MESSAGES' is null or empty"))?;
        let mut results = Vec::new();
        let mut caused = Vec::new();
        for m in &messages {
            let (Some(user), Some(message), Some(chat)) = (m.get("user"), m.get("message"), m.get("chat")) else {
                return Err(arg_error("The incorrect structure of a message inside MESSAGES parameter"));
            };
            let refuse = |why: &str| json!({ "SUCCESS": false, "ERRORS": [why] });
            let (Some(user_id), Some(external_chat)) = (user.get("id").and_then(scalar), chat.get("id").and_then(scalar)) else {
                results.push(refuse("user.id and chat.id are required"));
                continue;
            };
            let chat_name = chat.get("name").cloned().unwrap_or(Value::Null);
            let text = message.get("text").and_then(Value::as_str).unwrap_or("").to_owned();
            let files = message.get("files").and_then(Value::as_array).cloned().unwrap_or_default();
            if text.is_empty() && files.is_empty() {
                results.push(refuse("You must pass either the text or files element"));
                continue;
            }
            let names = [user.get("name"), user.get("last_name")].map(|v| v.and_then(Value::as_str).unwrap_or("").to_owned());
            if !names.iter().all(|n| valid_name(n)) {
                results.push(refuse("name and last_name may hold letters, spaces, hyphens and apostrophes, up to 25 characters"));
                continue;
            }
            let employee = number(message.get("user_id"));
            if let Some(e) = employee.filter(|&e| self.employee_name(&grant.member_id, e).is_none()) {
                results.push(refuse(&format!("No manager {e}")));
                continue;
            }
            let name = names.join(" ").trim().to_owned();
            let existing = self.chats.iter().position(|c| c.portal == grant.member_id && c.connector == connector && c.line == line && c.external_chat_id == external_chat);
            let (chat_index, opened) = match existing {
                Some(at) => (at, false),
                None => {
                    let phone = user.get("phone").and_then(Value::as_str).unwrap_or("");
                    let tracked = message.get("disable_crm").and_then(Value::as_str) != Some("Y");
                    let (id, session_id) = (self.next_id(), self.next_id());
                    let mut chat = SimChat {
                        id, portal: grant.member_id.clone(), connector: connector.clone(), line: line.clone(),
                        external_chat_id: external_chat.clone(), external_user_id: user_id.clone(), user_name: name.clone(),
                        session_id, members: Vec::new(), crm: None,
                    };
                    if tracked {
                        chat.crm = Some(super::tracker::track(self.portal_mut(&grant.member_id)?, &chat, phone));
                    }
                    self.chats.push(chat);
                    (self.chats.len() - 1, true)
                }
            };
            let chat = self.chats[chat_index].clone();
            let id = self.next_id();
            let (direction, author) = match employee {
                Some(e) => ("outgoing", self.employee_name(&grant.member_id, e).unwrap_or_default()),
                None => ("incoming", name),
            };
            self.ol_messages.push(OlMessage {
                id, portal: grant.member_id.clone(), chat_id: chat.id, direction, author, author_id: employee,
                shown: show(&text), text: text.clone(), files, external_id: message.get("id").and_then(scalar), delivered: false, read: false, delivered_ids: Vec::new(), edited: false, deleted: false,
            });
            let registered = self.installation(&grant.member_id)?.connectors.get(&connector).cloned();
            if opened && employee.is_none() && connector_flag(registered.as_ref(), "NEED_SYSTEM_MESSAGES", true) {
                caused.push(self.system_message(&chat, GREETING));
            }
            let mut result = json!({
                "user": chat.id.to_string(), "message": { "id": message.get("id").cloned().unwrap_or(Value::Null), "date": {}, "text": text, "files": [] },
                // imconnector-send-messages.md: RESULT[].chat.name is the chat's name as given.
                "chat": { "id": external_chat, "name": chat_name }, "SUCCESS": true,
            });
            if employee.is_none() {
                result["session"] = json!({ "ID": chat.session_id.to_string(), "CHAT_ID": chat.id.to_string() });
            }
            results.push(result);
        }
        Ok((json!({ "SUCCESS": true, "DATA": { "RESULT": results } }).into(), caused))
    }

    /// Open Lines' own message in a chat (a greeting), which goes to the client through the connector.
    fn system_message(&mut self, chat: &SimChat, text: &str) -> (String, &'static str, Value) {
        let id = self.next_id();
        self.ol_messages.push(OlMessage {
            id, portal: chat.portal.clone(), chat_id: chat.id, direction: "system", author: "Open Lines".into(), author_id: None,
            text: text.to_owned(), shown: show(text), files: Vec::new(), external_id: None, delivered: false, read: false, delivered_ids: Vec::new(), edited: false, deleted: false,
        });
        (chat.portal.clone(), "OnImConnectorMessageAdd", connector_message_event(chat, id, 0, text))
    }

    /// `imconnector-send-status-delivery.md` / `-reading.md`: marks each message named by its `im` ids.
    fn message_status(&mut self, grant: &Grant, params: &Params, mark: fn(&mut OlMessage, Vec<String>)) -> Result<Value, RestError> {
        self.active_line(grant, params)?;
        let messages = params.get("MESSAGES").and_then(Value::as_array).cloned().ok_or_else(|| arg_error("Argument 'MESSAGES' is null or empty"))?;
        for m in messages {
            let (chat, id) = (number(m.pointer("/im/chat_id")), number(m.pointer("/im/message_id")));
            let found = self.ol_messages.iter_mut().find(|o| Some(o.chat_id) == chat && Some(o.id) == id && o.portal == grant.member_id);
            let ids = m.pointer("/message/id").and_then(Value::as_array).map(|ids| ids.iter().filter_map(scalar).collect()).unwrap_or_default();
            mark(found.ok_or_else(|| arg_error("No such message"))?, ids);
        }
        // imconnector-send-status-delivery.md / -reading.md: `{"SUCCESS": true, "DATA": []}`.
        Ok(json!({ "SUCCESS": true, "DATA": [] }))
    }

    /// `imconnector-update-messages.md` / `imconnector-delete-messages.md`: messages the
    /// connector sent, named by the `message.id` and `chat.id` of their `send.messages`; each
    /// element needs `user`, `message` and `chat`, with `user.id`, `chat.id` (and for a
    /// deletion `message.id`) in them, as the pages mark them. An update passes `text` or
    /// `files`. The pages are silent on an id the line never had, or a message deleted
    /// already: the stricter reading refuses that element (`SUCCESS: false` with `ERRORS`).
    fn revise_messages(&mut self, grant: &Grant, params: &Params, revision: Revision) -> Result<Value, RestError> {
        let (connector, line) = self.active_line(grant, params)?;
        let messages = params.get("MESSAGES").and_then(Value::as_array).filter(|m| !m.is_empty()).cloned().ok_or_else(|| arg_error("Argument 'MESSAGES' is null or empty"))?;
        let mut results = Vec::new();
        for m in &messages {
            let (Some(user), Some(message), Some(chat)) = (m.get("user"), m.get("message"), m.get("chat")) else {
                return Err(arg_error("The incorrect structure of a message inside MESSAGES parameter"));
            };
            let refuse = |why: &str| json!({ "SUCCESS": false, "ERRORS": [why] });
            let (user_id, external_chat, message_id) = (user.get("id").and_then(scalar), chat.get("id").and_then(scalar), message.get("id").and_then(scalar));
            let (Some(_), Some(external_chat), Some(message_id)) = (user_id, external_chat, message_id) else {
                results.push(refuse("user.id, message.id and chat.id are required"));
                continue;
            };
            let text = message.get("text").and_then(Value::as_str).map(str::to_owned);
            let files = message.get("files").and_then(Value::as_array).cloned();
            if revision == Revision::Update && text.as_deref().unwrap_or("").is_empty() && files.as_ref().is_none_or(Vec::is_empty) {
                results.push(refuse("You must pass either the text or files element"));
                continue;
            }
            let Some(chat) = self.chats.iter().find(|c| c.portal == grant.member_id && c.connector == connector && c.line == line && c.external_chat_id == external_chat).cloned() else {
                results.push(refuse("Chat not found"));
                continue;
            };
            let found = self.ol_messages.iter_mut().find(|o| o.chat_id == chat.id && o.external_id.as_deref() == Some(message_id.as_str()) && !o.deleted);
            let Some(found) = found else {
                results.push(refuse("Message not found"));
                continue;
            };
            let chat_block = json!({ "id": external_chat, "name": chat.user_name });
            match revision {
                Revision::Update => {
                    if let Some(text) = text {
                        found.shown = show(&text);
                        found.text = text;
                    }
                    if let Some(files) = files {
                        found.files = files;
                    }
                    found.edited = true;
                    results.push(json!({
                        "user": chat.id.to_string(), "chat": chat_block, "SUCCESS": true,
                        "message": { "id": message_id, "date": {}, "text": found.text.clone(), "files": found.files.clone() },
                    }));
                }
                Revision::Delete => {
                    (found.deleted, found.text, found.shown, found.files) = (true, String::new(), show(""), Vec::new());
                    results.push(json!({ "user": chat.id.to_string(), "message": { "id": message_id }, "chat": { "id": external_chat }, "SUCCESS": true }));
                }
            }
        }
        Ok(json!({ "SUCCESS": true, "DATA": { "RESULT": results } }))
    }

    fn record_exists(&self, grant: &Grant, params: &Params) -> bool {
        let kind = text_param(params, "CRM_ENTITY_TYPE").and_then(|k| EntityType::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(&k)));
        let id = number(params.get("CRM_ENTITY"));
        self.portal(&grant.member_id).is_ok_and(|p| kind.zip(id).is_some_and(|key| p.records.contains_key(&key)))
    }

    fn crm_entity(&self, grant: &Grant, params: &Params) -> Result<(EntityType, u64), RestError> {
        let kind = required(params, "CRM_ENTITY_TYPE")?;
        let id = required_id(params, "CRM_ENTITY")?;
        let kind = EntityType::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(&kind)).ok_or_else(|| arg_error("Argument 'CRM_ENTITY_TYPE' is null or empty"))?;
        let portal = self.portal(&grant.member_id)?;
        if !portal.records.contains_key(&(kind, id)) || !portal.can_read(grant.user_id, kind, id) {
            return Err(access_denied("Access denied! You don't have access to this action"));
        }
        Ok((kind, id))
    }

    /// `imopenlines-crm-chat-get.md`: the chats bound to a record.
    /// "Returns an empty array if no object with the specified CRM_ENTITY exists".
    fn crm_chats(&self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        let entity = match self.crm_entity(grant, params) {
            Err(e) if e.code == "ACCESS_DENIED" && !self.record_exists(grant, params) => return Ok(json!([])),
            other => other?,
        };
        let installation = &self.portal(&grant.member_id)?.installation;
        let rows = self.chats.iter().filter(|c| c.portal == grant.member_id && c.crm == Some(entity)).map(|c| {
            let title = installation.connectors.get(&c.connector).and_then(|r| r.get("NAME")).cloned().unwrap_or(Value::Null);
            json!({ "CHAT_ID": c.id.to_string(), "CONNECTOR_ID": c.connector, "CONNECTOR_TITLE": title })
        });
        Ok(Value::Array(rows.collect()))
    }

    /// `imopenlines-crm-chat-user-add.md`: `CHAT_NOT_IN_CRM` when the chat is not bound to the
    /// record, `WRONG_REQUEST` when the user is in the chat already, `CRM_CHAT_USER_NOT_ACTIVE`
    /// for an unknown or inactive user; without `CHAT_ID`, the record's last chat.
    fn chat_user_add(&mut self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        let entity = self.crm_entity(grant, params)?;
        let user = required_id(params, "USER_ID").map_err(|_| arg_error("Argument 'Empty USER_ID' is null or empty"))?;
        let active = self.portal(&grant.member_id)?.user(user).is_some_and(|u| u["ACTIVE"] == true);
        if !active {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "CRM_CHAT_USER_NOT_ACTIVE", "User not active"));
        }
        let not_in_crm = || RestError::new(StatusCode::BAD_REQUEST, "CHAT_NOT_IN_CRM", "Chat does not belong to the CRM object being checked");
        let chat = match number(params.get("CHAT_ID")) {
            Some(chat_id) => self.chats.iter_mut().find(|c| c.id == chat_id && c.portal == grant.member_id && c.crm == Some(entity)),
            None => self.chats.iter_mut().rev().find(|c| c.portal == grant.member_id && c.crm == Some(entity)),
        };
        let chat = chat.ok_or_else(not_in_crm)?;
        if chat.members.contains(&user) {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "WRONG_REQUEST", "You don't have access or user already member in chat"));
        }
        chat.members.push(user);
        // "result: the chat's identifier".
        Ok(json!(chat.id))
    }

    /// `imopenlines-dialog-get.md`: by `CHAT_ID`, `DIALOG_ID` or `USER_CODE`; `entity_data_2`
    /// names the CRM records bound to the dialog.
    fn dialog(&self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        let by_id = number(params.get("CHAT_ID")).or_else(|| text_param(params, "DIALOG_ID")?.strip_prefix("chat")?.parse().ok());
        let by_session = number(params.get("SESSION_ID"));
        let user_code = text_param(params, "USER_CODE");
        let code = |c: &SimChat| format!("{}|{}|{}|{}", c.connector, c.line, c.external_chat_id, c.external_user_id);
        let chat = self.chats.iter().find(|c| c.portal == grant.member_id && (Some(c.id) == by_id || Some(c.session_id) == by_session || user_code.as_deref() == Some(code(c).as_str())));
        let chat = chat.ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "ACCESS_ERROR", "You do not have access to the specified dialog"))?;
        let bound = |kind: EntityType| chat.crm.filter(|(k, _)| *k == kind).map(|(_, id)| id).unwrap_or(0);
        Ok(json!({
            "id": chat.id, "name": chat.user_name, "type": "lines", "entity_type": "LINES", "entity_id": code(chat),
            "entity_data_2": format!("LEAD|{}|COMPANY|{}|CONTACT|{}|DEAL|{}", bound(EntityType::Lead), bound(EntityType::Company),
                bound(EntityType::Contact), bound(EntityType::Deal)),
            "dialog_id": format!("chat{}", chat.id), "manager_list": chat.members,
        }))
    }

    /// `im-message-add.md`: "a user with permission to send messages in chat" — here, one of
    /// the chat's members; `ACCESS_ERROR` otherwise.
    fn im_message_add(&mut self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        let dialog = required(params, "DIALOG_ID")?;
        if let Ok(to) = dialog.parse::<u64>() {
            return self.private_message(grant, to, params);
        }
        let chat_id = dialog.strip_prefix("chat").and_then(|c| c.parse::<u64>().ok()).ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "CHAT_ID", "Error creating message"))?;
        let text = text_param(params, "MESSAGE").filter(|t| !t.trim().is_empty()).ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "MESSAGE_EMPTY", "Message can't be empty"))?;
        let chat = self.chats.iter().find(|c| c.id == chat_id && c.portal == grant.member_id).ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "CHAT_ID", "Error creating message"))?;
        if !chat.members.contains(&grant.user_id) {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "ACCESS_ERROR", "Action unavailable"));
        }
        let id = self.next_id();
        let system = text_param(params, "SYSTEM").is_some_and(|s| s == "Y");
        let author = if system { "System".to_owned() } else { self.employee_name(&grant.member_id, grant.user_id).unwrap_or_default() };
        self.ol_messages.push(OlMessage {
            id, portal: grant.member_id.clone(), chat_id, direction: if system { "system" } else { "outgoing" }, author,
            author_id: (!system).then_some(grant.user_id), shown: show(&text), text, files: Vec::new(), external_id: None, delivered: false, read: false, delivered_ids: Vec::new(), edited: false, deleted: false,
        });
        Ok(json!(id))
    }

    /// `im-message-add.md`: a `DIALOG_ID` that is a user's id writes in the private chat
    /// between the caller and that user.
    fn private_message(&mut self, grant: &Grant, to: u64, params: &Params) -> Result<Value, RestError> {
        if self.portal(&grant.member_id)?.user(to).is_none() {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "USER_NOT_FOUND", "User not found"));
        }
        let text = text_param(params, "MESSAGE").filter(|t| !t.trim().is_empty()).ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "MESSAGE_EMPTY", "Message can't be empty"))?;
        let id = self.next_id();
        self.private_messages.push(super::state::PrivateMessage { id, portal: grant.member_id.clone(), from: grant.user_id, to, text });
        Ok(json!(id))
    }

    /// `im-notify-system-add.md`: a system notification to any user, with an app's token.
    fn notify(&mut self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        let user_id = number(params.get("USER_ID")).filter(|&u| u > 0).ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "USER_ID_EMPTY", "User ID can't be empty"))?;
        let message = text_param(params, "MESSAGE").map(|m| m.trim().to_owned()).filter(|m| !m.is_empty());
        let message = message.ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "MESSAGE_EMPTY", "Message can't be empty"))?;
        let id = self.next_id();
        self.notifications.push(super::state::Notification { id, portal: grant.member_id.clone(), user_id, message });
        Ok(json!(id))
    }

    /// An employee writes into an Open Line chat and becomes one of its members; the connector
    /// gets `OnImConnectorMessageAdd`, the text signed when it was registered with `NEED_SIGNATURE`.
    pub(super) fn operator_writes(&mut self, chat_id: u64, user_id: u64, text: &str) -> Result<(u64, Caused), RestError> {
        let chat = self.chats.iter().find(|c| c.id == chat_id).cloned().ok_or_else(|| arg_error("No such chat"))?;
        let name = self.employee_name(&chat.portal, user_id).ok_or_else(|| arg_error("No such employee"))?;
        let id = self.next_id();
        let registered = self.installation(&chat.portal)?.connectors.get(&chat.connector).cloned();
        let shown = if connector_flag(registered.as_ref(), "NEED_SIGNATURE", true) { signature(&name, text) } else { text.to_owned() };
        if let Some(c) = self.chats.iter_mut().find(|c| c.id == chat_id).filter(|c| !c.members.contains(&user_id)) {
            c.members.push(user_id);
        }
        self.ol_messages.push(OlMessage {
            id, portal: chat.portal.clone(), chat_id, direction: "outgoing", author: name, author_id: Some(user_id),
            text: text.to_owned(), shown: show(text), files: Vec::new(), external_id: None, delivered: false, read: false, delivered_ids: Vec::new(), edited: false, deleted: false,
        });
        Ok((id, vec![(chat.portal.clone(), "OnImConnectorMessageAdd", connector_message_event(&chat, id, user_id, &shown))]))
    }

    /// An operator edits (`text`) or deletes (`None`) what they wrote in an Open Line chat; the
    /// connector gets `OnImConnectorMessageUpdate` (the new text, signed as when written) or
    /// `OnImConnectorMessageDelete`, naming it by the ids it gave on delivery. Neither is
    /// raised for a message the connector sent ("The event does not trigger ... when a
    /// message sent from the external system channel is modified").
    pub(super) fn operator_revises(&mut self, message_id: u64, text: Option<&str>) -> Result<Caused, RestError> {
        let message = self.ol_messages.iter().find(|m| m.id == message_id && !m.deleted).cloned().ok_or_else(|| arg_error("No such message"))?;
        let Some(author) = message.author_id.filter(|_| message.external_id.is_none() && message.direction == "outgoing") else {
            return Err(arg_error("Only an operator's own message is edited or deleted here"));
        };
        let chat = self.chats.iter().find(|c| c.id == message.chat_id).cloned().ok_or_else(|| arg_error("No such chat"))?;
        let registered = self.installation(&chat.portal)?.connectors.get(&chat.connector).cloned();
        let name = self.employee_name(&chat.portal, author).unwrap_or_default();
        let found = self.ol_messages.iter_mut().find(|m| m.id == message_id).ok_or_else(|| arg_error("No such message"))?;
        let line = chat.line.parse::<u64>().map(Value::from).unwrap_or_else(|_| json!(chat.line));
        let im = json!({ "chat_id": chat.id, "message_id": message_id });
        let (event, data) = match text {
            Some(text) => {
                (found.text, found.shown, found.edited) = (text.to_owned(), show(text), true);
                let sent = if connector_flag(registered.as_ref(), "NEED_SIGNATURE", true) { signature(&name, text) } else { text.to_owned() };
                let item = json!({ "im": im, "message": { "id": message.delivered_ids, "text": sent }, "chat": { "id": chat.external_chat_id } });
                ("OnImConnectorMessageUpdate", json!({ "CONNECTOR": chat.connector, "LINE": line, "MESSAGES": [item] }))
            }
            None => {
                (found.deleted, found.text, found.shown, found.files) = (true, String::new(), show(""), Vec::new());
                // on-im-connector-message-delete.md: `message.id` is one string here, not a list.
                let id = message.delivered_ids.first().cloned().unwrap_or_default();
                let item = json!({ "im": im, "message": { "id": id }, "chat": { "id": chat.external_chat_id } });
                ("OnImConnectorMessageDelete", json!({ "CONNECTOR": chat.connector, "LINE": line, "MESSAGES": [item] }))
            }
        };
        Ok(vec![(chat.portal.clone(), event, data)])
    }

    /// An administrator turns our connectors off on a line (`OnImConnectorStatusDelete`, data
    /// `{connector, line}`) or deletes the line (`OnImConnectorLineDelete`, data: the line's id).
    pub(super) fn disconnect_line(&mut self, member_id: &str, line: &str, delete_line: bool) -> Caused {
        let Ok(portal) = self.portal_mut(member_id) else { return Vec::new() };
        if delete_line {
            portal.lines.retain(|l| scalar(&l["ID"]).as_deref() != Some(line));
        }
        let install = &mut portal.installation;
        let connectors: Vec<String> = install.active.iter().filter(|(_, l)| l == line).map(|(c, _)| c.clone()).collect();
        install.active.retain(|(_, l)| l != line);
        let line_id = line.parse::<u64>().map(Value::from).unwrap_or_else(|_| json!(line));
        if delete_line {
            return vec![(member_id.to_owned(), "OnImConnectorLineDelete", line_id)];
        }
        connectors.into_iter().map(|c| (member_id.to_owned(), "OnImConnectorStatusDelete", json!({ "connector": c, "line": line_id }))).collect()
    }
}

/// What `imconnector.update.messages` / `.delete.messages` do to a message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Revision {
    Update,
    Delete,
}

/// `OnImConnectorMessageAdd` data for one message written in the chat, as the docs show it.
fn connector_message_event(chat: &SimChat, message_id: u64, user_id: u64, text: &str) -> Value {
    json!({
        "CONNECTOR": chat.connector, "LINE": chat.line.parse::<u64>().map(Value::from).unwrap_or_else(|_| json!(chat.line)),
        "MESSAGES": [{
            "im": { "chat_id": chat.id, "message_id": message_id },
            "message": { "user_id": user_id, "text": text },
            "chat": { "id": chat.external_chat_id },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_must_be_the_apps_own_urls() {
        let app = "http://127.0.0.1:8080";
        assert!(under_app("http://127.0.0.1:8080/bitrix/events", app));
        for foreign in ["http://127.0.0.1:8080@evil.example/bitrix/events", "http://127.0.0.1:80801/x", "https://127.0.0.1:8080/x", "http://evil.example/", "not a url"] {
            assert!(!under_app(foreign, app), "{foreign}");
        }
    }
}
