//! What each recipient key resolved to, per connector: found accounts are kept long
//! (sends never re-resolve), misses briefly (the owner may change privacy settings).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Records, RepoError, connector_pk as pk};
use crate::domain::RecipientKey;
use crate::ports::TelegramUser;

pub const FOUND_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
pub const MISS_TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Resolution {
    Found { user: TelegramUser },
    /// No account, or hidden by the owner's privacy settings: Telegram does not say which.
    NotFound,
}


fn sk(key: &RecipientKey) -> String {
    format!("resolved#{key}")
}

#[derive(Clone)]
pub struct Resolutions {
    records: Records,
}

impl Resolutions {
    pub fn new(records: Records) -> Self {
        Self { records }
    }

    pub async fn get(&self, connector_id: &str, key: &RecipientKey) -> Result<Option<Resolution>, RepoError> {
        Ok(self.records.get(&pk(connector_id), &sk(key)).await?.map(|s| s.value))
    }

    pub async fn save(&self, connector_id: &str, key: &RecipientKey, resolution: &Resolution) -> Result<(), RepoError> {
        let ttl = match resolution {
            Resolution::Found { .. } => FOUND_TTL,
            Resolution::NotFound => MISS_TTL,
        };
        self.records.put(&pk(connector_id), &sk(key), resolution, Some(ttl)).await
    }
}

/// How far a connector's first-use contact sync got.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProgress {
    pub done: u64,
    pub total: u64,
    pub finished: bool,
}

const SYNC_SK: &str = "contact-sync";

impl Resolutions {
    /// Claims the first sync of a connector; `false` when one was started before.
    pub async fn start_sync(&self, connector_id: &str) -> Result<bool, RepoError> {
        let started = SyncProgress { done: 0, total: 0, finished: false };
        self.records.create(&pk(connector_id), SYNC_SK, &started, None).await
    }

    /// Gives up a claim whose job could not be queued.
    pub async fn cancel_sync(&self, connector_id: &str) -> Result<(), RepoError> {
        self.records.delete(&pk(connector_id), SYNC_SK).await
    }

    pub async fn sync(&self, connector_id: &str) -> Result<Option<SyncProgress>, RepoError> {
        Ok(self.records.get(&pk(connector_id), SYNC_SK).await?.map(|s| s.value))
    }

    pub async fn save_sync(&self, connector_id: &str, progress: &SyncProgress) -> Result<(), RepoError> {
        self.records.put(&pk(connector_id), SYNC_SK, progress, None).await
    }
}
