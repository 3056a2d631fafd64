//! Messages, their idempotency keys, and the per-card index of recent messages.

use std::time::Duration;

use super::conversations::{Conversations, touch};
use super::{Records, RepoError, portal_pk};
use crate::domain::lease::Claim;
use crate::domain::message::MAX_AHEAD_DAYS;
use crate::domain::{EntityRef, Message};

/// How long a client's idempotency key keeps pointing at its message.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
const MESSAGE_SK: &str = "message";

fn message_pk(id: &str) -> String {
    format!("message#{id}")
}

fn idempotency_sk(user: u64, key: &str) -> String {
    format!("idempotency#{user}#{key}")
}

const CARD_INDEX: &str = "cardmessage#";

fn card_prefix(entity: EntityRef) -> String {
    format!("{CARD_INDEX}{}#{}#", entity.kind.as_str(), entity.id)
}

/// How long a message's records live: the retention, after the latest it may still leave if
/// scheduled (its time may be edited up to `MAX_AHEAD_DAYS` from then), after now otherwise.
pub fn kept_for(retention: Duration, message: &Message) -> Duration {
    let ahead = if message.send_at.is_some() { MAX_AHEAD_DAYS as u64 * 86_400 } else { 0 };
    retention + Duration::from_secs(ahead)
}

#[derive(Clone)]
pub struct Messages {
    records: Records,
    conversations: Conversations,
    retention: Duration,
}

impl Messages {
    pub fn new(records: Records, retention: Duration) -> Self {
        Self { conversations: Conversations::new(records.clone(), retention), records, retention }
    }

    /// Claims the client's idempotency key for `message_id`. Returns the id the key
    /// points at: `message_id` itself, or the message of an earlier submit.
    pub async fn claim_idempotency_key(&self, member_id: &str, user: u64, key: &str, message_id: &str) -> Result<String, RepoError> {
        let (pk, sk) = (portal_pk(member_id), idempotency_sk(user, key));
        loop {
            if self.records.create(&pk, &sk, &message_id, Some(IDEMPOTENCY_TTL)).await? {
                return Ok(message_id.to_owned());
            }
            // Lost the race, or an earlier submit: read whose key it is (it may expire meanwhile).
            if let Some(existing) = self.records.get::<String>(&pk, &sk).await? {
                return Ok(existing.value);
            }
        }
    }

    /// Stores a new message and lists it on its card and in its conversation; `false` if it
    /// was stored already.
    pub async fn create(&self, message: &Message) -> Result<bool, RepoError> {
        let kept = Some(kept_for(self.retention, message));
        let created = self.records.create(&message_pk(&message.id), MESSAGE_SK, message, kept).await?;
        let index_sk = format!("{}{:013}#{}", card_prefix(message.entity), message.created_at, message.id);
        self.records.put(&portal_pk(&message.member_id), &index_sk, &message.id, kept).await?;
        self.conversations.add_ours(message).await?;
        Ok(created)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Message>, RepoError> {
        Ok(self.records.get(&message_pk(id), MESSAGE_SK).await?.map(|s| s.value))
    }

    /// Applies `change` atomically (retrying on concurrent writes); the message as stored after.
    /// A change the tab shows tells the tabs watching its conversation.
    pub async fn update(&self, id: &str, mut change: impl FnMut(&mut Message) -> bool) -> Result<Option<Message>, RepoError> {
        let mut shown_changed = false;
        let after = self
            .records
            .update(&message_pk(id), MESSAGE_SK, |m: &mut Message| {
                let before = m.shown();
                let changed = change(m);
                shown_changed = changed && m.shown() != before;
                changed
            })
            .await?;
        if let Some(m) = after.as_ref().filter(|_| shown_changed) {
            touch(&self.records, &m.connector_id, m.peer.user_id).await?;
        }
        Ok(after)
    }

    /// Claims the message's Open Line work (its publication, its activity) for one job run;
    /// `Done` when none is due.
    pub async fn claim_openline_work(&self, id: &str, holder: &str, term: Duration) -> Result<Claim<Message>, RepoError> {
        let due = |m: &Message| m.awaits_publication() || m.activity_stale();
        self.records.claim(&message_pk(id), MESSAGE_SK, holder, term, due).await
    }

    pub async fn release(&self, id: &str, holder: &str) -> Result<(), RepoError> {
        self.records.release::<Message>(&message_pk(id), MESSAGE_SK, holder).await
    }

    /// The newest messages sent from a card.
    pub async fn recent_on_card(&self, member_id: &str, entity: EntityRef, limit: usize) -> Result<Vec<Message>, RepoError> {
        let ids: Vec<String> = self.records.query(&portal_pk(member_id), &card_prefix(entity), limit, true).await?;
        let mut messages = Vec::with_capacity(ids.len());
        for id in ids {
            messages.extend(self.get(&id).await?);
        }
        Ok(messages)
    }

    /// Deletes every message of a portal, found through its cards' indexes, and the indexes.
    pub async fn delete_all(&self, member_id: &str) -> Result<(), RepoError> {
        let pk = portal_pk(member_id);
        loop {
            let listed = self.records.entries::<String>(&pk, CARD_INDEX, 100).await?;
            if listed.is_empty() {
                return Ok(());
            }
            for (index_sk, id) in listed {
                self.records.delete_prefix(&message_pk(&id), "").await?;
                self.records.delete(&pk, &index_sk).await?;
            }
        }
    }
}
