//! The telegram port over a real Telegram user account, with grammers (MTProto).
//!
//! Every job connects, does its calls and disconnects: a Lambda holds no connection between
//! invocations. A lease in the table keeps one session on one connection at a time (Telegram
//! answers AUTH_KEY_DUPLICATED otherwise); every call has a timeout; flood waits longer than
//! a few seconds go back to the queue instead of sleeping. Sends are raw
//! `messages.sendMessage`/`sendMedia` with our `random_id`, so a retry is dropped by Telegram.

pub mod errors;
mod login;
pub mod session;
mod updates;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use grammers_client::client::ClientConfiguration;
use grammers_client::sender::{AutoSleep, ConnectionParams};
use grammers_client::{Client, InvocationError, SenderPool, tl};
use tokio::task::JoinHandle;

use self::errors::{classify, sent};
use self::session::TableSession;
use crate::crypto::Secret;
use crate::domain::formatting::{EntityKind, TextEntity};
use crate::domain::{Formatted, PhoneE164, TelegramUsername};
use crate::ports::blobs::BlobReader;
use crate::ports::{
    Account, Contact, Difference, HistoryPage, LoginError, LoginStep, Media, MediaKind, Peer, RemoteFile, SentMessage, Telegram,
    TelegramError, TelegramUser, UpdatesState,
};
use crate::repo::sessions::TelegramSessions;

/// Flood waits up to this long are slept through inside the call; longer ones are the queue's.
const FLOOD_SLEEP: Duration = Duration::from_secs(3);
/// How long one call (or the wait for a busy session) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// No worker runs longer (Lambda's limit): one killed mid-transfer holds the account no longer.
const MAX_LEASE: Duration = Duration::from_secs(15 * 60);
/// Slowest upload or download we wait for before giving up: 128 KiB/s.
const TRANSFER_BYTES_PER_SEC: u64 = 128 * 1024;

/// The app's Telegram API credentials (my.telegram.org).
#[derive(Clone, Debug)]
pub struct ApiCredentials {
    pub api_id: i32,
    /// Only login calls carry it.
    pub api_hash: Secret,
}

pub struct GrammersTelegram {
    credentials: ApiCredentials,
    sessions: TelegramSessions,
    /// New logins start on Telegram's test servers (the opt-in live test).
    test_servers: bool,
}

impl GrammersTelegram {
    pub fn new(credentials: ApiCredentials, sessions: TelegramSessions) -> Self {
        Self { credentials, sessions, test_servers: false }
    }

    /// New logins go to Telegram's test servers instead of the production ones.
    pub fn on_test_servers(self) -> Self {
        Self { test_servers: true, ..self }
    }

