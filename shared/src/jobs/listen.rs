//! The single-server deployment keeps each account connected as official clients do: one
//! long-lived connection per account ([`Telegram::keep`](crate::ports::Telegram::keep)) that receives the updates Telegram
//! pushes, so replies and reads arrive within seconds and nothing polls Telegram. What comes
//! is handled by the catch-up's own code ([`handled`]); the catch-up itself
//! ([`read_updates`], `updates.getDifference` over the same connection) fills what the pushes
//! do not tell: what came while no connection was up, and any gap in `pts`
//! (core.telegram.org/api/updates#update-handling). A dropped connection comes back after a
//! growing, jittered pause; a flood wait is waited out; a session Telegram no longer accepts
//! marks the connector for a new login and ends the listener. One connection per account,
//! never a tight reconnect loop: nothing here puts an account at risk.
//!
//! While an account's listener is up, [`Listening`](crate::app::catch_up::Listening) says so
//! and the scheduled catch-up leaves it alone; while it is down the usual cadence applies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::catch_up::{Read, Stop, handled, read_updates};
use super::note_connector;
use crate::app::Services;
use crate::ports::{KeptConnection, Pushed, TelegramError, Update};
use crate::repo::connectors::{Connector, ConnectorStatus};

/// The first pause after a failure, doubled after each one up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(2);
const MAX_PAUSE: Duration = Duration::from_secs(5 * 60);
/// A connection that stayed up this long was healthy: the next failure pauses briefly again.
/// (One that drops sooner keeps the pauses growing, so a data centre that accepts and drops
/// at once is not called again and again.)
const HEALTHY_AFTER: Duration = MAX_PAUSE;

/// Why a connection's following ended.
enum End {
    /// Asked to stop.
    Stopped,
    /// The connection dropped.
    Dropped,
    Failed(Stop),
}

/// Keeps a listener running for every connected account that may connect (not one that must
/// log in again), looking every `every`: started as accounts connect, stopped when they are
/// disconnected or uninstalled or must log in again. Its listeners stop with it.
pub async fn supervise(svc: Arc<Services>, every: Duration) {
    let mut running: HashMap<String, (watch::Sender<bool>, JoinHandle<()>)> = HashMap::new();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let wanted = match listenable(&svc).await {
            Ok(wanted) => wanted,
            Err(e) => {
                tracing::error!("the accounts to keep connected not read: {e}");
                continue;
            }
        };
        running.retain(|id, (stop, task)| {
            let keep = !task.is_finished() && wanted.contains_key(id);
            if !keep {
                // It closes its connection and ends.
                let _ = stop.send(true);
            }
            keep
        });
        for (id, connector) in wanted {
            if running.contains_key(&id) {
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            let svc = svc.clone();
            let span = tracing::info_span!("listen", connector_id = id.as_str());
            let task = tokio::spawn(async move { listen(&svc, &connector, stopped).await }.instrument(span));
            running.insert(id, (stop, task));
        }
    }
}

/// Every connector that may connect, by id.
async fn listenable(svc: &Services) -> Result<HashMap<String, Connector>, crate::repo::RepoError> {
    let mut wanted = HashMap::new();
    for r in svc.connectors.all().await? {
        if let Some(c) = svc.connectors.get(&r.member_id, &r.id).await?.filter(|c| c.status != ConnectorStatus::NeedsLogin) {
            wanted.insert(c.id.clone(), c);
        }
    }
    Ok(wanted)
}

/// Listens as the connector's account until `stop` says so or the account must log in again.
pub async fn listen(svc: &Services, connector: &Connector, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        match svc.telegram.keep(&connector.account()).await {
            Ok(kept) => {
                hold(svc, connector, kept.as_ref(), &mut stop, &mut failures).await;
                kept.close().await;
                return;
            }
            // The session is busy (a job holds it) or Telegram did not answer: again later.
            Err(e) => match paused(svc, connector, Stop::Telegram(e), &mut failures).await {
                Some(pause) if waited(pause, &mut stop).await => {}
                _ => return,
            },
        }
    }
}

/// Follows the account over its kept connection (which connects again by itself on the call
/// after a drop) until asked to stop or the account must log in again, pausing after each
/// failure.
async fn hold(svc: &Services, connector: &Connector, kept: &dyn KeptConnection, stop: &mut watch::Receiver<bool>, failures: &mut u32) {
    loop {
        let since = tokio::time::Instant::now();
        let end = follow(svc, connector, kept, stop).await;
        svc.listening.set(&connector.id, false);
        if since.elapsed() >= HEALTHY_AFTER {
            *failures = 0;
        }
        let pause = match end {
            End::Stopped => None,
            End::Dropped => Some(after_failure(failures, "the connection dropped")),
            End::Failed(e) => paused(svc, connector, e, failures).await,
        };
        match pause {
            Some(pause) if waited(pause, stop).await => {}
            _ => {
                tracing::info!("stopped listening");
                return;
            }
        }
    }
}

/// Waits `pause`; `false` when asked to stop meanwhile.
async fn waited(pause: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(pause) => true,
        _ = stop.changed() => false,
    }
}

