//! Telegram inside Bitrix24's own automation: our robot and workflow action "Send a Telegram
//! message" (`api-reference/bizproc/bizproc-robot/`, `…/bizproc-activity/`) and our message
//! provider (`api-reference/messageservice/`), which the card's SMS form, CRM campaigns and
//! the standard "Send SMS" robot send through.
//!
//! A call is answered at once; what it asks for becomes a request that takes a turn on its
//! account (automated messages are paced and drawn from the account's daily budgets), then a
//! message that goes through the same pipeline as the tab's. How it went is told back:
//! `bizproc.event.send` for a robot, `messageservice.message.status.update` for the provider.
//! A call Bitrix24 repeats (same `event_token` or `message_id`) sends nothing new.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::card::{ContactRecord, RecipientProblem, contact_sync, id_field, read_record, resolve};
use super::events::{decode, genuine};
use super::openlines::retryable;
use super::portal::PortalClient;
use super::send::{Admission, admit_chat, failure_text};
use super::{AppError, ErrorKind, Services, templates, uploads};
use crate::clock::now_millis;
use crate::crypto::Secret;
use crate::domain::automation::{Origin, ProviderStatus, binding_entity, document_entity, robot_status};
use crate::domain::message::{MAX_PARTS, NewMessage, TEXT_LIMIT, split_text};
use crate::domain::username::parse_im_value;
use crate::domain::{Attachment, Budget, EntityRef, Failure, Message, MessageStatus, Part, PublicationMode, RecipientKey, TelegramUser};
use crate::i18n::{Lang, text};
use crate::ports::TelegramError;
use crate::repo::automation::{AutomationRequest, ConnectorChoice, Stage};
use crate::repo::connectors::{Connector, ConnectorStatus, OverBudget};
use crate::repo::portals::Portal;
use crate::repo::safety::Counter;
use crate::repo::templates::Template;
use crate::work::Job;

/// Our robot, for automation rules (CRM automation, workflows, smart scripts).
pub const ROBOT_CODE: &str = "olchat_telegram_send";
/// The same step for the workflow designer: a code of its own, as robots and actions share one
/// mechanism (`bizproc-activity/index.md`, "consider overlaps in codes").
pub const ACTION_CODE: &str = "olchat_telegram_send_action";
pub const PROVIDER_CODE: &str = "olchat_telegram";
/// What the robot's "From" offers besides the accounts themselves.
const FROM_RESPONSIBLE: &str = "responsible";
/// What the robot's "Template" offers besides the templates (their ids are UUIDs).
pub const NO_TEMPLATE: &str = "none";
/// SQS's longest per-message delay: a request due later waits in hops of this.
const LONGEST_WAIT: Duration = Duration::from_secs(15 * 60);

/// `auth` of a call (`_includes/auth-params-in-events.md`).
#[derive(Deserialize)]
struct CallAuth {
    member_id: String,
    application_token: Option<Secret>,
    #[serde(default)]
    user_id: Option<String>,
}

impl CallAuth {
    fn user(&self) -> u64 {
        self.user_id.as_deref().and_then(|u| u.trim().parse().ok()).unwrap_or(0)
    }
}

/// What a robot or action step sends its handler (`tutorials/bizproc/activity.md`,
/// "Parse Handler Data": `document_id`, `properties`, `auth`; `bizproc-event-send.md`:
/// `event_token`; `bizproc-robot-add.md`: `USE_SUBSCRIPTION`).
#[derive(Deserialize)]
struct RobotCall {
    code: String,
    #[serde(default)]
    document_id: Vec<String>,
    event_token: String,
    #[serde(default)]
    properties: HashMap<String, String>,
    #[serde(default)]
    use_subscription: String,
    auth: CallAuth,
}

/// What the provider's handler receives (`messageservice-sender-add.md`, "What Comes to the Handler").
#[derive(Deserialize)]
struct ProviderCall {
    code: String,
    message_id: String,
    message_to: String,
    #[serde(default)]
    message_body: String,
    #[serde(default)]
    bindings: Vec<Binding>,
    #[serde(default)]
    document_id: Vec<String>,
    auth: CallAuth,
}

#[derive(Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
struct Binding {
    owner_type_id: u64,
    owner_id: u64,
}

/// A call's body: bracket-encoded as Bitrix24 posts events, or JSON as the tutorials show it
/// (`tutorials/messageservice/index.md` prints the handler's data as JSON; the docs do not
/// say which the wire carries, so both are taken).
fn decode_call<T: for<'a> Deserialize<'a>>(body: &[u8]) -> Result<T, AppError> {
    if body.trim_ascii_start().starts_with(b"{") {
        return serde_json::from_slice(body).map_err(|e| AppError::bad_request("bad_call", format!("This is not a Bitrix24 automation call: {e}.")));
    }
    decode(body)
}

