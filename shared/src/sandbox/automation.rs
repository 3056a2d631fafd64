//! The sandbox portal's automation methods, each as b24restdocs documents it: robots
//! (`api-reference/bizproc/bizproc-robot/bizproc-robot-add.md`, `-update.md`, `-list.md`,
//! `-delete.md`), workflow actions (`api-reference/bizproc/bizproc-activity/bizproc-activity-add.md`,
//! `-update.md`, `-list.md`, `-delete.md`, `-log.md`), the results a run sends back
//! (`bizproc-robot/bizproc-event-send.md`), and message providers
//! (`api-reference/messageservice/messageservice-sender-add.md`, `-update.md`, `-list.md`,
//! `-delete.md`, `messageservice-message-status-update.md`). What Bitrix24 does with them (it
//! calls their handlers) is in `automation_runs`.

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::openlines::under_app;
use super::state::{Answer, Automation, Grant, Params, PortalState, RestError, RobotRun, Sender, access_denied, flag, text_param};

/// The registration fields of a robot or an action (`bizproc-robot-add.md`, `bizproc-activity-add.md`).
const AUTOMATION_FIELDS: [&str; 11] = [
    "HANDLER", "AUTH_USER_ID", "USE_SUBSCRIPTION", "NAME", "DESCRIPTION", "PROPERTIES", "RETURN_PROPERTIES", "DOCUMENT_TYPE", "FILTER",
    "USE_PLACEMENT", "PLACEMENT_HANDLER",
];
/// What `messageservice.sender.update` may change (`messageservice-sender-update.md`).
const SENDER_UPDATABLE: [&str; 3] = ["HANDLER", "NAME", "DESCRIPTION"];
/// `messageservice-message-status-update.md`: the statuses a provider may report.
pub const MESSAGE_STATUSES: [&str; 5] = ["queued", "sent", "delivered", "undelivered", "failed"];

/// A robot (`IS_ROBOT` Y) or a workflow action (N): one model, two method families
/// (`bizproc-activity/index.md`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Robot,
    Activity,
}

impl Kind {
    fn is_robot(self) -> bool {
        self == Kind::Robot
    }

    /// The pages word this refusal differently: `bizproc-robot-add.md`, `bizproc-activity-add.md`.
    fn already_installed(self) -> &'static str {
        match self {
            Kind::Robot => "Activity or Automation rule already installed!",
            Kind::Activity => "Activity or Robot already installed!",
        }
    }
}

/// The robot and action pages answer every refusal with HTTP 400, `ACCESS_DENIED` included
/// (`bizproc-robot-list.md`'s example: 400 `ACCESS_DENIED` "Access denied!").
fn bizproc_error(code: &'static str, text: impl Into<String>) -> RestError {
    RestError::new(StatusCode::BAD_REQUEST, code, text)
}

fn invalid_activity(text: impl Into<String>) -> RestError {
    bizproc_error("ERROR_ACTIVITY_VALIDATION_FAILURE", text)
}

fn invalid_sender(text: &str) -> RestError {
    RestError::new(StatusCode::BAD_REQUEST, "ERROR_SENDER_VALIDATION_FAILURE", text)
}

/// `bizproc-event-send.md`: 403 `ACCESS_DENIED` "Access denied!" for a token that is not valid
/// and current. `bizproc-activity-log.md` gives no status for the same refusal: the one of
/// `bizproc.event.send`, whose token rule it shares, is taken.
fn token_refused() -> RestError {
    access_denied("Access denied!")
}

/// Parameter names as given, upper-cased: the docs write them both ways (`EVENT_TOKEN` in
/// `bizproc-event-send.md`'s table, `event_token` in its curl example), and Bitrix24 takes both.
fn upper_keys(params: &Params) -> Params {
    params.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("auth")).map(|(k, v)| (k.to_ascii_uppercase(), v.clone())).collect()
}

