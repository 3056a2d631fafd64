//! Queue jobs and their handlers: `job -> Done | RetryAfter | Failed`. Lambda maps the
//! outcome to SQS batch failures and visibility; the embedded runner to its queue.

pub mod runner;
pub mod send;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::app::Services;
use crate::ports::Delivery;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Send a stored message through Telegram.
    Send { message_id: String, connector_id: String },
}

impl Job {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("jobs serialize")
    }

    /// Jobs of one group run one at a time: one Telegram session, one connection.
    pub fn group(&self) -> &str {
        match self {
            Self::Send { connector_id, .. } => connector_id,
        }
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

/// Runs one delivered job, in a span carrying its message id.
pub async fn handle(svc: &Services, delivery: &Delivery) -> Outcome {
    let job: Job = match serde_json::from_str(&delivery.body) {
        Ok(job) => job,
        Err(e) => return Outcome::Failed(format!("unreadable job: {e}")),
    };
    match &job {
        Job::Send { message_id, .. } => {
            let span = tracing::info_span!("send", message_id = %message_id, receive = delivery.receive_count);
            send::send_message(svc, message_id, delivery.receive_count).instrument(span).await
        }
    }
}
