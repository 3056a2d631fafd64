//! The conversation with one client in the card's tab: both sides, newest at the bottom,
//! paged back, and a change marker so an open tab asks for the list only when it changed.
//! The first look at a client reads their earlier history back from Telegram.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::catch_up::account_active;
use super::send::{MessageView, card_recipient, view};
use super::{AppError, Services};
use crate::auth::Claims;
use crate::domain::cadence;
use crate::i18n::text;
use crate::ports::IncomingKind;
use crate::repo::conversations::{Backfill, Conversations, Entry, PAGE, Said, Written};
use crate::work::Job;

/// How long a file's link in the tab stays valid: longer than anyone keeps a tab open unused.
const FILE_LINK: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, Deserialize)]
pub struct ConversationQuery {
    pub connector: String,
    pub recipient: String,
    /// A page further back: the `earlier` of the page before.
    pub before: Option<String>,
    /// The `rev` the tab has: nothing is listed when it is still the conversation's.
    pub rev: Option<String>,
    /// The tab is open and visible on this client (said every few minutes, not every poll):
    /// the account is kept caught up at every tick meanwhile.
    #[serde(default)]
    pub watching: bool,
    /// The `peer` of the list the tab has: with `rev`, a poll is answered from the change
    /// marker alone.
    pub peer: Option<i64>,
}

#[derive(Serialize)]
pub struct ConversationView {
    /// The conversation's change marker as this list shows it.
    pub rev: String,
    /// The client's Telegram user id: the tab names it with `rev` when it polls.
    pub peer: i64,
    /// Oldest first; scheduled messages last.
    pub items: Vec<ItemView>,
    /// Where the page further back starts; `None` when this page is the first.
    pub earlier: Option<String>,
    /// The client's earlier history is being read from Telegram.
    pub backfilling: bool,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ItemView {
    Ours {
        key: String,
        #[serde(flatten)]
        message: MessageView,
    },
    Written {
        key: String,
        telegram_id: i32,
        out: bool,
        text: String,
        files: Vec<FileView>,
        /// Unix ms.
        date: i64,
        edited: bool,
        deleted: bool,
    },
}

#[derive(Serialize)]
pub struct FileView {
    pub name: String,
    pub kind: IncomingKind,
    pub mime_type: String,
    /// Where the tab plays or shows it; `None` when it was not brought over.
    pub url: Option<String>,
}

pub enum Looked {
    Unchanged,
    Changed(ConversationView),
}

/// Notes that a manager watches one of the account's clients; a failure only slows replies.
async fn watched(svc: &Services, member_id: &str, connector_id: &str) {
    if let Err(e) = account_active(svc, member_id, connector_id, cadence::AFTER_LOOK_MS).await {
        tracing::warn!(connector_id, "the account's activity not noted: {e:#}");
    }
}

/// `GET /api/conversation`: the newest page (or one further back) of the conversation with a
/// recipient of this card, through a connector this user may use.
pub async fn look(svc: &Services, claims: &Claims, query: &ConversationQuery) -> Result<Looked, AppError> {
    // Replies should show within a tick while a manager looks: the first look and a watching
    // poll say so. The portal's own connector or none: the mark is keyed by the session's portal.
    if query.rev.is_none() || query.watching {
        watched(svc, &claims.portal, &query.connector).await;
    }
    // A poll: one read of the marker, not the card's. Safe unchecked: only a tab that was shown
    // the list holds its marker (a random id), and 304 tells it only that nothing changed.
    if let (Some(rev), Some(peer), None) = (&query.rev, query.peer, &query.before) {
        if svc.conversations.revision(&query.connector, peer).await?.as_ref() == Some(rev) {
            return Ok(Looked::Unchanged);
        }
    }
    let (connector, _, user) = card_recipient(svc, claims, &query.connector, &query.recipient).await?;
    let user_id = user.peer.user_id;
    if query.before.as_deref().is_some_and(|key| !Conversations::is_cursor_of(user_id, key)) {
        return Err(AppError::bad_request("bad_cursor", text(claims.lang, "bad_cursor", &[])));
    }
    // Read before the list: a change landing in between shows on the next look.
    let rev = svc.conversations.revision(&connector.id, user_id).await?.unwrap_or_default();
    if query.before.is_none() && !rev.is_empty() && query.rev.as_deref() == Some(rev.as_str()) {
        return Ok(Looked::Unchanged);
    }
    let backfilling = match svc.conversations.backfill(&connector.id, user_id).await? {
        Some(state) => state == Backfill::Pending,
        None => start_backfill(svc, &connector.member_id, &connector.id, user.peer).await?,
    };
    let (entries, planned) = svc.conversations.page(&connector.id, user_id, query.before.as_deref()).await?;
    let earlier = (entries.len() == PAGE).then(|| entries.last().map(|e| e.key.clone())).flatten();
    let mut items = Vec::with_capacity(entries.len() + planned.len());
    for entry in entries.into_iter().rev() {
        items.extend(item(svc, claims, entry).await?);
    }
    let mut scheduled = Vec::with_capacity(planned.len());
    for entry in planned {
        scheduled.extend(item(svc, claims, entry).await?);
    }
    scheduled.sort_by_key(|i| match i {
        ItemView::Ours { message, .. } => message.send_at.unwrap_or_default(),
        ItemView::Written { date, .. } => *date,
    });
    items.append(&mut scheduled);
    Ok(Looked::Changed(ConversationView { rev, peer: user_id, items, earlier, backfilling }))
}

/// The first look at a client: their history is read back once. Whether it is being read.
async fn start_backfill(svc: &Services, member_id: &str, connector_id: &str, peer: crate::domain::Peer) -> Result<bool, AppError> {
    if !svc.conversations.claim_backfill(connector_id, peer.user_id).await? {
        return Ok(true);
    }
    let job = Job::Backfill { member_id: member_id.to_owned(), connector_id: connector_id.to_owned(), peer };
    if let Err(e) = job.enqueue(svc.queue.as_ref(), Duration::ZERO).await {
        // Unclaimed, so the next look asks again.
        svc.conversations.end_backfill(connector_id, peer.user_id, false).await?;
        return Err(AppError::internal(format!("queue: {e:#}")));
    }
    Ok(true)
}

async fn item(svc: &Services, claims: &Claims, entry: Entry) -> Result<Option<ItemView>, AppError> {
    let Entry { key, said } = entry;
    Ok(match said {
        Said::Ours { message_id } => {
            let message = svc.messages.get(&message_id).await?;
            // The conversation's connector is one this user may use: so is each message of it.
            message.map(|m| ItemView::Ours { key, message: view(claims.lang, &m, &[]) })
        }
        Said::Written(Written { telegram_id, out, text, files, edited, deleted }) => {
            let date = key.rsplit('#').nth(1).and_then(|ms| ms.parse().ok()).unwrap_or_default();
            let files = files
                .into_iter()
                .map(|f| FileView { url: f.key.map(|k| svc.links.download_url(&k, FILE_LINK)), name: f.name, kind: f.kind, mime_type: f.mime_type })
                .collect();
            Some(ItemView::Written { key, telegram_id, out, text, files, date, edited, deleted })
        }
    })
}
