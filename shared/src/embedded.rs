//! The whole product in one process: every HTTP route on one port, every worker in-process,
//! SQLite and a directory for storage; in sandbox mode also the sandbox portal and Telegram,
//! in real mode real portals (or a stand-in portal in its own process, for testing).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_http::timeout::TimeoutLayer;

use crate::adapters::grammers::{ApiCredentials, GrammersTelegram, Servers};
use crate::adapters::{DirBlobs, SqliteDb, SqliteQueue, SqliteTable};
use crate::app::install::RestEndpoints;
use crate::app::{Adapters, Services, Site};
use crate::bitrix::outbound::Reach;
use crate::bitrix::{AppCredentials, BitrixClient};
use crate::crypto::Secret;
use crate::domain::cadence::Arrivals;
use crate::domain::phone::region_from_code;
use crate::http;
use crate::jobs::runner::{self, Order};
use crate::links::SignedLinks;
use crate::ports::{Blobs, JobQueue, Queue, Table, Telegram};
use crate::repo::Records;
use crate::repo::sessions::TelegramSessions;
use crate::sandbox::telegram::SandboxTelegram;
use crate::sandbox::telegram::rpc as telegram_rpc;
use crate::work::Job;
use crate::sandbox::{self, Sandbox, seed};
use crate::http::guard::{AllowedHosts, check_host};
use crate::settings::{Mode, PortalSettings, Portals, RealSettings, ServerLimits, Settings};

const PORTAL_TIMEOUT: Duration = Duration::from_secs(15);
/// How soon an account connected (or back from a new login) gets its kept connection, and
/// one disconnected loses it.
const LISTENERS_EVERY: Duration = Duration::from_secs(2);