async fn genuine_portal(svc: &Services, auth: &CallAuth) -> Result<Portal, AppError> {
    let portal = svc.portals.get(&auth.member_id).await?;
    genuine(svc, portal.as_ref(), auth.application_token.as_ref()).cloned().ok_or_else(|| {
        tracing::warn!(member_id = auth.member_id, "automation call refused: its application_token is not the portal's");
        AppError::new(ErrorKind::Unauthorized, "bad_application_token", "This call does not carry the portal's application_token.")
    })
}

/// What a call asks for, before it is a request.
struct Draft {
    origin: Origin,
    entity: Option<EntityRef>,
    from: ConnectorChoice,
    to: Option<String>,
    text: String,
    /// The template to fill the text from when `text` is empty.
    template_id: Option<String>,
    publication: PublicationMode,
    create_activity: bool,
    user_id: u64,
}

/// `POST /bitrix/robot`: our robot or action reached its step.
pub async fn accept_robot(svc: &Services, body: &[u8]) -> Result<(), AppError> {
    let call: RobotCall = decode_call(body)?;
    let portal = genuine_portal(svc, &call.auth).await?;
    if call.code != ROBOT_CODE && call.code != ACTION_CODE {
        return Err(AppError::bad_request("unknown_robot", format!("{:?} is not a robot of this app.", call.code)));
    }
    if call.event_token.trim().is_empty() {
        return Err(AppError::bad_request("missing_event_token", "The call carries no event_token."));
    }
    let property = |name: &str| call.properties.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let from = match property("from") {
        None => ConnectorChoice::ResponsibleLast,
        Some(id) if id == FROM_RESPONSIBLE => ConnectorChoice::ResponsibleLast,
        Some(id) => ConnectorChoice::Chosen(id),
    };
    let publication = match property("publication").as_deref() {
        Some("outgoing") => PublicationMode::Outgoing,
        Some("incoming") => PublicationMode::Incoming,
        _ => PublicationMode::None,
    };
    // `bool` properties come as Y/N (`bizproc-robot-add.md`, PROPERTY `Type`).
    let create_activity = property("activity").is_none_or(|v| matches!(v.to_ascii_lowercase().as_str(), "y" | "1" | "true"));
    let key = format!("robot-{}", digest(&call.event_token));
    let draft = Draft {
        // Only an explicit N does not wait (`bizproc-robot-add.md`, USE_SUBSCRIPTION).
        origin: Origin::Robot { code: call.code.clone(), event_token: call.event_token.clone(), waits: !call.use_subscription.eq_ignore_ascii_case("N") },
        entity: document_entity(&call.document_id),
        from,
        to: property("to"),
        text: property("text").unwrap_or_default(),
        template_id: property("template").filter(|id| id != NO_TEMPLATE),
        publication,
        create_activity,
        user_id: call.auth.user(),
    };
    receive(svc, &portal, &key, draft).await
}

/// `POST /bitrix/provider`: someone sent an "SMS" through our provider.
pub async fn accept_provider(svc: &Services, body: &[u8]) -> Result<(), AppError> {
    let call: ProviderCall = decode_call(body)?;
    let portal = genuine_portal(svc, &call.auth).await?;
    if call.code != PROVIDER_CODE {
        return Err(AppError::bad_request("unknown_provider", format!("{:?} is not a provider of this app.", call.code)));
    }
    if call.message_id.trim().is_empty() {
        return Err(AppError::bad_request("missing_message_id", "The call carries no message_id."));
    }
    let entity = call.bindings.iter().find_map(|b| binding_entity(b.owner_type_id, b.owner_id)).or_else(|| document_entity(&call.document_id));
    let key = format!("sms-{}", digest(&call.message_id));
    let draft = Draft {
        origin: Origin::Provider { code: call.code.clone(), message_id: call.message_id.clone() },
        entity,
        from: ConnectorChoice::Provider,
        to: Some(call.message_to.trim().to_owned()).filter(|t| !t.is_empty()),
        text: call.message_body.trim().to_owned(),
        template_id: None,
        // Bitrix24 keeps its own record of an SMS in the card's timeline.
        publication: PublicationMode::None,
        create_activity: false,
        user_id: call.auth.user(),
    };
    receive(svc, &portal, &key, draft).await
}

/// A key of bounded length for any token Bitrix24 sends.
fn digest(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(value.as_bytes())[..18])
}

