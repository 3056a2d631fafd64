//! Queue jobs and their handlers: `job -> Done | RetryAfter | Failed`. Lambda maps the
//! outcome to SQS batch failures and visibility; the embedded runner to its queue.

pub mod backfill;
pub mod catch_up;
pub mod forget;
pub mod listen;
pub mod publish;
pub mod reply;
pub mod runner;
pub mod send;
pub mod sync;

use std::time::Duration;

use tracing::Instrument;

use crate::app::openlines::{self, retryable};
use crate::app::automation::{self, HandOver};
pub use crate::app::connectors::note_connector;
use crate::app::{AppError, Progress, Services, install, schedule};
use crate::clock::now_millis;
use crate::domain::Failure;
use crate::ports::{Delivery, JobQueue, Queue, TelegramError};
use crate::work::Job;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Deliver the job again after this long.
    RetryAfter(Duration),
    /// The job can never succeed; drop it (its message already says why).
    Failed(String),
}

/// What a refusal from Telegram means for the message it was about.
impl From<TelegramError> for Failure {
    fn from(e: TelegramError) -> Self {
        match e {
            TelegramError::PrivacyRestricted => Failure::PrivacyRestricted,
            TelegramError::Unauthorized(_) => Failure::ConnectorUnauthorized,
            TelegramError::PeerFlood => Failure::ConnectorLimited,
            TelegramError::Rejected(detail) | TelegramError::Transient(detail) => Failure::Rejected { detail },
            TelegramError::FloodWait { seconds } => Failure::Rejected { detail: format!("FLOOD_WAIT {seconds}") },
        }
    }
}

/// Backoff for failures whose outcome is unknown: 5 s, 10 s, 20 s ... capped at 5 min.
pub fn backoff(receive_count: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << receive_count.saturating_sub(1).min(6)).min(300))
}

/// Portal work that is done, waits for another job, or failed: again later if it may
/// succeed then, else never.
pub fn portal_outcome(result: Result<impl Into<Progress>, AppError>, receive_count: u32) -> Outcome {
    match result.map(Into::into) {
        Ok(Progress::Done) => Outcome::Done,
        // A live holder is done in seconds; its lease only bounds how long a dead one holds.
        Ok(Progress::Wait(held)) => Outcome::RetryAfter(held.min(backoff(receive_count))),
        Err(e) if retryable(&e) => {
            tracing::warn!(code = e.code, "portal work failed, retrying: {e}");
            // The portal said when (a method's time budget resets): not before, never sooner.
            Outcome::RetryAfter(e.retry_after.unwrap_or_else(|| backoff(receive_count)))
        }
        Err(e) => Outcome::Failed(format!("{}: {e}", e.code)),
    }
}

/// How a running job keeps its message from other workers: hidden for `visibility` at a
/// time, extended every `every` while it works. A worker that dies stops extending it, so the
/// job is delivered again within `visibility`, not after the queue's own timeout (at least
/// the function's on Lambda: 15 minutes for the telegram-worker).
#[derive(Clone, Copy, Debug)]
pub struct Heartbeat {
    pub visibility: Duration,
    pub every: Duration,
}

pub const HEARTBEAT: Heartbeat = Heartbeat { visibility: Duration::from_secs(60), every: Duration::from_secs(20) };

/// Runs `work` while keeping delivery `receipt` of `name` hidden (`beat`); `now`: hidden for
/// `beat.visibility` from the start (SQS hid it for the queue's timeout), else from the first beat.
pub async fn keep_hidden<T>(queue: &dyn Queue, name: JobQueue, receipt: &str, beat: Heartbeat, now: bool, work: impl Future<Output = T>) -> T {
    let extend = || async {
        // A beat that fails leaves the message hidden until the last one ran out: at worst a
        // second worker starts it, and every job is safe to run twice.
        if let Err(e) = queue.retry_after(name, receipt, beat.visibility).await {
            tracing::warn!("a running job's visibility not extended: {e:#}");
        }
    };
    if now {
        extend().await;
    }
    tokio::pin!(work);
    let mut beats = tokio::time::interval_at(tokio::time::Instant::now() + beat.every, beat.every);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = beats.tick() => extend().await,
        }
    }
}

/// Runs one delivered job, in a span carrying its message id. A job has no user waiting on
/// it: its portal calls may wait their turn longer than a request's (`bitrix::patiently`).
pub async fn handle(svc: &Services, delivery: &Delivery) -> Outcome {
    let job: Job = match serde_json::from_str(&delivery.body) {
        Ok(job) => job,
        Err(e) => return Outcome::Failed(format!("unreadable job: {e}")),
    };
    crate::bitrix::patiently(run(svc, job, delivery.receive_count)).await
}

