//! The embedded queue consumer: what SQS triggers do for Lambda, in-process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::{HEARTBEAT, Outcome, handle, keep_hidden};
use crate::work::Job;
use crate::adapters::SqliteQueue;
use crate::app::Services;
use crate::ports::{Delivery, JobQueue, Queue};

/// A received job is hidden this long, and as long again every 20 s while it runs
/// ([`HEARTBEAT`]); a job whose worker died reappears after it.
pub const VISIBILITY: Duration = HEARTBEAT.visibility;
const BATCH: usize = 64;
const IDLE_WAIT: Duration = Duration::from_millis(250);

/// How the runner hands out a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Each group's jobs one at a time, in order, groups in parallel: the FIFO telegram queue.
    #[default]
    Grouped,
    /// Every job at once, shuffled: all an SQS standard queue (the openline queue on AWS)
    /// promises, so that tests meet the races production has.
    Unordered,
}

/// Consumes `queue` until the task is dropped: receives a batch, runs it as `order` says,
/// and settles every delivery with the queue.
pub async fn run(svc: Arc<Services>, queue: SqliteQueue, name: JobQueue, order: Order) {
    loop {
        let batch = match queue.receive(name, BATCH, VISIBILITY).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!("queue receive failed: {e:#}");
                tokio::time::sleep(IDLE_WAIT).await;
                continue;
            }
        };
        if batch.is_empty() {
            queue.wait_for_jobs(IDLE_WAIT).await;
            continue;
        }
        let mut tasks = JoinSet::new();
        for deliveries in lanes(batch, order) {
            let (svc, queue) = (svc.clone(), queue.clone());
            tasks.spawn(async move {
                for delivery in deliveries {
                    // Received hidden for VISIBILITY: the beats keep it so while it runs.
                    let outcome = keep_hidden(&queue, name, &delivery.receipt, HEARTBEAT, false, handle(&svc, &delivery)).await;
                    settle(&queue, name, &delivery, outcome).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// The batch as lanes that run side by side, each one job after another.
fn lanes(mut batch: Vec<Delivery>, order: Order) -> Vec<Vec<Delivery>> {
    match order {
        Order::Grouped => {
            let mut groups: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
            for delivery in batch {
                let group = serde_json::from_str::<Job>(&delivery.body).map(|j| j.group().to_owned()).unwrap_or_default();
                groups.entry(group).or_default().push(delivery);
            }
            groups.into_values().collect()
        }
        Order::Unordered => {
            batch.sort_by_cached_key(|_| uuid::Uuid::new_v4());
            batch.into_iter().map(|delivery| vec![delivery]).collect()
        }
    }
}

async fn settle(queue: &SqliteQueue, name: JobQueue, delivery: &Delivery, outcome: Outcome) {
    let settled = match outcome {
        Outcome::Done => queue.delete(name, &delivery.receipt).await,
        Outcome::RetryAfter(delay) => queue.retry_after(name, &delivery.receipt, delay).await,
        Outcome::Failed(reason) => {
            tracing::warn!(reason, "job failed for good");
            queue.delete(name, &delivery.receipt).await
        }
    };
    if let Err(e) = settled {
        tracing::error!("queue settle failed (the job will be delivered again): {e:#}");
    }
}
