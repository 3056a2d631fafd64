//! The queue port on SQS. The telegram queue is FIFO with `MessageGroupId` = connector, so
//! one Telegram session is never used by two invocations at once. FIFO queues have no
//! per-message delay: jobs go there at once, and a job waits by its visibility (`retry_after`).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageSystemAttributeName;

use super::{OnFirstUse, on_first_use, sdk_error};
use crate::ports::{Delivery, JobQueue, Queue, QueueError};

/// SQS's longest visibility timeout (12 h) and per-message delay (15 min).
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);

#[derive(Clone, Debug)]
pub struct QueueUrls {
    pub queue: String,
    pub dead_letters: String,
}

#[derive(Clone)]
pub struct SqsQueue {
    client: OnFirstUse<Client>,
    urls: HashMap<JobQueue, QueueUrls>,
}

impl SqsQueue {
    /// Over the client `make` makes when first called.
    pub fn new(make: impl FnOnce() -> Client + Send + 'static, urls: HashMap<JobQueue, QueueUrls>) -> Self {
        Self { client: on_first_use(make), urls }
    }

    fn urls(&self, queue: JobQueue) -> Result<&QueueUrls, QueueError> {
        self.urls.get(&queue).ok_or_else(|| QueueError(anyhow::anyhow!("no URL configured for the {} queue", queue.name())))
    }
}

fn error<E: std::error::Error + Send + Sync + 'static>(e: E) -> QueueError {
    QueueError(sdk_error(e))
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: JobQueue, body: &str, group: &str, delay: Duration) -> Result<(), QueueError> {
        let url = &self.urls(queue)?.queue;
        if url.ends_with(".fifo") && !delay.is_zero() {
            return Err(QueueError(anyhow::anyhow!("the {} queue is FIFO: it takes no delay", queue.name())));
        }
        let request = self.client.send_message().queue_url(url).message_body(body);
        let request = if url.ends_with(".fifo") {
            // Every enqueue is a new job: the handlers are idempotent, SQS need not dedupe.
            request.message_group_id(group).message_deduplication_id(uuid::Uuid::new_v4().simple().to_string())
        } else {
            request.delay_seconds(delay.min(MAX_DELAY).as_secs() as i32)
        };
        request.send().await.map_err(error)?;
        Ok(())
    }

    async fn receive(&self, queue: JobQueue, max: usize, visibility: Duration) -> Result<Vec<Delivery>, QueueError> {
        receive(&self.client, &self.urls(queue)?.queue, max, visibility).await
    }

    async fn delete(&self, queue: JobQueue, receipt: &str) -> Result<(), QueueError> {
        let url = &self.urls(queue)?.queue;
        self.client.delete_message().queue_url(url).receipt_handle(receipt).send().await.map_err(error)?;
        Ok(())
    }

    async fn retry_after(&self, queue: JobQueue, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let url = &self.urls(queue)?.queue;
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(delay.min(MAX_VISIBILITY).as_secs() as i32)
            .send()
            .await
            .map_err(error)?;
        Ok(())
    }

    /// Peeks at the dead-letter queue without consuming it.
    async fn dead_letters(&self, queue: JobQueue) -> Result<Vec<String>, QueueError> {
        let deliveries = receive(&self.client, &self.urls(queue)?.dead_letters, 10, Duration::ZERO).await?;
        Ok(deliveries.into_iter().map(|d| d.body).collect())
    }
}

async fn receive(client: &Client, url: &str, max: usize, visibility: Duration) -> Result<Vec<Delivery>, QueueError> {
    let answer = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max.clamp(1, 10) as i32)
        .visibility_timeout(visibility.min(MAX_VISIBILITY).as_secs() as i32)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .map_err(error)?;
    Ok(answer
        .messages()
        .iter()
        .map(|m| Delivery {
            receipt: m.receipt_handle().unwrap_or_default().to_owned(),
            body: m.body().unwrap_or_default().to_owned(),
            receive_count: m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(1),
        })
        .collect())
}
