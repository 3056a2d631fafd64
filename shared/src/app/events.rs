//! Events Bitrix24 POSTs to the app, bracket-encoded (`auth[member_id]=…`): genuine only
//! with the portal's stored `application_token`, acknowledged at once, the work queued
//! (Bitrix24 does not retry an event).

use serde::Deserialize;

use super::install::{CONNECTOR_ID, InstallGrant, line_gone, register_portal, uninstall};
use super::{AppError, ErrorKind, Services};
use crate::crypto::Secret;
use crate::repo::portals::Portal;
use crate::i18n::Lang;
use crate::work::{Job, OperatorMessage};

#[derive(Deserialize)]
struct Envelope {
    event: String,
    auth: EventAuth,
}

#[derive(Deserialize)]
struct EventAuth {
    member_id: String,
    #[serde(default)]
    domain: String,
    access_token: Option<Secret>,
    refresh_token: Option<Secret>,
    application_token: Option<Secret>,
}

#[derive(Deserialize)]
struct WithData<T> {
    data: T,
}

#[derive(Deserialize, Default)]
struct AppData {
    #[serde(rename = "LANGUAGE_ID", default)]
    language_id: String,
}

#[derive(Deserialize)]
struct ConnectorMessages {
    #[serde(rename = "CONNECTOR")]
    connector: String,
    #[serde(rename = "LINE")]
    line: String,
    #[serde(rename = "MESSAGES")]
    messages: Vec<ConnectorMessage>,
}

#[derive(Deserialize)]
struct ConnectorMessage {
    im: ImIds,
    message: WrittenText,
    chat: ExternalChat,
}

#[derive(Deserialize)]
struct ImIds {
    chat_id: u64,
    message_id: u64,
}

#[derive(Deserialize)]
struct WrittenText {
    #[serde(default)]
    user_id: u64,
    #[serde(default)]
    text: String,
}

/// `OnImConnectorStatusDelete` (`events/on-im-connector-status-delete.md`): lower-case keys.
#[derive(Deserialize)]
struct ConnectorTurnedOff {
    connector: String,
    line: String,
}

#[derive(Deserialize)]
struct ExternalChat {
    id: String,
}

pub(super) fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, AppError> {
    serde_qs::Config::new()
        .use_form_encoding(true)
        .max_depth(8)
        .deserialize_bytes(body)
        .map_err(|e| AppError::bad_request("bad_event", format!("This is not a Bitrix24 event: {e}.")))
}

/// Whether a POST to the install handler is an event (`ONAPPINSTALL`) rather than the install page.
pub fn is_event(body: &[u8]) -> bool {
    decode::<Envelope>(body).is_ok()
}

/// `ONAPPINSTALL` at the install handler: the portal is registered, its set-up queued.
pub async fn on_install(svc: &Services, body: &[u8]) -> Result<(), AppError> {
    let envelope: Envelope = decode(body)?;
    if !envelope.event.eq_ignore_ascii_case("ONAPPINSTALL") {
        return Err(AppError::bad_request("unexpected_event", "The install handler takes ONAPPINSTALL only."));
    }
    register_and_set_up(svc, body, envelope).await
}

/// Registers the portal from an event's tokens (verified with the portal) and queues its set-up.
async fn register_and_set_up(svc: &Services, body: &[u8], envelope: Envelope) -> Result<(), AppError> {
    let data = decode::<WithData<AppData>>(body).map(|d| d.data).unwrap_or_default();
    let auth = envelope.auth;
    let access_token = auth.access_token.ok_or_else(|| AppError::bad_request("missing_token", "The event carries no access token."))?;
    let grant = InstallGrant {
        member_id: auth.member_id,
        domain: auth.domain,
        access_token,
        refresh_token: auth.refresh_token,
        application_token: auth.application_token,
        lang: Lang::from_portal(&data.language_id),
    };
    let portal = register_portal(svc, grant).await?;
    queue(svc, Job::SetUp { member_id: portal.member_id }).await
}

async fn queue(svc: &Services, job: Job) -> Result<(), AppError> {
    job.enqueue(svc.queue.as_ref(), std::time::Duration::ZERO).await.map_err(|e| AppError::internal(format!("queue: {e:#}")))
}

/// `POST /bitrix/events`: refuses an event without the portal's `application_token`, then
/// queues its work.
pub async fn accept(svc: &Services, body: &[u8]) -> Result<(), AppError> {
    let envelope: Envelope = decode(body)?;
    let event = envelope.event.to_ascii_uppercase();
    let member_id = envelope.auth.member_id.clone();
    let portal = svc.portals.get(&member_id).await?;
    if genuine(svc, portal.as_ref(), envelope.auth.application_token.as_ref()).is_none() {
        if event == "ONAPPUPDATE" && portal.is_some() {
            // An update may bring a new application_token: trusted once the portal confirms the event's access token.
            return register_and_set_up(svc, body, envelope).await;
        }
        tracing::warn!(member_id, event, "event refused: its application_token is not the portal's");
        return Err(AppError::new(ErrorKind::Unauthorized, "bad_application_token", "This event does not carry the portal's application_token."));
    }
    match event.as_str() {
        "ONIMCONNECTORMESSAGEADD" => queue_operator_messages(svc, &member_id, decode::<WithData<ConnectorMessages>>(body)?.data).await,
        "ONIMCONNECTORMESSAGEUPDATE" => queue_revisions(svc, &member_id, decode::<WithData<ConnectorMessages>>(body)?.data, Job::EditReply).await,
        "ONIMCONNECTORMESSAGEDELETE" => queue_revisions(svc, &member_id, decode::<WithData<ConnectorMessages>>(body)?.data, Job::DeleteReply).await,
        "ONAPPUNINSTALL" => uninstall(svc, &member_id).await,
        "ONIMCONNECTORSTATUSDELETE" => {
            let off = decode::<WithData<ConnectorTurnedOff>>(body)?.data;
            if off.connector != CONNECTOR_ID {
                return Ok(());
            }
            line_gone(svc, &member_id, &off.line).await
        }
        // `events/on-im-connector-line-delete.md`: `data` is the deleted line's id.
        "ONIMCONNECTORLINEDELETE" => line_gone(svc, &member_id, &decode::<WithData<String>>(body)?.data).await,
        "ONAPPUPDATE" => queue(svc, Job::SetUp { member_id }).await,
        _ => {
            tracing::info!(event, "event ignored");
            Ok(())
        }
    }
}