/// Stores the request under the call's idempotency key and queues it; a repeated call finds
/// the first request and only queues it again (each step repeats harmlessly).
async fn receive(svc: &Services, portal: &Portal, key: &str, draft: Draft) -> Result<(), AppError> {
    let new_id = uuid::Uuid::new_v4().to_string();
    // User 0: no person's submit shares these keys.
    let id = svc.messages.claim_idempotency_key(&portal.member_id, 0, key, &new_id).await?;
    if id != new_id && svc.automation.get(&portal.member_id, &id).await?.is_some() {
        tracing::info!(request_id = id, "automation call repeated: nothing new is sent");
        return queue(svc, advance_job(&portal.member_id, &id), Duration::ZERO).await;
    }
    let stage = match (draft.entity, draft.text.is_empty() && draft.template_id.is_none()) {
        (_, true) => Stage::Failed { failure: Failure::EmptyText },
        (None, _) => Stage::Failed { failure: Failure::NoRecipient },
        _ => Stage::Received,
    };
    let request = AutomationRequest {
        id,
        member_id: portal.member_id.clone(),
        origin: draft.origin,
        entity: draft.entity,
        from: draft.from,
        to: draft.to,
        text: draft.text,
        template_id: draft.template_id,
        files: Vec::new(),
        publication: draft.publication,
        create_activity: draft.create_activity,
        user_id: draft.user_id,
        lang: portal.lang,
        created_at: now_millis(),
        stage,
        result_reported: false,
        status_reported: None,
    };
    svc.automation.create(&request).await?;
    tracing::info!(request_id = request.id, "automation request received");
    queue(svc, advance_job(&request.member_id, &request.id), Duration::ZERO).await
}

fn advance_job(member_id: &str, request_id: &str) -> Job {
    Job::Automate { member_id: member_id.to_owned(), request_id: request_id.to_owned() }
}

async fn queue(svc: &Services, job: Job, delay: Duration) -> Result<(), AppError> {
    job.enqueue(svc.queue.as_ref(), delay).await.map_err(|e| AppError::internal(format!("queue: {e:#}")))
}

/// Queues the portal-side step of a request again: its message changed (sent, failed, read).
pub async fn message_changed(svc: &Services, message: &Message) -> anyhow::Result<()> {
    if message.origin.is_some() {
        advance_job(&message.member_id, &message.id).enqueue(svc.queue.as_ref(), Duration::ZERO).await?;
    }
    Ok(())
}

/// The openline-worker's step of a request (`Job::Automate`): reads its record and takes its
/// turn, waits for the turn, hands it to the telegram-worker, and tells Bitrix24 how it went.
pub async fn advance(svc: &Services, member_id: &str, request_id: &str) -> Result<(), AppError> {
    let Some(mut request) = svc.automation.get(member_id, request_id).await? else {
        tracing::info!(request_id, "automation request gone");
        return Ok(());
    };
    if request.stage == Stage::Received {
        request = prepare(svc, request).await?;
    }
    if let Stage::Deferred { until, .. } = request.stage {
        if until <= now_millis() {
            request = take_turn(svc, &request).await?;
        }
    }
    report(svc, &request).await?;
    match &request.stage {
        Stage::Scheduled { connector_id, due, .. } => {
            let wait = Duration::from_millis((*due - now_millis()).max(0) as u64);
            if wait.is_zero() {
                let job = Job::SendAutomated { member_id: member_id.to_owned(), request_id: request_id.to_owned(), connector_id: connector_id.clone() };
                queue(svc, job, Duration::ZERO).await
            } else {
                queue(svc, advance_job(member_id, request_id), wait.min(LONGEST_WAIT)).await
            }
        }
        Stage::Deferred { until, .. } => {
            let wait = Duration::from_millis((*until - now_millis()).max(1) as u64);
            queue(svc, advance_job(member_id, request_id), wait.min(LONGEST_WAIT)).await
        }
        Stage::Received | Stage::Handed | Stage::Failed { .. } => Ok(()),
    }
}

