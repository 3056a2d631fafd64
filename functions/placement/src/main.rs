//! Lambda behind API Gateway: POST /placement, GET /api/card and the tab's assets.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_http(shared::http::placement_router).await
}
