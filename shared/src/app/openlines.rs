//! The Open Line side of a message: publishing it into the client's chat (creating the
//! chat when missing), the CRM activity that shows its delivery status, creating a chat
//! from the card, and operator replies going back to the client.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::install::CONNECTOR_ID;
use super::portal::{EmployeeView, PortalClient, active_employees};
use super::send::{failure_text, recipient_account};
use super::{AppError, ErrorKind, Progress, Services};
use crate::auth::Claims;
use crate::clock::now_secs;
use crate::domain::formatting::inert_bbcode;
use crate::domain::lease::Claim;
use crate::domain::message::ActivityShown;
use crate::domain::{EntityRef, EntityType, Message, MessageStatus, OpenLineChat, Publication, PublicationMode, SendAs, TelegramUser};
use crate::i18n::text;
use crate::repo::RepoError;
use crate::repo::connectors::Connector;
use crate::repo::mailbox::{RECEIVED_FILE_LIMIT, Received};
use crate::repo::openlines::{ChatLink, external_chat_id, external_user_id};
use crate::repo::portals::TimelineLook;

/// The mark of a message published as if the client wrote it.
const INCOMING_MARK: &str = "[b]OLChat[/b][br]";

/// Whether a failed portal call may succeed later (rate limit, outage) rather than never.
pub fn retryable(e: &AppError) -> bool {
    matches!(e.kind, ErrorKind::Busy | ErrorKind::Upstream | ErrorKind::Internal)
}

/// Longer than an openline job may run (the worker's Lambda timeout), so a live job keeps
/// its claim; a job that died holding one holds its work back this long.
const OPENLINE_LEASE: std::time::Duration = std::time::Duration::from_secs(180);

/// Publishes the message if due and brings its activity up to date, holding the message's
/// claim meanwhile: a concurrent job for it is told to wait. Safe to run again: the message
/// records what was done.
pub async fn publish_message(svc: &Services, message_id: &str) -> Result<Progress, AppError> {
    let holder = uuid::Uuid::new_v4().to_string();
    let message = match svc.messages.claim_openline_work(message_id, &holder, OPENLINE_LEASE).await? {
        Claim::Taken(message) => message,
        Claim::Held(wait) => return Ok(Progress::Wait(wait)),
        Claim::Done => return Ok(Progress::Done),
    };
    let worked = publish_claimed(svc, message).await;
    svc.messages.release(message_id, &holder).await?;
    worked.map(Progress::from)
}

async fn publish_claimed(svc: &Services, mut message: Message) -> Result<(), AppError> {
    let mut portal = PortalClient::app(svc, &message.member_id).await?;
    if message.awaits_publication() {
        // Bitrix24 cannot be asked whether it has a message of this id: a crash between the
        // call and recording its outcome publishes again, once the claim's lease ends.
        let outcome = match publish(svc, &mut portal, &message).await {
            Ok(ol_chat_id) => Publication::Published { ol_chat_id },
            Err(e) if retryable(&e) => return Err(e),
            Err(e) => Publication::Failed { reason: e.message },
        };
        tracing::info!(message_id = message.id, ?outcome, "publication");
        let recorded = svc.messages.update(&message.id, |m| m.published.is_none() && m.published.replace(outcome.clone()).is_none()).await?;
        message = recorded.unwrap_or(message);
    }
    sync_activity(svc, &mut portal, &message).await
}

async fn publish(svc: &Services, portal: &mut PortalClient<'_>, message: &Message) -> Result<Option<u64>, AppError> {
    let link = link_chat(svc, &message.member_id, &message.connector_id, message.peer, &message.client_name).await?;
    let (text, employee) = match message.publication {
        // Shown as the client's: the employee's text is inert there, as a client's is.
        PublicationMode::Incoming => (format!("{INCOMING_MARK}{}", inert_bbcode(&message.text())), None),
        PublicationMode::Outgoing => (message.text(), Some(message.user_id)),
        PublicationMode::None => unreachable!("awaits_publication checked the mode"),
    };
    let files = open_line_files(svc, message).await?;
    send_to_open_line(svc, portal, &link, &message.id, &text, employee, &files).await
}

