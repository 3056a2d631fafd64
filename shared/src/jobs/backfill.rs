//! The earlier history of a client, read back from Telegram once, the first time a manager
//! opens their conversation: one `messages.getHistory` page, paced and within the account's
//! daily budget, so what was said before the app was installed shows in the card too. Files
//! of it are named, not downloaded: bringing a client's whole past over is not worth the
//! account's traffic.

use std::time::Duration;

use super::{Outcome, backoff, note_connector};
use crate::app::Services;
use crate::ports::{ChatMessage, Peer, TelegramError};
use crate::repo::RepoError;
use crate::repo::connectors::ConnectorStatus;
use crate::repo::conversations::{Placed, SaidFile, Written};
use crate::repo::safety::{Counter, HISTORY_READS_PER_DAY, Paced};

/// How long a job waits for the account's next history slot before it is delivered again.
const SLOT_PATIENCE: Duration = Duration::from_secs(10);

pub async fn backfill(svc: &Services, member_id: &str, connector_id: &str, peer: Peer, receive_count: u32) -> Outcome {
    match try_backfill(svc, member_id, connector_id, peer, receive_count).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!("storage failed while reading a history back: {e:#}");
            Outcome::RetryAfter(backoff(receive_count))
        }
    }
}

async fn try_backfill(svc: &Services, member_id: &str, connector_id: &str, peer: Peer, receive_count: u32) -> Result<Outcome, RepoError> {
    let conversations = &svc.conversations;
    let connector = svc.connectors.get(member_id, connector_id).await?.filter(|c| c.status != ConnectorStatus::NeedsLogin);
    let Some(connector) = connector else {
        conversations.end_backfill(connector_id, peer.user_id, false).await?;
        return Ok(Outcome::Done);
    };
    if !svc.safety.slot(connector_id, Paced::HistoryRead, svc.limits.phone_pace, SLOT_PATIENCE).await? {
        return Ok(Outcome::RetryAfter(svc.limits.phone_pace.max(Duration::from_secs(1))));
    }
    if !svc.safety.take(connector_id, Counter::HistoryReads, HISTORY_READS_PER_DAY).await? {
        tracing::warn!(connector_id, "daily history budget used up; the next open asks again");
        conversations.end_backfill(connector_id, peer.user_id, false).await?;
        return Ok(Outcome::Done);
    }
    let page = match read_page(svc, &connector.account(), peer).await {
        Ok(page) => page,
        Err(TelegramError::FloodWait { seconds }) => return Ok(Outcome::RetryAfter(Duration::from_secs(seconds.into()))),
        Err(TelegramError::Transient(e)) => {
            tracing::warn!("history not read, retrying: {e}");
            return Ok(Outcome::RetryAfter(backoff(receive_count)));
        }
        Err(e) => {
            tracing::warn!("history not read: {e}");
            note_connector(svc, member_id, connector_id, &e).await?;
            conversations.end_backfill(connector_id, peer.user_id, false).await?;
            return Ok(Outcome::Failed(e.to_string()));
        }
    };
    let mut listed = 0;
    for message in page {
        let placed = Placed::History { date_secs: message.date };
        listed += usize::from(conversations.add_written(connector_id, peer.user_id, placed, written(message)).await?);
    }
    conversations.end_backfill(connector_id, peer.user_id, true).await?;
    tracing::info!(listed, "earlier history read back");
    Ok(Outcome::Done)
}

async fn read_page(svc: &Services, account: &crate::ports::Account, peer: Peer) -> Result<Vec<ChatMessage>, TelegramError> {
    let telegram = svc.telegram.connect(account).await?;
    let page = telegram.earlier(peer, 0).await;
    telegram.close().await;
    page
}

fn written(message: ChatMessage) -> Written {
    let files = message.file.into_iter().map(|f| SaidFile { name: f.file_name, kind: f.kind, mime_type: f.mime_type, key: None });
    Written { telegram_id: message.id, out: message.out, text: message.text.text, files: files.collect(), edited: false, deleted: false }
}