pub struct Embedded {
    pub addr: SocketAddr,
    pub url: String,
    pub services: Arc<Services>,
    /// The in-process sandbox portal and Telegram, in sandbox mode only.
    sandbox: Option<Arc<Sandbox>>,
    pub queue: SqliteQueue,
    /// What it serves and what is missing, in plain words, for the start-up message.
    pub summary: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Embedded {
    /// The in-process sandbox (tests, the sandbox mode).
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        self.sandbox.as_ref().expect("the sandbox runs in sandbox mode only")
    }

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

/// Where the portals and Telegram are, per mode.
struct Backends {
    credentials: AppCredentials,
    site: Site,
    telegram: Arc<dyn Telegram>,
    sandbox: Option<Arc<Sandbox>>,
}

async fn sandbox_backends(settings: &Settings, url: &str, sessions: &TelegramSessions) -> anyhow::Result<Backends> {
    let sandbox = Arc::new(Sandbox::start(url, url, &settings.data_dir).await?);
    Ok(Backends {
        credentials: AppCredentials {
            client_id: sandbox::CLIENT_ID.into(),
            code: sandbox::APP_CODE.into(),
            client_secret: Secret::new(sandbox::CLIENT_SECRET),
            oauth_url: Sandbox::oauth_url(url),
        },
        site: Site {
            public_url: settings.public_url.clone().unwrap_or_else(|| url.to_owned()),
            endpoints: RestEndpoints::Sandbox {
                domains: [seed::DEMO_DOMAIN, seed::OTHER_DOMAIN, seed::FRESH_DOMAIN].map(str::to_owned).to_vec(),
                rest_url: sandbox.portal.rest_url.clone(),
            },
            arrivals: arrivals(settings),
        },
        telegram: sandbox_telegram(sessions, sandbox.telegram.clone()),
        sandbox: Some(sandbox),
    })
}

/// The grammers adapter against the sandbox data centres: the sandbox's own Telegram app.
fn sandbox_telegram(sessions: &TelegramSessions, world: Arc<SandboxTelegram>) -> Arc<dyn Telegram> {
    let credentials = ApiCredentials { api_id: telegram_rpc::API_ID, api_hash: Secret::new(telegram_rpc::API_HASH) };
    Arc::new(GrammersTelegram::new(credentials, sessions.clone(), Servers::Registered(world)))
}

async fn real_backends(settings: &Settings, real: &RealSettings, sessions: &TelegramSessions) -> anyhow::Result<Backends> {
    let endpoints = match &real.portals {
        Portals::Public => RestEndpoints::Public,
        Portals::StandIn { domains, rest_url } => RestEndpoints::Sandbox { domains: domains.clone(), rest_url: rest_url.clone() },
    };
    Ok(Backends {
        credentials: AppCredentials {
            client_id: real.client_id.clone(),
            code: real.app_code.clone(),
            client_secret: real.client_secret.clone(),
            oauth_url: real.oauth_url.clone(),
        },
        site: Site { public_url: real.public_url.clone(), endpoints, arrivals: arrivals(settings) },
        telegram: real_telegram(settings, real, sessions).await?,
        sandbox: None,
    })
}

/// The grammers adapter with the configured api_id; without one (a stand-in portal only)
/// against the sandbox Telegram's data centres, in this process.
async fn real_telegram(settings: &Settings, real: &RealSettings, sessions: &TelegramSessions) -> anyhow::Result<Arc<dyn Telegram>> {
    Ok(match &real.telegram {
        Some(api) => Arc::new(GrammersTelegram::new(ApiCredentials { api_id: api.api_id, api_hash: api.api_hash.clone() }, sessions.clone(), Servers::Production)),
        None => {
            let world = Arc::new(SandboxTelegram::open(seed::telegram_users(), &settings.data_dir)?);
            crate::sandbox::telegram::dc::start(world.clone()).await?;
            sandbox_telegram(sessions, world)
        }
    })
}

/// Binds, starts the server and both workers; in sandbox mode also installs the app on the
/// sandbox portals.
/// What sees the embedded backends before anything uses them: the cost benchmark wraps them
/// to count what a run asks of storage and queues (as it would ask DynamoDB, SQS and S3).
pub trait Instrument {
    fn table(&self, table: Arc<dyn Table>) -> Arc<dyn Table>;
    fn queue(&self, queue: Arc<dyn Queue>) -> Arc<dyn Queue>;
    fn blobs(&self, blobs: Arc<dyn Blobs>) -> Arc<dyn Blobs>;
}

/// The backends as they are.
pub struct Uninstrumented;

impl Instrument for Uninstrumented {
    fn table(&self, table: Arc<dyn Table>) -> Arc<dyn Table> {
        table
    }
    fn queue(&self, queue: Arc<dyn Queue>) -> Arc<dyn Queue> {
        queue
    }
    fn blobs(&self, blobs: Arc<dyn Blobs>) -> Arc<dyn Blobs> {
        blobs
    }
}

pub async fn start(settings: Settings) -> anyhow::Result<Embedded> {
    start_instrumented(settings, &Uninstrumented).await
}

/// [`start`], with the backends seen through `instrument`.
pub async fn start_instrumented(settings: Settings, instrument: &dyn Instrument) -> anyhow::Result<Embedded> {
    // Before anything is made: real mode has no key but the configured one.
    if matches!(settings.mode, Mode::Real(_)) {
        settings.master_key()?;
    }
    std::fs::create_dir_all(&settings.data_dir).with_context(|| format!("creating {}", settings.data_dir.display()))?;
    let listener = TcpListener::bind(settings.addr).await.with_context(|| format!("binding {}", settings.addr))?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");

    let db = SqliteDb::open(&settings.data_dir.join("olchat.db"))?;
    let queue = SqliteQueue::new(db.clone(), settings.max_receives);
    let master = settings.master_key()?;
    let sqlite = SqliteTable::new(db);
    let table = instrument.table(Arc::new(sqlite.clone()));
    let sessions = TelegramSessions::new(Records::new(table.clone()), &master);
    let backends = match &settings.mode {
        Mode::Sandbox => sandbox_backends(&settings, &url, &sessions).await?,
        Mode::Real(real) => real_backends(&settings, real, &sessions).await?,
    };
    // Upload URLs are opened by the users' browsers: at the public address.
    let blobs = instrument.blobs(Arc::new(DirBlobs::new(settings.data_dir.join("blobs"), SignedLinks::of_site(&master, &backends.site.public_url))?));
    let summary = summary(&settings, addr, &backends.site);
    let hosts = Arc::new(AllowedHosts::new(&backends.site.public_url, addr));
    let adapters = Adapters { table, queue: instrument.queue(Arc::new(queue.clone())), blobs, telegram: backends.telegram };
    let services = Arc::new(Services::new(
        adapters,
        BitrixClient::new(backends.credentials, PORTAL_TIMEOUT, settings.portal_rate, settings.check_rate, Reach::from_flag(settings.allow_loopback_portals)),
        &master,
        settings.session_minutes * 60,
        region_from_code(&settings.phone_region),
        backends.site,
        settings.limits,
    ));

    let mut router = http::placement_router(services.clone())
        .merge(http::send_router(services.clone()))
        .merge(http::bitrix_events_router(services.clone()));
    // Real mode has no sandbox, so no `/sandbox` route at all.
    if let Some(sandbox) = &backends.sandbox {
        router = router.merge(sandbox.routes());
    }
    // A whole request within the limit, except uploads: they may stream 2 GB, and are bounded
    // by the body's pause limit and the connection limit instead. (A download's answer streams
    // after its handler is done, so the limit does not cut it.)
    let router = router
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.server.request_timeout))
        .merge(http::with_security_headers(http::blobs::upload_routes().with_state(services.clone())))
        .layer(axum::middleware::from_fn_with_state(hosts, check_host));
    let server = serve(listener, router, settings.server)?;
    let telegram_worker = tokio::spawn(runner::run(services.clone(), queue.clone(), JobQueue::Telegram, Order::Grouped));
    let openline_worker = tokio::spawn(runner::run(services.clone(), queue.clone(), JobQueue::Openline, settings.openline_order));
    let mut tasks = vec![server, telegram_worker, openline_worker, tokio::spawn(purge_expired(sqlite))];
    if let Some(every) = settings.catch_up_every {
        tasks.push(tokio::spawn(catch_up_schedule(queue.clone(), every)));
    }
    if settings.keep_connected {
        // One process that stays up: each account keeps one connection and takes the updates
        // Telegram pushes (`jobs::listen`), as official clients do; the catch-up covers it while
        // that connection is down.
        tasks.push(tokio::spawn(crate::jobs::listen::supervise(services.clone(), LISTENERS_EVERY)));
    }
    let app = Embedded { addr, url, services, sandbox: backends.sandbox, queue, summary, tasks };
    if let Some(sandbox) = &app.sandbox {
        // The sandbox portals install the app over HTTP, as Bitrix24 would, once the server answers.
        sandbox.install_demo(&app.services, &sessions).await?;
    }
    Ok(app)
}

