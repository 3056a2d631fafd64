//! The whole product in one process, in the sandbox: `cargo run --release`.

use shared::embedded;
use shared::settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init("info");
    let app = embedded::start(Settings::from_env()?).await?;
    println!("OLChat for Telegram is running in sandbox mode.\nOpen {}/sandbox in a browser.", app.url);
    app.serve_forever().await
}
