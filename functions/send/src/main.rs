//! Lambda behind API Gateway: POST /api/send, the messages (GET, PUT, cancel) and the conversation.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_http(shared::http::send_router).await
}
