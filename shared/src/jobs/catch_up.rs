//! The catch-up: what happened on a connected account since the last look, read with
//! `updates.getDifference` on a connection of its own (or, in the single-server deployment,
//! over the account's kept connection, by `jobs::listen`, which hands the updates Telegram
//! pushes to the same [`handle`]). Clients' messages are stored once
//! (by Telegram id) with their files and handed to the openline-worker; read receipts mark
//! our messages read. The state moves on only after what came in is handled, so a catch-up
//! cut short reads the same difference again and repeats nothing.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{Outcome, backoff, note_connector};
use crate::work::Job;
use crate::app::Services;
use crate::app::automation::message_changed;
use crate::app::catch_up::request_catch_up;
use crate::app::send::publish_job;
use crate::app::uploads::safe_name;
use crate::clock::now_millis;
use crate::domain::cadence::{self, catch_up_due};
use crate::domain::formatting::to_bbcode;
use crate::ports::{Difference, IncomingMessage, Peer, RemoteFile, TelegramError, TelegramSession, Update, UpdatesState};
use crate::repo::RepoError;
use crate::repo::connectors::{Connector, ConnectorStatus};
use crate::repo::mailbox::{CatchUpState, RECEIVED_FILE_LIMIT, Received, ReceivedFile, Sent};
use crate::repo::conversations::{Placed, SaidFile, Written};
use crate::repo::openlines::external_chat_id;

/// Slices read per job; a longer backlog goes on in the next job.
const MAX_SLICES: usize = 10;
/// History pages read per chat when recovering from `differenceTooLong`.
const MAX_HISTORY_PAGES: usize = 20;

pub(super) enum Stop {
    Telegram(TelegramError),
    Storage(String),
}

impl From<TelegramError> for Stop {
    fn from(e: TelegramError) -> Self {
        Self::Telegram(e)
    }
}

impl From<RepoError> for Stop {
    fn from(e: RepoError) -> Self {
        Self::Storage(e.to_string())
    }
}

/// How many accounts' catch-ups the tick queues at once.
pub const FAN_OUT: usize = 32;

/// The tick at `now` (the one before it `every_ms` earlier) queues a catch-up of each account
/// due one: the active at every tick, the idle once a quarter hour (`domain::cadence`).
pub async fn request_all(svc: &Services, receive_count: u32, now: i64, every_ms: i64) -> Outcome {
    if cadence::first_tick_of_hour(now, every_ms) {
        if let Err(e) = request_daily_keep_alive(svc).await {
            tracing::error!("the portals' keep-alive not queued: {e:#}");
        }
    }
    let connectors = match svc.connectors.all().await {
        Ok(all) => all,
        Err(e) => return Outcome::RetryAfter(storage_failed(e.to_string(), receive_count)),
    };
    // Two writes per account due (its marker, its job), many at once: 10,000 accounts are
    // queued in seconds, well within the minute, instead of one round trip after another.
    let due = connectors.into_iter().filter(|c| catch_up_due(&c.id, c.active_until, now, every_ms));
    futures_util::stream::iter(due)
        .for_each_concurrent(FAN_OUT, |c| async move {
            if let Err(e) = request_catch_up(svc, &c.member_id, &c.id).await {
                tracing::error!(connector_id = c.id, "catch-up not queued: {e:#}");
            }
        })
        .await;
    Outcome::Done
}

/// The first tick of each day queues the keep-alive of quiet portals' tokens (asked at each
/// hour's first tick: a claim tried at every tick would be a write a minute).
async fn request_daily_keep_alive(svc: &Services) -> anyhow::Result<()> {
    if svc.portals.claim_daily_keep_alive().await? {
        Job::KeepPortalsAlive.enqueue(svc.queue.as_ref(), Duration::ZERO).await?;
    }
    Ok(())
}

fn storage_failed(e: String, receive_count: u32) -> Duration {
    tracing::error!("storage failed during the catch-up: {e}");
    backoff(receive_count)
}

