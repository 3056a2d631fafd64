//! Telegram as the app uses it, through a user account ("connector").

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use crate::crypto::Secret;
use crate::domain::{Formatted, PhoneE164, TelegramUsername};
pub use crate::domain::{Peer, TelegramUser};

/// The most messages [`Telegram::history`] returns per chat.
pub const HISTORY_LIMIT: usize = 100;

/// The connected account a call acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub connector_id: String,
    pub user_id: i64,
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

/// One of the account's own Telegram contacts (`contacts.getContacts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub user: TelegramUser,
    /// Digits as Telegram gives them, without `+`; absent when the contact hides it.
    pub phone: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentMessage {
    /// Telegram's message id in the private chat; `None` when Telegram reported the
    /// `random_id` as already used (the message went out on an earlier try).
    pub id: Option<i32>,
}

/// Where an account's updates stand (`updates.State`): a catch-up continues from here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatesState {
    pub pts: i32,
    pub qts: i32,
    pub date: i32,
    pub seq: i32,
}

/// A file as Telegram holds it; `location` is the adapter's own handle for [`Telegram::download`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    pub kind: IncomingKind,
    pub file_name: String,
    pub mime_type: String,
    pub size: u64,
    pub location: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncomingKind {
    Photo,
    Document,
    Voice,
}

/// A message a user wrote to the account in their private chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingMessage {
    /// Telegram's id of the message in the account's mailbox.
    pub id: i32,
    pub from: TelegramUser,
    /// Unix seconds.
    pub date: i64,
    pub text: Formatted,
    pub file: Option<RemoteFile>,
}

/// A message of a private chat, either side's, as its history gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub id: i32,
    /// Written by the account (on any of its devices, or by the app).
    pub out: bool,
    /// Unix seconds.
    pub date: i64,
    pub text: Formatted,
    pub file: Option<RemoteFile>,
}

/// A page of a chat's history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// What the user wrote, oldest first (ours is left out).
    pub messages: Vec<IncomingMessage>,
    /// Where the next page starts (the newest id on this one, ours included); `None` when
    /// this page is the last.
    pub next_after: Option<i32>,
}

/// What happened on the account that the app acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    Message(IncomingMessage),
    /// `updateReadHistoryOutbox`: the user read our messages up to `max_id`.
    ReadOutbox { user_id: i64, max_id: i32 },
    /// `updateEditMessage` of a message a user wrote to the account: its text now.
    Edited(IncomingMessage),
    /// `updateDeleteMessages`: these messages of the account's mailbox are gone. Telegram
    /// names no chat (core.telegram.org/constructor/updateDeleteMessages): the ids alone.
    Deleted { ids: Vec<i32> },
}

/// `updates.getDifference`, reduced to what the app acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// What happened after the state asked from, and the state after it; `more` when this
    /// was only a slice (`updates.differenceSlice`): ask again from `state`.
    Updates { updates: Vec<Update>, state: UpdatesState, more: bool },
    /// `updates.differenceTooLong`: too much happened; the chats' histories tell what.
    TooLong,
}

/// What a kept connection hears from Telegram without asking (core.telegram.org/api/updates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Updates that take the account's `pts` from `pts - pts_count` to `pts`, and what the
    /// app acts on among them (the account's own sends move `pts` too, with nothing to act on).
    Updates { updates: Vec<Update>, pts: i32, pts_count: i32 },
    /// Something happened that the push alone does not tell enough of (updates that could not
    /// be read, `updatesTooLong`, a message whose sender came without an `access_hash`): a
    /// difference tells.
    Gap,
    /// The connection dropped: the next call connects again, and only a difference tells
    /// what came meanwhile.
    Closed,
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

/// Where a login stands after a step. A login is named by the id its connector will have:
/// the session it makes is that connector's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginStep {
    /// The code went to the account's Telegram apps (or by SMS); the hash comes back with it.
    CodeSent { phone_code_hash: Secret },
    /// The account has a cloud password (two-step verification).
    PasswordNeeded { hint: Option<String> },
    /// Scan `url` as a QR code in Telegram (Settings → Devices → Link Desktop Device) before
    /// `expires` (unix seconds); ask again for a fresh one.
    Qr { url: String, expires: i64 },
    /// Logged in.
    Done(LoggedIn),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedIn {
    pub user: TelegramUser,
    /// The account's phone number, digits only, as Telegram gives it.
    pub phone: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("PHONE_NUMBER_INVALID")]
    InvalidPhone,
    /// No Telegram account uses this number (sign-up is not ours to do).
    #[error("PHONE_NUMBER_UNOCCUPIED")]
    NoAccount,
    #[error("PHONE_CODE_INVALID")]
    InvalidCode,
    #[error("PHONE_CODE_EXPIRED")]
    CodeExpired,
    #[error("PASSWORD_HASH_INVALID")]
    InvalidPassword,
    #[error(transparent)]
    Telegram(#[from] TelegramError),
}

