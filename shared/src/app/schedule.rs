//! Send later: a message held back until its time, editable and cancellable until then, and
//! the sweep of the due-time index that queues it then (the schedule's tick runs it).
//!
//! Every change of a scheduled message is one conditional write of its record, and only a
//! `scheduled` one changes: of a sweep, a second sweep, a cancel and an edit racing for it
//! one wins, so it is never queued after a cancel nor sent for an old time.

use serde::Deserialize;

use super::send::{MessageView, card_message, enqueue, message_not_found, publish_job, text_parts, view};
use super::{AppError, ErrorKind, Services};
use crate::auth::Claims;
use crate::clock::now_millis;
use crate::domain::message::MAX_AHEAD_DAYS;
use crate::i18n::{Lang, text};
use crate::repo::schedule::DueEntry;

/// A time picked in the past by less than this still counts: the time it took to click Send.
const GRACE_MS: i64 = 60_000;
/// How far ahead of its acceptance a message with files may go: they are sent from the
/// uploads, which the bucket keeps 7 days from upload (`template.yaml`'s lifecycle rule), and
/// a file may have been uploaded up to a day (its slot's life) before the message was accepted.
const FILES_AHEAD_DAYS: i64 = 5;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// A time to send at (unix ms), if it is not past at `now`, and within what a message written
/// at `written` may wait: a year (as long as its records are kept, `repo::messages::kept_for`,
/// however often its time is moved), and for one with files the life of its uploads.
pub fn check_send_at(lang: Lang, at: i64, now: i64, written: i64, with_files: bool) -> Result<i64, AppError> {
    if at < now - GRACE_MS {
        return Err(AppError::invalid("send_at_past", text(lang, "send_at_past", &[])));
    }
    if at > written + MAX_AHEAD_DAYS * DAY_MS {
        return Err(AppError::invalid("send_at_too_far", text(lang, "send_at_too_far", &[("days", &MAX_AHEAD_DAYS.to_string())])));
    }
    if with_files && at > written + FILES_AHEAD_DAYS * DAY_MS {
        return Err(AppError::invalid("send_at_files_too_far", text(lang, "send_at_files_too_far", &[("days", &FILES_AHEAD_DAYS.to_string())])));
    }
    Ok(at)
}

fn not_scheduled(lang: Lang) -> AppError {
    AppError::new(ErrorKind::Conflict, "not_scheduled", text(lang, "not_scheduled", &[]))
}

/// Queues every scheduled message due at `now` (unix ms): the tick passes the clock, a test
/// any time it likes. Returns how many this sweep released.
pub async fn sweep(svc: &Services, now: i64) -> Result<usize, AppError> {
    let mut released = 0;
    loop {
        // Each entry read is removed below (or the sweep fails): the loop ends.
        let due = svc.schedule.due(now).await?;
        if due.is_empty() {
            return Ok(released);
        }
        for entry in &due {
            released += usize::from(release(svc, entry).await?);
        }
    }
}

async fn release(svc: &Services, entry: &DueEntry) -> Result<bool, AppError> {
    let mut released = false;
    let message = svc.messages.update(&entry.message_id, |m| { released = m.release(entry.due); released }).await?;
    // Released now, or by a sweep cut short before it queued the send (the worker sends a
    // message once however often it is queued); else cancelled, moved to another time, gone.
    if let Some(message) = message.filter(|m| m.released_for(entry.due)) {
        // Listed at its time, the same on a repeated sweep.
        svc.conversations.plan_ended(&message, entry.due).await?;
        enqueue(svc, &message).await?;
        tracing::info!(message_id = %message.id, due = entry.due, "scheduled message queued");
    }
    svc.schedule.remove(entry).await?;
    Ok(released)
}

/// `POST /api/messages/{id}/cancel`: a scheduled message of this card stays unsent.
pub async fn cancel(svc: &Services, claims: &Claims, id: &str) -> Result<MessageView, AppError> {
    let (_, connectors) = card_message(svc, claims, id).await?;
    let mut cancelled = false;
    let message = svc.messages.update(id, |m| { cancelled = m.cancel(); cancelled }).await?.ok_or_else(message_not_found)?;
    if !cancelled {
        return Err(not_scheduled(claims.lang));
    }
    if let Some(due) = message.send_at {
        svc.schedule.remove(&DueEntry { due, message_id: message.id.clone() }).await?;
    }
    // Kept in the conversation, at the time it was called off.
    svc.conversations.plan_ended(&message, now_millis()).await?;
    if message.create_activity {
        // The activity shows "cancelled".
        publish_job(&message).enqueue(svc.queue.as_ref(), std::time::Duration::ZERO).await.map_err(|e| AppError::internal(format!("queue: {e:#}")))?;
    }
    tracing::info!(message_id = %message.id, "scheduled message cancelled");
    Ok(view(claims.lang, &message, &connectors))
}

