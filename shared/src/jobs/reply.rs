//! An operator's message written into one of our Open Line chats goes to the client through
//! the chat's connector, BBCode turned into Telegram formatting; then its delivery is
//! confirmed to Open Lines, or the operator is notified why it failed. Each step is recorded:
//! nothing is sent twice.

use std::time::Duration;

use super::{Outcome, backoff, note_connector, portal_outcome};
use crate::work::OperatorMessage;
use crate::app::openlines::{confirm_delivery, report_undelivered};
use crate::app::{AppError, Services};
use crate::domain::{Failure, Formatted};
use crate::domain::formatting::{from_bbcode, strip_signature, tidy_signature};
use crate::clock::now_millis;
use crate::domain::cadence;
use crate::domain::message::random_id;
use crate::ports::TelegramError;
use crate::repo::conversations::{Placed, Written};
use crate::repo::mailbox::Sent;
use crate::repo::openlines::{ChatLink, Reply};

pub async fn deliver(svc: &Services, m: &OperatorMessage, receive_count: u32) -> Outcome {
    match try_deliver(svc, m, receive_count).await {
        Ok(outcome) => outcome,
        Err(e) => portal_outcome(Err::<(), _>(e), receive_count),
    }
}

async fn try_deliver(svc: &Services, m: &OperatorMessage, receive_count: u32) -> Result<Outcome, AppError> {
    let member = m.member_id.as_str();
    let reply = svc.openlines.reply(member, m.ol_chat_id, m.im_message_id).await?;
    let confirmed = |r: &mut Reply| !std::mem::replace(&mut r.confirmed, true);
    let telegram_id = match reply {
        Reply { confirmed: true, .. } => return Ok(Outcome::Done),
        Reply { sent: true, telegram_id, .. } => telegram_id,
        Reply { sent: false, .. } => {
            let link = svc.openlines.chat(member, &m.external_chat_id).await?;
            match send_to_client(svc, m, link.as_ref()).await? {
                Ok((telegram_id, text)) => {
                    if let (Some(link), Some(telegram_id)) = (&link, telegram_id) {
                        await_reading(svc, m, link, telegram_id).await?;
                        let written = Written { telegram_id, out: true, text, files: Vec::new(), edited: false, deleted: false };
                        svc.conversations.add_written(&link.connector_id, link.peer.user_id, Placed::Now, written).await?;
                    }
                    let record = |r: &mut Reply| {
                        *r = Reply { sent: true, telegram_id, ..Reply::default() };
                        true
                    };
                    svc.openlines.update_reply(member, m.ol_chat_id, m.im_message_id, record).await?;
                    telegram_id
                }
                Err(TelegramError::FloodWait { seconds }) => return Ok(Outcome::RetryAfter(Duration::from_secs(seconds.into()))),
                Err(TelegramError::Transient(e)) => {
                    tracing::warn!("Telegram did not answer ({e}); retrying with the same random_id");
                    return Ok(Outcome::RetryAfter(backoff(receive_count)));
                }
                Err(e) => {
                    if let Some(link) = &link {
                        note_connector(svc, member, &link.connector_id, &e).await?;
                    }
                    let failure = Failure::from(e);
                    // Recorded first: a note that cannot be posted is not retried, nor is the send.
                    svc.openlines.update_reply(member, m.ol_chat_id, m.im_message_id, confirmed).await?;
                    if let Err(e) = report_undelivered(svc, member, m, &failure).await {
                        tracing::warn!(code = e.code, "the operator could not be told: {e}");
                    }
                    tracing::warn!(?failure, "operator reply not delivered; the operator was told");
                    return Ok(Outcome::Failed(format!("{failure:?}")));
                }
            }
        }
    };
    let delivered = telegram_id.map(|id| id.to_string()).unwrap_or_else(|| m.im_message_id.to_string());
    confirm_delivery(svc, member, &m.line, m.ol_chat_id, m.im_message_id, &m.external_chat_id, &delivered).await?;
    svc.openlines.update_reply(member, m.ol_chat_id, m.im_message_id, confirmed).await?;
    tracing::info!("operator reply delivered to the client");
    Ok(Outcome::Done)
}

/// The sent reply waits in the connector's mailbox for the client to read it.
async fn await_reading(svc: &Services, m: &OperatorMessage, link: &ChatLink, telegram_id: i32) -> Result<(), AppError> {
    let sent = Sent::OperatorReply {
        line: m.line.clone(),
        external_chat_id: m.external_chat_id.clone(),
        ol_chat_id: m.ol_chat_id,
        im_message_id: m.im_message_id,
    };
    svc.mailbox.sent(&link.connector_id, link.peer.user_id, telegram_id, &sent).await?;
    svc.safety.remember_chat(&link.connector_id, link.peer).await?;
    let now = now_millis();
    svc.connectors.mark_active(&m.member_id, &link.connector_id, now + cadence::AFTER_SEND_MS, now).await?;
    Ok(())
}

