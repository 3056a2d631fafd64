//! First-use contact sync: the connector's Telegram contacts (`contacts.getContacts`) become
//! cached resolutions, so the cards find them without a look-up each, even those whose owners
//! hide their number from strangers. The tab never waits: it shows the progress meanwhile.

use super::{Outcome, backoff, note_connector};
use crate::app::Services;
use crate::domain::{PhoneE164, RecipientKey, TelegramUsername};
use crate::ports::{Contact, TelegramError};
use crate::repo::connectors::Connector;
use crate::repo::RepoError;
use crate::repo::resolutions::{Resolution, SyncProgress};

/// Progress is written after this many contacts.
const STEP: usize = 25;

async fn fetch_contacts(svc: &Services, connector: &Connector) -> Result<Vec<Contact>, TelegramError> {
    let telegram = svc.telegram.connect(&connector.account()).await?;
    let contacts = telegram.contacts().await;
    telegram.close().await;
    contacts
}

pub async fn sync_contacts(svc: &Services, member_id: &str, connector_id: &str, receive_count: u32) -> Outcome {
    match try_sync(svc, member_id, connector_id, receive_count).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!("storage failed while syncing contacts: {e:#}");
            Outcome::RetryAfter(backoff(receive_count))
        }
    }
}

async fn try_sync(svc: &Services, member_id: &str, connector_id: &str, receive_count: u32) -> Result<Outcome, RepoError> {
    let Some(connector) = svc.connectors.get(member_id, connector_id).await? else { return Ok(Outcome::Done) };
    let contacts = match fetch_contacts(svc, &connector).await {
        Ok(contacts) => contacts,
        Err(TelegramError::FloodWait { seconds }) => return Ok(Outcome::RetryAfter(std::time::Duration::from_secs(seconds.into()))),
        Err(TelegramError::Transient(e)) => {
            tracing::warn!("contacts not fetched, retrying: {e}");
            return Ok(Outcome::RetryAfter(backoff(receive_count)));
        }
        Err(e) => {
            tracing::warn!("contacts not fetched: {e}");
            note_connector(svc, member_id, connector_id, &e).await?;
            svc.resolutions.save_sync(connector_id, &SyncProgress { done: 0, total: 0, finished: true }).await?;
            return Ok(Outcome::Failed(e.to_string()));
        }
    };
    let mut progress = SyncProgress { done: 0, total: contacts.len() as u64, finished: false };
    svc.resolutions.save_sync(connector_id, &progress).await?;
    for chunk in contacts.chunks(STEP) {
        for contact in chunk {
            let found = Resolution::Found { user: contact.user.clone() };
            let phone = contact.phone.as_deref().and_then(|p| PhoneE164::parse(&format!("+{p}"), None).ok());
            let username = contact.user.username.as_deref().and_then(|u| TelegramUsername::parse(u).ok());
            for key in phone.map(RecipientKey::Phone).into_iter().chain(username.map(RecipientKey::Username)) {
                svc.resolutions.save(connector_id, &key, &found).await?;
            }
        }
        progress.done += chunk.len() as u64;
        svc.resolutions.save_sync(connector_id, &progress).await?;
    }
    progress.finished = true;
    svc.resolutions.save_sync(connector_id, &progress).await?;
    tracing::info!(contacts = progress.total, "contacts synced");
    Ok(Outcome::Done)
}