/// How long to wait after `stop` before connecting again; `None`: never (the account must
/// log in again).
async fn paused(svc: &Services, connector: &Connector, stop: Stop, failures: &mut u32) -> Option<Duration> {
    match stop {
        Stop::Telegram(TelegramError::FloodWait { seconds }) => {
            tracing::warn!(seconds, "Telegram asks to wait before connecting again");
            Some(Duration::from_secs(seconds.into()))
        }
        Stop::Telegram(e @ TelegramError::Unauthorized(_)) => {
            if let Err(storage) = note_connector(svc, &connector.member_id, &connector.id, &e).await {
                tracing::error!("the connector's need to log in again not stored: {storage}");
                return Some(after_failure(failures, "storage failed"));
            }
            tracing::warn!("stopped listening: the account must log in again");
            None
        }
        Stop::Telegram(e) => {
            // A limited account (PEER_FLOOD) still receives: noted, and listened to again.
            if let Err(storage) = note_connector(svc, &connector.member_id, &connector.id, &e).await {
                tracing::error!("the connector's state not stored: {storage}");
            }
            Some(after_failure(failures, &e.to_string()))
        }
        Stop::Storage(e) => Some(after_failure(failures, &format!("storage: {e}"))),
    }
}

/// The pause after one more failure: [`FIRST_PAUSE`] doubled per failure in a row, at most
/// [`MAX_PAUSE`], each between half and all of that at random, so that accounts dropped
/// together do not come back together.
fn after_failure(failures: &mut u32, why: &str) -> Duration {
    let full = FIRST_PAUSE.saturating_mul(1 << (*failures).min(16)).min(MAX_PAUSE);
    *failures += 1;
    let mut random = [0u8; 2];
    getrandom::fill(&mut random).expect("the OS gives random bytes");
    let pause = full / 2 + full.mul_f64(f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX) / 2.0);
    tracing::warn!(failures = *failures, pause_ms = pause.as_millis() as u64, "{why}; connecting again after a pause");
    pause
}

/// Follows the account over one kept connection: first the catch-up (what came while no
/// connection received it), then each push, until the connection drops or fails. Each step
/// reads the connector afresh: what an administrator changed meanwhile (accept messages from
/// anyone, its Open Line) applies to the next message, as it does to the next catch-up job.
async fn follow(svc: &Services, connector: &Connector, kept: &dyn KeptConnection, stop: &mut watch::Receiver<bool>) -> End {
    // A catch-up (`None`: the first look, or after a gap) or pushed updates to apply.
    let step = |pushed: Option<(Vec<Update>, i32, i32)>| async move {
        // Gone or logged out meanwhile: its listener is stopped.
        let Some(connector) = current(svc, connector).await? else { return Ok(false) };
        match pushed {
            None => catch_up_fully(svc, kept, &connector).await?,
            Some((updates, pts, pts_count)) => apply(svc, kept, &connector, &updates, pts, pts_count).await?,
        }
        Ok::<_, Stop>(true)
    };
    match step(None).await {
        Ok(true) => {}
        Ok(false) => return End::Stopped,
        Err(e) => return End::Failed(e),
    }
    svc.listening.set(&connector.id, true);
    tracing::info!("listening: Telegram pushes this account's updates");
    loop {
        let pushed = tokio::select! {
            pushed = kept.next() => pushed,
            _ = stop.changed() => return End::Stopped,
        };
        let stepped = match pushed {
            Pushed::Closed => return End::Dropped,
            Pushed::Gap => {
                tracing::info!("a gap in the pushed updates: catching up over the kept connection");
                step(None).await
            }
            Pushed::Updates { updates, pts, pts_count } => step(Some((updates, pts, pts_count))).await,
        };
        match stepped {
            Ok(true) => {}
            Ok(false) => return End::Stopped,
            Err(e) => return End::Failed(e),
        }
    }
}

/// The connector as stored now, if it may still connect.
async fn current(svc: &Services, connector: &Connector) -> Result<Option<Connector>, Stop> {
    let stored = svc.connectors.get(&connector.member_id, &connector.id).await?;
    Ok(stored.filter(|c| c.status != ConnectorStatus::NeedsLogin))
}

/// The catch-up over the kept connection, to the end of what is waiting.
async fn catch_up_fully(svc: &Services, kept: &dyn KeptConnection, connector: &Connector) -> Result<(), Stop> {
    while read_updates(svc, kept.session(), connector).await? == Read::More {}
    Ok(())
}

/// Pushed updates that take the account's `pts` to `pts`: handled when they follow the stored
/// state, skipped when it has them already, and a gap (a catch-up) when something came
/// between (core.telegram.org/api/updates#update-handling: "if local_pts + pts_count ===
/// pts, the update can be applied; if local_pts + pts_count > pts, the update was already
/// applied, and must be ignored; if local_pts + pts_count < pts, there's an update gap").
async fn apply(svc: &Services, kept: &dyn KeptConnection, connector: &Connector, updates: &[Update], pts: i32, pts_count: i32) -> Result<(), Stop> {
    let Some(saved) = svc.mailbox.catch_up_state(&connector.id).await? else {
        return catch_up_fully(svc, kept, connector).await;
    };
    let local = saved.state.pts;
    if local + pts_count > pts {
        tracing::debug!(pts, local, "pushed updates already applied");
        return Ok(());
    }
    if local + pts_count < pts {
        tracing::info!(pts, pts_count, local, "a gap before the pushed updates: catching up over the kept connection");
        return catch_up_fully(svc, kept, connector).await;
    }
    let state = crate::ports::UpdatesState { pts, ..saved.state };
    handled(svc, kept.session(), connector, updates, &saved, state).await?;
    if updates.is_empty() {
        tracing::debug!(pts, "pts moved with nothing to act on (the account's own send, a group)");
    } else {
        tracing::info!(updates = updates.len(), pts, "pushed updates handled");
    }
    Ok(())
}
