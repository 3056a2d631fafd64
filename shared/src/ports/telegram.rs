//! Telegram as the app uses it, through a user account ("connector").

use async_trait::async_trait;
use crate::domain::{Formatted, PhoneE164, TelegramUsername};
pub use crate::domain::{Peer, TelegramUser};

/// The connected account a call acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub connector_id: String,
    pub user_id: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentMessage {
    /// Telegram's message id in the private chat; `None` when Telegram reported the
    /// `random_id` as already used (the message went out on an earlier try).
    pub id: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TelegramError {
    #[error("FLOOD_WAIT: retry after {seconds} s")]
    FloodWait { seconds: u32 },
    #[error("PEER_FLOOD: the account is limited")]
    PeerFlood,
    #[error("the user's privacy settings forbid this")]
    PrivacyRestricted,
    #[error("the session is not authorised: {0}")]
    Unauthorized(String),
    #[error("Telegram refused: {0}")]
    Rejected(String),
    /// The outcome is unknown (connection dropped, timeout): try again later.
    #[error("Telegram did not answer: {0}")]
    Transient(String),
}

/// What kind of media a file is sent as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaKind {
    /// Compressed photo.
    Photo,
    /// Uncompressed file ("send as document").
    Document,
    /// OGG/Opus voice note; `waveform` is Telegram's packed 5-bit format.
    Voice { duration_secs: u32, waveform: Vec<u8> },
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    pub kind: MediaKind,
    pub file_name: String,
    pub mime_type: String,
    pub size: u64,
}

#[async_trait]
pub trait Telegram: Send + Sync {
    /// The account owning `phone`, when its privacy settings let us find it.
    async fn resolve_phone(&self, account: &Account, phone: &PhoneE164) -> Result<Option<TelegramUser>, TelegramError>;
    async fn resolve_username(&self, account: &Account, username: &TelegramUsername) -> Result<Option<TelegramUser>, TelegramError>;
    /// `messages.sendMessage` with its entities; Telegram drops a repeated `random_id`.
    async fn send_text(&self, account: &Account, peer: Peer, text: &Formatted, random_id: i64) -> Result<SentMessage, TelegramError>;
    /// The id of the newest message of ours the peer has read (`messages.getPeerDialogs`
    /// `read_outbox_max_id`); 0 when none.
    async fn read_outbox_max_id(&self, account: &Account, peer: Peer) -> Result<i32, TelegramError>;
    /// `messages.sendMedia` with the file streamed from `body` (memory does not grow with size);
    /// Telegram drops a repeated `random_id`.
    async fn send_media(&self, account: &Account, peer: Peer, media: &Media, body: crate::ports::blobs::BlobReader, caption: &Formatted, random_id: i64) -> Result<SentMessage, TelegramError>;
}