/// Reads the record (its responsible employee, its client's contact points), picks the
/// account and the recipients, and takes the account's next turn.
async fn prepare(svc: &Services, request: AutomationRequest) -> Result<AutomationRequest, AppError> {
    let entity = request.entity.expect("a request without a record fails when received");
    let mut portal = PortalClient::app(svc, &request.member_id).await?;
    // An SMS names its number and its sender: its record is not read, since a campaign's
    // thousands of reads would spend the portal's REST budget (2 a second) for nothing.
    let sms_sender = match request.origin {
        Origin::Provider { .. } if request.user_id > 0 && request.to.is_some() => Some(request.user_id),
        _ => None,
    };
    // A template's text is filled from the record, its linked records and its responsible.
    let template = match request.template_id.as_deref().filter(|_| request.text.is_empty()) {
        Some(id) => match svc.templates.get(&request.member_id, id).await? {
            Some(template) => Some(template),
            None => return fail(svc, &request, Failure::TemplateGone).await,
        },
        None => None,
    };
    let record = match sms_sender {
        Some(_) => None,
        None => match read_record(&mut portal, entity, template.is_some()).await {
            Ok(record) => Some(record),
            Err(e) if retryable(&e) => return Err(e),
            Err(e) => return fail(svc, &request, Failure::Rejected { detail: e.message }).await,
        },
    };
    let filled = match (&template, &record) {
        (Some(template), Some(record)) => {
            let filled = templates::fill_from(&template.text, entity, record);
            if !filled.missing.is_empty() {
                return fail(svc, &request, Failure::TemplateUnfilled { fields: filled.missing }).await;
            }
            Some((filled.text, template.files.clone()))
        }
        _ => None,
    };
    let responsible = record.as_ref().and_then(|r| id_field(&r.fields, "ASSIGNED_BY_ID"));
    // An SMS is written by the employee who sent it; a rule's message by the record's owner.
    let author = sms_sender.or(responsible).unwrap_or(request.user_id);
    let Some(connector) = choose_connector(svc, &portal.portal, &request.from, responsible).await? else {
        return fail(svc, &request, Failure::NoConnector).await;
    };
    let recipients = recipients(svc, &portal.portal, &request, record);
    if recipients.is_empty() {
        return fail(svc, &request, Failure::NoRecipient).await;
    }
    // The account's own contacts are found without a look-up, as the tab finds them: their
    // sync starts now, ahead of this request's turn in the account's queue.
    if connector.status != ConnectorStatus::NeedsLogin {
        contact_sync(svc, &connector).await?;
    }
    let deferred = Stage::Deferred { connector_id: connector.id, recipients, author, until: now_millis() };
    let request = svc
        .automation
        .update(&request.member_id, &request.id, |r| {
            set_stage(r, deferred.clone(), &Stage::Received) && {
                if let Some((text, files)) = &filled {
                    r.text.clone_from(text);
                    r.files.clone_from(files);
                }
                true
            }
        })
        .await?;
    take_turn(svc, &request.ok_or_else(gone)?).await
}

fn gone() -> AppError {
    AppError::internal("an automation request disappeared while in use")
}

/// Moves a request from `from` to `stage`; `false` (nothing written) when it is elsewhere by now.
fn set_stage(request: &mut AutomationRequest, stage: Stage, from: &Stage) -> bool {
    if std::mem::discriminant(&request.stage) != std::mem::discriminant(from) {
        return false;
    }
    request.stage = stage;
    true
}

/// A deferred request takes the account's next turn.
async fn take_turn(svc: &Services, request: &AutomationRequest) -> Result<AutomationRequest, AppError> {
    let Stage::Deferred { connector_id, recipients, author, .. } = &request.stage else { return Ok(request.clone()) };
    let due = svc.automation.next_turn(connector_id, svc.limits.automation_pace).await?;
    svc.safety.count(connector_id, Counter::AutomationQueued).await?;
    let scheduled = Stage::Scheduled { connector_id: connector_id.clone(), recipients: recipients.clone(), author: *author, due };
    let from = request.stage.clone();
    let updated = svc.automation.update(&request.member_id, &request.id, |r| r.stage == from && { r.stage = scheduled.clone(); true }).await?;
    tracing::info!(request_id = request.id, connector_id, in_ms = due - now_millis(), "automation request scheduled");
    updated.ok_or_else(gone)
}

/// The account a request goes out from: the one chosen, else the one its responsible
/// employee used last, else the portal's only one.
async fn choose_connector(svc: &Services, portal: &Portal, from: &ConnectorChoice, responsible: Option<u64>) -> Result<Option<Connector>, AppError> {
    let connectors = svc.connectors.list(&portal.member_id).await?;
    let chosen = match from {
        ConnectorChoice::Chosen(id) => Some(id.clone()),
        ConnectorChoice::ResponsibleLast => match responsible {
            Some(user) => svc.connectors.last_used(&portal.member_id, user).await?,
            None => None,
        },
        ConnectorChoice::Provider => portal.provider_connector.clone(),
    };
    let only = (connectors.len() == 1).then(|| connectors[0].clone());
    Ok(match (chosen, from) {
        (Some(id), _) => connectors.into_iter().find(|c| c.id == id),
        (None, ConnectorChoice::Chosen(_)) => None,
        (None, _) => only,
    })
}

