//! What the app keeps of a connected account's mailbox: where its catch-up stands, the
//! messages clients wrote to it (each once, by Telegram id), and our sent messages still
//! waiting to be read.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Records, RepoError, connector_pk as pk};
use crate::domain::TelegramUser;
use crate::domain::lease::{Claim, Lease, Leased};
use crate::ports::UpdatesState;

/// The largest file a catch-up brings over: more would hold the account's queue (and its
/// sends) longer than a worker runs.
pub const RECEIVED_FILE_LIMIT: u64 = 50 * 1024 * 1024;

const STATE_SK: &str = "catchup";
const PENDING_SK: &str = "catchup#pending";
/// A queued catch-up that never ran (a lost job) stops holding back new ones after this.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Long after any difference could repeat a message or a read could still come.
const KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where the account's updates were last read up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpState {
    pub state: UpdatesState,
    /// The newest client message handled: a recovery reads chat histories after it.
    pub last_message_id: i32,
}

/// A client's message, stored when first seen and forwarded to the Open Line once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub telegram_id: i32,
    pub from: TelegramUser,
    pub date: i64,
    /// BBCode, as Open Lines shows it.
    pub text: String,
    pub files: Vec<ReceivedFile>,
    pub forwarded: bool,
    /// Held by the job forwarding it: nobody else posts it meanwhile.
    #[serde(default)]
    pub lease: Option<Lease>,
    /// The client edited it since the Open Line got its text.
    #[serde(default)]
    pub edited: bool,
    /// The client deleted it on Telegram.
    #[serde(default)]
    pub deleted: bool,
    /// The Open Line removed it too.
    #[serde(default)]
    pub removed: bool,
}

impl Received {
    /// What the Open Line still has to be told of a forwarded message.
    pub fn revision_due(&self) -> bool {
        self.forwarded && ((self.deleted && !self.removed) || (self.edited && !self.deleted))
    }
}

impl Leased for Received {
    fn lease(&mut self) -> &mut Option<Lease> {
        &mut self.lease
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedFile {
    /// Where it is stored; `None` when it was too large to bring over or Telegram would not
    /// hand it over.
    pub key: Option<String>,
    pub file_name: String,
    #[serde(default)]
    pub size: u64,
}

/// One of our messages in a client's chat, waiting for the client to read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sent {
    /// A message sent from a card.
    Message { message_id: String },
    /// An operator's reply from the Open Line.
    OperatorReply { line: String, external_chat_id: String, ol_chat_id: u64, im_message_id: u64 },
}

fn received_sk(telegram_id: i32) -> String {
    format!("inbox#{telegram_id:010}")
}

const SENT: &str = "sent#";
/// More unread messages than an account could have in a month.
const MANY: usize = 10_000;

fn sent_prefix(user_id: i64) -> String {
    format!("{SENT}{user_id}#")
}

#[derive(Clone)]
pub struct Mailbox {
    records: Records,
}

impl Mailbox {
    pub fn new(records: Records) -> Self {
        Self { records }
    }

    pub async fn catch_up_state(&self, connector_id: &str) -> Result<Option<CatchUpState>, RepoError> {
        Ok(self.records.get(&pk(connector_id), STATE_SK).await?.map(|s| s.value))
    }

    pub async fn save_catch_up_state(&self, connector_id: &str, state: &CatchUpState) -> Result<(), RepoError> {
        self.records.put(&pk(connector_id), STATE_SK, state, None).await
    }

    /// Marks a catch-up as queued; `false` when one is queued already and has not started,
    /// so it will see everything a new one would.
    pub async fn queue_catch_up(&self, connector_id: &str) -> Result<bool, RepoError> {
        self.records.create(&pk(connector_id), PENDING_SK, &true, Some(PENDING_TTL)).await
    }

    /// A catch-up starts: what happens from now on needs another.
    pub async fn catch_up_started(&self, connector_id: &str) -> Result<(), RepoError> {
        self.records.delete(&pk(connector_id), PENDING_SK).await
    }

