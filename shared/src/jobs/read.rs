//! Whether the recipient has read a sent message: Telegram's `read_outbox_max_id` of the
//! dialog reaching the message's last part. Looked at again with growing pauses until then.

use std::time::Duration;

use super::{Job, Outcome};
use crate::app::Services;
use crate::app::send::publish_job;
use crate::domain::MessageStatus;
use crate::repo::RepoError;

/// About a day of looking: 1 s pauses at first, doubling every ten looks up to ~4 min.
const MAX_ATTEMPTS: u32 = 400;

fn pause(attempt: u32) -> Duration {
    Duration::from_secs(1 << (attempt / 10).min(8))
}

pub async fn check_read(svc: &Services, message_id: &str, attempt: u32) -> Outcome {
    match try_check(svc, message_id, attempt).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!("storage failed while checking reads: {e:#}");
            Outcome::RetryAfter(pause(attempt))
        }
    }
}

async fn try_check(svc: &Services, message_id: &str, attempt: u32) -> Result<Outcome, RepoError> {
    let Some(message) = svc.messages.get(message_id).await? else { return Ok(Outcome::Done) };
    let (MessageStatus::Sent, Some(last)) = (message.status, message.last_telegram_id()) else { return Ok(Outcome::Done) };
    let Some(connector) = svc.connectors.get(&message.member_id, &message.connector_id).await? else { return Ok(Outcome::Done) };
    match svc.telegram.read_outbox_max_id(&connector.account(), message.peer).await {
        Ok(read) if read >= last => {
            let mut marked = false;
            svc.messages.update(message_id, |m| { marked = m.mark_read(); marked }).await?;
            let update = marked && message.create_activity;
            if update && let Err(e) = publish_job(&message).enqueue(svc.queue.as_ref(), Duration::ZERO).await {
                tracing::error!("could not queue the activity update: {e:#}");
                return Ok(Outcome::RetryAfter(pause(attempt)));
            }
            tracing::info!("message read");
            Ok(Outcome::Done)
        }
        outcome => {
            if let Err(e) = outcome {
                tracing::debug!("read state unknown: {e}");
            }
            if attempt + 1 >= MAX_ATTEMPTS {
                return Ok(Outcome::Done);
            }
            let next = Job::CheckRead { message_id: message.id.clone(), connector_id: message.connector_id.clone(), attempt: attempt + 1 };
            match next.enqueue(svc.queue.as_ref(), pause(attempt)).await {
                Ok(()) => Ok(Outcome::Done),
                Err(_) => Ok(Outcome::RetryAfter(pause(attempt))),
            }
        }
    }
}