/// How long Bitrix24 may take to fetch a published file.
const OL_FILE_URL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The message's files for the Open Line chat: signed download URLs Bitrix24 fetches.
async fn open_line_files(svc: &Services, message: &Message) -> Result<Vec<Value>, AppError> {
    let mut files = Vec::new();
    for file in message.attachments() {
        let url = svc.links.download_url(&file.key, OL_FILE_URL_LIFETIME);
        // A voice note is stored as recorded (WebM from Chromium): named as uploaded.
        let name = match file.send_as {
            SendAs::Voice { .. } => file.key.rsplit('/').next().unwrap_or(&file.file_name),
            _ => &file.file_name,
        };
        files.push(json!({ "url": url, "name": name }));
    }
    Ok(files)
}

async fn link_chat(svc: &Services, member_id: &str, connector_id: &str, peer: crate::domain::Peer, client_name: &str) -> Result<ChatLink, AppError> {
    let link = ChatLink {
        external_chat_id: external_chat_id(connector_id, peer),
        connector_id: connector_id.to_owned(),
        peer,
        client_name: client_name.to_owned(),
        ol_chat_id: None,
    };
    Ok(svc.openlines.link(member_id, link).await?)
}

/// Who an Open Line chat on a card is, seen from one connector.
#[derive(Debug)]
pub enum ChatClient {
    /// The chat's client, as its chat link knows them (the access hash with the peer).
    Found(TelegramUser),
    /// The chat went through another of the portal's connectors: only it can answer.
    OtherConnector { name: String },
    /// No chat link of ours: another installation's chat, or one since forgotten.
    Unknown,
}

/// The client of one of our connector's Open Line chats, from the link stored when the chat
/// was opened: no Telegram look-up, so no budget spent. The line is not compared: a connector
/// moved to another line still reaches the same client.
pub async fn chat_client(svc: &Services, connector: &Connector, chat: &OpenLineChat) -> Result<ChatClient, RepoError> {
    let link = svc.openlines.chat(&connector.member_id, &chat.external_chat_id).await?;
    // The entry names the client twice (chat and user ids): both must be the link's.
    let Some(link) = link.filter(|l| l.peer.user_id == chat.telegram_user_id) else { return Ok(ChatClient::Unknown) };
    if link.connector_id != connector.id {
        return Ok(match svc.connectors.get(&connector.member_id, &link.connector_id).await? {
            Some(other) => ChatClient::OtherConnector { name: other.name },
            None => ChatClient::Unknown,
        });
    }
    let (first_name, last_name) = link.client_name.split_once(' ').unwrap_or((&link.client_name, ""));
    Ok(ChatClient::Found(TelegramUser { peer: link.peer, first_name: first_name.to_owned(), last_name: last_name.to_owned(), username: None }))
}

/// A name Open Lines accepts: at most 25 letters, spaces, hyphens and apostrophes.
fn ol_name(name: &str) -> String {
    let kept: String = name.chars().filter(|c| c.is_alphabetic() || matches!(c, ' ' | '-' | '\'')).take(25).collect();
    kept.trim().to_owned()
}