/// The app's server, on a thread of its own (see [`http::server::serve_on_own_thread`]).
fn serve(listener: TcpListener, router: axum::Router, limits: ServerLimits) -> anyhow::Result<JoinHandle<()>> {
    Ok(http::server::serve_on_own_thread(listener, logged(router), limits)?)
}

/// The stand-in portal's server, on the shared runtime: it stands for another machine, and its
/// work after answering spreads over the cores (on a thread of its own a tab's whole opening
/// took ~35 µs longer, BENCHMARKS.md).
fn serve_shared(listener: TcpListener, router: axum::Router, limits: ServerLimits) -> JoinHandle<()> {
    tokio::spawn(http::server::serve(listener, logged(router), limits))
}

fn logged(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(log_request))
}

/// The start-up message: the mode, where it answers, its data, the portals it accepts,
/// Telegram, and what is missing for real portals.
fn summary(settings: &Settings, addr: SocketAddr, site: &Site) -> String {
    let mut out = String::new();
    let data = settings.data_dir.display();
    match &settings.mode {
        Mode::Sandbox => {
            let _ = writeln!(out, "OLChat for Telegram is running in sandbox mode: a simulated Bitrix24 portal and a simulated Telegram.");
            let _ = writeln!(out, "  Open {}/sandbox in a browser.", site.public_url);
            let _ = writeln!(out, "  Data: {data} (SQLite olchat.db, blobs/)");
            let _ = writeln!(out, "  To serve real portals set BITRIX_CLIENT_ID, BITRIX_CLIENT_SECRET, OLCHAT_PUBLIC_URL (https), OLCHAT_ENCRYPTION_KEY, TELEGRAM_API_ID and TELEGRAM_API_HASH (see the README).");
        }
        Mode::Real(real) => {
            let _ = writeln!(out, "OLChat for Telegram is serving Bitrix24 portals (real mode; no sandbox).");
            let _ = writeln!(out, "  Public URL: {} (handler path {0}/connectors, initial installation path {0}/bitrix/install)", site.public_url);
            let _ = writeln!(out, "  Listening on: {addr}");
            let _ = writeln!(out, "  Data: {data} (SQLite olchat.db, blobs/); tokens and sessions sealed with OLCHAT_ENCRYPTION_KEY");
            let _ = writeln!(out, "  Bitrix24 app: client id {}, OAuth at {}", real.client_id, real.oauth_url);
            match &real.portals {
                Portals::Public => {
                    let _ = writeln!(out, "  Portals: any Bitrix24 portal on a public host name (its REST API at https://<domain>/rest/)");
                }
                Portals::StandIn { domains, rest_url } => {
                    let _ = writeln!(out, "  Portals: FOR TESTING, a stand-in portal only: {} at {rest_url}", domains.join(", "));
                }
            }
            match &real.telegram {
                Some(api) => {
                    let _ = writeln!(out, "  Telegram: on (api_id {})", api.api_id);
                }
                None => {
                    let _ = writeln!(out, "  Telegram: the sandbox Telegram in this process (TELEGRAM_API_ID and TELEGRAM_API_HASH are not set)");
                }
            }
        }
    }
    let _ = if settings.keep_connected {
        writeln!(out, "  Telegram accounts: each keeps one connection that receives what Telegram pushes (OLCHAT_KEEP_CONNECTED=false to catch up on a schedule instead)")
    } else {
        writeln!(out, "  Telegram accounts: caught up on a schedule (OLCHAT_KEEP_CONNECTED=false)")
    };
    out
}