#[derive(Debug, Deserialize)]
pub struct EditRequest {
    /// The new text; may be empty when files or a voice note go along.
    #[serde(default)]
    pub text: String,
    /// The new time, unix ms.
    pub send_at: i64,
}

/// `PUT /api/messages/{id}`: a scheduled message of this card gets a new text and time.
pub async fn edit(svc: &Services, claims: &Claims, id: &str, request: EditRequest) -> Result<MessageView, AppError> {
    let lang = claims.lang;
    let (earlier, connectors) = card_message(svc, claims, id).await?;
    let with_files = earlier.attachments().next().is_some();
    let at = check_send_at(lang, request.send_at, now_millis(), earlier.created_at, with_files)?;
    let parts = text_parts(lang, &request.text, with_files)?;
    let entry = |due| DueEntry { due, message_id: id.to_owned() };
    // Indexed before the message points at it: a crash in between leaves an entry the sweep drops.
    svc.schedule.add(at, id).await?;
    let mut edited = false;
    let message = svc.messages.update(id, |m| { edited = m.reschedule(parts.clone(), at); edited }).await?.ok_or_else(message_not_found)?;
    if !edited {
        // The entry of its own time may still be a sweep's to finish with.
        if earlier.send_at != Some(at) {
            svc.schedule.remove(&entry(at)).await?;
        }
        return Err(not_scheduled(lang));
    }
    if let Some(old) = earlier.send_at.filter(|&old| old != at) {
        svc.schedule.remove(&entry(old)).await?;
    }
    // The activity keeps showing "scheduled"; it gets the new text with its next status.
    Ok(view(lang, &message, &connectors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_to_send_is_neither_past_nor_beyond_a_year() {
        let now = 1_800_000_000_000;
        assert_eq!(check_send_at(Lang::En, now + 1, now, now, false).unwrap(), now + 1);
        assert_eq!(check_send_at(Lang::En, now - GRACE_MS, now, now, false).unwrap(), now - GRACE_MS, "a moment ago still counts");
        assert_eq!(check_send_at(Lang::En, now - GRACE_MS - 1, now, now, false).unwrap_err().code, "send_at_past");
        let year = MAX_AHEAD_DAYS * DAY_MS;
        assert!(check_send_at(Lang::En, now + year, now, now, false).is_ok());
        let too_far = check_send_at(Lang::Ru, now + year + 1, now, now, false).unwrap_err();
        assert_eq!((too_far.code, too_far.kind), ("send_at_too_far", ErrorKind::Invalid));
        assert!(too_far.message.contains("365"), "{}", too_far.message);
        // Moved later and later, it still goes within a year of when it was written.
        let moved = check_send_at(Lang::En, now + year + 1, now + 30 * DAY_MS, now, false).unwrap_err();
        assert_eq!(moved.code, "send_at_too_far");
    }

    #[test]
    fn a_message_with_files_goes_while_its_uploads_are_kept() {
        let accepted = 1_800_000_000_000;
        let last = accepted + FILES_AHEAD_DAYS * DAY_MS;
        assert_eq!(check_send_at(Lang::En, last, accepted, accepted, true).unwrap(), last);
        assert_eq!(check_send_at(Lang::En, last + 1, accepted, accepted, true).unwrap_err().code, "send_at_files_too_far");
        // An edit a day later still counts from when the message was accepted.
        assert_eq!(check_send_at(Lang::En, last + 1, accepted + DAY_MS, accepted, true).unwrap_err().code, "send_at_files_too_far");
        assert!(check_send_at(Lang::Ru, last + 1, accepted, accepted, false).is_ok(), "no files, no such bound");
        let message = check_send_at(Lang::Ru, last + 1, accepted, accepted, true).unwrap_err().message;
        assert!(message.contains('5'), "{message}");
    }
}
