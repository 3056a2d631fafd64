//! Lambda behind API Gateway: POST /api/send, GET /api/messages[/{id}].

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_http(shared::http::send_router).await
}