/// `CODE`: "Allowed characters are `a-z`, `A-Z`, `0-9`, dot, hyphen, and underscore `_`"
/// (`bizproc-robot-add.md`, `messageservice-sender-add.md`).
fn valid_code(code: &str) -> bool {
    !code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// A property's system name "must start with a letter and can contain characters `a-z`,
/// `A-Z`, `0-9`, and underscore `_`" (`bizproc-robot-add.md`).
fn valid_property_key(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic()) && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A name given as a string or as localized strings (`NAME`: "a string or an associative
/// array of localized strings"): whether it says anything.
fn has_text(value: Option<&Value>) -> bool {
    match value {
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Object(names)) => names.values().any(|n| n.as_str().is_some_and(|s| !s.trim().is_empty())),
        _ => false,
    }
}

/// `HANDLER`: http or https (`ERROR_UNSUPPORTED_PROTOCOL`), and "the same domain where the
/// application is installed". The sandbox's app answers on loopback, so, as for
/// `placement.bind` here, only URLs under the app's own are taken (`ERROR_WRONG_HANDLER_URL`).
fn check_handler(handler: &str, app_url: &str) -> Result<(), RestError> {
    let wrong = || bizproc_error("ERROR_WRONG_HANDLER_URL", "Wrong handler URL");
    let url = url::Url::parse(handler).map_err(|_| wrong())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bizproc_error("ERROR_UNSUPPORTED_PROTOCOL", "Unsupported handler protocol"));
    }
    if under_app(handler, app_url) { Ok(()) } else { Err(wrong()) }
}

/// `PROPERTIES` / `RETURN_PROPERTIES`: an object of named properties ("Wrong properties
/// array!", "Wrong property key <key>!", "Empty property NAME <key>!"). An empty array passes:
/// it is how PHP clients send an empty object (the PHP SDK example of `bizproc-robot-add.md`
/// passes `[]`).
fn check_properties(value: &Value) -> Result<(), RestError> {
    let properties = match value {
        Value::Object(properties) => properties,
        Value::Array(items) if items.is_empty() => return Ok(()),
        _ => return Err(invalid_activity("Wrong properties array!")),
    };
    for (key, property) in properties {
        if !valid_property_key(key) {
            return Err(invalid_activity(format!("Wrong property key {key}!")));
        }
        if !has_text(property.get("Name")) {
            return Err(invalid_activity(format!("Empty property NAME {key}!")));
        }
    }
    Ok(())
}

/// `DOCUMENT_TYPE`: "Consists of three string-type elements".
fn valid_document_type(value: &Value) -> bool {
    value.as_array().is_some_and(|parts| parts.len() == 3 && parts.iter().all(|p| p.as_str().is_some_and(|s| !s.is_empty())))
}

/// `FILTER`: an object with `INCLUDE` and/or `EXCLUDE`, each an array of rules, a rule "a
/// string or an array of document types". Other keys are not documented: refused, the
/// stricter reading.
fn valid_filter(value: &Value) -> bool {
    let rule_ok = |rule: &Value| rule.is_string() || rule.as_array().is_some_and(|parts| parts.iter().all(Value::is_string));
    value.as_object().is_some_and(|filter| {
        filter.iter().all(|(key, rules)| matches!(key.as_str(), "INCLUDE" | "EXCLUDE") && rules.as_array().is_some_and(|r| r.iter().all(rule_ok)))
    })
}