/// One message through our connector (`imconnector.send.messages`), as the client or, with
/// `employee`, on that employee's behalf. This creates the chat when missing; its id, which
/// the answer gives only "if available" (`session`): otherwise the dialog is looked up by its
/// user code, and without it the message still counts as published (never sent again).
async fn send_to_open_line(
    svc: &Services,
    portal: &mut PortalClient<'_>,
    link: &ChatLink,
    external_message_id: &str,
    text: &str,
    employee: Option<u64>,
    files: &[Value],
) -> Result<Option<u64>, AppError> {
    let line = open_line(svc, portal, link).await?;
    let (first, last) = link.client_name.split_once(' ').unwrap_or((&link.client_name, ""));
    let first = Some(ol_name(first)).filter(|n| !n.is_empty()).unwrap_or_else(|| "Telegram".into());
    let mut message = json!({ "id": external_message_id, "date": now_secs(), "text": text });
    if let Some(employee) = employee {
        message["user_id"] = json!(employee);
    }
    if !files.is_empty() {
        message["files"] = json!(files);
    }
    let user_id = external_user_id(link.peer);
    let params = json!({
        "CONNECTOR": CONNECTOR_ID, "LINE": line,
        "MESSAGES": [{
            "user": { "id": user_id, "name": first, "last_name": ol_name(last), "skip_phone_validate": "Y" },
            "message": message,
            "chat": { "id": link.external_chat_id, "name": link.client_name },
        }],
    });
    let answer = portal.call("imconnector.send.messages", &params).await?;
    let result = answer.pointer("/DATA/RESULT/0").cloned().unwrap_or(Value::Null);
    if result.get("SUCCESS") != Some(&Value::Bool(true)) {
        let errors = result.get("ERRORS").map(Value::to_string).unwrap_or_else(|| answer.to_string());
        return Err(AppError::invalid("not_published", format!("Open Lines refused the message: {errors}")));
    }
    let chat_id = match id_of(result.pointer("/session/CHAT_ID")) {
        Some(id) => Some(id),
        None => find_chat(portal, &format!("{CONNECTOR_ID}|{line}|{}|{user_id}", link.external_chat_id)).await,
    };
    if let Some(chat_id) = chat_id.filter(|&id| link.ol_chat_id != Some(id)) {
        svc.openlines.set_chat_id(&portal.portal.member_id, &link.external_chat_id, chat_id).await?;
    }
    Ok(chat_id.or(link.ol_chat_id))
}

/// The connector's own Open Line, else the portal's.
async fn open_line(svc: &Services, portal: &PortalClient<'_>, link: &ChatLink) -> Result<String, AppError> {
    let own_line = svc.connectors.get(&portal.portal.member_id, &link.connector_id).await?.and_then(|c| c.line);
    own_line.or_else(|| portal.portal.line.clone()).ok_or_else(|| {
        AppError::invalid("no_open_line", "The Telegram connector is not connected to an Open Line of this portal.")
    })
}

/// The Open Line chat of a dialog, by its user code (`imopenlines-dialog-get.md`).
async fn find_chat(portal: &mut PortalClient<'_>, user_code: &str) -> Option<u64> {
    match portal.call("imopenlines.dialog.get", &json!({ "USER_CODE": user_code })).await {
        Ok(dialog) => id_of(dialog.get("id")),
        Err(e) => {
            tracing::warn!(code = e.code, "the dialog's chat could not be looked up: {e}");
            None
        }
    }
}

/// The CRM records a chat is bound to, from `entity_data_2` (`LEAD|1209|COMPANY|0|CONTACT|0|DEAL|0`).
fn crm_bindings(dialog: &Value) -> Vec<(String, u64)> {
    let data = dialog.get("entity_data_2").and_then(Value::as_str).unwrap_or("");
    let parts: Vec<&str> = data.split('|').collect();
    parts.chunks(2).filter_map(|p| Some((p.first()?.to_ascii_lowercase(), p.get(1)?.parse().ok().filter(|&id: &u64| id > 0)?))).collect()
}

/// Creates or updates the message's activity to show its current status (the whole layout).
/// Runs under the message's claim (`publish_message`): no concurrent job creates a second.
async fn sync_activity(svc: &Services, portal: &mut PortalClient<'_>, message: &Message) -> Result<(), AppError> {
    let message_id = message.id.as_str();
    if !message.activity_stale() {
        return Ok(());
    }
    let fields = json!({
        "completed": message.status.is_final(), "responsibleId": message.user_id, "isIncomingChannel": "N",
        "originatorId": CONNECTOR_ID, "originId": message.id,
    });
    let look = portal.portal.timeline.clone().ok_or_else(|| {
        AppError::new(ErrorKind::Busy, "not_set_up", "The app's set-up on this portal has not finished yet.")
    })?;
    let layout = activity_layout(message, &look);
    let existing = match message.activity {
        Some(shown) => Some(shown.id),
        None if message.activity_requested => find_activity(portal, message).await?,
        None => {
            svc.messages.update(message_id, |m| !std::mem::replace(&mut m.activity_requested, true)).await?;
            None
        }
    };
    let id = match existing {
        Some(id) => {
            portal.call("crm.activity.configurable.update", &json!({ "id": id, "fields": fields, "layout": layout })).await?;
            id
        }
        None => {
            let params = json!({ "ownerTypeId": message.entity.kind.type_id(), "ownerId": message.entity.id, "fields": fields, "layout": layout });
            let answer = portal.call("crm.activity.configurable.add", &params).await?;
            id_of(answer.pointer("/activity/id")).ok_or_else(|| AppError::new(ErrorKind::Upstream, "portal_error", "Bitrix24 gave no activity id."))?
        }
    };
    let shown = ActivityShown { id, status: message.status };
    svc.messages.update(message_id, |m| m.activity.replace(shown) != Some(shown)).await?;
    Ok(())
}

