//! The conversation of each connector with each client, as the card's tab shows it: what
//! either side wrote in their private chat, in time order, paged back from the newest.
//!
//! In the connector's partition: entries `talk#<user>#<ms, 13 digits>#<source>` (ours by the
//! message id, the rest by Telegram id); scheduled messages apart, as `talkplan#<user>#<id>`,
//! until they leave; a marker `talkid#<telegram id>` for every Telegram message listed (a
//! history read back lists nothing twice, and an edit or deletion, which names only the id,
//! finds its entry); and a change marker `talkrev#<user>` a tab polls instead of the list.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Records, RepoError, connector_pk as pk};
use crate::clock::now_millis;
use crate::domain::Message;
use crate::ports::IncomingKind;

/// Entries per page.
pub const PAGE: usize = 30;

/// One entry of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Said {
    /// A message of the app's (from a card or automation): shown as its record stands.
    Ours { message_id: String },
    /// Written on Telegram: by the client, by an operator through an Open Line, or by the
    /// account itself before the app or from its own apps (read back from the history).
    Written(Written),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub telegram_id: i32,
    /// Written by the account (an operator's reply, or the account's own).
    pub out: bool,
    pub text: String,
    #[serde(default)]
    pub files: Vec<SaidFile>,
    #[serde(default)]
    pub edited: bool,
    #[serde(default)]
    pub deleted: bool,
}

impl Written {
    /// Its text is now `text`; `false` when it reads so already or is gone.
    pub fn edit(&mut self, text: &str) -> bool {
        let changed = !self.deleted && self.text != text;
        if changed {
            (self.text, self.edited) = (text.to_owned(), true);
        }
        changed
    }

    /// Deleted on Telegram: nothing of it is kept; `false` when it was already.
    pub fn delete(&mut self) -> bool {
        let changed = !self.deleted;
        self.deleted = true;
        self.text.clear();
        self.files.clear();
        changed
    }
}

/// A file of a written message; `key` when it was brought over into storage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaidFile {
    pub name: String,
    pub kind: IncomingKind,
    #[serde(default)]
    pub mime_type: String,
    pub key: Option<String>,
}

/// One entry and where it sorts (what a page further back starts below).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub said: Said,
}

/// Where a Telegram message is listed: `entry` for a written one (ours are found by their record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Listed {
    user_id: i64,
    entry: Option<String>,
}

/// Whether the earlier history of a client was read back from Telegram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backfill {
    Pending,
    Done,
}

/// Where a Telegram message goes among ours, which are listed at their millisecond; Telegram
/// dates count whole seconds.
#[derive(Clone, Copy, Debug)]
pub enum Placed {
    /// Read back from the history: written before anything the app did in its second, so at
    /// the start of it, and before ours on the same millisecond.
    History { date_secs: i64 },
    /// Arrived: an answer to what came before it in its second, so at the end of it (never
    /// later than now), and after ours on the same millisecond.
    Arrived { date_secs: i64 },
    /// Sent by the app just now (an operator's reply).
    Now,
}

impl Placed {
    fn at_and_source(self, telegram_id: i32) -> (i64, String) {
        match self {
            Self::History { date_secs } => (date_secs * 1000, format!("h{telegram_id:010}")),
            Self::Arrived { date_secs } => ((date_secs * 1000 + 999).min(now_millis()), format!("t{telegram_id:010}")),
            Self::Now => (now_millis(), format!("t{telegram_id:010}")),
        }
    }
}

fn prefix(user_id: i64) -> String {
    format!("talk#{user_id}#")
}

fn entry_sk(user_id: i64, at_ms: i64, source: &str) -> String {
    format!("{}{at_ms:013}#{source}", prefix(user_id))
}

fn plan_sk(user_id: i64, message_id: &str) -> String {
    format!("talkplan#{user_id}#{message_id}")
}

fn listed_sk(telegram_id: i32) -> String {
    format!("talkid#{telegram_id:010}")
}