pub async fn catch_up(svc: &Services, member_id: &str, connector_id: &str, receive_count: u32) -> Outcome {
    let connector = match start(svc, member_id, connector_id).await {
        Ok(Some(connector)) => connector,
        Ok(None) => return Outcome::Done,
        Err(e) => return Outcome::RetryAfter(storage_failed(e.to_string(), receive_count)),
    };
    // One connection for the whole catch-up: differences, downloads, a gap's recovery.
    let result = match svc.telegram.connect(&connector.account()).await {
        Ok(telegram) => {
            let result = read_updates(svc, telegram.as_ref(), &connector).await;
            telegram.close().await;
            result
        }
        Err(e) => Err(Stop::Telegram(e)),
    };
    match result {
        Ok(Read::Done) => Outcome::Done,
        // A long backlog: the rest in a job of its own, after what else waits for this account.
        Ok(Read::More) => match request_catch_up(svc, member_id, connector_id).await {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::RetryAfter(storage_failed(format!("{e:#}"), receive_count)),
        },
        Err(Stop::Storage(e)) => Outcome::RetryAfter(storage_failed(e, receive_count)),
        Err(Stop::Telegram(TelegramError::FloodWait { seconds })) => Outcome::RetryAfter(Duration::from_secs(seconds.into())),
        Err(Stop::Telegram(TelegramError::Transient(e))) => {
            tracing::warn!("Telegram did not answer ({e}); catching up later");
            Outcome::RetryAfter(backoff(receive_count))
        }
        Err(Stop::Telegram(e)) => match note_connector(svc, member_id, connector_id, &e).await {
            Ok(()) => Outcome::Failed(format!("Telegram refused the catch-up: {e}")),
            Err(e) => Outcome::RetryAfter(storage_failed(e.to_string(), receive_count)),
        },
    }
}

/// The connector to catch up, if it can be: one that must log in again has nothing to read,
/// and one whose kept connection listens is caught up by it.
async fn start(svc: &Services, member_id: &str, connector_id: &str) -> Result<Option<Connector>, RepoError> {
    svc.mailbox.catch_up_started(connector_id).await?;
    if svc.listening.covers(connector_id) {
        return Ok(None);
    }
    let connector = svc.connectors.get(member_id, connector_id).await?;
    Ok(connector.filter(|c| c.status != ConnectorStatus::NeedsLogin))
}

/// How far a catch-up got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Read {
    /// Up to date.
    Done,
    /// [`MAX_SLICES`] slices read and more waiting.
    More,
}

pub(super) async fn read_updates(svc: &Services, telegram: &dyn TelegramSession, connector: &Connector) -> Result<Read, Stop> {
    let Some(mut saved) = svc.mailbox.catch_up_state(&connector.id).await? else {
        // The first look: what happened before the account was connected is not ours.
        let state = telegram.updates_state().await?;
        svc.mailbox.save_catch_up_state(&connector.id, &CatchUpState { state, last_message_id: 0 }).await?;
        tracing::info!("catch-up starts");
        return Ok(Read::Done);
    };
    for _ in 0..MAX_SLICES {
        match telegram.difference(saved.state).await? {
            Difference::Updates { updates, state, .. } if updates.is_empty() && (state.pts, state.qts) == (saved.state.pts, saved.state.qts) => {
                // Nothing happened: no write (the stored, older `date` only widens a recovery).
                tracing::debug!(pts = state.pts, "nothing new");
                return Ok(Read::Done);
            }
            Difference::Updates { updates, state, more } => {
                saved = handled(svc, telegram, connector, &updates, &saved, state).await?;
                tracing::info!(updates = updates.len(), pts = state.pts, more, "caught up");
                if !more {
                    return Ok(Read::Done);
                }
            }
            Difference::TooLong => return recover(svc, telegram, connector, saved).await.map(|()| Read::Done),
        }
    }
    Ok(Read::More)
}

/// Handles `updates` that took the account from `saved` to `state`, then moves the stored
/// state on: what was handled is never asked for again, and a failure before asks for all
/// of it again (each step is idempotent). The state now stored.
pub(super) async fn handled(
    svc: &Services,
    telegram: &dyn TelegramSession,
    connector: &Connector,
    updates: &[Update],
    saved: &CatchUpState,
    state: UpdatesState,
) -> Result<CatchUpState, Stop> {
    let last = handle(svc, telegram, connector, updates).await?;
    // Something happened on the account (a client wrote or read): more is likely to follow soon.
    let now = now_millis();
    svc.connectors.mark_active(&connector.member_id, &connector.id, now + cadence::AFTER_LOOK_MS, now).await?;
    let saved = CatchUpState { state, last_message_id: saved.last_message_id.max(last) };
    svc.mailbox.save_catch_up_state(&connector.id, &saved).await?;
    Ok(saved)
}

/// Handles one difference in order; the newest client message id in it.
async fn handle(svc: &Services, telegram: &dyn TelegramSession, connector: &Connector, updates: &[Update]) -> Result<i32, Stop> {
    let mut forward = Vec::new();
    let mut revised = Vec::new();
    let mut last = 0;
    for update in updates {
        match update {
            Update::Message(message) => {
                forward.extend(receive(svc, telegram, connector, message).await?);
                last = last.max(message.id);
            }
            Update::ReadOutbox { user_id, max_id } => read(svc, connector, *user_id, *max_id).await?,
            Update::Edited(message) => revised.extend(edited(svc, connector, message).await?),
            Update::Deleted { ids } => {
                for &id in ids {
                    revised.extend(deleted(svc, connector, id).await?);
                }
            }
        }
    }
    hand_on(svc, connector, forward).await?;
    if !revised.is_empty() {
        let job = Job::ReviseReceived { member_id: connector.member_id.clone(), connector_id: connector.id.clone(), telegram_ids: revised };
        job.enqueue(svc.queue.as_ref(), Duration::ZERO).await.map_err(|e| Stop::Storage(format!("queue: {e:#}")))?;
    }
    Ok(last)
}

