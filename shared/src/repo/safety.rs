//! Account safety: what each connector did today (new chats, phone look-ups) against its
//! budgets, the chats it already has, and the pace of its phone look-ups and history reads.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Records, RepoError, connector_pk as pk};
use crate::clock::now_secs;
use crate::domain::Peer;

/// Per connector and UTC day, what Telegram tolerates from a user account before it limits
/// it; defaults from field reports (grammers.md), configurable per deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyLimits {
    pub new_chats_per_day: u32,
    pub phone_lookups_per_day: u32,
    /// At most one phone look-up per this long per account (Telegram asks for 3 s).
    pub phone_pace: Duration,
    /// At most one automated message per this long per account: a campaign or a rule firing
    /// for thousands of records trickles out instead of bursting.
    pub automation_pace: Duration,
    /// How long a message, its place on its card and the conversation's entries are kept
    /// (`OLCHAT_RETENTION_DAYS`): the CRM activity and the Open Line keep the history, and the
    /// table does not grow with traffic for ever.
    pub retention: Duration,
}

/// The default retention: a quarter's conversations in the tab.
pub const RETENTION_DAYS: u64 = 90;

impl Default for SafetyLimits {
    fn default() -> Self {
        Self {
            new_chats_per_day: 40,
            phone_lookups_per_day: 50,
            phone_pace: Duration::from_secs(3),
            automation_pace: Duration::from_secs(5),
            retention: Duration::from_secs(RETENTION_DAYS * 86_400),
        }
    }
}

impl SafetyLimits {
    /// The budgets of one connector: its own when an administrator set them, else these.
    pub fn budgets(&self, connector: &super::connectors::Connector) -> super::connectors::Budgets {
        connector.budgets.unwrap_or(super::connectors::Budgets {
            new_chats_per_day: self.new_chats_per_day,
            phone_lookups_per_day: self.phone_lookups_per_day,
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub new_chats: u32,
    pub phone_lookups: u32,
    /// Automated messages given a turn today, and those of them sent.
    #[serde(default)]
    pub automation_queued: u32,
    #[serde(default)]
    pub automation_sent: u32,
    #[serde(default)]
    pub history_reads: u32,
}

#[derive(Clone, Copy, Debug)]
pub enum Counter {
    NewChats,
    PhoneLookups,
    AutomationQueued,
    AutomationSent,
    /// Pages of a chat's history read back for the tab's conversation.
    HistoryReads,
}

/// Calls paced per account, each on its own.
#[derive(Clone, Copy, Debug)]
pub enum Paced {
    PhoneLookup,
    HistoryRead,
}

impl Paced {
    fn sk(self) -> &'static str {
        match self {
            Self::PhoneLookup => "pace#phone",
            Self::HistoryRead => "pace#history",
        }
    }
}

/// Histories read back per account and day: one page each time a manager first opens a
/// client, far below what an official client reads while someone scrolls.
pub const HISTORY_READS_PER_DAY: u32 = 100;

fn today_sk() -> String {
    format!("usage#{}", now_secs() / 86_400)
}

const CHAT: &str = "chat#";
const DAY: Duration = Duration::from_secs(2 * 86_400);

#[derive(Clone)]
pub struct Safety {
    records: Records,
}

impl Safety {
    pub fn new(records: Records) -> Self {
        Self { records }
    }

    pub async fn today(&self, connector_id: &str) -> Result<Usage, RepoError> {
        Ok(self.records.get(&pk(connector_id), &today_sk()).await?.map(|s| s.value).unwrap_or_default())
    }

    /// Counts one more today unless `limit` is reached; `false` when it is.
    pub async fn take(&self, connector_id: &str, counter: Counter, limit: u32) -> Result<bool, RepoError> {
        self.records
            .count_up(&pk(connector_id), &today_sk(), DAY, limit, |usage: &mut Usage| match counter {
                Counter::NewChats => &mut usage.new_chats,
                Counter::PhoneLookups => &mut usage.phone_lookups,
                Counter::AutomationQueued => &mut usage.automation_queued,
                Counter::AutomationSent => &mut usage.automation_sent,
                Counter::HistoryReads => &mut usage.history_reads,
            })
            .await
    }

    /// Counts one more today, without a limit.
    pub async fn count(&self, connector_id: &str, counter: Counter) -> Result<(), RepoError> {
        self.take(connector_id, counter, u32::MAX).await.map(drop)
    }

    /// Whether this connector has a chat with this Telegram user (wrote or was written to).
    pub async fn knows_chat(&self, connector_id: &str, user_id: i64) -> Result<bool, RepoError> {
        Ok(self.records.get::<Peer>(&pk(connector_id), &format!("{CHAT}{user_id}")).await?.is_some())
    }

    pub async fn remember_chat(&self, connector_id: &str, peer: Peer) -> Result<(), RepoError> {
        self.records.put(&pk(connector_id), &format!("{CHAT}{}", peer.user_id), &peer, None).await
    }

    /// Everyone this connector has a chat with.
    pub async fn chats(&self, connector_id: &str) -> Result<Vec<Peer>, RepoError> {
        self.records.query(&pk(connector_id), CHAT, usize::MAX >> 1, false).await
    }

    /// Waits for this account's next slot for `what` (one per `pace`); `false` when none came
    /// within `patience`.
    pub async fn slot(&self, connector_id: &str, what: Paced, pace: Duration, patience: Duration) -> Result<bool, RepoError> {
        if pace.is_zero() {
            return Ok(true);
        }
        let deadline = tokio::time::Instant::now() + patience;
        // Expiry counts in whole seconds: round up so slots are never closer than `pace`.
        let ttl = Duration::from_secs(pace.as_secs() + u64::from(pace.subsec_nanos() > 0) + 1);
        loop {
            if self.records.create(&pk(connector_id), what.sk(), &now_secs(), Some(ttl)).await? {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