/// Whom to write to: the written recipient, else every Telegram contact point of the record
/// (in the order the tab shows them); the first that resolves gets the message.
fn recipients(svc: &Services, portal: &Portal, request: &AutomationRequest, record: Option<ContactRecord>) -> Vec<RecipientKey> {
    match &request.to {
        Some(to) => parse_im_value(to, svc.phone_region_of(portal)).map(RecipientKey::from).into_iter().collect(),
        None => {
            let mut keys: Vec<RecipientKey> = Vec::new();
            for point in record.map(|r| r.points).unwrap_or_default() {
                if !keys.contains(&point.key) {
                    keys.push(point.key);
                }
            }
            keys
        }
    }
}

async fn fail(svc: &Services, request: &AutomationRequest, failure: Failure) -> Result<AutomationRequest, AppError> {
    tracing::warn!(request_id = request.id, ?failure, "automation request failed");
    let failed = Stage::Failed { failure };
    let updated = svc.automation.update(&request.member_id, &request.id, |r| !matches!(r.stage, Stage::Handed | Stage::Failed { .. }) && { r.stage = failed.clone(); true }).await?;
    updated.ok_or_else(gone)
}

/// Tells Bitrix24 how the request is doing, once per news: the robot its result when its
/// message is sent or failed, the provider each new status.
async fn report(svc: &Services, request: &AutomationRequest) -> Result<(), AppError> {
    let message = match request.stage {
        Stage::Handed => svc.messages.get(&request.id).await?,
        _ => None,
    };
    let (status, failure) = match (&request.stage, &message) {
        (Stage::Failed { failure }, _) => (MessageStatus::Failed, Some(failure)),
        (Stage::Handed, Some(m)) => (m.status, m.failure.as_ref()),
        _ => (MessageStatus::Queued, None),
    };
    match &request.origin {
        Origin::Robot { event_token, waits, .. } => {
            let Some(result) = robot_status(status).filter(|_| *waits && !request.result_reported) else { return Ok(()) };
            let reason = failure.map(|f| failure_text(request.lang, f)).unwrap_or_default();
            let log = match failure {
                Some(_) => text(request.lang, "robot_log_failed", &[("reason", &reason)]),
                None => text(request.lang, "robot_log_sent", &[("recipient", message.as_ref().map_or("", |m| m.recipient_name.as_str()))]),
            };
            let params = json!({
                "EVENT_TOKEN": event_token,
                "RETURN_VALUES": { "status": result, "reason": reason, "message_id": request.id },
                "LOG_MESSAGE": log,
            });
            tell(svc, request, "bizproc.event.send", &params).await?;
            svc.automation.update(&request.member_id, &request.id, |r| !std::mem::replace(&mut r.result_reported, true)).await?;
        }
        Origin::Provider { code, message_id } => {
            let status = match (&request.stage, ProviderStatus::of(status, failure)) {
                (_, Some(status)) => status,
                (Stage::Handed, None) | (Stage::Scheduled { .. } | Stage::Deferred { .. }, _) => ProviderStatus::Queued,
                _ => return Ok(()),
            };
            // Jobs may run out of order: a status never goes back.
            if request.status_reported.is_some_and(|told| told >= status) {
                return Ok(());
            }
            let params = json!({ "CODE": code, "MESSAGE_ID": message_id, "STATUS": status.as_str() });
            tell(svc, request, "messageservice.message.status.update", &params).await?;
            if let Some(failure) = failure.filter(|_| request.user_id > 0) {
                tell_sender(svc, request, failure).await?;
            }
            let newer = |r: &mut AutomationRequest| r.status_reported.is_none_or(|told| told < status) && { r.status_reported = Some(status); true };
            svc.automation.update(&request.member_id, &request.id, newer).await?;
        }
    }
    Ok(())
}

/// A status has no room for why: the employee who sent the SMS is told in a system
/// notification (`im-notify-system-add.md`: any user may be notified with the app's token),
/// once per message (its `TAG`).
async fn tell_sender(svc: &Services, request: &AutomationRequest, failure: &Failure) -> Result<(), AppError> {
    let to = request.to.as_deref().unwrap_or_default();
    let message = text(request.lang, "sms_failed", &[("to", to), ("reason", &failure_text(request.lang, failure))]);
    let params = json!({ "USER_ID": request.user_id, "MESSAGE": message, "TAG": format!("olchat-sms-{}", request.id) });
    tell(svc, request, "im.notify.system.add", &params).await
}

/// One report to the portal with its own token. What it reports to may be gone by now (the
/// rule stopped waiting, the SMS was deleted): then there is no one left to tell.
async fn tell(svc: &Services, request: &AutomationRequest, method: &str, params: &Value) -> Result<(), AppError> {
    let mut portal = PortalClient::app(svc, &request.member_id).await?;
    match portal.call(method, params).await {
        Ok(_) => Ok(()),
        Err(e) if retryable(&e) => Err(e),
        Err(e) => {
            tracing::warn!(request_id = request.id, method, code = e.code, "Bitrix24 took no report: {e}");
            Ok(())
        }
    }
}