fn id_of(value: Option<&Value>) -> Option<u64> {
    value.and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
}

/// The activity an interrupted earlier try created for this message, found by its `originId`.
async fn find_activity(portal: &mut PortalClient<'_>, message: &Message) -> Result<Option<u64>, AppError> {
    let filter = json!({
        "filter": { "OWNER_TYPE_ID": message.entity.kind.type_id(), "OWNER_ID": message.entity.id,
                    "PROVIDER_ID": "CONFIGURABLE_REST_APP", "ORIGIN_ID": message.id },
        "select": ["ID"],
    });
    let found = portal.call("crm.activity.list", &filter).await?;
    Ok(id_of(found.as_array().and_then(|rows| rows.first()).and_then(|row| row.get("ID"))))
}

/// The activity as the timeline shows it: the text, who it went to, and a status tag. A
/// block's required `value` is never empty (`structure/content-block.md`): a block with
/// nothing to say is left out; the recipient, always known, keeps the body from being empty.
fn activity_layout(m: &Message, look: &TimelineLook) -> Value {
    let lang = m.lang;
    let (status, tag) = match m.status {
        MessageStatus::Scheduled => ("status_scheduled", "warning"),
        MessageStatus::Queued | MessageStatus::Sending => ("status_queued", "secondary"),
        MessageStatus::Sent => ("status_sent", "primary"),
        MessageStatus::Read => ("status_read", "success"),
        MessageStatus::Failed => ("status_failed", "failure"),
        MessageStatus::Cancelled => ("status_cancelled", "secondary"),
    };
    let recipient = Some(m.recipient_name.trim()).filter(|r| !r.is_empty()).unwrap_or("Telegram");
    let mut blocks = json!({
        "recipient": { "type": "withTitle", "properties": {
            "title": text(lang, "to", &[]), "block": { "type": "text", "properties": { "value": recipient } } } },
    });
    let body = m.text();
    if !body.trim().is_empty() {
        blocks["text"] = json!({ "type": "largeText", "properties": { "value": body } });
    }
    let files: Vec<&str> = m.attachments().map(|a| a.file_name.as_str()).collect();
    if !files.is_empty() {
        blocks["files"] = json!({ "type": "withTitle", "properties": {
            "title": text(lang, "files", &[]), "block": { "type": "text", "properties": { "value": files.join(", ") } } } });
    }
    if let Some(failure) = &m.failure {
        blocks["reason"] = json!({ "type": "text", "properties": { "value": failure_text(lang, failure), "color": "base_90" } });
    }
    json!({
        "icon": { "code": look.icon },
        "header": {
            "title": text(lang, "activity_title", &[("recipient", recipient)]),
            "tags": { "status": { "title": text(lang, status, &[]), "type": tag } },
        },
        "body": { "logo": { "code": look.logo }, "blocks": blocks },
    })
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub connector_id: String,
    pub recipient: String,
    #[serde(default)]
    pub user_ids: Vec<u64>,
}

#[derive(Serialize)]
pub struct ChatCreated {
    pub chat_id: u64,
    pub created: bool,
    pub invited: Vec<u64>,
}

/// The portal's active employees, to invite into a chat.
pub async fn employees(svc: &Services, claims: &Claims) -> Result<Vec<EmployeeView>, AppError> {
    active_employees(&mut PortalClient::user(svc, &claims.portal, claims.user).await?).await
}