    /// Connects as the connector's account, holding its session's lease for `work` at most.
    async fn connect(&self, account: &Account, work: Duration) -> Result<Connection<'_>, TelegramError> {
        self.connect_session(&account.connector_id, work, false).await
    }

    /// Connects with the session named `connector_id`; a missing one is made afresh when
    /// `fresh` (a login), else the account must log in.
    async fn connect_session(&self, connector_id: &str, work: Duration, fresh: bool) -> Result<Connection<'_>, TelegramError> {
        let holder = uuid::Uuid::new_v4().to_string();
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        let lease = (work + CALL_TIMEOUT).min(MAX_LEASE);
        while !self.sessions.try_lease(connector_id, &holder, lease).await.map_err(storage)? {
            if tokio::time::Instant::now() >= deadline {
                return Err(TelegramError::Transient("the account's session is busy".into()));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let session = match self.sessions.load(connector_id).await.map_err(storage) {
            Ok(Some(bytes)) => TableSession::from_bytes(&bytes).map_err(|e| TelegramError::Unauthorized(e.to_string())),
            Ok(None) if fresh && self.test_servers => Ok(TableSession::fresh_on_test_servers()),
            Ok(None) if fresh => Ok(TableSession::fresh()),
            Ok(None) => Err(TelegramError::Unauthorized("no session: the account has not logged in".into())),
            Err(e) => Err(e),
        };
        let session = match session {
            Ok(session) => Arc::new(session),
            Err(e) => {
                self.release(connector_id, &holder).await;
                return Err(e);
            }
        };
        Ok(self.open(connector_id.to_owned(), holder, session))
    }

    /// Starts the sender pool over `session`; connections are made on the first call.
    fn open(&self, connector_id: String, holder: String, session: Arc<TableSession>) -> Connection<'_> {
        let retry_policy = AutoSleep { tries: NonZeroU32::MIN, threshold: FLOOD_SLEEP, io_errors_as_flood_of: None };
        let params = ConnectionParams { retry_policy: Box::new(retry_policy), ..ConnectionParams::default() };
        let pool = SenderPool::with_configuration(session.clone(), self.credentials.api_id, params);
        let client = Client::with_configuration(pool.handle, ClientConfiguration { auto_cache_peers: false });
        let runner = tokio::spawn(pool.runner.run());
        // Nobody reads pushed updates (the catch-up asks for a difference); with the channel
        // closed the runner stops forwarding them.
        drop(pool.updates);
        Connection { adapter: self, connector_id, holder, session, client, runner }
    }

    async fn release(&self, connector_id: &str, holder: &str) {
        if let Err(e) = self.sessions.release(connector_id, holder).await {
            tracing::warn!(connector_id, "session lease not released (it expires): {e}");
        }
    }
}

/// A login step whose session is gone: the login has to start again.
fn login_gone(e: TelegramError) -> LoginError {
    match e {
        TelegramError::Unauthorized(_) => LoginError::CodeExpired,
        other => other.into(),
    }
}

fn storage(e: crate::repo::RepoError) -> TelegramError {
    TelegramError::Transient(format!("storage: {e}"))
}

/// One connection of one account, for one job.
struct Connection<'a> {
    adapter: &'a GrammersTelegram,
    connector_id: String,
    holder: String,
    session: Arc<TableSession>,
    client: Client,
    runner: JoinHandle<()>,
}

