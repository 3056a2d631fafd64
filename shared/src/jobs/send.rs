//! The telegram-worker's job: send a stored message, part by part, exactly once.
//!
//! Each part is recorded as sent before the next goes out. A part whose send was
//! interrupted is sent again with the same `random_id`, which Telegram drops as a
//! duplicate, so neither a crash nor a redelivery sends a part twice. A finished message
//! goes on to the openline-worker (publication, activity); a sent one waits in the mailbox
//! for the client to read it, and a catch-up follows.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::{Outcome, backoff, note_connector};
use crate::app::automation;
use crate::app::catch_up::request_catch_up;
use crate::app::Services;
use crate::app::send::publish_job;
use crate::app::uploads::MAX_VOICE;
use crate::clock::now_millis;
use crate::domain::cadence;
use crate::domain::message::random_id;
use crate::domain::voice::{self, VoiceContainer};
use crate::domain::{Attachment, Failure, Formatted, Message, MessageStatus, PublicationMode, SendAs};
use crate::ports::blobs::BlobReader;
use crate::ports::{Media, MediaKind, TelegramError, TelegramSession};
use crate::repo::RepoError;
use crate::repo::connectors::{Connector, ConnectorStatus};
use crate::repo::mailbox::Sent;
use crate::repo::safety::Counter;

pub async fn send_message(svc: &Services, message_id: &str, receive_count: u32) -> Outcome {
    match try_send(svc, message_id, receive_count).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!("storage failed while sending: {e:#}");
            Outcome::RetryAfter(backoff(receive_count))
        }
    }
}

async fn try_send(svc: &Services, message_id: &str, receive_count: u32) -> Result<Outcome, RepoError> {
    let mut claimed = false;
    let Some(message) = svc.messages.update(message_id, |m| { claimed = m.begin_sending(); claimed }).await? else {
        return Ok(Outcome::Failed("no such message".into()));
    };
    if !claimed && !message.status.is_final() {
        tracing::info!("scheduled; the sweep queues it when it is due");
        return Ok(Outcome::Done);
    }
    if !claimed {
        tracing::info!(status = ?message.status, "already final; nothing to send");
        // The earlier run may have stopped before handing it on; the next steps repeat nothing.
        return Ok(finished(svc, &message, Outcome::Done).await);
    }
    let Some(connector) = svc.connectors.get(&message.member_id, &message.connector_id).await? else {
        return fail(svc, &message, Failure::ConnectorUnauthorized).await;
    };
    if connector.status == ConnectorStatus::NeedsLogin {
        return fail(svc, &message, Failure::ConnectorUnauthorized).await;
    }
    // One connection for every part of the message.
    let telegram = match svc.telegram.connect(&connector.account()).await {
        Ok(telegram) => telegram,
        Err(e) => return telegram_failed(svc, &message, &connector, e, receive_count).await,
    };
    let outcome = send_parts(svc, telegram.as_ref(), &connector, message, receive_count).await;
    telegram.close().await;
    outcome
}

async fn send_parts(svc: &Services, telegram: &dyn TelegramSession, connector: &Connector, mut message: Message, receive_count: u32) -> Result<Outcome, RepoError> {
    let message_id = message.id.clone();
    while let Some((index, part)) = message.next_part() {
        let random_id = random_id(&message.id, index);
        let sent = match &part.media {
            None => telegram.send_text(message.peer, &Formatted::plain(&part.text), random_id).await,
            Some(file) => match open_media(svc, file).await {
                Ok((media, body)) => telegram.send_media(message.peer, &media, body, &Formatted::plain(&part.text), random_id).await,
                Err(MediaError::Storage(e)) => {
                    tracing::warn!("blob storage failed ({e:#}); retrying");
                    return Ok(Outcome::RetryAfter(backoff(receive_count)));
                }
                Err(MediaError::Unusable(detail)) => return fail(svc, &message, Failure::Rejected { detail }).await,
            },
        };
        match sent {
            Ok(sent) => {
                if let Some(telegram_id) = sent.id {
                    // Before the part counts as sent: a history read back never lists it twice.
                    svc.conversations.listed_ours(&connector.id, message.peer.user_id, telegram_id).await?;
                }
                message = svc
                    .messages
                    .update(&message_id, |m| { m.part_sent(index, sent.id); true })
                    .await?
                    .expect("a message being sent is not deleted");
                tracing::info!(part = index, telegram_id = ?sent.id, "part sent");
            }
            Err(e) => return telegram_failed(svc, &message, connector, e, receive_count).await,
        }
    }
    tracing::info!("message sent");
    if message.origin.is_some() {
        svc.safety.count(&connector.id, Counter::AutomationSent).await?;
    }
    Ok(finished(svc, &message, Outcome::Done).await)
}

