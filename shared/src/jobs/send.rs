//! The telegram-worker's job: send a stored message, part by part, exactly once.
//!
//! Each part is recorded as sent before the next goes out. A part whose send was
//! interrupted is sent again with the same `random_id`, which Telegram drops as a
//! duplicate, so neither a crash nor a redelivery sends a part twice. A finished message
//! goes on to the openline-worker (publication, activity) and, sent, to the read check.

use std::time::Duration;

use super::{Job, Outcome, backoff};
use crate::app::Services;
use crate::app::send::publish_job;
use crate::clock::now_millis;
use crate::domain::message::random_id;
use crate::domain::{Failure, Formatted, Message, MessageStatus, PublicationMode};
use crate::ports::TelegramError;
use crate::repo::RepoError;
use crate::repo::connectors::ConnectorStatus;

pub async fn send_message(svc: &Services, message_id: &str, receive_count: u32) -> Outcome {
    match try_send(svc, message_id, receive_count).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!("storage failed while sending: {e:#}");
            Outcome::RetryAfter(backoff(receive_count))
        }
    }
}

async fn try_send(svc: &Services, message_id: &str, receive_count: u32) -> Result<Outcome, RepoError> {
    let mut claimed = false;
    let Some(mut message) = svc.messages.update(message_id, |m| { claimed = m.begin_sending(); claimed }).await? else {
        return Ok(Outcome::Failed("no such message".into()));
    };
    if !claimed {
        tracing::info!(status = ?message.status, "already final; nothing to send");
        // The earlier run may have stopped before handing it on; the next steps repeat nothing.
        return Ok(finished(svc, &message, false, Outcome::Done).await);
    }
    let Some(connector) = svc.connectors.get(&message.member_id, &message.connector_id).await? else {
        return fail(svc, &message, Failure::ConnectorUnauthorized).await;
    };
    if connector.status == ConnectorStatus::NeedsLogin {
        return fail(svc, &message, Failure::ConnectorUnauthorized).await;
    }
    let account = connector.account();
    while let Some((index, text)) = message.next_part() {
        let sent = svc.telegram.send_text(&account, message.peer, &Formatted::plain(text), random_id(&message.id, index)).await;
        match sent {
            Ok(sent) => {
                message = svc
                    .messages
                    .update(message_id, |m| { m.part_sent(index, sent.id); true })
                    .await?
                    .expect("a message being sent is not deleted");
                tracing::info!(part = index, telegram_id = ?sent.id, "part sent");
            }
            Err(TelegramError::FloodWait { seconds }) => {
                let wait = Duration::from_secs(seconds.into());
                svc.messages.update(message_id, |m| { m.wait_until(now_millis() + wait.as_millis() as i64); true }).await?;
                tracing::warn!(seconds, "Telegram flood wait; retrying later");
                return Ok(Outcome::RetryAfter(wait));
            }
            Err(TelegramError::Transient(e)) => {
                tracing::warn!("Telegram did not answer ({e}); retrying with the same random_id");
                return Ok(Outcome::RetryAfter(backoff(receive_count)));
            }
            Err(TelegramError::PrivacyRestricted) => return fail(svc, &message, Failure::PrivacyRestricted).await,
            Err(TelegramError::Unauthorized(e)) => {
                tracing::warn!("connector session unauthorized: {e}");
                svc.connectors.set_status(&message.member_id, &connector.id, ConnectorStatus::NeedsLogin).await?;
                return fail(svc, &message, Failure::ConnectorUnauthorized).await;
            }
            Err(TelegramError::PeerFlood) => {
                tracing::warn!("connector limited by Telegram (PEER_FLOOD)");
                svc.connectors.set_status(&message.member_id, &connector.id, ConnectorStatus::Limited).await?;
                return fail(svc, &message, Failure::ConnectorLimited).await;
            }
            Err(TelegramError::Rejected(detail)) => return fail(svc, &message, Failure::Rejected { detail }).await,
        }
    }
    tracing::info!("message sent");
    Ok(finished(svc, &message, true, Outcome::Done).await)
}

/// Hands a final message on: to the openline-worker when it is published or has an
/// activity, and (`check_read`) to the read check when its activity will show "read".
async fn finished(svc: &Services, message: &Message, check_read: bool, outcome: Outcome) -> Outcome {
    let mut next = Vec::new();
    if message.publication != PublicationMode::None || message.create_activity {
        next.push(publish_job(message));
    }
    if check_read && message.status == MessageStatus::Sent && message.create_activity {
        next.push(Job::CheckRead { message_id: message.id.clone(), connector_id: message.connector_id.clone(), attempt: 0 });
    }
    for job in next {
        if let Err(e) = job.enqueue(svc.queue.as_ref(), Duration::ZERO).await {
            tracing::error!("could not hand the message on (retrying): {e:#}");
            return Outcome::RetryAfter(backoff(1));
        }
    }
    outcome
}

async fn fail(svc: &Services, message: &Message, failure: Failure) -> Result<Outcome, RepoError> {
    let reason = format!("{failure:?}");
    let failed = svc.messages.update(&message.id, |m| { m.fail(failure.clone()); true }).await?;
    tracing::warn!(reason, "message failed");
    Ok(finished(svc, failed.as_ref().unwrap_or(message), false, Outcome::Failed(reason)).await)
}