impl Connection<'_> {
    /// A raw call with a timeout.
    async fn invoke<R: tl::RemoteCall>(&self, request: &R) -> Result<R::Return, InvocationError> {
        in_time(self.client.invoke(request)).await
    }

    async fn call<R: tl::RemoteCall>(&self, request: &R) -> Result<R::Return, TelegramError> {
        self.invoke(request).await.map_err(|e| classify(&e))
    }

    /// Disconnects, writes the session back if it changed, and gives up the lease.
    async fn close(self) {
        self.client.disconnect();
        if tokio::time::timeout(CALL_TIMEOUT, self.runner).await.is_err() {
            tracing::warn!("the Telegram connection did not close in time");
        }
        if self.session.take_dirty()
            && let Err(e) = self.adapter.sessions.save(&self.connector_id, &self.session.to_bytes()).await
        {
            tracing::error!(connector_id = self.connector_id, "Telegram session not saved: {e}");
        }
        self.adapter.release(&self.connector_id, &self.holder).await;
    }

    async fn resolve_phone(&self, phone: &str) -> Result<Option<TelegramUser>, TelegramError> {
        match self.invoke(&tl::functions::contacts::ResolvePhone { phone: phone.to_owned() }).await {
            Ok(tl::enums::contacts::ResolvedPeer::Peer(found)) => Ok(resolved_user(&found)),
            // Not registered, or hidden by its owner: importing it as a contact may still find it.
            Err(InvocationError::Rpc(e)) if e.is("PHONE_NOT_OCCUPIED") => self.import_phone(phone).await,
            Err(e) => Err(classify(&e)),
        }
    }

    async fn import_phone(&self, phone: &str) -> Result<Option<TelegramUser>, TelegramError> {
        let contact = tl::types::InputPhoneContact {
            client_id: 1,
            phone: phone.to_owned(),
            first_name: phone.to_owned(),
            last_name: String::new(),
            note: None,
        };
        let tl::enums::contacts::ImportedContacts::Contacts(imported) =
            self.call(&tl::functions::contacts::ImportContacts { contacts: vec![contact.into()] }).await?;
        if !imported.retry_contacts.is_empty() {
            return Err(TelegramError::Rejected("CONTACT_IMPORT_LIMITED".into()));
        }
        let Some(tl::enums::ImportedContact::Contact(found)) = imported.imported.first() else { return Ok(None) };
        Ok(user_by_id(&imported.users, found.user_id))
    }

    async fn contacts(&self) -> Result<Vec<Contact>, TelegramError> {
        match self.call(&tl::functions::contacts::GetContacts { hash: 0 }).await? {
            tl::enums::contacts::Contacts::Contacts(list) => Ok(list
                .users
                .iter()
                .filter_map(|user| {
                    let tl::enums::User::User(u) = user else { return None };
                    Some(Contact { user: telegram_user(user)?, phone: u.phone.clone() })
                })
                .collect()),
            tl::enums::contacts::Contacts::NotModified => Ok(Vec::new()),
        }
    }

    async fn resolve_username(&self, username: &str) -> Result<Option<TelegramUser>, TelegramError> {
        let request = tl::functions::contacts::ResolveUsername { username: username.to_owned(), referer: None };
        match self.invoke(&request).await {
            Ok(tl::enums::contacts::ResolvedPeer::Peer(found)) => Ok(resolved_user(&found)),
            Err(InvocationError::Rpc(e)) if e.is("USERNAME_NOT_OCCUPIED") || e.is("USERNAME_INVALID") => Ok(None),
            Err(e) => Err(classify(&e)),
        }
    }

    async fn send_text(&self, peer: Peer, text: &Formatted, random_id: i64) -> Result<SentMessage, TelegramError> {
        let request = tl::functions::messages::SendMessage {
            no_webpage: false,
            silent: false,
            background: false,
            clear_draft: false,
            noforwards: false,
            update_stickersets_order: false,
            invert_media: false,
            allow_paid_floodskip: false,
            peer: input_peer(peer),
            reply_to: None,
            message: text.text.clone(),
            random_id,
            reply_markup: None,
            entities: entities(text),
            schedule_date: None,
            schedule_repeat_period: None,
            send_as: None,
            quick_reply_shortcut: None,
            effect: None,
            allow_paid_stars: None,
            suggested_post: None,
            rich_message: None,
        };
        sent(self.invoke(&request).await, random_id)
    }

    async fn send_media(&self, peer: Peer, media: &Media, mut body: BlobReader, caption: &Formatted, random_id: i64) -> Result<SentMessage, TelegramError> {
        let size = usize::try_from(media.size).map_err(|_| TelegramError::Rejected("FILE_TOO_LARGE".into()))?;
        let upload = self.client.upload_stream(&mut body, size, media.file_name.clone());
        let uploaded = match tokio::time::timeout(transfer_time(media.size), upload).await {
            Ok(Ok(uploaded)) => uploaded,
            Ok(Err(e)) => return Err(upload_error(&e)),
            Err(_) => return Err(TelegramError::Transient("the upload did not finish in time".into())),
        };
        let request = tl::functions::messages::SendMedia {
            silent: false,
            background: false,
            clear_draft: false,
            noforwards: false,
            update_stickersets_order: false,
            invert_media: false,
            allow_paid_floodskip: false,
            peer: input_peer(peer),
            reply_to: None,
            media: input_media(media, uploaded.raw),
            message: caption.text.clone(),
            random_id,
            reply_markup: None,
            entities: entities(caption),
            schedule_date: None,
            schedule_repeat_period: None,
            send_as: None,
            quick_reply_shortcut: None,
            effect: None,
            allow_paid_stars: None,
            suggested_post: None,
        };
        sent(self.invoke(&request).await, random_id)
    }

    async fn read_outbox_max_id(&self, peer: Peer) -> Result<i32, TelegramError> {
        let dialog = tl::types::InputDialogPeer { peer: input_peer(peer) };
        let tl::enums::messages::PeerDialogs::Dialogs(found) =
            self.call(&tl::functions::messages::GetPeerDialogs { peers: vec![dialog.into()] }).await?;
        Ok(found
            .dialogs
            .iter()
            .find_map(|d| match d {
                tl::enums::Dialog::Dialog(d) => Some(d.read_outbox_max_id),
                _ => None,
            })
            .unwrap_or(0))
    }
}