/// The portal, if a call claiming to come from it carries its `application_token`
/// (`_includes/auth-params-in-events.md`: "Token for secure event handling").
pub(super) fn genuine<'p>(svc: &Services, portal: Option<&'p Portal>, offered: Option<&Secret>) -> Option<&'p Portal> {
    let offered = offered.map(Secret::expose).unwrap_or("");
    portal.filter(|p| svc.portals.application_token_matches(p, offered))
}

/// Each message of one of our chats becomes a job; others' connectors and unknown chats are not ours.
async fn queue_operator_messages(svc: &Services, member_id: &str, data: ConnectorMessages) -> Result<(), AppError> {
    for message in operator_messages(svc, member_id, data).await? {
        queue(svc, Job::Reply(message)).await?;
    }
    Ok(())
}

/// An edit or a deletion (`on-im-connector-message-update.md`, `-delete.md`: the same `im`
/// and `chat` ids as the message had) becomes a job only for a reply that reached Telegram:
/// nothing else costs the account a connection.
async fn queue_revisions(svc: &Services, member_id: &str, data: ConnectorMessages, job: fn(OperatorMessage) -> Job) -> Result<(), AppError> {
    for message in operator_messages(svc, member_id, data).await? {
        let reply = svc.openlines.known_reply(member_id, message.ol_chat_id, message.im_message_id).await?;
        if reply.is_none_or(|r| r.telegram_id.is_none() || r.deleted) {
            tracing::info!(im_message_id = message.im_message_id, "a change to a message we did not send to Telegram; ignored");
            continue;
        }
        queue(svc, job(message)).await?;
    }
    Ok(())
}

/// The event's messages in chats of our connector that we know.
async fn operator_messages(svc: &Services, member_id: &str, data: ConnectorMessages) -> Result<Vec<OperatorMessage>, AppError> {
    if data.connector != CONNECTOR_ID {
        return Ok(Vec::new());
    }
    let mut messages = Vec::new();
    for item in data.messages {
        let Some(link) = svc.openlines.chat(member_id, &item.chat.id).await? else {
            tracing::info!(chat = item.chat.id, "message in a chat we do not know; ignored");
            continue;
        };
        messages.push(OperatorMessage {
            member_id: member_id.to_owned(),
            connector_id: link.connector_id,
            line: data.line.clone(),
            external_chat_id: item.chat.id,
            ol_chat_id: item.im.chat_id,
            im_message_id: item.im.message_id,
            user_id: item.message.user_id,
            text: item.message.text,
        });
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_bitrix_bracket_forms_encoded_or_not() {
        let raw = "event=ONIMCONNECTORMESSAGEADD&data[CONNECTOR]=olchat_telegram&data[LINE]=1\
            &data[MESSAGES][0][im][chat_id]=12&data[MESSAGES][0][im][message_id]=34\
            &data[MESSAGES][0][message][user_id]=1&data[MESSAGES][0][message][text]=%5Bb%5DHi%5B%2Fb%5D+there\
            &data[MESSAGES][0][message][id][0]=34&data[MESSAGES][0][chat][id]=sales-1001\
            &auth[member_id]=m1&auth[application_token]=t";
        for body in [raw.to_owned(), raw.replace('[', "%5B").replace(']', "%5D")] {
            let envelope: Envelope = decode(body.as_bytes()).unwrap();
            assert_eq!((envelope.event.as_str(), envelope.auth.member_id.as_str()), ("ONIMCONNECTORMESSAGEADD", "m1"));
            let data = decode::<WithData<ConnectorMessages>>(body.as_bytes()).unwrap().data;
            let m = &data.messages[0];
            assert_eq!((m.im.chat_id, m.im.message_id), (12, 34));
            assert_eq!((m.message.text.as_str(), m.chat.id.as_str()), ("[b]Hi[/b] there", "sales-1001"));
        }
        assert!(decode::<Envelope>(b"garbage").is_err());
        // on-im-connector-message-update.md names the message by a list of ids, -delete.md by one.
        for id in ["data[MESSAGES][0][message][id][0]=555", "data[MESSAGES][0][message][id]=555"] {
            let body = format!("data[CONNECTOR]=olchat_telegram&data[LINE]=1&data[MESSAGES][0][im][chat_id]=12&data[MESSAGES][0][im][message_id]=34&{id}&data[MESSAGES][0][chat][id]=sales-1001");
            let data = decode::<WithData<ConnectorMessages>>(body.as_bytes()).unwrap().data;
            assert_eq!((data.messages[0].im.message_id, data.messages[0].message.text.as_str()), (34, ""), "{id}");
        }
        assert!(decode::<Envelope>(b"event=X").is_err(), "auth is required");
    }
}