/// A whole registration, as `bizproc.robot.add` and `bizproc.activity.add` hold it to their
/// error tables (and `…update` its result).
fn check_registration(fields: &Params, app_url: &str) -> Result<(), RestError> {
    check_handler(&text_param(fields, "HANDLER").unwrap_or_default(), app_url)?;
    // "PLACEMENT_HANDLER ... Required if USE_PLACEMENT = 'Y'": the pages give no code for it
    // missing or foreign; the handler's own codes are taken.
    if flag(fields, "USE_PLACEMENT") == Some(true) || fields.contains_key("PLACEMENT_HANDLER") {
        check_handler(&text_param(fields, "PLACEMENT_HANDLER").unwrap_or_default(), app_url)?;
    }
    if !has_text(fields.get("NAME")) {
        return Err(invalid_activity("Empty activity NAME!"));
    }
    for key in ["PROPERTIES", "RETURN_PROPERTIES"] {
        if let Some(properties) = fields.get(key) {
            check_properties(properties)?;
        }
    }
    if fields.get("FILTER").is_some_and(|f| !valid_filter(f)) {
        return Err(invalid_activity("Wrong activity FILTER!"));
    }
    if fields.get("DOCUMENT_TYPE").is_some_and(|d| !valid_document_type(d)) {
        return Err(invalid_activity("Wrong activity DOCUMENT_TYPE!"));
    }
    Ok(())
}