/// Creates the client's Open Line chat (a first message through our connector, written on
/// the employee's behalf) unless it exists, and invites the chosen employees into it through
/// the CRM record the chat is bound to. Bitrix24's CRM tracker binds a new chat (it may create
/// a lead for a new client), so that is read from the dialog (`imopenlines-dialog-get.md`)
/// rather than assumed to be this card; an employee already in the chat (`WRONG_REQUEST`,
/// `imopenlines-crm-chat-user-add.md`) counts as invited.
pub async fn create_chat(svc: &Services, claims: &Claims, request: ChatRequest) -> Result<ChatCreated, AppError> {
    let lang = claims.lang;
    if request.user_ids.len() > 50 {
        return Err(AppError::invalid("too_many_employees", text(lang, "too_many_employees", &[])));
    }
    let (connector, _, user): (Connector, _, TelegramUser) = recipient_account(svc, claims, &request.connector_id, &request.recipient).await?;
    if !request.user_ids.is_empty() {
        let known: Vec<u64> = employees(svc, claims).await?.into_iter().map(|e| e.id).collect();
        if let Some(unknown) = request.user_ids.iter().find(|id| !known.contains(id)) {
            return Err(AppError::invalid("unknown_employee", text(lang, "unknown_employee", &[("id", &unknown.to_string())])));
        }
    }
    let mut portal = PortalClient::app(svc, &claims.portal).await?;
    let link = link_chat(svc, &claims.portal, &connector.id, user.peer, &user.display_name()).await?;
    let (chat_id, created) = match link.ol_chat_id {
        Some(id) => (id, false),
        None => {
            let note = text(lang, "chat_created_note", &[]);
            let note_id = format!("chat-{}", uuid::Uuid::new_v4());
            let chat_id = send_to_open_line(svc, &mut portal, &link, &note_id, &note, Some(claims.user), &[]).await?;
            (chat_id.ok_or_else(|| AppError::new(ErrorKind::Upstream, "portal_error", "Open Lines did not say which chat it opened."))?, true)
        }
    };
    let mut invited = Vec::new();
    if !request.user_ids.is_empty() {
        let dialog = portal.call("imopenlines.dialog.get", &json!({ "CHAT_ID": chat_id })).await?;
        let (kind, id) = crm_bindings(&dialog).into_iter().next().ok_or_else(|| AppError::invalid("chat_not_in_crm", text(lang, "chat_not_in_crm", &[])))?;
        may_read_binding(svc, claims, &kind, id).await?;
        for user_id in request.user_ids {
            if invited.contains(&user_id) {
                continue;
            }
            let params = json!({ "CRM_ENTITY_TYPE": kind, "CRM_ENTITY": id, "USER_ID": user_id, "CHAT_ID": chat_id });
            match portal.call("imopenlines.crm.chat.user.add", &params).await {
                Ok(_) => {}
                Err(e) if e.code == "wrong_request" => {}
                Err(e) => return Err(e),
            }
            invited.push(user_id);
        }
    }
    tracing::info!(chat_id, created, invited = invited.len(), "open line chat ready");
    Ok(ChatCreated { chat_id, created, invited })
}

/// Invitations go out with the portal's own token, through the record the chat is bound to,
/// which the tracker may have made another than this card: the user must be able to read
/// it with their own token first (`crm.<type>.get` answers "Access denied" otherwise).
async fn may_read_binding(svc: &Services, claims: &Claims, kind: &str, id: u64) -> Result<(), AppError> {
    let kind: EntityType = kind.parse().map_err(|_| AppError::invalid("chat_not_in_crm", text(claims.lang, "chat_not_in_crm", &[])))?;
    if (EntityRef { kind, id }) == claims.entity {
        return Ok(());
    }
    PortalClient::user(svc, &claims.portal, claims.user).await?.call(&kind.get_method(), &json!({ "id": id })).await.map(drop)
}

/// Tells Open Lines the client got the operator's message (or our publication came back).
pub async fn confirm_delivery(svc: &Services, member_id: &str, line: &str, ol_chat_id: u64, im_message_id: u64, external_chat_id: &str, delivered_id: &str) -> Result<(), AppError> {
    message_status(svc, "imconnector.send.status.delivery", member_id, line, ol_chat_id, im_message_id, external_chat_id, delivered_id).await
}