    pub async fn received(&self, connector_id: &str, telegram_id: i32) -> Result<Option<Received>, RepoError> {
        Ok(self.records.get(&pk(connector_id), &received_sk(telegram_id)).await?.map(|s| s.value))
    }

    /// Stores a client's message unless it is stored already; `false` then.
    pub async fn receive(&self, connector_id: &str, message: &Received) -> Result<bool, RepoError> {
        self.records.create(&pk(connector_id), &received_sk(message.telegram_id), message, Some(KEEP)).await
    }

    /// Claims a stored message for forwarding by `holder` for `term`; `Done` once forwarded.
    /// A message the client deleted first is never forwarded.
    pub async fn claim_forward(&self, connector_id: &str, telegram_id: i32, holder: &str, term: Duration) -> Result<Claim<Received>, RepoError> {
        self.records.claim(&pk(connector_id), &received_sk(telegram_id), holder, term, |m: &Received| !m.forwarded && !m.deleted).await
    }

    /// Changes a stored message (`change` says whether it did); the message as stored after,
    /// `None` when none is stored.
    pub async fn revise(&self, connector_id: &str, telegram_id: i32, change: impl FnMut(&mut Received) -> bool) -> Result<Option<Received>, RepoError> {
        self.records.update(&pk(connector_id), &received_sk(telegram_id), change).await
    }

    /// A forward that failed: its message is free for the retry.
    pub async fn release_forward(&self, connector_id: &str, telegram_id: i32, holder: &str) -> Result<(), RepoError> {
        self.records.release::<Received>(&pk(connector_id), &received_sk(telegram_id), holder).await
    }

    /// The message as stored once marked: an edit or a deletion may have come meanwhile.
    pub async fn mark_forwarded(&self, connector_id: &str, telegram_id: i32) -> Result<Option<Received>, RepoError> {
        let key = received_sk(telegram_id);
        let forwarded = |m: &mut Received| {
            let changed = !m.forwarded || m.lease.is_some();
            (m.forwarded, m.lease) = (true, None);
            changed
        };
        self.records.update::<Received, _>(&pk(connector_id), &key, forwarded).await
    }

    /// Remembers a message of ours that `user_id` has not read yet.
    pub async fn sent(&self, connector_id: &str, user_id: i64, telegram_id: i32, sent: &Sent) -> Result<(), RepoError> {
        let sk = format!("{}{telegram_id:010}", sent_prefix(user_id));
        self.records.put(&pk(connector_id), &sk, sent, Some(KEEP)).await
    }

    /// The users with messages of ours not read yet.
    pub async fn unread_peers(&self, connector_id: &str) -> Result<Vec<i64>, RepoError> {
        let entries = self.records.entries::<Sent>(&pk(connector_id), SENT, MANY).await?;
        let mut users: Vec<i64> = entries.iter().filter_map(|(sk, _)| sk.split('#').nth(1)?.parse().ok()).collect();
        users.dedup();
        Ok(users)
    }

    /// Our messages `user_id` has read now that it read up to `max_id`, oldest first.
    pub async fn read_up_to(&self, connector_id: &str, user_id: i64, max_id: i32) -> Result<Vec<Unread>, RepoError> {
        let prefix = sent_prefix(user_id);
        let entries = self.records.entries::<Sent>(&pk(connector_id), &prefix, MANY).await?;
        let read = entries.into_iter().take_while(|(sk, _)| sk[prefix.len()..].parse::<i32>().is_ok_and(|id| id <= max_id));
        Ok(read.map(|(key, sent)| Unread { key, sent }).collect())
    }

    /// Forgets read messages once they are handled.
    pub async fn forget(&self, connector_id: &str, read: &[Unread]) -> Result<(), RepoError> {
        for unread in read {
            self.records.delete(&pk(connector_id), &unread.key).await?;
        }
        Ok(())
    }
}

/// A sent message found read, with its place in the table.
pub struct Unread {
    key: String,
    pub sent: Sent,
}