/// Time allowed for uploading or downloading `size` bytes.
fn transfer_time(size: u64) -> Duration {
    CALL_TIMEOUT + Duration::from_secs(size / TRANSFER_BYTES_PER_SEC)
}

/// A call with a timeout; no answer in time counts as a dropped request.
async fn in_time<T>(call: impl Future<Output = Result<T, InvocationError>>) -> Result<T, InvocationError> {
    tokio::time::timeout(CALL_TIMEOUT, call).await.unwrap_or(Err(InvocationError::Dropped("no answer in time")))
}

/// grammers hands RPC errors of an upload back inside an `io::Error`.
fn upload_error(e: &std::io::Error) -> TelegramError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<InvocationError>()) {
        Some(rpc) => classify(rpc),
        None => TelegramError::Transient(format!("upload: {e}")),
    }
}

fn input_peer(peer: Peer) -> tl::enums::InputPeer {
    tl::types::InputPeerUser { user_id: peer.user_id, access_hash: peer.access_hash }.into()
}

/// Our formatting as Telegram's entities (offsets are UTF-16 units on both sides).
pub(super) fn entities(text: &Formatted) -> Option<Vec<tl::enums::MessageEntity>> {
    if text.entities.is_empty() {
        return None;
    }
    let entity = |e: &TextEntity| -> tl::enums::MessageEntity {
        let (offset, length) = (e.offset as i32, e.length as i32);
        match &e.kind {
            EntityKind::Bold => tl::types::MessageEntityBold { offset, length }.into(),
            EntityKind::Italic => tl::types::MessageEntityItalic { offset, length }.into(),
            EntityKind::Underline => tl::types::MessageEntityUnderline { offset, length }.into(),
            EntityKind::Strikethrough => tl::types::MessageEntityStrike { offset, length }.into(),
            EntityKind::Code => tl::types::MessageEntityCode { offset, length }.into(),
            EntityKind::TextUrl { url } => tl::types::MessageEntityTextUrl { offset, length, url: url.clone() }.into(),
        }
    };
    Some(text.entities.iter().map(entity).collect())
}

/// The uploaded file as the media kind asked for.
fn input_media(media: &Media, file: tl::enums::InputFile) -> tl::enums::InputMedia {
    let document = |force_file: bool, attributes: Vec<tl::enums::DocumentAttribute>, mime_type: &str| {
        tl::types::InputMediaUploadedDocument {
            nosound_video: false,
            force_file,
            spoiler: false,
            file: file.clone(),
            thumb: None,
            mime_type: mime_type.to_owned(),
            attributes,
            stickers: None,
            video_cover: None,
            video_timestamp: None,
            ttl_seconds: None,
        }
        .into()
    };
    let file_name = tl::types::DocumentAttributeFilename { file_name: media.file_name.clone() }.into();
    match &media.kind {
        MediaKind::Photo => tl::types::InputMediaUploadedPhoto {
            spoiler: false,
            live_photo: false,
            file: file.clone(),
            stickers: None,
            ttl_seconds: None,
            video: None,
        }
        .into(),
        MediaKind::Document => document(true, vec![file_name], &media.mime_type),
        MediaKind::Voice { duration_secs, waveform } => {
            let audio = tl::types::DocumentAttributeAudio {
                voice: true,
                duration: i32::try_from(*duration_secs).unwrap_or(i32::MAX),
                title: None,
                performer: None,
                waveform: Some(waveform.clone()),
            };
            document(false, vec![audio.into()], "audio/ogg")
        }
    }
}

