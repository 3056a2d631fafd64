//! Lambda triggered by SQS: Open Line publication and CRM activities; reports partial batch failures.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_worker(shared::ports::JobQueue::Openline).await
}
