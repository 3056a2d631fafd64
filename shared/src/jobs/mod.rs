//! Queue jobs and their handlers: `job -> Done | RetryAfter | Failed`. Lambda maps the
//! outcome to SQS batch failures and visibility; the embedded runner to its queue.

pub mod publish;
pub mod read;
pub mod reply;
pub mod runner;
pub mod send;
pub mod sync;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::app::openlines::retryable;
use crate::app::{AppError, Services, install};
use crate::ports::{Delivery, JobQueue, Queue, QueueError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Send a stored message through Telegram.
    Send { message_id: String, connector_id: String },
    /// Mirror a message into its Open Line chat and its CRM activity.
    Publish { message_id: String, member_id: String },
    /// See whether the recipient has read a sent message yet (`attempt` counts the looks).
    CheckRead { message_id: String, connector_id: String, attempt: u32 },
    /// A message written into one of our Open Line chats: an operator's reply for the
    /// client, or our own publication come back.
    Reply(OperatorMessage),
    /// Register the card tabs, the connector and the events (after `ONAPPINSTALL` or an update).
    SetUp { member_id: String },
    /// Copy a connector's Telegram contacts into its resolutions (first use).
    SyncContacts { member_id: String, connector_id: String },
}

/// One message of an `OnImConnectorMessageAdd` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorMessage {
    pub member_id: String,
    pub connector_id: String,
    pub line: String,
    pub external_chat_id: String,
    pub ol_chat_id: u64,
    pub im_message_id: u64,
    pub user_id: u64,
    pub text: String,
}

impl Job {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("jobs serialize")
    }

    /// Jobs of one group run one at a time: one Telegram session, one connection; one
    /// portal's Open Line work in order.
    pub fn group(&self) -> &str {
        match self {
            Self::Send { connector_id, .. } | Self::CheckRead { connector_id, .. } | Self::SyncContacts { connector_id, .. } => {
                connector_id
            }
            Self::Reply(m) => &m.connector_id,
            Self::Publish { member_id, .. } | Self::SetUp { member_id } => member_id,
        }
    }

    /// Telegram work goes to the telegram-worker, portal work to the openline-worker.
    pub fn queue(&self) -> JobQueue {
        match self {
            Self::Send { .. } | Self::CheckRead { .. } | Self::Reply(_) | Self::SyncContacts { .. } => JobQueue::Telegram,
            Self::Publish { .. } | Self::SetUp { .. } => JobQueue::Openline,
        }
    }

    pub async fn enqueue(&self, queue: &dyn Queue, delay: Duration) -> Result<(), QueueError> {
        queue.send(self.queue(), &self.to_body(), self.group(), delay).await
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Deliver the job again after this long.
    RetryAfter(Duration),
    /// The job can never succeed; drop it (its message already says why).
    Failed(String),
}

/// Backoff for failures whose outcome is unknown: 5 s, 10 s, 20 s ... capped at 5 min.
pub fn backoff(receive_count: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << receive_count.saturating_sub(1).min(6)).min(300))
}

/// A portal call that failed: again later if it may succeed then, else never.
pub fn portal_outcome(result: Result<(), AppError>, receive_count: u32) -> Outcome {
    match result {
        Ok(()) => Outcome::Done,
        Err(e) if retryable(&e) => {
            tracing::warn!(code = e.code, "portal work failed, retrying: {e}");
            Outcome::RetryAfter(backoff(receive_count))
        }
        Err(e) => Outcome::Failed(format!("{}: {e}", e.code)),
    }
}

/// Runs one delivered job, in a span carrying its message id.
pub async fn handle(svc: &Services, delivery: &Delivery) -> Outcome {
    let job: Job = match serde_json::from_str(&delivery.body) {
        Ok(job) => job,
        Err(e) => return Outcome::Failed(format!("unreadable job: {e}")),
    };
    let receive = delivery.receive_count;
    match job {
        Job::Send { message_id, .. } => {
            let span = tracing::info_span!("send", message_id = %message_id, receive);
            send::send_message(svc, &message_id, receive).instrument(span).await
        }
        Job::Publish { message_id, .. } => {
            let span = tracing::info_span!("publish", message_id = %message_id, receive);
            publish::publish(svc, &message_id, receive).instrument(span).await
        }
        Job::CheckRead { message_id, attempt, .. } => {
            let span = tracing::info_span!("check_read", message_id = %message_id, attempt);
            read::check_read(svc, &message_id, attempt).instrument(span).await
        }
        Job::Reply(message) => {
            let span = tracing::info_span!("reply", ol_chat_id = message.ol_chat_id, im_message_id = message.im_message_id, receive);
            reply::deliver(svc, &message, receive).instrument(span).await
        }
        Job::SetUp { member_id } => {
            let span = tracing::info_span!("set_up", member_id = %member_id, receive);
            async { portal_outcome(install::set_up(svc, &member_id).await, receive) }.instrument(span).await
        }
        Job::SyncContacts { member_id, connector_id } => {
            let span = tracing::info_span!("sync_contacts", connector_id = %connector_id, receive);
            sync::sync_contacts(svc, &member_id, &connector_id, receive).instrument(span).await
        }
    }
}
