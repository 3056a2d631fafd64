//! Asking for a catch-up of a connected account (what happened on Telegram since the last look).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Services;
use crate::clock::now_millis;
use crate::work::Job;

/// The accounts whose updates a kept connection receives now (the single-server deployment,
/// `jobs::listen`): the catch-up leaves them to it, and takes them back while it is down.
#[derive(Clone, Default)]
pub struct Listening(Arc<Mutex<HashSet<String>>>);

impl Listening {
    pub fn covers(&self, connector_id: &str) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).contains(connector_id)
    }

    pub fn set(&self, connector_id: &str, listening: bool) {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if listening {
            set.insert(connector_id.to_owned());
        } else {
            set.remove(connector_id);
        }
    }
}

/// Queues a catch-up of the connector unless one is queued and not started yet, or its
/// kept connection receives its updates anyway.
pub async fn request_catch_up(svc: &Services, member_id: &str, connector_id: &str) -> anyhow::Result<()> {
    if svc.listening.covers(connector_id) {
        return Ok(());
    }
    if svc.mailbox.queue_catch_up(connector_id).await? {
        let job = Job::CatchUp { member_id: member_id.to_owned(), connector_id: connector_id.to_owned() };
        if let Err(e) = job.enqueue(svc.queue.as_ref(), Duration::ZERO).await {
            // No job stands behind the marker: the next request must queue one.
            svc.mailbox.catch_up_started(connector_id).await?;
            return Err(e.into());
        }
    }
    Ok(())
}

/// Replies and reads are likely now on the account (a send, a manager watching one of its
/// clients): it is caught up at every tick for `window_ms` (`domain::cadence`), and at once if
/// it had been idle, so what came meanwhile shows without waiting for its quarter hour.
pub async fn account_active(svc: &Services, member_id: &str, connector_id: &str, window_ms: i64) -> anyhow::Result<()> {
    let now = now_millis();
    if svc.connectors.mark_active(member_id, connector_id, now + window_ms, now).await? {
        request_catch_up(svc, member_id, connector_id).await?;
    }
    Ok(())
}