/// What a refused or unanswered send means for the message: later (a flood wait, no answer:
/// the same `random_id` goes again), or a failure the connector may have to hear of.
async fn telegram_failed(svc: &Services, message: &Message, connector: &Connector, e: TelegramError, receive_count: u32) -> Result<Outcome, RepoError> {
    match e {
        TelegramError::FloodWait { seconds } => {
            let wait = Duration::from_secs(seconds.into());
            svc.messages.update(&message.id, |m| { m.wait_until(now_millis() + wait.as_millis() as i64); true }).await?;
            tracing::warn!(seconds, "Telegram flood wait; retrying later");
            Ok(Outcome::RetryAfter(wait))
        }
        TelegramError::Transient(e) => {
            tracing::warn!("Telegram did not answer ({e}); retrying with the same random_id");
            Ok(Outcome::RetryAfter(backoff(receive_count)))
        }
        e => {
            note_connector(svc, &message.member_id, &connector.id, &e).await?;
            fail(svc, message, e.into()).await
        }
    }
}

enum MediaError {
    /// Storage did not answer: try again later.
    Storage(anyhow::Error),
    /// The file cannot be sent (gone, or a recording that is not Opus).
    Unusable(String),
}

/// The file of a part as Telegram gets it: streamed from storage, a voice note as OGG/Opus.
async fn open_media(svc: &Services, file: &Attachment) -> Result<(Media, BlobReader), MediaError> {
    let (size, body) = svc
        .blobs
        .get(&file.key)
        .await
        .map_err(|e| MediaError::Storage(e.into()))?
        .ok_or_else(|| MediaError::Unusable(format!("the file {} is no longer stored", file.file_name)))?;
    let (kind, size, body) = match &file.send_as {
        SendAs::Photo => (MediaKind::Photo, size, body),
        SendAs::Document => (MediaKind::Document, size, body),
        SendAs::Voice { duration_secs, waveform } => {
            let ogg = ogg_voice(body).await?;
            let kind = MediaKind::Voice { duration_secs: *duration_secs, waveform: waveform.clone() };
            (kind, ogg.len() as u64, Box::new(std::io::Cursor::new(ogg)) as BlobReader)
        }
    };
    Ok((Media { kind, file_name: file.file_name.clone(), mime_type: file.mime_type.clone(), size }, body))
}

/// A recording as OGG/Opus: Firefox's passes through, Chromium's WebM is remuxed (not
/// re-encoded). Held in memory, bounded by the voice size limit checked at send.
async fn ogg_voice(mut body: BlobReader) -> Result<Vec<u8>, MediaError> {
    let mut bytes = Vec::new();
    (&mut body).take(MAX_VOICE + 1).read_to_end(&mut bytes).await.map_err(|e| MediaError::Storage(e.into()))?;
    match voice::sniff_container(&bytes) {
        Some(VoiceContainer::Ogg) => Ok(bytes),
        Some(VoiceContainer::WebM) => tokio::task::spawn_blocking(move || {
            let mut ogg = Vec::with_capacity(bytes.len());
            voice::remux_webm_to_ogg(std::io::Cursor::new(bytes), &mut ogg).map(|_| ogg)
        })
        .await
        .map_err(|e| MediaError::Storage(e.into()))?
        .map_err(|e| MediaError::Unusable(format!("the voice recording could not be read: {e}"))),
        None => Err(MediaError::Unusable("the voice recording is neither OGG nor WebM".into())),
    }
}

/// Hands a final message on: to the openline-worker when it is published or has an
/// activity; sent, to the mailbox until the client reads it, and a catch-up right away.
/// Each step may repeat harmlessly.
async fn finished(svc: &Services, message: &Message, outcome: Outcome) -> Outcome {
    match hand_on(svc, message).await {
        Ok(()) => outcome,
        Err(e) => {
            tracing::error!("could not hand the message on (retrying): {e:#}");
            Outcome::RetryAfter(backoff(1))
        }
    }
}

async fn hand_on(svc: &Services, message: &Message) -> anyhow::Result<()> {
    if message.publication != PublicationMode::None || message.create_activity {
        publish_job(message).enqueue(svc.queue.as_ref(), Duration::ZERO).await?;
    }
    automation::message_changed(svc, message).await?;
    if let (MessageStatus::Sent, Some(last)) = (message.status, message.last_telegram_id()) {
        let sent = Sent::Message { message_id: message.id.clone() };
        svc.mailbox.sent(&message.connector_id, message.peer.user_id, last, &sent).await?;
        request_catch_up(svc, &message.member_id, &message.connector_id).await?;
        // Caught up at every tick for the hour a reply or a read is likely in.
        let now = now_millis();
        svc.connectors.mark_active(&message.member_id, &message.connector_id, now + cadence::AFTER_SEND_MS, now).await?;
    }
    Ok(())
}

async fn fail(svc: &Services, message: &Message, failure: Failure) -> Result<Outcome, RepoError> {
    let reason = format!("{failure:?}");
    let failed = svc.messages.update(&message.id, |m| { m.fail(failure.clone()); true }).await?;
    tracing::warn!(reason, "message failed");
    Ok(finished(svc, failed.as_ref().unwrap_or(message), Outcome::Failed(reason)).await)
}