/// A client's edit of a message we stored: its new text, for the Open Line to follow once it
/// has the message. Its id when there is something to revise; the same text again is nothing.
async fn edited(svc: &Services, connector: &Connector, message: &IncomingMessage) -> Result<Option<i32>, Stop> {
    svc.conversations.revise(&connector.id, message.id, |w| w.edit(&message.text.text)).await?;
    let text = to_bbcode(&message.text);
    let mut changed = false;
    let stored = svc.mailbox.revise(&connector.id, message.id, |m| {
        changed = !m.deleted && m.text != text;
        if changed {
            (m.text, m.edited) = (text.clone(), true);
        }
        changed
    });
    Ok(stored.await?.filter(|m| changed && m.forwarded).map(|m| m.telegram_id))
}

/// A deletion on Telegram names only ids of the account's mailbox: those of messages we
/// stored are the clients' (ours and unknown ones are not in it).
async fn deleted(svc: &Services, connector: &Connector, telegram_id: i32) -> Result<Option<i32>, Stop> {
    svc.conversations.revise(&connector.id, telegram_id, Written::delete).await?;
    let mut changed = false;
    let stored = svc.mailbox.revise(&connector.id, telegram_id, |m| {
        changed = !std::mem::replace(&mut m.deleted, true);
        changed
    });
    Ok(stored.await?.filter(|m| changed && m.forwarded).map(|m| m.telegram_id))
}

async fn hand_on(svc: &Services, connector: &Connector, telegram_ids: Vec<i32>) -> Result<(), Stop> {
    if telegram_ids.is_empty() {
        return Ok(());
    }
    let job = Job::ForwardReceived { member_id: connector.member_id.clone(), connector_id: connector.id.clone(), telegram_ids };
    job.enqueue(svc.queue.as_ref(), Duration::ZERO).await.map_err(|e| Stop::Storage(format!("queue: {e:#}")))
}

/// Stores a client's message the first time it is seen; its id while it waits to be
/// forwarded, `None` once forwarded or when it is not for the Open Line.
async fn receive(svc: &Services, telegram: &dyn TelegramSession, connector: &Connector, message: &IncomingMessage) -> Result<Option<i32>, Stop> {
    if let Some(stored) = svc.mailbox.received(&connector.id, message.id).await? {
        return Ok((!stored.forwarded).then_some(message.id));
    }
    let peer = message.from.peer;
    if !accepts(svc, connector, peer).await? {
        tracing::debug!(telegram_id = message.id, "a message from someone the portal never wrote to; not forwarded");
        return Ok(None);
    }
    let files = match &message.file {
        Some(file) => vec![store_file(svc, telegram, &connector.id, message.id, file).await?],
        None => Vec::new(),
    };
    let received = Received {
        telegram_id: message.id,
        from: message.from.clone(),
        date: message.date,
        text: to_bbcode(&message.text),
        files,
        forwarded: false,
        lease: None,
        edited: false,
        deleted: false,
        removed: false,
    };
    if !svc.mailbox.receive(&connector.id, &received).await? {
        return Ok(None); // stored meanwhile by another catch-up, which hands it on
    }
    let files = message.file.iter().zip(&received.files).map(|(file, stored)| SaidFile {
        name: stored.file_name.clone(),
        kind: file.kind,
        mime_type: file.mime_type.clone(),
        key: stored.key.clone(),
    });
    let written = Written { telegram_id: message.id, out: false, text: message.text.text.clone(), files: files.collect(), edited: false, deleted: false };
    svc.conversations.add_written(&connector.id, peer.user_id, Placed::Arrived { date_secs: message.date }, written).await?;
    // A chat both ways now: answering it opens nothing new.
    svc.safety.remember_chat(&connector.id, peer).await?;
    tracing::info!(telegram_id = message.id, "client message received");
    Ok(Some(message.id))
}

/// Whether the Open Line should see this sender's messages: people the portal wrote to or
/// has a chat with, or anyone when the connector accepts all.
async fn accepts(svc: &Services, connector: &Connector, peer: Peer) -> Result<bool, RepoError> {
    Ok(connector.accept_all
        || svc.safety.knows_chat(&connector.id, peer.user_id).await?
        || svc.openlines.chat(&connector.member_id, &external_chat_id(&connector.id, peer)).await?.is_some())
}