fn rev_sk(user_id: i64) -> String {
    format!("talkrev#{user_id}")
}

fn backfill_sk(user_id: i64) -> String {
    format!("talkfill#{user_id}")
}

/// Tells the tabs watching this conversation that something in it changed. Written after the
/// change: a tab reads the marker before the list, so it never keeps a list older than its marker.
pub async fn touch(records: &Records, connector_id: &str, user_id: i64) -> Result<(), RepoError> {
    records.put(&pk(connector_id), &rev_sk(user_id), &uuid::Uuid::new_v4().simple().to_string(), None).await
}

#[derive(Clone)]
pub struct Conversations {
    records: Records,
    /// Entries, markers and the backfill's state live this long (`SafetyLimits::retention`);
    /// the change marker lives on (one small record per client).
    retention: Duration,
}

impl Conversations {
    pub fn new(records: Records, retention: Duration) -> Self {
        Self { records, retention }
    }

    fn kept(&self) -> Option<Duration> {
        Some(self.retention)
    }

    /// Lists a new message of ours: a scheduled one apart until it leaves.
    pub async fn add_ours(&self, message: &Message) -> Result<(), RepoError> {
        let (connector, user) = (&message.connector_id, message.peer.user_id);
        let said = Said::Ours { message_id: message.id.clone() };
        let sk = match message.send_at.filter(|_| message.status == crate::domain::MessageStatus::Scheduled) {
            Some(_) => plan_sk(user, &message.id),
            None => entry_sk(user, message.created_at, &format!("m{}", message.id)),
        };
        self.records.put(&pk(connector), &sk, &said, Some(super::messages::kept_for(self.retention, message))).await?;
        touch(&self.records, connector, user).await
    }

    /// A scheduled message left or was cancelled at `at_ms`: in the conversation at that time.
    pub async fn plan_ended(&self, message: &Message, at_ms: i64) -> Result<(), RepoError> {
        let (connector, user) = (&message.connector_id, message.peer.user_id);
        let said = Said::Ours { message_id: message.id.clone() };
        self.records.put(&pk(connector), &entry_sk(user, at_ms, &format!("m{}", message.id)), &said, self.kept()).await?;
        self.records.delete(&pk(connector), &plan_sk(user, &message.id)).await?;
        touch(&self.records, connector, user).await
    }

    /// Notes that a Telegram message of ours is listed (by its record): a history read back skips it.
    pub async fn listed_ours(&self, connector_id: &str, user_id: i64, telegram_id: i32) -> Result<(), RepoError> {
        self.records.put(&pk(connector_id), &listed_sk(telegram_id), &Listed { user_id, entry: None }, self.kept()).await
    }

    /// Lists a message written on Telegram, unless it is listed already; whether it was new.
    pub async fn add_written(&self, connector_id: &str, user_id: i64, placed: Placed, written: Written) -> Result<bool, RepoError> {
        let (at_ms, source) = placed.at_and_source(written.telegram_id);
        let sk = entry_sk(user_id, at_ms, &source);
        let listed = Listed { user_id, entry: Some(sk.clone()) };
        if !self.records.create(&pk(connector_id), &listed_sk(written.telegram_id), &listed, self.kept()).await? {
            return Ok(false);
        }
        self.records.put(&pk(connector_id), &sk, &Said::Written(written), self.kept()).await?;
        touch(&self.records, connector_id, user_id).await?;
        Ok(true)
    }

    /// Changes a written message found by its Telegram id (`change` says whether it did).
    pub async fn revise(&self, connector_id: &str, telegram_id: i32, mut change: impl FnMut(&mut Written) -> bool) -> Result<(), RepoError> {
        let Some(listed) = self.records.get::<Listed>(&pk(connector_id), &listed_sk(telegram_id)).await? else { return Ok(()) };
        let Some(sk) = listed.value.entry else { return Ok(()) };
        let mut changed = false;
        self.records
            .update::<Said, _>(&pk(connector_id), &sk, |said| {
                changed = match said {
                    Said::Written(w) => change(w),
                    Said::Ours { .. } => false,
                };
                changed
            })
            .await?;
        if changed {
            touch(&self.records, connector_id, listed.value.user_id).await?;
        }
        Ok(())
    }

