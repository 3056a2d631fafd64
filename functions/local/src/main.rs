//! The whole product in one process: `cargo run --release` (the sandbox, or real portals when
//! their credentials are configured); `cargo run --release -- portal` runs the sandbox
//! portal alone, as a stand-in Bitrix24 for the app in real mode.

use shared::embedded;
use shared::settings::{PortalSettings, Settings};

/// glibc's malloc and free were ~15 % of this process's CPU; with mimalloc the app's own part of a
/// tab's opening is ~30 µs shorter and the whole opening ~80 µs (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init("info");
    match std::env::args().nth(1).as_deref() {
        None => {
            let app = embedded::start(Settings::from_env()?).await?;
            print!("{}", app.summary);
            app.serve_forever().await
        }
        Some("portal") => {
            let portal = embedded::start_portal(PortalSettings::from_env()?).await?;
            println!("{}", portal.summary());
            portal.serve_forever().await
        }
        Some(other) => anyhow::bail!("unknown command {other:?}: run with no argument for the app, or `portal` for the sandbox portal alone"),
    }
}
