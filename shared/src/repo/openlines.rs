//! What links Telegram dialogs to Open Line chats: the chat of each (connector, client), the
//! publications we expect to come back as events (echoes), and each operator message handled.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Records, RepoError, portal_pk};
use crate::domain::formatting::{from_bbcode, strip_signature};
use crate::domain::Peer;

/// How long a publication may take to come back as `OnImConnectorMessageAdd`.
const ECHO_TTL: Duration = Duration::from_secs(24 * 3600);
/// Operator messages are remembered long after any redelivery could come.
const REPLY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

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

/// What an operator message from an Open Line turned out to be, decided once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// Our own publication of this message, come back.
    Echo { message_id: String, confirmed: bool },
    /// An operator's reply, for the client.
    Operator { sent: bool, telegram_id: Option<i32>, confirmed: bool },
}

/// Echoes are matched on the text as Telegram would show it, without the operator signature.
fn echo_key(text: &str) -> String {
    let shown = from_bbcode(strip_signature(text)).text;
    let digest = Sha256::digest(shown.trim().as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

fn chat_sk(external_chat_id: &str) -> String {
    format!("olchat#{external_chat_id}")
}

fn echo_sk(external_chat_id: &str, text: &str) -> String {
    format!("olecho#{external_chat_id}#{}", echo_key(text))
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

    /// Remembers, before publishing, that `text` in this chat is ours when it comes back; the
    /// same text published twice is expected back twice.
    pub async fn expect_echo(&self, member_id: &str, external_chat_id: &str, text: &str, message_id: &str) -> Result<(), RepoError> {
        let (pk, sk) = (portal_pk(member_id), echo_sk(external_chat_id, text));
        let ours = vec![message_id.to_owned()];
        if self.records.create(&pk, &sk, &ours, Some(ECHO_TTL)).await? {
            return Ok(());
        }
        let add = |expected: &mut Vec<String>| {
            let new = !expected.contains(&ours[0]);
            if new {
                expected.push(ours[0].clone());
            }
            new
        };
        if self.records.update(&pk, &sk, add).await?.is_none() {
            // Expired or consumed meanwhile: start again.
            self.records.put(&pk, &sk, &ours, Some(ECHO_TTL)).await?;
        }
        Ok(())
    }

    /// What this operator message is: decided on first sight (ours if an echo was expected,
    /// which it then consumes) and the same on every redelivery.
    pub async fn classify(&self, member_id: &str, external_chat_id: &str, ol_chat_id: u64, im_message_id: u64, text: &str) -> Result<Reply, RepoError> {
        let pk = portal_pk(member_id);
        let sk = reply_sk(ol_chat_id, im_message_id);
        if let Some(decided) = self.records.get::<Reply>(&pk, &sk).await? {
            return Ok(decided.value);
        }
        let echo = echo_sk(external_chat_id, text);
        let expected = self.records.get::<Vec<String>>(&pk, &echo).await?.map(|s| s.value).unwrap_or_default();
        let reply = match expected.first() {
            Some(ours) => Reply::Echo { message_id: ours.clone(), confirmed: false },
            None => Reply::Operator { sent: false, telegram_id: None, confirmed: false },
        };
        if !self.records.create(&pk, &sk, &reply, Some(REPLY_TTL)).await? {
            return Ok(self.records.get::<Reply>(&pk, &sk).await?.map(|s| s.value).unwrap_or(reply));
        }
        if let Reply::Echo { message_id, .. } = &reply {
            // Consumed: once every publication of this text is back, the same text written by
            // an operator is a reply again.
            // (An emptied list stays until it expires: deleting it could drop one added meanwhile.)
            let consume = |ids: &mut Vec<String>| ids.iter().position(|id| id == message_id).map(|at| ids.remove(at)).is_some();
            self.records.update(&pk, &echo, consume).await?;
        }
        Ok(reply)
    }

    pub async fn update_reply(&self, member_id: &str, ol_chat_id: u64, im_message_id: u64, change: impl FnMut(&mut Reply) -> bool) -> Result<(), RepoError> {
        self.records.update(&portal_pk(member_id), &reply_sk(ol_chat_id, im_message_id), change).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_match_without_signature_or_markup() {
        assert_eq!(echo_key("[b]Anna Smirnova:[/b][br]Hello, Ivan!"), echo_key("Hello, Ivan!"));
        assert_ne!(echo_key("Hello, Ivan!"), echo_key("Hello, Olga!"));
    }
}
