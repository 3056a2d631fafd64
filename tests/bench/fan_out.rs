//! The schedule's tick at scale: 10,000 connected accounts, all due (the worst minute: every
//! one active), queued by `request_all` on the single server's backends (SQLite), against the
//! floor of the same requests (a conditional put of a marker and a send per account, as many
//! accounts at once) made bare through the same ports. Not on moto: its SQS send slows with
//! the queue's length (about 10 ms per send at 1,000 messages queued, 26 ms at 2,000, 34–92 ms
//! on a FIFO queue), so 10,000 sends would measure moto; AWS is one round trip per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shared::adapters::telegram_unavailable::TelegramUnavailable;
use shared::adapters::{DirBlobs, SqliteDb, SqliteQueue, SqliteTable};
use shared::app::install::RestEndpoints;
use shared::app::{Adapters, Services, Site};
use shared::bitrix::outbound::Reach;
use shared::bitrix::pacer::PortalRate;
use shared::bitrix::{AppCredentials, BitrixClient};
use shared::crypto::{MasterKey, Secret};
use shared::domain::cadence::Arrivals;
use shared::jobs::Outcome;
use shared::jobs::catch_up::{FAN_OUT, request_all};
use shared::links::SignedLinks;
use shared::ports::{Condition, Item, JobQueue, Queue, Table};
use shared::repo::connectors::Connector;
use shared::sandbox::seed;

pub const ACCOUNTS: usize = 10_000;

pub struct FanOut {
    pub tick: Duration,
    pub floor: Duration,
}

pub async fn measure() -> anyhow::Result<FanOut> {
    let dir = tempfile::tempdir()?;
    let db = SqliteDb::open(&dir.path().join("olchat.db"))?;
    let (table, queue): (Arc<dyn Table>, Arc<dyn Queue>) = (Arc::new(SqliteTable::new(db.clone())), Arc::new(SqliteQueue::new(db, 10)));
    let svc = services(dir.path(), table.clone(), queue.clone())?;
    // Saved just now, each is active (`domain::cadence`), so the next tick finds all due.
    futures_util::stream::iter(0..ACCOUNTS)
        .for_each_concurrent(FAN_OUT, |i| {
            let svc = &svc;
            async move { svc.connectors.save(&connector(i)).await.expect("the connector is stored") }
        })
        .await;

    let started = Instant::now();
    futures_util::stream::iter(0..ACCOUNTS)
        .for_each_concurrent(FAN_OUT, |i| {
            let (table, queue) = (&table, &queue);
            async move {
                let marker = Item { pk: format!("floor#{i}"), sk: "pending".into(), data: "true".into(), version: 1, expires_at: None };
                table.put(marker, Condition::Absent).await.expect("the floor's put");
                queue.send(JobQueue::Telegram, "{}", &format!("floor-{i}"), Duration::ZERO).await.expect("the floor's send");
            }
        })
        .await;
    let floor = started.elapsed();

    let started = Instant::now();
    assert_eq!(request_all(&svc, 1, shared::clock::now_millis(), 60_000).await, Outcome::Done);
    let tick = started.elapsed();
    let queued = queue.receive(JobQueue::Telegram, 2 * ACCOUNTS + 1, Duration::from_secs(60)).await?;
    let catch_ups = queued.iter().filter(|d| d.body.contains("catch_up")).count();
    assert_eq!(catch_ups, ACCOUNTS, "the tick queued a catch-up for every account due");
    Ok(FanOut { tick, floor })
}

/// The single server's services on `table` and `queue`, with no Telegram and no portal: the
/// tick asks neither.
fn services(dir: &std::path::Path, table: Arc<dyn Table>, queue: Arc<dyn Queue>) -> anyhow::Result<Services> {
    let (master, url) = (MasterKey::from_base64(&MasterKey::generate_key())?, "http://127.0.0.1:9");
    let blobs = Arc::new(DirBlobs::new(dir.join("blobs"), SignedLinks::of_site(&master, url))?);
    let credentials = AppCredentials {
        client_id: shared::sandbox::CLIENT_ID.into(),
        code: shared::sandbox::APP_CODE.into(),
        client_secret: Secret::new(shared::sandbox::CLIENT_SECRET),
        oauth_url: format!("{url}/oauth"),
    };
    let unpaced = PortalRate { per_sec: 1e6, burst: 1e6 };
    let bitrix = BitrixClient::new(credentials, Duration::from_secs(1), unpaced, unpaced, Reach::Public);
    let site = Site { public_url: url.into(), endpoints: RestEndpoints::Public, arrivals: Arrivals::AtTicks { every_ms: 60_000 } };
    let adapters = Adapters { table, queue, blobs, telegram: Arc::new(TelegramUnavailable) };
    Ok(Services::new(adapters, bitrix, &master, 3600, None, site, Default::default()))
}

fn connector(i: usize) -> Connector {
    Connector::connected(seed::DEMO_MEMBER_ID, &format!("account-{i}"), &format!("Account {i}"), format!("+7999{i:07}"), None, 5_000_000 + i as i64)
}