/// The telegram-worker's step of a request whose turn came (`Job::SendAutomated`): finds the
/// recipient's account and admits the chat within the account's budgets, then makes the
/// message, which the same worker sends next as any other.
pub async fn hand_over(svc: &Services, member_id: &str, request_id: &str) -> Result<HandOver, AppError> {
    let Some(request) = svc.automation.get(member_id, request_id).await? else { return Ok(HandOver::Done) };
    let Stage::Scheduled { connector_id, recipients, author, .. } = &request.stage else { return Ok(HandOver::Done) };
    let connector = match svc.connectors.get(member_id, connector_id).await? {
        Some(c) if c.status != ConnectorStatus::NeedsLogin => c,
        _ => return failed(svc, &request, Failure::ConnectorUnauthorized).await,
    };
    let (recipient, user) = match first_account(svc, &connector, recipients).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            let phones = recipients.iter().any(|k| matches!(k, RecipientKey::Phone(_)));
            return failed(svc, &request, if phones { Failure::Privacy } else { Failure::UsernameNotFound }).await;
        }
        Err(RecipientProblem::OverBudget(limit)) => return over_budget(svc, &request, &connector, Budget::PhoneLookups, limit).await,
        Err(RecipientProblem::Telegram(TelegramError::FloodWait { seconds })) => return Ok(HandOver::Later(Duration::from_secs(seconds.into()))),
        Err(RecipientProblem::Telegram(TelegramError::Transient(e))) => {
            tracing::warn!("Telegram did not answer a look-up ({e}); trying again");
            return Ok(HandOver::Later(Duration::from_secs(5)));
        }
        Err(RecipientProblem::Telegram(e)) => {
            super::connectors::note_connector(svc, member_id, &connector.id, &e).await?;
            return failed(svc, &request, e.into()).await;
        }
        Err(RecipientProblem::ChatUnknown | RecipientProblem::OtherConnector(_) | RecipientProblem::NoConnector | RecipientProblem::NotFound) => {
            return failed(svc, &request, Failure::NoRecipient).await;
        }
    };
    match admit_chat(svc, &connector, user.peer).await? {
        Admission::Admitted => {}
        Admission::Limited => return failed(svc, &request, Failure::ConnectorLimited).await,
        Admission::OverBudget { limit } => return over_budget(svc, &request, &connector, Budget::NewChats, limit).await,
    }
    if !svc.automation.take_send_slot(&connector.id, svc.limits.automation_pace).await? {
        return later_turn(svc, &request).await;
    }
    // The template's files are copied only now: a request may wait days for its turn.
    let Some(files) = uploads::copied_attachments(svc, member_id, request_id, &request.files, false).await? else {
        return failed(svc, &request, Failure::TemplateGone).await;
    };
    let message = message_of(&request, &connector, *author, recipient, user, files);
    svc.messages.create(&message).await?;
    let handed = svc.automation.update(member_id, request_id, |r| matches!(r.stage, Stage::Scheduled { .. }) && { r.stage = Stage::Handed; true }).await?;
    if handed.is_some_and(|r| r.stage == Stage::Handed) {
        Job::Send { message_id: message.id.clone(), connector_id: connector.id.clone() }
            .enqueue(svc.queue.as_ref(), Duration::ZERO)
            .await
            .map_err(|e| AppError::internal(format!("queue: {e:#}")))?;
        if message.create_activity {
            queue(svc, super::send::publish_job(&message), Duration::ZERO).await?;
        }
        tracing::info!(message_id = message.id, "automated message handed to the send pipeline");
    }
    Ok(HandOver::Done)
}

/// How the telegram-worker's step ended.
#[derive(Debug, PartialEq, Eq)]
pub enum HandOver {
    Done,
    /// Telegram asked to wait before the next look-up.
    Later(Duration),
}

/// The first recipient with a Telegram account, looked up as the tab looks them up (cached,
/// paced, within the day's phone budget).
async fn first_account(svc: &Services, connector: &Connector, recipients: &[RecipientKey]) -> Result<Option<(RecipientKey, TelegramUser)>, RecipientProblem> {
    for key in recipients {
        match resolve(svc, connector, key).await {
            Ok(user) => return Ok(Some((key.clone(), user))),
            Err(RecipientProblem::NotFound | RecipientProblem::ChatUnknown | RecipientProblem::OtherConnector(_)) => continue,
            Err(problem) => return Err(problem),
        }
    }
    Ok(None)
}