/// Tells Open Lines the client read the operator's message.
pub async fn confirm_reading(svc: &Services, member_id: &str, line: &str, ol_chat_id: u64, im_message_id: u64, external_chat_id: &str) -> Result<(), AppError> {
    let id = im_message_id.to_string();
    message_status(svc, "imconnector.send.status.reading", member_id, line, ol_chat_id, im_message_id, external_chat_id, &id).await
}

#[allow(clippy::too_many_arguments)]
async fn message_status(svc: &Services, method: &str, member_id: &str, line: &str, ol_chat_id: u64, im_message_id: u64, external_chat_id: &str, message_id: &str) -> Result<(), AppError> {
    let mut portal = PortalClient::app(svc, member_id).await?;
    let params = json!({
        "CONNECTOR": CONNECTOR_ID, "LINE": line,
        "MESSAGES": [{ "im": { "chat_id": ol_chat_id, "message_id": im_message_id },
                       "message": { "id": [message_id], "date": now_secs() }, "chat": { "id": external_chat_id } }],
    });
    portal.call(method, &params).await.map(drop)
}

/// Clients' messages the catch-up stored, into the connector's Open Line as the client's
/// (their files as download URLs), each once and in order: each claimed while it is posted.
pub async fn forward_received(svc: &Services, member_id: &str, connector_id: &str, telegram_ids: &[i32]) -> Result<Progress, AppError> {
    let mut portal = PortalClient::app(svc, member_id).await?;
    let holder = uuid::Uuid::new_v4().to_string();
    for &telegram_id in telegram_ids {
        let message = match svc.mailbox.claim_forward(connector_id, telegram_id, &holder, OPENLINE_LEASE).await? {
            Claim::Taken(message) => message,
            Claim::Done => continue,
            // Another job is posting it (and likely the rest after it): the rest wait, in order.
            Claim::Held(wait) => return Ok(Progress::Wait(wait)),
        };
        // As for a publication, a crash between posting and marking it posts it again once
        // the lease ends. A failed post is released for the retry.
        if let Err(e) = forward(svc, &mut portal, connector_id, &message).await {
            svc.mailbox.release_forward(connector_id, telegram_id, &holder).await?;
            return Err(e);
        }
        let stored = svc.mailbox.mark_forwarded(connector_id, telegram_id).await?;
        tracing::info!(telegram_id, "client message forwarded to the Open Line");
        // Edited or deleted while it was being posted: the revision that saw it unposted left it.
        if let Some(message) = stored.filter(Received::revision_due) {
            revise(svc, &mut portal, connector_id, &message).await?;
        }
    }
    Ok(Progress::Done)
}

/// Clients' edits and deletions of forwarded messages, into the Open Line
/// (`imconnector.update.messages`, `imconnector.delete.messages`, by the ids `forward` gave).
/// A message not forwarded yet goes with its new text, or not at all once deleted.
pub async fn revise_received(svc: &Services, member_id: &str, connector_id: &str, telegram_ids: &[i32]) -> Result<Progress, AppError> {
    let mut portal = PortalClient::app(svc, member_id).await?;
    for &telegram_id in telegram_ids {
        if let Some(message) = svc.mailbox.received(connector_id, telegram_id).await?.filter(Received::revision_due) {
            revise(svc, &mut portal, connector_id, &message).await?;
        }
    }
    Ok(Progress::Done)
}

