//! Asking for a catch-up of a connected account (what happened on Telegram since the last look).

use std::time::Duration;

use super::Services;
use crate::clock::now_millis;
use crate::work::Job;

/// Queues a catch-up of the connector unless one is queued and not started yet.
pub async fn request_catch_up(svc: &Services, member_id: &str, connector_id: &str) -> anyhow::Result<()> {
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
