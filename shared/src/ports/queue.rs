//! A job queue with SQS semantics: delayed delivery, a visibility timeout, a receive count,
//! and dead-lettering after too many receives.

use std::time::Duration;

use async_trait::async_trait;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobQueue {
    /// Sends through Telegram, serialized per connector.
    Telegram,
    /// Open Line publication and CRM activities.
    Openline,
}

impl JobQueue {
    pub fn name(self) -> &'static str {
        match self {
            Self::Telegram => "telegram",
            Self::Openline => "openline",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Identifies this receipt of the message (SQS receipt handle).
    pub receipt: String,
    pub body: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("queue backend failed")]
pub struct QueueError(#[from] pub anyhow::Error);

#[async_trait]
pub trait Queue: Send + Sync {
    /// `group` serializes delivery (SQS FIFO `MessageGroupId`): the embedded runner and the
    /// Lambda FIFO trigger never hand out two messages of one group at once.
    async fn send(&self, queue: JobQueue, body: &str, group: &str, delay: Duration) -> Result<(), QueueError>;
    /// Up to `max` visible messages, hidden for `visibility` afterwards.
    async fn receive(&self, queue: JobQueue, max: usize, visibility: Duration) -> Result<Vec<Delivery>, QueueError>;
    /// The job is done: forget it.
    async fn delete(&self, queue: JobQueue, receipt: &str) -> Result<(), QueueError>;
    /// Deliver again after `delay` (SQS ChangeMessageVisibility).
    async fn retry_after(&self, queue: JobQueue, receipt: &str, delay: Duration) -> Result<(), QueueError>;
    /// Bodies moved to the dead-letter queue, oldest first.
    async fn dead_letters(&self, queue: JobQueue) -> Result<Vec<String>, QueueError>;
}