/// Another automated message went less than a pace ago (turns gone by, caught up at once):
/// this one takes the account's next turn and waits for it on the openline queue, not in the
/// account's own queue, where waiting would count as a failed delivery.
async fn later_turn(svc: &Services, request: &AutomationRequest) -> Result<HandOver, AppError> {
    let Stage::Scheduled { connector_id, recipients, author, .. } = &request.stage else { return Ok(HandOver::Done) };
    let due = svc.automation.next_turn(connector_id, svc.limits.automation_pace).await?;
    let scheduled = Stage::Scheduled { connector_id: connector_id.clone(), recipients: recipients.clone(), author: *author, due };
    svc.automation.update(&request.member_id, &request.id, |r| r.stage == request.stage && { r.stage = scheduled.clone(); true }).await?;
    let wait = Duration::from_millis((due - now_millis()).max(0) as u64);
    queue(svc, advance_job(&request.member_id, &request.id), wait.min(LONGEST_WAIT)).await?;
    Ok(HandOver::Done)
}

async fn failed(svc: &Services, request: &AutomationRequest, failure: Failure) -> Result<HandOver, AppError> {
    fail(svc, request, failure).await?;
    queue(svc, advance_job(&request.member_id, &request.id), Duration::ZERO).await?;
    Ok(HandOver::Done)
}

/// Beyond the day's budget: the request waits for the next UTC day, or fails with the
/// reason, as the account's administrator chose.
async fn over_budget(svc: &Services, request: &AutomationRequest, connector: &Connector, budget: Budget, limit: u32) -> Result<HandOver, AppError> {
    if connector.over_budget == OverBudget::Fail {
        return failed(svc, request, Failure::OverBudget { budget, limit }).await;
    }
    let Stage::Scheduled { connector_id, recipients, author, .. } = &request.stage else { return Ok(HandOver::Done) };
    let day = 86_400_000;
    let until = (now_millis() / day + 1) * day;
    let deferred = Stage::Deferred { connector_id: connector_id.clone(), recipients: recipients.clone(), author: *author, until };
    svc.automation.update(&request.member_id, &request.id, |r| set_stage(r, deferred.clone(), &request.stage)).await?;
    tracing::warn!(request_id = request.id, ?budget, limit, "the account's daily budget is used up: the automated message waits for tomorrow");
    queue(svc, advance_job(&request.member_id, &request.id), LONGEST_WAIT).await?;
    Ok(HandOver::Done)
}

fn message_of(request: &AutomationRequest, connector: &Connector, author: u64, recipient: RecipientKey, user: TelegramUser, files: Vec<Attachment>) -> Message {
    // Longer than the tab allows is cut, not refused: no one is there to shorten it.
    let parts = split_text(&request.text, TEXT_LIMIT);
    let new = NewMessage {
        id: request.id.clone(),
        member_id: request.member_id.clone(),
        user_id: author,
        entity: request.entity.expect("a handed request has its record"),
        connector_id: connector.id.clone(),
        recipient,
        lang: request.lang,
        publication: request.publication,
        create_activity: request.create_activity,
        origin: Some(request.origin.clone()),
    };
    let texts = parts.into_iter().take(MAX_PARTS).map(|text| Part { text, media: None, sent: false, telegram_id: None });
    let files = files.into_iter().map(|file| Part { text: String::new(), media: Some(file), sent: false, telegram_id: None });
    Message::queued(new, &user, texts.chain(files).collect(), now_millis())
}

/// Registers (or brings up to date) the robot, the workflow action and the message provider:
/// at install and at every update, and when the portal's accounts change (the robot's "From"
/// lists them). Two `batch` calls (`settings/how-to-call-rest-api/batch.md`): what is
/// registered, then an add or an update of each; the install page waits on them, and each
/// call spends the portal's REST budget.
pub async fn register(portal: &mut PortalClient<'_>, base: &str) -> Result<(), AppError> {
    let connectors = portal.svc.connectors.list(&portal.portal.member_id).await?;
    let templates = portal.svc.templates.list(&portal.portal.member_id).await?;
    let lists = [("robots", "bizproc.robot.list"), ("actions", "bizproc.activity.list"), ("senders", "messageservice.sender.list")];
    let listed = portal.batch_calls(&lists.map(|(key, method)| (key.to_owned(), method, json!({})))).await?;
    let registered = |key: &str, code: &str| listed.get(key).is_some_and(|codes| listed_code(codes, code));
    let step = step_fields(portal.portal.lang, &connectors, &templates, &format!("{base}/bitrix/robot"));
    let provider = json!({
        "HANDLER": format!("{base}/bitrix/provider"),
        "NAME": both("provider_name"),
        "DESCRIPTION": both("provider_description"),
    });
    let calls = [
        upsert("robot", ("bizproc.robot.add", "bizproc.robot.update"), ROBOT_CODE, &step, registered("robots", ROBOT_CODE)),
        upsert("action", ("bizproc.activity.add", "bizproc.activity.update"), ACTION_CODE, &step, registered("actions", ACTION_CODE)),
        upsert_sender(&provider, registered("senders", PROVIDER_CODE)),
    ];
    portal.batch_calls(&calls).await.map(drop)
}

