//! Lambda behind API Gateway: POST /bitrix/install, POST /bitrix/events and the connector's
//! settings page (POST /bitrix/connector).

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_http(shared::http::bitrix_events_router).await
}