/// The documented fields among `params`.
fn documented(params: &Params, names: &[&str]) -> Params {
    params.iter().filter(|(k, _)| names.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// `CODE` of the robot and action pages: "Empty activity code!", "Wrong activity code!".
fn activity_code(params: &Params) -> Result<String, RestError> {
    let code = text_param(params, "CODE").filter(|c| !c.trim().is_empty()).ok_or_else(|| invalid_activity("Empty activity code!"))?;
    if valid_code(&code) { Ok(code) } else { Err(invalid_activity("Wrong activity code!")) }
}

/// `CODE` of the provider pages: "Empty sender code!", "Wrong sender code!".
fn sender_code(params: &Params) -> Result<String, RestError> {
    let code = text_param(params, "CODE").filter(|c| !c.trim().is_empty()).ok_or_else(|| invalid_sender("Empty sender code!"))?;
    if valid_code(&code) { Ok(code) } else { Err(invalid_sender("Wrong sender code!")) }
}

impl PortalState {
    /// The automation and message provider methods; `None` for a method that is not one of them.
    pub(super) fn automation_call(&mut self, grant: &Grant, method: &str, params: &Params, app_url: &str) -> Option<Result<Answer, RestError>> {
        let params = &upper_keys(params);
        let answer = match method {
            "bizproc.robot.add" => self.automation_add(grant, Kind::Robot, params, app_url),
            "bizproc.robot.update" => self.automation_update(grant, Kind::Robot, params, app_url, "Activity or Automation Rule not found!"),
            "bizproc.robot.list" => self.automation_list(grant, Kind::Robot),
            "bizproc.robot.delete" => self.automation_delete(grant, Kind::Robot, params, "Activity or Robot not found!"),
            "bizproc.activity.add" => self.automation_add(grant, Kind::Activity, params, app_url),
            "bizproc.activity.update" => self.automation_update(grant, Kind::Activity, params, app_url, "Activity or Automation rule not found!"),
            "bizproc.activity.list" => self.automation_list(grant, Kind::Activity),
            "bizproc.activity.delete" => self.automation_delete(grant, Kind::Activity, params, "Activity or Automation rule not found!"),
            "bizproc.activity.log" => self.activity_log(grant, params),
            "bizproc.event.send" => self.event_send(grant, params),
            "messageservice.sender.add" => self.sender_add(grant, params, app_url),
            "messageservice.sender.update" => self.sender_update(grant, params, app_url),
            "messageservice.sender.list" => self.sender_list(grant),
            "messageservice.sender.delete" => self.sender_delete(grant, params),
            "messageservice.message.status.update" => self.message_status_update(grant, params),
            _ => return None,
        };
        Some(answer.map(Answer::from))
    }

    /// "Works only in the context of an application" and "Who can execute the method:
    /// administrator", refused in the pages' words with `status`. Every sandbox token is an
    /// app's; the check is on the grant's app, so a webhook's grant would be refused.
    fn app_administrator(&self, grant: &Grant, status: StatusCode) -> Result<(), RestError> {
        app_context(grant, status)?;
        if self.portal(&grant.member_id)?.is_admin(grant.user_id) {
            Ok(())
        } else {
            Err(RestError::new(status, "ACCESS_DENIED", "Access denied!"))
        }
    }

    fn automations(&mut self, grant: &Grant) -> Result<&mut Vec<Automation>, RestError> {
        Ok(&mut self.installation(&grant.member_id)?.automations)
    }

    /// `bizproc.robot.add` / `bizproc.activity.add`.
    fn automation_add(&mut self, grant: &Grant, kind: Kind, params: &Params, app_url: &str) -> Result<Value, RestError> {
        self.app_administrator(grant, StatusCode::BAD_REQUEST)?;
        if params.is_empty() {
            return Err(invalid_activity("Empty data!"));
        }
        let code = activity_code(params)?;
        let fields = documented(params, &AUTOMATION_FIELDS);
        check_registration(&fields, app_url)?;
        let automations = self.automations(grant)?;
        // Robots and actions "use a common internal mechanism, so it is important to consider
        // overlaps in codes" (`bizproc-activity/index.md`): one code per app across both.
        if automations.iter().any(|a| a.app == grant.app && a.code == code) {
            return Err(bizproc_error("ERROR_ACTIVITY_ALREADY_INSTALLED", kind.already_installed()));
        }
        automations.push(Automation { app: grant.app.clone(), code, is_robot: kind.is_robot(), fields });
        Ok(Value::Bool(true))
    }

    /// `bizproc.robot.update` / `bizproc.activity.update`: `CODE` and the `FIELDS` to change.
    fn automation_update(&mut self, grant: &Grant, kind: Kind, params: &Params, app_url: &str, not_found: &str) -> Result<Value, RestError> {
        self.app_administrator(grant, StatusCode::BAD_REQUEST)?;
        let code = activity_code(params)?;
        let changes = params.get("FIELDS").and_then(Value::as_object).map(|f| documented(f, &AUTOMATION_FIELDS)).unwrap_or_default();
        let automation = self.automations(grant)?.iter_mut().find(|a| a.app == grant.app && a.code == code && a.is_robot == kind.is_robot());
        let automation = automation.ok_or_else(|| bizproc_error("ERROR_ACTIVITY_NOT_FOUND", not_found))?;
        if changes.is_empty() {
            return Err(invalid_activity("No fields to update"));
        }
        let mut updated = automation.fields.clone();
        updated.extend(changes);
        check_registration(&updated, app_url)?;
        automation.fields = updated;
        Ok(Value::Bool(true))
    }

    /// `bizproc.robot.list` / `bizproc.activity.list`: the app's codes of that kind.
    fn automation_list(&mut self, grant: &Grant, kind: Kind) -> Result<Value, RestError> {
        self.app_administrator(grant, StatusCode::BAD_REQUEST)?;
        let codes = self.automations(grant)?.iter().filter(|a| a.app == grant.app && a.is_robot == kind.is_robot()).map(|a| Value::String(a.code.clone()));
        Ok(Value::Array(codes.collect()))
    }

    /// `bizproc.robot.delete` / `bizproc.activity.delete`.
    fn automation_delete(&mut self, grant: &Grant, kind: Kind, params: &Params, not_found: &str) -> Result<Value, RestError> {
        self.app_administrator(grant, StatusCode::BAD_REQUEST)?;
        let code = activity_code(params)?;
        let automations = self.automations(grant)?;
        let index = automations.iter().position(|a| a.app == grant.app && a.code == code && a.is_robot == kind.is_robot());
        automations.remove(index.ok_or_else(|| bizproc_error("ERROR_ACTIVITY_NOT_FOUND", not_found))?);
        Ok(Value::Bool(true))
    }

    /// The run an `EVENT_TOKEN` names, when it may still be answered: "valid and current"
    /// (`bizproc-event-send.md`), and only for a run that waits ("An event can be sent if the
    /// Automation rule or action is registered with `'USE_SUBSCRIPTION': 'Y'`"). The docs are
    /// silent on another app's token: refused, the stricter reading.
    fn waiting_run(&mut self, grant: &Grant, params: &Params) -> Result<&mut RobotRun, RestError> {
        let token = text_param(params, "EVENT_TOKEN").unwrap_or_default();
        self.robot_runs
            .iter_mut()
            .find(|r| !token.is_empty() && r.event_token == token && r.member_id == grant.member_id && r.app == grant.app && r.status == "waiting")
            .ok_or_else(token_refused)
    }

    /// `bizproc.event.send`: the run's `RETURN_VALUES` and `LOG_MESSAGE`; the run goes on
    /// (completed). Values of keys not registered in `RETURN_PROPERTIES` are dropped (the docs
    /// speak of those only: the stricter reading). A missing `LOG_MESSAGE` "sends an empty
    /// string", which the log shows as nothing.
    fn event_send(&mut self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        let run = self.waiting_run(grant, params)?;
        let values = params.get("RETURN_VALUES").and_then(Value::as_object).cloned().unwrap_or_default();
        run.return_values = values.into_iter().filter(|(k, _)| run.return_keys.contains(k)).collect::<Map<_, _>>();
        if let Some(message) = text_param(params, "LOG_MESSAGE").filter(|m| !m.is_empty()) {
            run.log.push(message);
        }
        run.status = "completed";
        Ok(Value::Bool(true))
    }

    /// `bizproc.activity.log`: `LOG_MESSAGE` into the run's log ("Empty log message!"); the
    /// token as for `bizproc.event.send` ("Logging is possible if the `USE_SUBSCRIPTION`
    /// parameter is set to `'Y'`"); the run keeps waiting.
    fn activity_log(&mut self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        let message = text_param(params, "LOG_MESSAGE").filter(|m| !m.trim().is_empty());
        let message = message.ok_or_else(|| bizproc_error("ERROR_EMPTY_LOG_MESSAGE", "Empty log message!"))?;
        self.waiting_run(grant, params)?.log.push(message);
        Ok(Value::Bool(true))
    }

    fn senders(&mut self, grant: &Grant) -> Result<&mut Vec<Sender>, RestError> {
        Ok(&mut self.installation(&grant.member_id)?.senders)
    }

    /// `messageservice.sender.add`: `CODE`, `TYPE` (`SMS` only), `HANDLER`, `NAME`. Refusals are
    /// 400, `ACCESS_DENIED` 403 (the page: "HTTP status: 400, 403").
    fn sender_add(&mut self, grant: &Grant, params: &Params, app_url: &str) -> Result<Value, RestError> {
        self.app_administrator(grant, StatusCode::FORBIDDEN)?;
        if params.is_empty() {
            return Err(invalid_sender("Empty data!"));
        }
        let code = sender_code(params)?;
        if !has_text(params.get("NAME")) {
            return Err(invalid_sender("Empty sender NAME!"));
        }
        match text_param(params, "TYPE").filter(|t| !t.is_empty()) {
            None => return Err(invalid_sender("Empty sender message TYPE!")),
            Some(t) if t != "SMS" => return Err(invalid_sender("Unknown sender message TYPE!")),
            Some(_) => {}
        }
        // The page lists no refusal of a missing or foreign HANDLER: the codes the robot pages
        // give the same rule are taken.
        check_handler(&text_param(params, "HANDLER").unwrap_or_default(), app_url)?;
        let senders = self.senders(grant)?;
        if senders.iter().any(|s| s.app == grant.app && s.code == code) {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "ERROR_SENDER_ALREADY_INSTALLED", "Sender already installed!"));
        }
        senders.push(Sender { app: grant.app.clone(), code, fields: documented(params, &["TYPE", "HANDLER", "NAME", "DESCRIPTION"]) });
        Ok(Value::Bool(true))
    }

    /// `messageservice.sender.update`: `CODE` and at least one of `HANDLER`, `NAME`, `DESCRIPTION`.
    fn sender_update(&mut self, grant: &Grant, params: &Params, app_url: &str) -> Result<Value, RestError> {
        self.app_administrator(grant, StatusCode::FORBIDDEN)?;
        let refusal = |code, text: &str| RestError::new(StatusCode::BAD_REQUEST, code, text);
        let code = text_param(params, "CODE").filter(|c| !c.trim().is_empty()).ok_or_else(|| refusal("ERROR_SENDER_CODE_REQUIRED", "CODE is required!"))?;
        let changes = documented(params, &SENDER_UPDATABLE);
        if changes.is_empty() {
            return Err(refusal("ERROR_SENDER_OTHER_PARAMS_REQUIRED", "At least one other parameter is required!"));
        }
        if let Some(handler) = changes.get("HANDLER") {
            check_handler(handler.as_str().unwrap_or_default(), app_url)?;
        }
        // Silent on an empty new NAME: refused as `messageservice.sender.add` refuses one.
        if changes.contains_key("NAME") && !has_text(changes.get("NAME")) {
            return Err(invalid_sender("Empty sender NAME!"));
        }
        let sender = self.senders(grant)?.iter_mut().find(|s| s.app == grant.app && s.code == code);
        sender.ok_or_else(|| refusal("ERROR_SENDER_NOT_FOUND", "Sender not found!"))?.fields.extend(changes);
        Ok(Value::Bool(true))
    }

    /// `messageservice.sender.list`: the app's provider codes.
    fn sender_list(&mut self, grant: &Grant) -> Result<Value, RestError> {
        self.app_administrator(grant, StatusCode::FORBIDDEN)?;
        let codes = self.senders(grant)?.iter().filter(|s| s.app == grant.app).map(|s| Value::String(s.code.clone()));
        Ok(Value::Array(codes.collect()))
    }

    /// `messageservice.sender.delete`.
    fn sender_delete(&mut self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        self.app_administrator(grant, StatusCode::FORBIDDEN)?;
        let code = sender_code(params)?;
        let senders = self.senders(grant)?;
        let index = senders.iter().position(|s| s.app == grant.app && s.code == code);
        senders.remove(index.ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "ERROR_SENDER_NOT_FOUND", "Sender not found!"))?);
        Ok(Value::Bool(true))
    }

    /// `messageservice.message.status.update`: `CODE`, `MESSAGE_ID` (one the app's provider
    /// was handed), `STATUS`; "Who can execute the method: message sender or administrator".
    fn message_status_update(&mut self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        app_context(grant, StatusCode::FORBIDDEN)?;
        let code = sender_code(params)?;
        let admin = self.portal(&grant.member_id)?.is_admin(grant.user_id);
        let message_id = text_param(params, "MESSAGE_ID").unwrap_or_default();
        let message = self.provider_messages.iter_mut().find(|m| m.member_id == grant.member_id && m.app == grant.app && m.code == code && m.message_id == message_id);
        let message = message.ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "ERROR_MESSAGE_NOT_FOUND", "Message not found!"))?;
        if !admin && message.user_id != grant.user_id {
            return Err(access_denied("Access denied!"));
        }
        let status = text_param(params, "STATUS").filter(|s| MESSAGE_STATUSES.contains(&s.as_str()));
        let status = status.ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "ERROR_MESSAGE_STATUS_INCORRECT", "Message status incorrect!"))?;
        message.history.push(status.clone());
        message.status = Some(status);
        Ok(Value::Bool(true))
    }
}

/// "Application context required": the token must be an app's, not a webhook's.
fn app_context(grant: &Grant, status: StatusCode) -> Result<(), RestError> {
    if grant.app.is_empty() { Err(RestError::new(status, "ACCESS_DENIED", "Application context required")) } else { Ok(()) }
}