/// `<family>.add` for a code not registered yet, else `<family>.update` with `FIELDS`
/// (`bizproc-robot-update.md`, `bizproc-activity-update.md`).
fn upsert(key: &str, (add, update): (&'static str, &'static str), code: &str, fields: &Value, registered: bool) -> (String, &'static str, Value) {
    if registered {
        return (key.to_owned(), update, json!({ "CODE": code, "FIELDS": fields }));
    }
    let mut params = fields.clone();
    params["CODE"] = json!(code);
    (key.to_owned(), add, params)
}

/// `messageservice.sender.add`, or `.update` with the fields at the top level
/// (`messageservice-sender-update.md`).
fn upsert_sender(fields: &Value, registered: bool) -> (String, &'static str, Value) {
    let mut params = fields.clone();
    params["CODE"] = json!(PROVIDER_CODE);
    if registered {
        return ("provider".to_owned(), "messageservice.sender.update", params);
    }
    params["TYPE"] = json!("SMS");
    ("provider".to_owned(), "messageservice.sender.add", params)
}

/// `*.list` answers an array of codes (`bizproc-robot-list.md`, `messageservice-sender-list.md`).
fn listed_code(listed: &Value, code: &str) -> bool {
    listed.as_array().into_iter().flatten().any(|c| c.as_str() == Some(code))
}

/// A text in both languages, as `NAME` and `DESCRIPTION` take them.
fn both(key: &str) -> Value {
    json!({ "en": text(Lang::En, key, &[]), "ru": text(Lang::Ru, key, &[]) })
}

/// The robot's and action's registration (`bizproc-robot-add.md`): waits for its result, for
/// the four card types, its properties as the tab's controls.
fn step_fields(lang: Lang, connectors: &[Connector], templates: &[Template], handler: &str) -> Value {
    let mut from = serde_json::Map::new();
    from.insert(FROM_RESPONSIBLE.into(), json!(text(lang, "robot_from_responsible", &[])));
    for c in connectors {
        from.insert(c.id.clone(), json!(format!("{} ({})", c.name, c.phone)));
    }
    // Never without options: an emptied select would not reach Bitrix24 through `batch`'s query
    // encoding, and the robot would go on offering deleted templates.
    let mut template = serde_json::Map::new();
    template.insert(NO_TEMPLATE.into(), json!(text(lang, "robot_no_template", &[])));
    template.extend(templates.iter().map(|t| (t.id.clone(), json!(t.name))));
    let publication = json!({
        "none": text(lang, "publication_none", &[]),
        "outgoing": text(lang, "publication_outgoing", &[]),
        "incoming": text(lang, "publication_incoming", &[]),
    });
    json!({
        "HANDLER": handler,
        "USE_SUBSCRIPTION": "Y",
        "NAME": both("robot_name"),
        "DESCRIPTION": both("robot_description"),
        "PROPERTIES": {
            "from": { "Name": both("robot_from"), "Type": "select", "Options": from, "Default": FROM_RESPONSIBLE, "Required": "Y", "Multiple": "N" },
            "to": { "Name": both("robot_to"), "Description": both("robot_to_description"), "Type": "string", "Required": "N", "Multiple": "N" },
            // Either a text or a template: neither is required alone.
            "text": { "Name": both("message"), "Type": "text", "Required": "N", "Multiple": "N" },
            "template": { "Name": both("robot_template"), "Description": both("robot_template_description"), "Type": "select", "Options": template, "Default": NO_TEMPLATE, "Required": "N", "Multiple": "N" },
            "publication": { "Name": both("publication"), "Type": "select", "Options": publication, "Default": "none", "Required": "N", "Multiple": "N" },
            "activity": { "Name": both("create_activity"), "Type": "bool", "Default": "Y", "Required": "N", "Multiple": "N" },
        },
        "RETURN_PROPERTIES": {
            "status": { "Name": both("robot_result_status"), "Type": "string", "Multiple": "N" },
            "reason": { "Name": both("robot_result_reason"), "Type": "text", "Multiple": "N" },
            "message_id": { "Name": both("robot_result_message_id"), "Type": "string", "Multiple": "N" },
        },
        "FILTER": { "INCLUDE": [
            ["crm", "CCrmDocumentLead"], ["crm", "CCrmDocumentDeal"], ["crm", "CCrmDocumentContact"], ["crm", "CCrmDocumentCompany"],
        ] },
    })
}