/// Streams a client's file from Telegram into storage.
async fn store_file(svc: &Services, telegram: &dyn TelegramSession, connector_id: &str, telegram_id: i32, file: &RemoteFile) -> Result<ReceivedFile, Stop> {
    let skipped = ReceivedFile { key: None, file_name: file.file_name.clone(), size: file.size };
    if file.size > RECEIVED_FILE_LIMIT {
        tracing::info!(telegram_id, size = file.size, "file too large to bring over");
        return Ok(skipped);
    }
    let key = format!("received/{connector_id}/{telegram_id}/{}", safe_name(&file.file_name));
    let (mut writer, mut reader) = tokio::io::duplex(64 * 1024);
    let download = async {
        let result = telegram.download(file, &mut writer).await;
        let _ = writer.shutdown().await;
        result
    };
    let (downloaded, stored) = tokio::join!(download, svc.blobs.put(&key, &mut reader));
    match downloaded {
        Ok(_) => {}
        // Telegram will not hand this file over (too old, removed): the message goes without it.
        Err(TelegramError::Rejected(e)) => {
            tracing::warn!(telegram_id, "file not downloadable: {e}");
            return Ok(skipped);
        }
        Err(e) => return Err(e.into()),
    }
    let size = stored.map_err(|e| Stop::Storage(format!("blobs: {e:#}")))?;
    Ok(ReceivedFile { key: Some(key), size, ..skipped })
}

/// `user_id` read our messages up to `max_id`: each turns read, once.
async fn read(svc: &Services, connector: &Connector, user_id: i64, max_id: i32) -> Result<(), Stop> {
    let read = svc.mailbox.read_up_to(&connector.id, user_id, max_id).await?;
    for unread in &read {
        match &unread.sent {
            Sent::Message { message_id } => {
                let mut marked = false;
                let message = svc.messages.update(message_id, |m| { marked = m.mark_read(); marked }).await?;
                if let Some(message) = message.filter(|_| marked) {
                    if message.create_activity {
                        publish_job(&message).enqueue(svc.queue.as_ref(), Duration::ZERO).await.map_err(|e| Stop::Storage(format!("queue: {e:#}")))?;
                    }
                    message_changed(svc, &message).await.map_err(|e| Stop::Storage(format!("queue: {e:#}")))?;
                }
                tracing::info!(message_id, "message read");
            }
            Sent::OperatorReply { line, external_chat_id, ol_chat_id, im_message_id } => {
                let job = Job::Reading {
                    member_id: connector.member_id.clone(),
                    line: line.clone(),
                    external_chat_id: external_chat_id.clone(),
                    ol_chat_id: *ol_chat_id,
                    im_message_id: *im_message_id,
                };
                job.enqueue(svc.queue.as_ref(), Duration::ZERO).await.map_err(|e| Stop::Storage(format!("queue: {e:#}")))?;
            }
        }
    }
    svc.mailbox.forget(&connector.id, &read).await?;
    Ok(())
}

/// After `differenceTooLong`: the state starts again from now, and what was missed comes
/// from each chat's history (messages after the last handled, not older than the last look)
/// and its read marker. What was seen already is recognised by its Telegram id.
async fn recover(svc: &Services, telegram: &dyn TelegramSession, connector: &Connector, saved: CatchUpState) -> Result<(), Stop> {
    let fresh = telegram.updates_state().await?;
    tracing::warn!(from_pts = saved.state.pts, to_pts = fresh.pts, "difference too long: recovering from chat histories");
    let mut last = saved.last_message_id;
    let mut forward = Vec::new();
    let chats = svc.safety.chats(&connector.id).await?;
    for &peer in &chats {
        let mut after = saved.last_message_id;
        for _ in 0..MAX_HISTORY_PAGES {
            let page = telegram.history(peer, after).await?;
            // Older than the last look: an earlier difference brought it.
            for message in page.messages.iter().filter(|m| m.date >= i64::from(saved.state.date)) {
                forward.extend(receive(svc, telegram, connector, message).await?);
                last = last.max(message.id);
            }
            match page.next_after {
                Some(next) => after = next,
                None => break,
            }
        }
    }
    for user_id in svc.mailbox.unread_peers(&connector.id).await? {
        let Some(&peer) = chats.iter().find(|p| p.user_id == user_id) else { continue };
        let max_id = telegram.read_outbox_max_id(peer).await?;
        read(svc, connector, user_id, max_id).await?;
    }
    hand_on(svc, connector, forward).await?;
    svc.mailbox.save_catch_up_state(&connector.id, &CatchUpState { state: fresh, last_message_id: last }).await?;
    Ok(())
}
