//! The whole product in one process: every HTTP route on one port, every worker in-process,
//! SQLite and a directory for storage, the sandbox portal and Telegram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::adapters::{DirBlobs, SqliteDb, SqliteQueue, SqliteTable};
use crate::app::install::RestEndpoints;
use crate::app::{Adapters, Services, Site};
use crate::bitrix::{AppCredentials, BitrixClient};
use crate::crypto::Secret;
use crate::domain::phone::region_from_code;
use crate::http;
use crate::jobs::runner::{self, Order};
use crate::work::Job;
use crate::ports::JobQueue;
use crate::sandbox::{self, Sandbox, seed};
use crate::settings::Settings;

const PORTAL_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Embedded {
    pub addr: SocketAddr,
    pub url: String,
    pub services: Arc<Services>,
    pub sandbox: Arc<Sandbox>,
    pub queue: SqliteQueue,
    tasks: Vec<JoinHandle<()>>,
}

impl Embedded {
    /// Runs until the server stops.
    pub async fn serve_forever(mut self) -> anyhow::Result<()> {
        let server = self.tasks.remove(0);
        server.await.context("server task")
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds, starts the server and both workers, and installs the app on the sandbox portals.
pub async fn start(settings: Settings) -> anyhow::Result<Embedded> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| format!("creating {}", settings.data_dir.display()))?;
    let listener = TcpListener::bind(settings.addr).await.with_context(|| format!("binding {}", settings.addr))?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");

    let sandbox = Arc::new(Sandbox::new(&url));
    let db = SqliteDb::open(&settings.data_dir.join("olchat.db"))?;
    let queue = SqliteQueue::new(db.clone(), settings.max_receives);
    let sealer = settings.sealer()?;
    let blobs = Arc::new(DirBlobs::new(settings.data_dir.join("blobs"), &url, sealer.derive_key("blob-url"))?);
    let adapters = Adapters {
        table: Arc::new(SqliteTable::new(db)),
        queue: Arc::new(queue.clone()),
        blobs: blobs.clone(),
        telegram: sandbox.telegram.clone(),
    };
    let credentials = AppCredentials {
        client_id: sandbox::CLIENT_ID.into(),
        code: sandbox::APP_CODE.into(),
        client_secret: Secret::new(sandbox::CLIENT_SECRET),
        oauth_url: Sandbox::oauth_url(&url),
    };
    let site = Site {
        public_url: settings.public_url.clone().unwrap_or_else(|| url.clone()),
        endpoints: RestEndpoints::Sandbox {
            domains: [seed::DEMO_DOMAIN, seed::OTHER_DOMAIN, seed::FRESH_DOMAIN].map(str::to_owned).to_vec(),
            rest_url: sandbox.portal.rest_url.clone(),
        },
    };
    let services = Arc::new(Services::new(
        adapters,
        BitrixClient::new(credentials, PORTAL_TIMEOUT, settings.portal_rate),
        sealer,
        settings.session_minutes * 60,
        region_from_code(&settings.phone_region),
        site,
        settings.limits,
    ));

    let router = http::placement_router(services.clone())
        .merge(http::send_router(services.clone()))
        .merge(http::blobs::routes(blobs))
        .merge(http::bitrix_events_router(services.clone()))
        .merge(sandbox.routes())
        .layer(axum::middleware::from_fn(log_request));
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("server stopped: {e}");
        }
    });
    let telegram_worker = tokio::spawn(runner::run(services.clone(), queue.clone(), JobQueue::Telegram, Order::Grouped));
    let openline_worker = tokio::spawn(runner::run(services.clone(), queue.clone(), JobQueue::Openline, settings.openline_order));
    let mut tasks = vec![server, telegram_worker, openline_worker];
    if let Some(every) = settings.catch_up_every {
        tasks.push(tokio::spawn(catch_up_schedule(queue.clone(), every)));
    }
    let app = Embedded { addr, url, services, sandbox, queue, tasks };
    // The sandbox portals install the app over HTTP, as Bitrix24 would, once the server answers.
    app.sandbox.install_demo(&app.services).await?;
    Ok(app)
}

/// What the EventBridge rule does on AWS: a tick on the openline queue every `every`.
async fn catch_up_schedule(queue: SqliteQueue, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = Job::CatchUpAll.enqueue(&queue, Duration::ZERO).await {
            tracing::error!("catch-up tick not queued: {e:#}");
        }
    }
}

/// One log line per request, without the query string (it may carry tokens).
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    tracing::debug!(%method, path, status = response.status().as_u16(), "request");
    response
}