/// The operator's BBCode as Telegram formatting, their signature as the portal wants it.
async fn telegram_text(svc: &Services, m: &OperatorMessage) -> Result<Formatted, AppError> {
    let keep_signature = svc.portals.get(&m.member_id).await?.is_some_and(|p| p.keep_operator_signature);
    Ok(from_bbcode(&if keep_signature { tidy_signature(&m.text) } else { strip_signature(&m.text).into() }))
}

/// What an operator did to a reply already sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revision {
    Edit,
    Delete,
}

/// An operator edited or deleted a reply of theirs: the same on Telegram
/// (`messages.editMessage`, `messages.deleteMessages` for both sides), through the chat's
/// connector. A reply never sent, deleted already, or unknown is left alone; an edit Telegram
/// has already (`MESSAGE_NOT_MODIFIED`) changes nothing, so a repeated one is harmless. An
/// edit is confirmed with `imconnector.send.status.delivery`
/// (`events/on-im-connector-message-update.md`: "to mark the message as successfully updated").
pub async fn revise(svc: &Services, m: &OperatorMessage, revision: Revision, receive_count: u32) -> Outcome {
    match try_revise(svc, m, revision).await {
        Ok(Ok(())) => Outcome::Done,
        Ok(Err(TelegramError::FloodWait { seconds })) => Outcome::RetryAfter(Duration::from_secs(seconds.into())),
        Ok(Err(TelegramError::Transient(e))) => {
            tracing::warn!("Telegram did not answer ({e}); trying again");
            Outcome::RetryAfter(backoff(receive_count))
        }
        Ok(Err(e)) => {
            tracing::warn!(?revision, "Telegram refused the operator's change: {e}");
            Outcome::Failed(format!("{revision:?}: {e}"))
        }
        Err(e) => portal_outcome(Err::<(), _>(e), receive_count),
    }
}

async fn try_revise(svc: &Services, m: &OperatorMessage, revision: Revision) -> Result<Result<(), TelegramError>, AppError> {
    let member = m.member_id.as_str();
    let reply = svc.openlines.known_reply(member, m.ol_chat_id, m.im_message_id).await?;
    let Some(telegram_id) = reply.filter(|r| !r.deleted).and_then(|r| r.telegram_id) else {
        tracing::info!("a change to a reply that never reached Telegram; ignored");
        return Ok(Ok(()));
    };
    let Some(link) = svc.openlines.chat(member, &m.external_chat_id).await? else { return Ok(Ok(())) };
    let Some(connector) = svc.connectors.get(member, &link.connector_id).await? else { return Ok(Ok(())) };
    let text = telegram_text(svc, m).await?;
    if revision == Revision::Edit && text.text.trim().is_empty() {
        return Ok(Err(TelegramError::Rejected("only text goes to Telegram from an Open Line for now".into())));
    }
    let telegram = match svc.telegram.connect(&connector.account()).await {
        Ok(telegram) => telegram,
        Err(e) => return Ok(Err(e)),
    };
    let done = match revision {
        Revision::Edit => telegram.edit_text(link.peer, telegram_id, &text).await,
        Revision::Delete => telegram.delete_messages(&[telegram_id]).await,
    };
    telegram.close().await;
    if let Err(e) = done {
        return Ok(Err(e));
    }
    match revision {
        Revision::Edit => {
            svc.conversations.revise(&link.connector_id, telegram_id, |w| w.edit(&text.text)).await?;
            let id = telegram_id.to_string();
            confirm_delivery(svc, member, &m.line, m.ol_chat_id, m.im_message_id, &m.external_chat_id, &id).await?;
            tracing::info!("operator's edit made on Telegram");
        }
        Revision::Delete => {
            svc.conversations.revise(&link.connector_id, telegram_id, Written::delete).await?;
            svc.openlines.update_reply(member, m.ol_chat_id, m.im_message_id, |r| !std::mem::replace(&mut r.deleted, true)).await?;
            tracing::info!("operator's deletion made on Telegram");
        }
    }
    Ok(Ok(()))
}

/// Sends the reply through the chat's connector: its Telegram id and text as sent; the outer
/// error is ours, the inner Telegram's.
async fn send_to_client(svc: &Services, m: &OperatorMessage, link: Option<&ChatLink>) -> Result<Result<(Option<i32>, String), TelegramError>, AppError> {
    let unauthorized = || Ok(Err(TelegramError::Unauthorized("the connector is gone".into())));
    let Some(link) = link else { return unauthorized() };
    let Some(connector) = svc.connectors.get(&m.member_id, &link.connector_id).await? else { return unauthorized() };
    let text = telegram_text(svc, m).await?;
    if text.text.trim().is_empty() {
        return Ok(Err(TelegramError::Rejected("only text goes to Telegram from an Open Line for now".into())));
    }
    let random_id = random_id(&format!("openline#{}#{}", m.ol_chat_id, m.im_message_id), 0);
    let telegram = match svc.telegram.connect(&connector.account()).await {
        Ok(telegram) => telegram,
        Err(e) => return Ok(Err(e)),
    };
    let sent = telegram.send_text(link.peer, &text, random_id).await.map(|sent| (sent.id, text.text));
    telegram.close().await;
    Ok(sent)
}
