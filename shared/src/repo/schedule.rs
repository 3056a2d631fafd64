//! The due-time index of scheduled messages: partitions `scheduled#<shard>`, sort keys
//! `<due ms, 13 digits>#<message id>`, so one ascending query per shard reads what is due
//! first and stops at the first entry that is not. The FIFO telegram queue takes no delay:
//! the schedule's tick sweeps this index instead (`app::schedule::sweep`).

use sha2::{Digest, Sha256};

use super::{Records, RepoError};

/// Spreads the writes of many portals over partitions; a sweep reads each of them.
const SHARDS: u8 = 8;
/// Entries read per shard and query; a sweep queries again until nothing is due.
const PAGE: usize = 100;

fn shard_pk(shard: u8) -> String {
    format!("scheduled#{shard}")
}

fn shard_of(message_id: &str) -> u8 {
    Sha256::digest(message_id.as_bytes())[0] % SHARDS
}

fn entry_sk(due: i64, message_id: &str) -> String {
    format!("{due:013}#{message_id}")
}

/// One entry: the message due at `due` (unix ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueEntry {
    pub due: i64,
    pub message_id: String,
}

#[derive(Clone)]
pub struct Schedule {
    records: Records,
}

impl Schedule {
    pub fn new(records: Records) -> Self {
        Self { records }
    }

    pub async fn add(&self, due: i64, message_id: &str) -> Result<(), RepoError> {
        self.records.put(&shard_pk(shard_of(message_id)), &entry_sk(due, message_id), &message_id, None).await
    }

    pub async fn remove(&self, entry: &DueEntry) -> Result<(), RepoError> {
        self.records.delete(&shard_pk(shard_of(&entry.message_id)), &entry_sk(entry.due, &entry.message_id)).await
    }

    /// The first entries of every shard due at or before `now`, earliest first per shard, up
    /// to [`PAGE`] a shard.
    pub async fn due(&self, now: i64) -> Result<Vec<DueEntry>, RepoError> {
        let mut due = Vec::new();
        for shard in 0..SHARDS {
            let entries = self.records.entries::<String>(&shard_pk(shard), "", PAGE).await?;
            due.extend(entries.into_iter().map_while(|(sk, message_id)| {
                let at: i64 = sk.split_once('#')?.0.parse().ok()?;
                (at <= now).then_some(DueEntry { due: at, message_id })
            }));
        }
        Ok(due)
    }
}