/// The sandbox portal alone: a stand-in Bitrix24 in its own process.
pub struct PortalOnly {
    pub url: String,
    pub sandbox: Arc<Sandbox>,
    server: JoinHandle<()>,
}

impl PortalOnly {
    /// The start-up message.
    pub fn summary(&self) -> String {
        let url = &self.url;
        format!(
            "The sandbox Bitrix24 portal is running on its own at {url} (for testing the app in real mode).\n  \
             App: {app}\n  \
             Point the app at it: BITRIX_OAUTH_URL={oauth} OLCHAT_PORTAL_REST_URL={rest} \
             OLCHAT_PORTAL_DOMAINS={domains} BITRIX_CLIENT_ID={id} BITRIX_CLIENT_SECRET={secret} BITRIX_APP_CODE={code}\n  \
             Install the app: POST {url}/sandbox/portal/install {{\"member_id\":\"{member}\"}}; then open a card: {url}/sandbox/open?entity=lead&id=1",
            app = self.sandbox.portal.app_url,
            oauth = Sandbox::oauth_url(url),
            rest = self.sandbox.portal.rest_url,
            domains = [seed::DEMO_DOMAIN, seed::OTHER_DOMAIN, seed::FRESH_DOMAIN].join(","),
            id = sandbox::CLIENT_ID,
            secret = sandbox::CLIENT_SECRET,
            code = sandbox::APP_CODE,
            member = seed::DEMO_MEMBER_ID,
        )
    }

    /// Runs until the server stops.
    pub async fn serve_forever(self) -> anyhow::Result<()> {
        self.server.await.context("server task")
    }
}

/// Starts the sandbox portal's routes only; it installs the app when its install hook is called.
pub async fn start_portal(settings: PortalSettings) -> anyhow::Result<PortalOnly> {
    let listener = TcpListener::bind(settings.addr).await.with_context(|| format!("binding {}", settings.addr))?;
    let url = format!("http://{}", listener.local_addr()?);
    // The portal's process serves no Telegram: its world lives in a directory of its own.
    let sandbox = Arc::new(Sandbox::start(&url, &settings.app_url, &std::env::temp_dir().join(format!("olchat-portal-{}", std::process::id()))).await?);
    let server = serve_shared(listener, sandbox.portal_routes(), ServerLimits::default());
    Ok(PortalOnly { url, sandbox, server })
}

/// What DynamoDB's TTL does on AWS: expired records (messages past their retention, spent
/// markers, old counters) leave the database file, a batch at a time, every few minutes.
async fn purge_expired(table: SqliteTable) {
    const BATCH: usize = 2_000;
    let mut ticks = tokio::time::interval(Duration::from_secs(300));
    loop {
        ticks.tick().await;
        loop {
            match table.purge_expired(BATCH) {
                Ok(n) if n == BATCH => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!("expired records not purged: {e:#}");
                    break;
                }
            }
        }
    }
}

/// Replies and reads come pushed over the kept connections, else with the catch-ups of the
/// schedule's ticks.
fn arrivals(settings: &Settings) -> Arrivals {
    match settings.catch_up_every {
        Some(every) if !settings.keep_connected => Arrivals::AtTicks { every_ms: i64::try_from(every.as_millis()).unwrap_or(i64::MAX) },
        _ => Arrivals::Live,
    }
}

/// What the EventBridge rule does on AWS: a tick on the openline queue every `every`, at its
/// multiples since the epoch (as [`Arrivals::AtTicks`] tells the tabs).
async fn catch_up_schedule(queue: SqliteQueue, every: Duration) {
    let every_ms = every.as_millis().max(1);
    let since_tick = u128::try_from(crate::clock::now_millis()).unwrap_or_default() % every_ms;
    let first = tokio::time::Instant::now() + Duration::from_millis(u64::try_from(every_ms - since_tick).unwrap_or_default());
    let mut ticks = tokio::time::interval_at(first, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let tick = Job::CatchUpAll { every_ms: i64::try_from(every.as_millis()).unwrap_or(i64::MAX) };
        if let Err(e) = tick.enqueue(&queue, Duration::ZERO).await {
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