async fn run(svc: &Services, job: Job, receive: u32) -> Outcome {
    match job {
        Job::Send { message_id, .. } => {
            let span = tracing::info_span!("send", message_id = %message_id, receive);
            send::send_message(svc, &message_id, receive).instrument(span).await
        }
        Job::Publish { message_id, .. } => {
            let span = tracing::info_span!("publish", message_id = %message_id, receive);
            publish::publish(svc, &message_id, receive).instrument(span).await
        }
        Job::CatchUp { member_id, connector_id } => {
            let span = tracing::info_span!("catch_up", connector_id = %connector_id, receive);
            catch_up::catch_up(svc, &member_id, &connector_id, receive).instrument(span).await
        }
        Job::CatchUpAll { every_ms } => async {
            // The same tick sends what is due: the FIFO telegram queue cannot hold a message back.
            let now = now_millis();
            let swept = schedule::sweep(svc, now).await;
            let outcome = catch_up::request_all(svc, receive, now, every_ms).await;
            match swept {
                Ok(_) => outcome,
                Err(e) => portal_outcome(Err::<(), _>(e), receive),
            }
        }
        .instrument(tracing::info_span!("catch_up_all"))
        .await,
        Job::KeepPortalsAlive => {
            let kept = crate::app::portal::keep_portals_alive(svc, crate::app::portal::KEEP_ALIVE_AFTER);
            async { portal_outcome(kept.await, receive) }.instrument(tracing::info_span!("keep_portals_alive")).await
        }
        Job::ForwardReceived { member_id, connector_id, telegram_ids } => {
            let span = tracing::info_span!("forward", connector_id = %connector_id, receive);
            let forwarded = openlines::forward_received(svc, &member_id, &connector_id, &telegram_ids);
            async { portal_outcome(forwarded.await, receive) }.instrument(span).await
        }
        Job::Reading { member_id, line, external_chat_id, ol_chat_id, im_message_id } => {
            let span = tracing::info_span!("reading", ol_chat_id, im_message_id, receive);
            let confirmed = openlines::confirm_reading(svc, &member_id, &line, ol_chat_id, im_message_id, &external_chat_id);
            async { portal_outcome(confirmed.await, receive) }.instrument(span).await
        }
        Job::Reply(message) => {
            let span = tracing::info_span!("reply", ol_chat_id = message.ol_chat_id, im_message_id = message.im_message_id, receive);
            reply::deliver(svc, &message, receive).instrument(span).await
        }
        Job::EditReply(message) => {
            let span = tracing::info_span!("edit_reply", ol_chat_id = message.ol_chat_id, im_message_id = message.im_message_id, receive);
            reply::revise(svc, &message, reply::Revision::Edit, receive).instrument(span).await
        }
        Job::DeleteReply(message) => {
            let span = tracing::info_span!("delete_reply", ol_chat_id = message.ol_chat_id, im_message_id = message.im_message_id, receive);
            reply::revise(svc, &message, reply::Revision::Delete, receive).instrument(span).await
        }
        Job::ReviseReceived { member_id, connector_id, telegram_ids } => {
            let span = tracing::info_span!("revise_received", connector_id = %connector_id, receive);
            let revised = openlines::revise_received(svc, &member_id, &connector_id, &telegram_ids);
            async { portal_outcome(revised.await, receive) }.instrument(span).await
        }
        Job::SetUp { member_id } => {
            let span = tracing::info_span!("set_up", member_id = %member_id, receive);
            async { portal_outcome(install::set_up(svc, &member_id).await, receive) }.instrument(span).await
        }
        Job::SignOut { member_id, connector_id, telegram_user_id } => {
            let span = tracing::info_span!("sign_out", connector_id = %connector_id, receive);
            forget::sign_out(svc, &member_id, &connector_id, telegram_user_id, receive).instrument(span).await
        }
        Job::ForgetPortal { member_id } => {
            let span = tracing::info_span!("forget_portal", member_id = %member_id, receive);
            async { portal_outcome(install::forget_portal(svc, &member_id).await, receive) }.instrument(span).await
        }
        Job::Automate { member_id, request_id } => {
            let span = tracing::info_span!("automate", request_id = %request_id, receive);
            async { portal_outcome(automation::advance(svc, &member_id, &request_id).await, receive) }.instrument(span).await
        }
        Job::SendAutomated { member_id, request_id, .. } => {
            let span = tracing::info_span!("send_automated", request_id = %request_id, receive);
            async {
                match automation::hand_over(svc, &member_id, &request_id).await {
                    Ok(HandOver::Done) => Outcome::Done,
                    Ok(HandOver::Later(wait)) => Outcome::RetryAfter(wait),
                    Err(e) => portal_outcome(Err::<(), _>(e), receive),
                }
            }
            .instrument(span)
            .await
        }
        Job::Backfill { member_id, connector_id, peer } => {
            let span = tracing::info_span!("backfill", connector_id = %connector_id, receive);
            backfill::backfill(svc, &member_id, &connector_id, peer, receive).instrument(span).await
        }
        Job::SyncContacts { member_id, connector_id } => {
            let span = tracing::info_span!("sync_contacts", connector_id = %connector_id, receive);
            sync::sync_contacts(svc, &member_id, &connector_id, receive).instrument(span).await
        }
    }
}