/// Telegram as the app reaches it: one connection per job ([`Telegram::connect`]), or one
/// kept per account ([`Telegram::keep`], the single-server deployment), and the login steps,
/// each its own short connection.
#[async_trait]
pub trait Telegram: Send + Sync {
    /// Connects as the connector's account for one job: every call of the job goes over this
    /// connection, which [`TelegramSession::close`] ends. While the account's connection is
    /// kept, the job's calls go over that one instead, and closing ends nothing.
    async fn connect(&self, account: &Account) -> Result<Box<dyn TelegramSession + '_>, TelegramError>;

    /// Keeps one long-lived connection as the account, which receives what Telegram pushes,
    /// until [`KeptConnection::close`]; it holds the account's session all along.
    async fn keep(&self, account: &Account) -> Result<Box<dyn KeptConnection + '_>, TelegramError>;

    /// `auth.sendCode` for a new login: `CodeSent`, or `Done` when Telegram needs no code.
    async fn send_code(&self, login: &str, phone: &PhoneE164) -> Result<LoginStep, LoginError>;
    /// `auth.signIn` with the code: `Done`, or `PasswordNeeded`.
    async fn sign_in(&self, login: &str, phone: &PhoneE164, phone_code_hash: &Secret, code: &str) -> Result<LoginStep, LoginError>;
    /// The cloud password of a login that asked for it: `Done`.
    async fn check_password(&self, login: &str, password: &Secret) -> Result<LoginStep, LoginError>;
    /// `auth.exportLoginToken`: a fresh `Qr` until someone scans it, then `Done` (or `PasswordNeeded`).
    async fn qr_login(&self, login: &str) -> Result<LoginStep, LoginError>;
    /// Signs the account out (`auth.logOut`) and forgets its session.
    async fn log_out(&self, account: &Account) -> Result<(), TelegramError>;
}

/// A long-lived connection as one account, as official clients keep.
#[async_trait]
pub trait KeptConnection: Send + Sync {
    /// Calls over this connection (it connects again on a call after a drop).
    fn session(&self) -> &dyn TelegramSession;
    /// What Telegram pushes next.
    async fn next(&self) -> Pushed;
    /// Ends the connection and gives the account back.
    async fn close(self: Box<Self>);
}

/// One job's connection as one account.
#[async_trait]
pub trait TelegramSession: Send + Sync {
    /// The account owning `phone`, when its privacy settings let us find it. A number that
    /// had to be imported as a contact to be found is deleted from the contacts again unless
    /// `keep_imported`.
    async fn resolve_phone(&self, phone: &PhoneE164, keep_imported: bool) -> Result<Option<TelegramUser>, TelegramError>;
    async fn resolve_username(&self, username: &TelegramUsername) -> Result<Option<TelegramUser>, TelegramError>;
    /// `messages.sendMessage` with its entities; Telegram drops a repeated `random_id`.
    async fn send_text(&self, peer: Peer, text: &Formatted, random_id: i64) -> Result<SentMessage, TelegramError>;
    /// `messages.sendMedia` with the file streamed from `body` (memory does not grow with size);
    /// Telegram drops a repeated `random_id`.
    async fn send_media(&self, peer: Peer, media: &Media, body: crate::ports::blobs::BlobReader, caption: &Formatted, random_id: i64) -> Result<SentMessage, TelegramError>;
    /// `messages.editMessage` of one of our messages in the chat with `peer`; `Ok` also when
    /// it reads so already (`MESSAGE_NOT_MODIFIED`).
    async fn edit_text(&self, peer: Peer, id: i32, text: &Formatted) -> Result<(), TelegramError>;
    /// `messages.deleteMessages` with `revoke`: gone for both sides of the private chat.
    async fn delete_messages(&self, ids: &[i32]) -> Result<(), TelegramError>;
    /// The account's contact list, with the `access_hash` and phone of each.
    async fn contacts(&self) -> Result<Vec<Contact>, TelegramError>;
    /// The id of the newest message of ours the peer has read (`messages.getPeerDialogs`
    /// `read_outbox_max_id`); 0 when none.
    async fn read_outbox_max_id(&self, peer: Peer) -> Result<i32, TelegramError>;
    /// Where the account's updates stand now (`updates.getState`).
    async fn updates_state(&self) -> Result<UpdatesState, TelegramError>;
    /// What happened since `from` (`updates.getDifference`).
    async fn difference(&self, from: UpdatesState) -> Result<Difference, TelegramError>;
    /// The next [`HISTORY_LIMIT`] messages of the chat with `peer` after message `after_id`
    /// (`messages.getHistory` paging forward).
    async fn history(&self, peer: Peer, after_id: i32) -> Result<HistoryPage, TelegramError>;
    /// Up to [`HISTORY_LIMIT`] messages of the chat with `peer` before message `before_id`
    /// (the newest for 0), both sides', newest first (`messages.getHistory` paging back).
    async fn earlier(&self, peer: Peer, before_id: i32) -> Result<Vec<ChatMessage>, TelegramError>;
    /// Streams a received file into `sink` (`upload.getFile`); the bytes written.
    async fn download(&self, file: &RemoteFile, sink: &mut (dyn tokio::io::AsyncWrite + Send + Unpin)) -> Result<u64, TelegramError>;
    /// Ends the connection and gives the account back.
    async fn close(self: Box<Self>);
}
