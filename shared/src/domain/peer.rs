//! A Telegram account as the app addresses it.

use serde::{Deserialize, Serialize};

/// Enough to address a user without resolving again (`InputPeerUser`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub user_id: i64,
    pub access_hash: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelegramUser {
    pub peer: Peer,
    pub first_name: String,
    pub last_name: String,
    pub username: Option<String>,
}

impl TelegramUser {
    pub fn display_name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name).trim().to_owned()
    }
}