    /// The newest entries (or those just below `below`), newest first, and the scheduled
    /// messages when this is the newest page.
    pub async fn page(&self, connector_id: &str, user_id: i64, below: Option<&str>) -> Result<(Vec<Entry>, Vec<Entry>), RepoError> {
        let entries = self.records.entries_below::<Said>(&pk(connector_id), &prefix(user_id), below, PAGE).await?;
        let planned = match below {
            Some(_) => Vec::new(),
            None => self.records.entries::<Said>(&pk(connector_id), &format!("talkplan#{user_id}#"), PAGE).await?,
        };
        let entry = |(key, said)| Entry { key, said };
        Ok((entries.into_iter().map(entry).collect(), planned.into_iter().map(entry).collect()))
    }

    /// Whether `key` may start a page of this conversation: a cursor never reaches another's.
    pub fn is_cursor_of(user_id: i64, key: &str) -> bool {
        key.strip_prefix(&prefix(user_id)).is_some_and(|rest| rest.len() > 14 && rest.as_bytes()[13] == b'#' && rest[..13].bytes().all(|b| b.is_ascii_digit()))
    }

    /// The change marker; `None` before anything was listed.
    pub async fn revision(&self, connector_id: &str, user_id: i64) -> Result<Option<String>, RepoError> {
        Ok(self.records.get(&pk(connector_id), &rev_sk(user_id)).await?.map(|s| s.value))
    }

    /// Claims reading this client's earlier history back; `false` when it was claimed before.
    pub async fn claim_backfill(&self, connector_id: &str, user_id: i64) -> Result<bool, RepoError> {
        self.records.create(&pk(connector_id), &backfill_sk(user_id), &Backfill::Pending, self.kept()).await
    }

    pub async fn backfill(&self, connector_id: &str, user_id: i64) -> Result<Option<Backfill>, RepoError> {
        Ok(self.records.get(&pk(connector_id), &backfill_sk(user_id)).await?.map(|s| s.value))
    }

    /// The history was read back (`Done`), or could not be today (`None`: the next open asks again).
    pub async fn end_backfill(&self, connector_id: &str, user_id: i64, done: bool) -> Result<(), RepoError> {
        if done {
            self.records.put(&pk(connector_id), &backfill_sk(user_id), &Backfill::Done, self.kept()).await?;
        } else {
            self.records.delete(&pk(connector_id), &backfill_sk(user_id)).await?;
        }
        touch(&self.records, connector_id, user_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_an_entry_key_of_this_conversation_only() {
        let key = entry_sk(42, 1_800_000_000_000, "t0000000007");
        assert!(Conversations::is_cursor_of(42, &key));
        assert!(!Conversations::is_cursor_of(4, &key), "another client's");
        assert!(!Conversations::is_cursor_of(42, "talk#42#"), "a bare prefix would page from anywhere");
        assert!(!Conversations::is_cursor_of(42, "talk#42#zzzzzzzzzzzzz#x"));
        assert!(entry_sk(42, 999, "m1") < entry_sk(42, 1000, "m0"), "time sorts as text");
        let (history, arrived) = (Placed::History { date_secs: 7 }.at_and_source(1), Placed::Arrived { date_secs: 7 }.at_and_source(2));
        assert!(entry_sk(42, history.0, &history.1) < entry_sk(42, 7000, "mX"), "the history before ours in its second");
        assert!(entry_sk(42, 7999, "mX") < entry_sk(42, arrived.0, &arrived.1), "an arrival after ours in its second");
    }
}
