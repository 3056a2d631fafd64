//! What links Telegram dialogs to Open Line chats: the chat of each (connector, client), and
//! each operator message handled. Our own publications never come back as events
//! (`OnImConnectorMessageAdd` "does not trigger when receiving an incoming message from an
//! external system channel"), so every event message is an operator's.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Records, RepoError, portal_pk};
use crate::domain::Peer;

/// Operator messages are remembered long after any redelivery could come, and for as long
/// as the client's side keeps an edit or a deletion worth mirroring (a deletion has no time
/// limit in private chats; what is older is left as it is).
const REPLY_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The Open Line chat of one client as seen through one connector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLink {
    /// Our id of the chat in `imconnector.*` calls (`chat.id`).
    pub external_chat_id: String,
    pub connector_id: String,
    pub peer: Peer,
    pub client_name: String,
    /// Bitrix24's chat id, once the first message created the chat.
    pub ol_chat_id: Option<u64>,
}

/// The chat id we give Bitrix24 for a client of a connector.
pub fn external_chat_id(connector_id: &str, peer: Peer) -> String {
    format!("{connector_id}-{}", peer.user_id)
}

/// The user id we give Bitrix24 for a client.
pub fn external_user_id(peer: Peer) -> String {
    format!("tg{}", peer.user_id)
}

/// What became of an operator's message from an Open Line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Sent to the client (or refused for good).
    pub sent: bool,
    pub telegram_id: Option<i32>,
    /// Open Lines was told.
    pub confirmed: bool,
    /// The operator deleted it, and so it was on Telegram.
    #[serde(default)]
    pub deleted: bool,
}

fn chat_sk(external_chat_id: &str) -> String {
    format!("olchat#{external_chat_id}")
}

fn reply_sk(ol_chat_id: u64, im_message_id: u64) -> String {
    format!("olreply#{ol_chat_id}#{im_message_id}")
}

#[derive(Clone)]
pub struct OpenLines {
    records: Records,
}

impl OpenLines {
    pub fn new(records: Records) -> Self {
        Self { records }
    }

    pub async fn chat(&self, member_id: &str, external_chat_id: &str) -> Result<Option<ChatLink>, RepoError> {
        Ok(self.records.get(&portal_pk(member_id), &chat_sk(external_chat_id)).await?.map(|s| s.value))
    }

    /// Stores the link unless one exists; the link as stored.
    pub async fn link(&self, member_id: &str, link: ChatLink) -> Result<ChatLink, RepoError> {
        let (pk, sk) = (portal_pk(member_id), chat_sk(&link.external_chat_id));
        if self.records.create(&pk, &sk, &link, None).await? {
            return Ok(link);
        }
        Ok(self.records.get(&pk, &sk).await?.map(|s| s.value).unwrap_or(link))
    }

    pub async fn set_chat_id(&self, member_id: &str, external_chat_id: &str, ol_chat_id: u64) -> Result<(), RepoError> {
        let (pk, sk) = (portal_pk(member_id), chat_sk(external_chat_id));
        self.records.update::<ChatLink, _>(&pk, &sk, |l| l.ol_chat_id.replace(ol_chat_id) != Some(ol_chat_id)).await.map(drop)
    }

    /// The record of this operator message: made on first sight, the same on every redelivery.
    pub async fn reply(&self, member_id: &str, ol_chat_id: u64, im_message_id: u64) -> Result<Reply, RepoError> {
        let (pk, sk) = (portal_pk(member_id), reply_sk(ol_chat_id, im_message_id));
        if let Some(known) = self.records.get::<Reply>(&pk, &sk).await? {
            return Ok(known.value);
        }
        if self.records.create(&pk, &sk, &Reply::default(), Some(REPLY_TTL)).await? {
            return Ok(Reply::default());
        }
        Ok(self.records.get::<Reply>(&pk, &sk).await?.map(|s| s.value).unwrap_or_default())
    }

    /// The record of an operator message, if it was ever handled.
    pub async fn known_reply(&self, member_id: &str, ol_chat_id: u64, im_message_id: u64) -> Result<Option<Reply>, RepoError> {
        Ok(self.records.get(&portal_pk(member_id), &reply_sk(ol_chat_id, im_message_id)).await?.map(|s| s.value))
    }

    pub async fn update_reply(&self, member_id: &str, ol_chat_id: u64, im_message_id: u64, change: impl FnMut(&mut Reply) -> bool) -> Result<(), RepoError> {
        self.records.update(&portal_pk(member_id), &reply_sk(ol_chat_id, im_message_id), change).await.map(drop)
    }
}
