//! Upload slots: what a user announced before uploading (size and type), so a file is
//! attached only as announced, by its uploader, to one message; and how many slots each
//! user opened today.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Records, RepoError, portal_pk};
use crate::clock::now_secs;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncedUpload {
    pub user: u64,
    pub size: u64,
    pub content_type: String,
    /// The message the file went into: a slot is used once.
    pub used_by: Option<String>,
}

/// A slot outlives its upload URL by a day: time to write the message around the file.
const SLOT_TTL: Duration = Duration::from_secs(25 * 3600);
const DAY_TTL: Duration = Duration::from_secs(2 * 86_400);

fn slot_sk(key: &str) -> String {
    format!("upload#{key}")
}

fn today_sk(user: u64) -> String {
    format!("uploads-today#{user}#{}", now_secs() / 86_400)
}

#[derive(Clone)]
pub struct Uploads {
    records: Records,
}

impl Uploads {
    pub fn new(records: Records) -> Self {
        Self { records }
    }

    /// Counts one more slot for `user` today unless `limit` is reached; `false` when it is.
    pub async fn take_daily(&self, member_id: &str, user: u64, limit: u32) -> Result<bool, RepoError> {
        self.records.count_up(&portal_pk(member_id), &today_sk(user), DAY_TTL, limit, |count: &mut u32| count).await
    }

    pub async fn open(&self, member_id: &str, key: &str, slot: &AnnouncedUpload) -> Result<(), RepoError> {
        self.records.put(&portal_pk(member_id), &slot_sk(key), slot, Some(SLOT_TTL)).await
    }

    pub async fn get(&self, member_id: &str, key: &str) -> Result<Option<AnnouncedUpload>, RepoError> {
        Ok(self.records.get(&portal_pk(member_id), &slot_sk(key)).await?.map(|s| s.value))
    }

    /// Marks the slot used by `message_id`, unless another message used it first: whether it
    /// is now `message_id`'s (a repeated submit of the same message finds it so).
    pub async fn use_for(&self, member_id: &str, key: &str, message_id: &str) -> Result<bool, RepoError> {
        let slot = self
            .records
            .update::<AnnouncedUpload, _>(&portal_pk(member_id), &slot_sk(key), |slot| {
                let free = slot.used_by.is_none();
                if free {
                    slot.used_by = Some(message_id.to_owned());
                }
                free
            })
            .await?;
        Ok(slot.is_some_and(|s| s.used_by.as_deref() == Some(message_id)))
    }
}