fn resolved_user(found: &tl::types::contacts::ResolvedPeer) -> Option<TelegramUser> {
    let tl::enums::Peer::User(peer) = &found.peer else { return None };
    user_by_id(&found.users, peer.user_id)
}

/// The user `id` among those an answer carries, if it came with its `access_hash`.
fn user_by_id(users: &[tl::enums::User], id: i64) -> Option<TelegramUser> {
    users.iter().find_map(|u| telegram_user(u).filter(|t| t.peer.user_id == id))
}

/// A user we can address: one that came with its `access_hash`.
fn telegram_user(user: &tl::enums::User) -> Option<TelegramUser> {
    let tl::enums::User::User(u) = user else { return None };
    Some(TelegramUser {
        peer: Peer { user_id: u.id, access_hash: u.access_hash? },
        first_name: u.first_name.clone().unwrap_or_default(),
        last_name: u.last_name.clone().unwrap_or_default(),
        username: u.username.clone(),
    })
}

/// Telegram takes phone numbers as digits.
fn digits(phone: &PhoneE164) -> &str {
    phone.as_str().trim_start_matches('+')
}

#[async_trait]
impl Telegram for GrammersTelegram {
    async fn resolve_phone(&self, account: &Account, phone: &PhoneE164) -> Result<Option<TelegramUser>, TelegramError> {
        let conn = self.connect(account, CALL_TIMEOUT * 2).await?;
        let result = conn.resolve_phone(digits(phone)).await;
        conn.close().await;
        result
    }

    async fn resolve_username(&self, account: &Account, username: &TelegramUsername) -> Result<Option<TelegramUser>, TelegramError> {
        let conn = self.connect(account, CALL_TIMEOUT).await?;
        let result = conn.resolve_username(username.as_str()).await;
        conn.close().await;
        result
    }

    async fn send_text(&self, account: &Account, peer: Peer, text: &Formatted, random_id: i64) -> Result<SentMessage, TelegramError> {
        let conn = self.connect(account, CALL_TIMEOUT).await?;
        let result = conn.send_text(peer, text, random_id).await;
        conn.close().await;
        result
    }

    async fn contacts(&self, account: &Account) -> Result<Vec<Contact>, TelegramError> {
        let conn = self.connect(account, CALL_TIMEOUT * 2).await?;
        let result = conn.contacts().await;
        conn.close().await;
        result
    }

    async fn read_outbox_max_id(&self, account: &Account, peer: Peer) -> Result<i32, TelegramError> {
        let conn = self.connect(account, CALL_TIMEOUT).await?;
        let result = conn.read_outbox_max_id(peer).await;
        conn.close().await;
        result
    }

    async fn send_media(&self, account: &Account, peer: Peer, media: &Media, body: BlobReader, caption: &Formatted, random_id: i64) -> Result<SentMessage, TelegramError> {
        let conn = self.connect(account, transfer_time(media.size) + CALL_TIMEOUT).await?;
        let result = conn.send_media(peer, media, body, caption, random_id).await;
        conn.close().await;
        result
    }

    async fn updates_state(&self, account: &Account) -> Result<UpdatesState, TelegramError> {
        let conn = self.connect(account, CALL_TIMEOUT).await?;
        let result = conn.updates_state().await;
        conn.close().await;
        result
    }

    async fn difference(&self, account: &Account, from: UpdatesState) -> Result<Difference, TelegramError> {
        let conn = self.connect(account, CALL_TIMEOUT).await?;
        let result = conn.difference(from).await;
        conn.close().await;
        result
    }

    async fn history(&self, account: &Account, peer: Peer, after_id: i32) -> Result<HistoryPage, TelegramError> {
        let conn = self.connect(account, CALL_TIMEOUT).await?;
        let result = conn.history(peer, after_id).await;
        conn.close().await;
        result
    }

    async fn download(&self, account: &Account, file: &RemoteFile, sink: &mut (dyn tokio::io::AsyncWrite + Send + Unpin)) -> Result<u64, TelegramError> {
        let conn = self.connect(account, transfer_time(file.size) + CALL_TIMEOUT).await?;
        let result = conn.download(file, sink).await;
        conn.close().await;
        result
    }