/// One message's revision, recorded once made. Bitrix24 refusing it (the pages list no
/// reason; the sandbox refuses an id it does not have) leaves nothing to retry.
async fn revise(svc: &Services, portal: &mut PortalClient<'_>, connector_id: &str, message: &Received) -> Result<(), AppError> {
    let telegram_id = message.telegram_id;
    let link = link_chat(svc, &portal.portal.member_id, connector_id, message.from.peer, &message.from.display_name()).await?;
    let line = open_line(svc, portal, &link).await?;
    let user = json!({ "id": external_user_id(link.peer) });
    let chat = json!({ "id": link.external_chat_id });
    let id = received_id(connector_id, telegram_id);
    let delete = message.deleted;
    let (method, item) = if delete {
        ("imconnector.delete.messages", json!({ "user": user, "message": { "id": id }, "chat": chat }))
    } else {
        let (text, files) = received_body(svc, portal, message);
        let mut body = json!({ "id": id, "date": now_secs(), "text": text });
        if text.is_empty() {
            body["files"] = json!(files);
        }
        ("imconnector.update.messages", json!({ "user": user, "message": body, "chat": chat }))
    };
    let answer = portal.call(method, &json!({ "CONNECTOR": CONNECTOR_ID, "LINE": line, "MESSAGES": [item] })).await?;
    if answer.pointer("/DATA/RESULT/0/SUCCESS") != Some(&Value::Bool(true)) {
        tracing::warn!(telegram_id, method, "Open Lines refused the client's change: {answer}");
    }
    let text = message.text.clone();
    svc.mailbox
        .revise(connector_id, telegram_id, |m| {
            if delete {
                !std::mem::replace(&mut m.removed, true)
            } else {
                // A newer edit stays due.
                m.text == text && std::mem::replace(&mut m.edited, false)
            }
        })
        .await?;
    tracing::info!(telegram_id, method, "client's change made in the Open Line");
    Ok(())
}

/// The id a client's message has in the Open Line.
fn received_id(connector_id: &str, telegram_id: i32) -> String {
    format!("tg-{connector_id}-{telegram_id}")
}

async fn forward(svc: &Services, portal: &mut PortalClient<'_>, connector_id: &str, message: &Received) -> Result<(), AppError> {
    let link = link_chat(svc, &portal.portal.member_id, connector_id, message.from.peer, &message.from.display_name()).await?;
    let (body, files) = received_body(svc, portal, message);
    send_to_open_line(svc, portal, &link, &received_id(connector_id, message.telegram_id), &body, None, &files).await.map(drop)
}

/// A client's message as the Open Line shows it: its text (with a note for a file that could
/// not come over) and its files' download URLs.
fn received_body(svc: &Services, portal: &PortalClient<'_>, message: &Received) -> (String, Vec<Value>) {
    let mut body = message.text.clone();
    let mut files = Vec::new();
    for file in &message.files {
        match &file.key {
            Some(key) => {
                let url = svc.links.download_url(key, OL_FILE_URL_LIFETIME);
                files.push(json!({ "url": url, "name": file.file_name }));
            }
            None => {
                let lang = portal.portal.lang;
                // The client named the file: inert, like their text.
                let name = inert_bbcode(&file.file_name);
                let note = if file.size > RECEIVED_FILE_LIMIT {
                    let mb = (file.size / (1024 * 1024)).to_string();
                    text(lang, "received_file_too_large", &[("name", &name), ("size", &mb)])
                } else {
                    text(lang, "file_unavailable", &[("name", &name)])
                };
                body = if body.is_empty() { note } else { format!("{body}[br]{note}") };
            }
        }
    }
    (body, files)
}

/// Tells the operator why their message did not reach the client: a system notification
/// to them (`im-notify-system-add.md`: any user may be notified with the app's token; an
/// `im.message.add` into the chat needs a member's, `im-message-add.md`). Open Lines has no
/// "undelivered" status.
pub async fn report_undelivered(svc: &Services, member_id: &str, reply: &crate::work::OperatorMessage, failure: &crate::domain::Failure) -> Result<(), AppError> {
    if reply.user_id == 0 {
        return Ok(());
    }
    let mut portal = PortalClient::app(svc, member_id).await?;
    let lang = portal.portal.lang;
    let message = text(lang, "reply_failed", &[("reason", &failure_text(lang, failure)), ("chat", &reply.ol_chat_id.to_string())]);
    let tag = format!("olchat-undelivered-{}-{}", reply.ol_chat_id, reply.im_message_id);
    portal.call("im.notify.system.add", &json!({ "USER_ID": reply.user_id, "MESSAGE": message, "TAG": tag })).await.map(drop)
}
