//! Lambda triggered by SQS: sends messages through Telegram; reports partial batch failures.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_worker(shared::ports::JobQueue::Telegram).await
}