    async fn send_code(&self, login: &str, phone: &PhoneE164) -> Result<LoginStep, LoginError> {
        let conn = self.connect_session(login, CALL_TIMEOUT * 3, true).await?;
        let result = conn.send_code(digits(phone)).await;
        conn.close().await;
        result
    }

    async fn sign_in(&self, login: &str, phone: &PhoneE164, phone_code_hash: &Secret, code: &str) -> Result<LoginStep, LoginError> {
        let conn = self.connect_session(login, CALL_TIMEOUT * 3, false).await.map_err(login_gone)?;
        let result = conn.sign_in(digits(phone), phone_code_hash, code).await;
        conn.close().await;
        result
    }

    async fn check_password(&self, login: &str, password: &Secret) -> Result<LoginStep, LoginError> {
        let conn = self.connect_session(login, CALL_TIMEOUT * 3, false).await.map_err(login_gone)?;
        let result = conn.check_password(password).await;
        conn.close().await;
        result
    }

    async fn qr_login(&self, login: &str) -> Result<LoginStep, LoginError> {
        let conn = self.connect_session(login, CALL_TIMEOUT * 3, true).await?;
        let result = conn.qr_login().await;
        conn.close().await;
        result
    }

    async fn log_out(&self, account: &Account) -> Result<(), TelegramError> {
        match self.connect(account, CALL_TIMEOUT).await {
            Ok(conn) => {
                if let Err(e) = conn.call(&tl::functions::auth::LogOut {}).await {
                    // A session Telegram already dropped is as good as signed out.
                    tracing::warn!("auth.logOut failed ({e}); forgetting the session anyway");
                }
                conn.close().await;
            }
            Err(TelegramError::Unauthorized(_)) => {}
            Err(e) => return Err(e),
        }
        self.sessions.delete(&account.connector_id).await.map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(kind: MediaKind) -> Media {
        Media { kind, file_name: "a.ogg".into(), mime_type: "application/pdf".into(), size: 10 }
    }

    fn file() -> tl::enums::InputFile {
        tl::types::InputFile { id: 1, parts: 1, name: "a".into(), md5_checksum: String::new() }.into()
    }

    #[test]
    fn media_kinds_become_the_right_input_media() {
        assert!(matches!(input_media(&media(MediaKind::Photo), file()), tl::enums::InputMedia::UploadedPhoto(_)));
        let tl::enums::InputMedia::UploadedDocument(doc) = input_media(&media(MediaKind::Document), file()) else { panic!() };
        assert!(doc.force_file);
        assert_eq!(doc.mime_type, "application/pdf");
        let voice = MediaKind::Voice { duration_secs: 3, waveform: vec![1, 2, 3] };
        let tl::enums::InputMedia::UploadedDocument(doc) = input_media(&media(voice), file()) else { panic!() };
        assert!(!doc.force_file);
        assert_eq!(doc.mime_type, "audio/ogg");
        let [tl::enums::DocumentAttribute::Audio(audio)] = doc.attributes.as_slice() else { panic!("{:?}", doc.attributes) };
        assert!(audio.voice);
        assert_eq!((audio.duration, audio.waveform.as_deref()), (3, Some(&[1u8, 2, 3][..])));
    }

    #[test]
    fn formatting_becomes_entities() {
        assert_eq!(entities(&Formatted::plain("hi")), None);
        let text = crate::domain::formatting::from_bbcode("[b]Hi[/b] [url=https://e.x]there[/url]");
        let found = entities(&text).unwrap();
        assert_eq!(found.len(), 2);
        assert!(matches!(&found[0], tl::enums::MessageEntity::Bold(b) if b.offset == 0 && b.length == 2));
        assert!(matches!(&found[1], tl::enums::MessageEntity::TextUrl(u) if u.offset == 3 && u.length == 5 && u.url == "https://e.x"));
    }
}
