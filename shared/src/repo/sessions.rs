//! Telegram sessions (auth keys and DC options) of the connectors, sealed with AES-256-GCM,
//! and the lease that keeps one session on one connection at a time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Records, RepoError, connector_pk as pk};
use crate::crypto::{KeyPurpose, MasterKey, Sealer};


const SESSION_SK: &str = "session";
const LEASE_SK: &str = "lease";

#[derive(Serialize, Deserialize)]
struct SealedSession {
    sealed: String,
}

#[derive(Serialize, Deserialize)]
struct Lease {
    holder: String,
}

#[derive(Clone)]
pub struct TelegramSessions {
    records: Records,
    sealer: Sealer,
}

impl TelegramSessions {
    pub fn new(records: Records, master: &MasterKey) -> Self {
        Self { records, sealer: master.sealer(KeyPurpose::SealSessions) }
    }

    /// The session's bytes, opened; `None` when the connector has none (never logged in, or
    /// signed out). A session that does not open counts as none: the account logs in again.
    pub async fn load(&self, connector_id: &str) -> Result<Option<Vec<u8>>, RepoError> {
        let pk = pk(connector_id);
        let Some(stored) = self.records.get::<SealedSession>(&pk, SESSION_SK).await? else { return Ok(None) };
        match self.sealer.open(&stored.value.sealed, &format!("{pk}/{SESSION_SK}")) {
            Ok(bytes) => {
                // Sealed with a previous key (rotation): sealed again with the current one, by
                // whoever loads it, who holds the session's lease.
                if !self.sealer.is_current(&stored.value.sealed) {
                    self.save(connector_id, &bytes).await?;
                    tracing::info!(connector_id, "a Telegram session sealed again with the current key");
                }
                Ok(Some(bytes))
            }
            Err(e) => {
                tracing::error!(connector_id, "stored Telegram session unusable: {e}");
                Ok(None)
            }
        }
    }

    pub async fn save(&self, connector_id: &str, bytes: &[u8]) -> Result<(), RepoError> {
        let pk = pk(connector_id);
        let sealed = self.sealer.seal(bytes, &format!("{pk}/{SESSION_SK}"));
        self.records.put(&pk, SESSION_SK, &SealedSession { sealed }, None).await
    }

    pub async fn delete(&self, connector_id: &str) -> Result<(), RepoError> {
        self.records.delete(&pk(connector_id), SESSION_SK).await
    }

    /// Takes the connector's session for `holder` until `ttl` passes or it is released;
    /// `false` while someone else holds it.
    pub async fn try_lease(&self, connector_id: &str, holder: &str, ttl: Duration) -> Result<bool, RepoError> {
        self.records.create(&pk(connector_id), LEASE_SK, &Lease { holder: holder.to_owned() }, Some(ttl)).await
    }

    /// Extends `holder`'s lease to `ttl` from now, if it still holds it.
    pub async fn renew(&self, connector_id: &str, holder: &str, ttl: Duration) -> Result<(), RepoError> {
        let pk = pk(connector_id);
        match self.records.get::<Lease>(&pk, LEASE_SK).await? {
            Some(lease) if lease.value.holder == holder => self.records.put(&pk, LEASE_SK, &Lease { holder: holder.to_owned() }, Some(ttl)).await,
            _ => Ok(()),
        }
    }

    /// Gives the session back, if `holder` still holds it.
    pub async fn release(&self, connector_id: &str, holder: &str) -> Result<(), RepoError> {
        let pk = pk(connector_id);
        match self.records.get::<Lease>(&pk, LEASE_SK).await? {
            Some(lease) if lease.value.holder == holder => self.records.delete(&pk, LEASE_SK).await,
            _ => Ok(()),
        }
    }
}
