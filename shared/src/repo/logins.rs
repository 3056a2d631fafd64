//! Telegram logins under way, between the HTTP requests of one: the phone, and the
//! `phone_code_hash` sealed. They expire with the code.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Records, RepoError, portal_pk};
use crate::crypto::{KeyPurpose, MasterKey, Sealer, Secret};

/// Telegram's codes live about this long; a login older than this starts again.
pub const LOGIN_TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginStage {
    Code,
    Password,
    Qr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    /// Also the id of the connector it makes.
    pub id: String,
    pub member_id: String,
    /// The portal user who started it.
    pub user: u64,
    pub phone: Option<String>,
    /// Sealed; opened only to sign in.
    pub phone_code_hash: Option<String>,
    pub stage: LoginStage,
}

fn sk(id: &str) -> String {
    format!("login#{id}")
}

#[derive(Clone)]
pub struct Logins {
    records: Records,
    sealer: Sealer,
}

impl Logins {
    /// A login's state is the first part of a Telegram session: sealed with the sessions' key.
    pub fn new(records: Records, master: &MasterKey) -> Self {
        Self { records, sealer: master.sealer(KeyPurpose::SealSessions) }
    }

    pub async fn get(&self, member_id: &str, id: &str) -> Result<Option<PendingLogin>, RepoError> {
        Ok(self.records.get(&portal_pk(member_id), &sk(id)).await?.map(|s| s.value))
    }

    pub async fn save(&self, login: &PendingLogin) -> Result<(), RepoError> {
        self.records.put(&portal_pk(&login.member_id), &sk(&login.id), login, Some(LOGIN_TTL)).await
    }

    pub async fn delete(&self, member_id: &str, id: &str) -> Result<(), RepoError> {
        self.records.delete(&portal_pk(member_id), &sk(id)).await
    }

    pub fn seal_hash(&self, login: &PendingLogin, hash: &Secret) -> String {
        self.sealer.seal_str(hash.expose(), &format!("{}/{}", portal_pk(&login.member_id), sk(&login.id)))
    }

    /// The login's `phone_code_hash`, if it has one that opens.
    pub fn open_hash(&self, login: &PendingLogin) -> Option<Secret> {
        let sealed = login.phone_code_hash.as_ref()?;
        self.sealer.open_secret(sealed, &format!("{}/{}", portal_pk(&login.member_id), sk(&login.id))).ok()
    }
}
