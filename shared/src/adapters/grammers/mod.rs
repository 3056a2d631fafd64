//! The telegram port over a real Telegram user account, with grammers (MTProto).
//!
//! Every job connects once, does all its calls over that connection and disconnects: a Lambda
//! holds no connection between invocations. The single-server deployment instead keeps one
//! connection per account ([`Telegram::keep`]) that receives the updates Telegram pushes, and
//! its jobs' calls go over that same connection. A lease in the table keeps one session on one
//! connection at a time (Telegram answers AUTH_KEY_DUPLICATED otherwise); every call has a
//! timeout and follows `303` migrations; flood waits longer than a few seconds go back to the
//! queue instead of sleeping. Sends are raw `messages.sendMessage`/`sendMedia` with our
//! `random_id`, so a retry is dropped by Telegram.

pub mod errors;
mod login;
pub mod session;
mod updates;

pub(crate) use updates::text_entity;

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use grammers_client::client::ClientConfiguration;
use grammers_client::sender::{AutoSleep, ConnectionParams};
use grammers_client::{Client, InvocationError, SenderPool, tl};
use grammers_session::Session as _;
use grammers_session::updates::UpdatesLike;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::errors::{classify, sent};
use self::session::TableSession;
use crate::crypto::Secret;
use crate::domain::formatting::{EntityKind, TextEntity};
use crate::domain::{Formatted, PhoneE164, TelegramUsername};
use crate::ports::blobs::BlobReader;
use crate::ports::{
    Account, ChatMessage, Contact, Difference, HistoryPage, KeptConnection, LoginError, LoginStep, Media, MediaKind, Peer, Pushed, RemoteFile,
    SentMessage, Telegram, TelegramError, TelegramSession, TelegramUser, UpdatesState,
};
use crate::repo::sessions::TelegramSessions;

/// Flood waits up to this long are slept through inside the call; longer ones are the queue's.
const FLOOD_SLEEP: Duration = Duration::from_secs(3);
/// How the app's connections appear in a salesperson's Telegram, Settings → Devices.
const DEVICE_MODEL: &str = "OLChat for Bitrix24";
/// How long one call (or the wait for a busy session) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// No worker runs longer (Lambda's limit): one killed mid-transfer holds the account no longer.
const MAX_LEASE: Duration = Duration::from_secs(15 * 60);
/// How long after `retry_contacts` a number may be imported again: Telegram does not say;
/// field reports speak of a daily allowance.
const IMPORT_RETRY_SECS: u32 = 6 * 60 * 60;
/// How many of a chat's newest messages a duplicate send looks through for its own.
const DUPLICATE_LOOKBACK: i32 = 20;
/// A job's hold on its account; a transfer extends it by its own time.
const JOB_LEASE: Duration = Duration::from_secs(60);
/// Slowest upload or download we wait for before giving up: 128 KiB/s.
const TRANSFER_BYTES_PER_SEC: u64 = 128 * 1024;
/// A kept connection's hold on its account, renewed every [`KEPT_RENEW`]: a process that
/// dies holds the account no longer than this.
const KEPT_LEASE: Duration = Duration::from_secs(60);
const KEPT_RENEW: Duration = Duration::from_secs(15);
/// Pushed updates a kept connection buffers while its listener is busy; grammers drops what
/// comes beyond (a gap the next push shows, which a difference fills).
const PUSHED_BUFFER: NonZeroUsize = NonZeroUsize::new(1000).expect("not zero");

/// The app's Telegram API credentials (my.telegram.org).
#[derive(Clone, Debug)]
pub struct ApiCredentials {
    pub api_id: i32,
    /// Only login calls carry it.
    pub api_hash: Secret,
}

/// Where new sessions start.
pub enum Servers {
    /// Telegram's production data centres: a new session runs the key exchange.
    Production,
    /// Telegram's test data centres (the opt-in live test).
    Test,
    /// Data centres that take their auth keys out of band (the sandbox's: grammers trusts only
    /// Telegram's own RSA keys, so no key exchange can succeed against them).
    Registered(Arc<dyn KeyRegistry>),
}

/// Auth keys a set of data centres already know, and their loopback addresses.
pub struct RegisteredKeys {
    pub home_dc: i32,
    pub dcs: Vec<(i32, std::net::SocketAddr, [u8; 256])>,
}

/// A place that registers new auth keys out of band.
pub trait KeyRegistry: Send + Sync {
    /// Fresh keys for every data centre; logged in as `user_id` on its home DC when given.
    fn register_keys(&self, user_id: Option<i64>) -> RegisteredKeys;
}

pub struct GrammersTelegram {
    credentials: ApiCredentials,
    sessions: TelegramSessions,
    servers: Servers,
    /// The accounts whose connection is kept, by connector id.
    kept: Mutex<HashMap<String, Shared>>,
}

/// A kept connection as its account's jobs share it.
#[derive(Clone)]
struct Shared {
    holder: String,
    session: Arc<TableSession>,
    client: Client,
    /// Told when the account signed out over it: its keeper must stop.
    signed_out: Arc<tokio::sync::Notify>,
}

impl GrammersTelegram {
    pub fn new(credentials: ApiCredentials, sessions: TelegramSessions, servers: Servers) -> Self {
        Self { credentials, sessions, servers, kept: Mutex::default() }
    }

    /// Connects as the connector's account, holding its session's lease for `work` at most;
    /// over its kept connection when there is one.
    async fn connect_account(&self, account: &Account, work: Duration) -> Result<Connection<'_>, TelegramError> {
        let shared = self.kept.lock().unwrap_or_else(|p| p.into_inner()).get(&account.connector_id).cloned();
        if let Some(Shared { holder, session, client, .. }) = shared {
            return Ok(Connection { adapter: self, connector_id: account.connector_id.clone(), holder, session, client, runner: None });
        }
        self.connect_session(&account.connector_id, work, false).await
    }

    /// Connects with the session named `connector_id`; a missing one is made afresh when
    /// `fresh` (a login), else the account must log in.
    async fn connect_session(&self, connector_id: &str, work: Duration, fresh: bool) -> Result<Connection<'_>, TelegramError> {
        let (holder, session) = self.lease_session(connector_id, work, fresh).await?;
        // A job's connection reads no pushed updates (the catch-up asks for a difference); with
        // the channel closed the runner stops forwarding them.
        let (connection, _) = self.open(connector_id.to_owned(), holder, session, NonZeroUsize::MIN);
        Ok(connection)
    }

    /// Takes the lease of the session named `connector_id` for `work` and loads it.
    async fn lease_session(&self, connector_id: &str, work: Duration, fresh: bool) -> Result<(String, Arc<TableSession>), TelegramError> {
        let holder = uuid::Uuid::new_v4().to_string();
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        let lease = (work + CALL_TIMEOUT).min(MAX_LEASE);
        // Another job of the account holds it for a moment, as a rule: look again soon, then
        // less and less often.
        let mut pause = Duration::from_millis(2);
        while !self.sessions.try_lease(connector_id, &holder, lease).await.map_err(storage)? {
            if tokio::time::Instant::now() >= deadline {
                return Err(TelegramError::Transient("the account's session is busy".into()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
        let session = match self.sessions.load(connector_id).await.map_err(storage) {
            Ok(Some(bytes)) => TableSession::from_bytes(&bytes).map_err(|e| TelegramError::Unauthorized(e.to_string())),
            Ok(None) if fresh => Ok(self.fresh_session()),
            Ok(None) => Err(TelegramError::Unauthorized("no session: the account has not logged in".into())),
            Err(e) => Err(e),
        };
        match session {
            Ok(session) => Ok((holder, Arc::new(session))),
            Err(e) => {
                self.release(connector_id, &holder).await;
                Err(e)
            }
        }
    }

    fn fresh_session(&self) -> TableSession {
        match &self.servers {
            Servers::Production => TableSession::fresh(),
            Servers::Test => TableSession::fresh_on_test_servers(),
            Servers::Registered(registry) => TableSession::registered(&registry.register_keys(None), None),
        }
    }

    /// Starts the sender pool over `session`; connections are made on the first call. What
    /// Telegram pushes comes out of the receiver, `pushed` of it buffered at most.
    fn open(&self, connector_id: String, holder: String, session: Arc<TableSession>, pushed: NonZeroUsize) -> (Connection<'_>, mpsc::Receiver<UpdatesLike>) {
        let retry_policy = AutoSleep { tries: NonZeroU32::MIN, threshold: FLOOD_SLEEP, io_errors_as_flood_of: None };
        // Named as the app in the account's list of devices, not after the host. (grammers'
        // default asks the OS who it is, spawning processes: 11 ms of every connection.)
        let params = ConnectionParams {
            device_model: DEVICE_MODEL.into(),
            system_version: std::env::consts::OS.into(),
            app_version: env!("CARGO_PKG_VERSION").into(),
            system_lang_code: "en".into(),
            lang_code: "en".into(),
            use_ipv6: false,
            retry_policy: Box::new(retry_policy),
            updates_channel_capacity: pushed,
            __non_exhaustive: (),
        };
        let pool = SenderPool::with_configuration(session.clone(), self.credentials.api_id, params);
        let client = Client::with_configuration(pool.handle, ClientConfiguration { auto_cache_peers: false });
        let runner = tokio::spawn(pool.runner.run());
        (Connection { adapter: self, connector_id, holder, session, client, runner: Some(runner) }, pool.updates)
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

fn session_error(_: session::Poisoned) -> &'static str {
    "the session lock was poisoned"
}

/// One connection of one account, for one job (or a job's share of a kept one).
struct Connection<'a> {
    adapter: &'a GrammersTelegram,
    connector_id: String,
    holder: String,
    session: Arc<TableSession>,
    client: Client,
    /// The sender pool, when this connection is its own; `None` for a kept connection's share.
    runner: Option<JoinHandle<()>>,
}

impl Connection<'_> {
    /// A raw call with a timeout, at the account's home DC. A `303` (`USER_MIGRATE_X`,
    /// `NETWORK_MIGRATE_X`...) moves the account's home there, its authorization with it,
    /// and asks again: Telegram may answer it to any call, not only at login.
    async fn invoke<R: tl::RemoteCall>(&self, request: &R) -> Result<R::Return, InvocationError> {
        let mut answer = in_time(self.client.invoke(request)).await;
        for _ in 0..2 {
            let Some(dc) = answer.as_ref().err().and_then(login::migrate_to) else { break };
            self.migrate(dc).await?;
            answer = in_time(self.client.invoke(request)).await;
        }
        answer
    }

    /// The account's home becomes `dc`. A logged-in account takes its authorization along
    /// (`auth.exportAuthorization` at the old home, `auth.importAuthorization` at the new).
    async fn migrate(&self, dc: i32) -> Result<(), InvocationError> {
        let home = self.session.home_dc_id().map_err(|e| InvocationError::Dropped(session_error(e)))?;
        if home == dc {
            return Err(InvocationError::Dropped("migrated to the DC it is on"));
        }
        if self.session.peer(grammers_session::types::PeerId::self_user()).await.ok().flatten().is_some() {
            let tl::enums::auth::ExportedAuthorization::Authorization(exported) =
                in_time(self.client.invoke_in_dc(home, &tl::functions::auth::ExportAuthorization { dc_id: dc })).await?;
            let import = tl::functions::auth::ImportAuthorization { id: exported.id, bytes: exported.bytes };
            in_time(self.client.invoke_in_dc(dc, &import)).await?;
        }
        tracing::info!(from = home, to = dc, "the account moved to another data centre");
        self.session.set_home_dc_id(dc).await.map_err(|e| InvocationError::Dropped(session_error(e)))
    }

    async fn call<R: tl::RemoteCall>(&self, request: &R) -> Result<R::Return, TelegramError> {
        self.invoke(request).await.map_err(|e| classify(&e))
    }

    /// Disconnects, writes the session back if it changed, and gives up the lease; a share
    /// of a kept connection only writes the session back.
    async fn close(mut self) {
        let Some(runner) = self.runner.take() else {
            self.save_session().await;
            return;
        };
        self.client.disconnect();
        if tokio::time::timeout(CALL_TIMEOUT, runner).await.is_err() {
            tracing::warn!("the Telegram connection did not close in time");
        }
        self.save_session().await;
        self.adapter.release(&self.connector_id, &self.holder).await;
    }

    async fn save_session(&self) {
        if self.session.take_dirty()
            && let Err(e) = self.adapter.sessions.save(&self.connector_id, &self.session.to_bytes()).await
        {
            tracing::error!(connector_id = self.connector_id, "Telegram session not saved: {e}");
        }
    }

    /// Keeps the account's lease for `work` more: a long transfer outlives the job's first hold.
    async fn hold(&self, work: Duration) {
        if let Err(e) = self.adapter.sessions.renew(&self.connector_id, &self.holder, (work + CALL_TIMEOUT).min(MAX_LEASE)).await {
            tracing::warn!("session lease not extended: {e}");
        }
    }

    async fn resolve_phone(&self, phone: &str, keep_imported: bool) -> Result<Option<TelegramUser>, TelegramError> {
        match self.invoke(&tl::functions::contacts::ResolvePhone { phone: phone.to_owned() }).await {
            Ok(tl::enums::contacts::ResolvedPeer::Peer(found)) => Ok(resolved_user(&found)),
            // Not registered, or hidden by its owner: importing it as a contact may still find it.
            Err(InvocationError::Rpc(e)) if e.is("PHONE_NOT_OCCUPIED") => self.import_phone(phone, keep_imported).await,
            Err(e) => Err(classify(&e)),
        }
    }

    /// `contacts.importContacts` of one number. `retry_contacts` means the account imported
    /// too many numbers lately: a rate limit, not a "not found". A number imported only to
    /// find its owner leaves the salesperson's contacts again; a contact they had before stays.
    async fn import_phone(&self, phone: &str, keep_imported: bool) -> Result<Option<TelegramUser>, TelegramError> {
        let had: Vec<i64> = if keep_imported { Vec::new() } else { self.contacts().await?.iter().map(|c| c.user.peer.user_id).collect() };
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
            return Err(TelegramError::FloodWait { seconds: IMPORT_RETRY_SECS });
        }
        let Some(tl::enums::ImportedContact::Contact(found)) = imported.imported.first() else { return Ok(None) };
        let user = user_by_id(&imported.users, found.user_id);
        if let Some(user) = user.as_ref().filter(|u| !keep_imported && !had.contains(&u.peer.user_id)) {
            let input = tl::types::InputUser { user_id: user.peer.user_id, access_hash: user.peer.access_hash }.into();
            if let Err(e) = self.call(&tl::functions::contacts::DeleteContacts { id: vec![input] }).await {
                tracing::warn!("an imported number stays in the account's contacts: {e}");
            }
        }
        Ok(user)
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
        let sent = sent(self.invoke(&request).await, random_id)?;
        self.learn_id(sent, peer, text).await
    }

    /// A send Telegram already had (`RANDOM_ID_DUPLICATE`) still learns its message's id, from
    /// the chat's newest messages: ours, with the same text, and the newest such.
    async fn learn_id(&self, sent: SentMessage, peer: Peer, text: &Formatted) -> Result<SentMessage, TelegramError> {
        if sent.id.is_some() {
            return Ok(sent);
        }
        let request = tl::functions::messages::GetHistory {
            peer: input_peer(peer),
            offset_id: 0,
            offset_date: 0,
            add_offset: 0,
            limit: DUPLICATE_LOOKBACK,
            max_id: 0,
            min_id: 0,
            hash: 0,
        };
        let id = updates::own_message_id(self.call(&request).await?, &text.text);
        Ok(SentMessage { id })
    }

    async fn send_media(&self, peer: Peer, media: &Media, mut body: BlobReader, caption: &Formatted, random_id: i64) -> Result<SentMessage, TelegramError> {
        // Telegram has no empty files (FILE_PART_EMPTY); nothing is uploaded for one.
        if media.size == 0 {
            return Err(TelegramError::Rejected("FILE_EMPTY".into()));
        }
        self.hold(transfer_time(media.size)).await;
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
        let sent = sent(self.invoke(&request).await, random_id)?;
        self.learn_id(sent, peer, caption).await
    }

    /// core.telegram.org/method/messages.editMessage: the new text with its entities.
    async fn edit_text(&self, peer: Peer, id: i32, text: &Formatted) -> Result<(), TelegramError> {
        let request = tl::functions::messages::EditMessage {
            no_webpage: false,
            invert_media: false,
            peer: input_peer(peer),
            id,
            message: Some(text.text.clone()),
            media: None,
            reply_markup: None,
            entities: entities(text),
            schedule_date: None,
            schedule_repeat_period: None,
            quick_reply_shortcut_id: None,
            rich_message: None,
        };
        match self.invoke(&request).await {
            Ok(_) => Ok(()),
            // The message reads so already: an edit done on an earlier try.
            Err(InvocationError::Rpc(e)) if e.is("MESSAGE_NOT_MODIFIED") => Ok(()),
            Err(e) => Err(classify(&e)),
        }
    }

    /// core.telegram.org/method/messages.deleteMessages, for both sides (`revoke`).
    async fn delete_messages(&self, ids: &[i32]) -> Result<(), TelegramError> {
        self.call(&tl::functions::messages::DeleteMessages { revoke: true, id: ids.to_vec() }).await.map(drop)
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
pub(crate) fn entities(text: &Formatted) -> Option<Vec<tl::enums::MessageEntity>> {
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

/// A user we can address: one that came with its own `access_hash`. A `min` user's hash
/// cannot address them (core.telegram.org/api/min): never stored as a recipient.
fn telegram_user(user: &tl::enums::User) -> Option<TelegramUser> {
    let tl::enums::User::User(u) = user else { return None };
    if u.min {
        return None;
    }
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
impl TelegramSession for Connection<'_> {
    async fn resolve_phone(&self, phone: &PhoneE164, keep_imported: bool) -> Result<Option<TelegramUser>, TelegramError> {
        Connection::resolve_phone(self, digits(phone), keep_imported).await
    }

    async fn resolve_username(&self, username: &TelegramUsername) -> Result<Option<TelegramUser>, TelegramError> {
        Connection::resolve_username(self, username.as_str()).await
    }

    async fn send_text(&self, peer: Peer, text: &Formatted, random_id: i64) -> Result<SentMessage, TelegramError> {
        Connection::send_text(self, peer, text, random_id).await
    }

    async fn send_media(&self, peer: Peer, media: &Media, body: BlobReader, caption: &Formatted, random_id: i64) -> Result<SentMessage, TelegramError> {
        Connection::send_media(self, peer, media, body, caption, random_id).await
    }

    async fn edit_text(&self, peer: Peer, id: i32, text: &Formatted) -> Result<(), TelegramError> {
        Connection::edit_text(self, peer, id, text).await
    }

    async fn delete_messages(&self, ids: &[i32]) -> Result<(), TelegramError> {
        Connection::delete_messages(self, ids).await
    }

    async fn contacts(&self) -> Result<Vec<Contact>, TelegramError> {
        Connection::contacts(self).await
    }

    async fn read_outbox_max_id(&self, peer: Peer) -> Result<i32, TelegramError> {
        Connection::read_outbox_max_id(self, peer).await
    }

    async fn updates_state(&self) -> Result<UpdatesState, TelegramError> {
        Connection::updates_state(self).await
    }

    async fn difference(&self, from: UpdatesState) -> Result<Difference, TelegramError> {
        Connection::difference(self, from).await
    }

    async fn history(&self, peer: Peer, after_id: i32) -> Result<HistoryPage, TelegramError> {
        Connection::history(self, peer, after_id).await
    }

    async fn earlier(&self, peer: Peer, before_id: i32) -> Result<Vec<ChatMessage>, TelegramError> {
        Connection::earlier(self, peer, before_id).await
    }

    async fn download(&self, file: &RemoteFile, sink: &mut (dyn tokio::io::AsyncWrite + Send + Unpin)) -> Result<u64, TelegramError> {
        self.hold(transfer_time(file.size)).await;
        Connection::download(self, file, sink).await
    }

    async fn close(self: Box<Self>) {
        Connection::close(*self).await;
    }
}

/// An account's kept connection: its pool, what it pushes, and the lease renewal.
struct Kept<'a> {
    connection: Connection<'a>,
    updates: tokio::sync::Mutex<mpsc::Receiver<UpdatesLike>>,
    renewal: JoinHandle<()>,
    signed_out: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl KeptConnection for Kept<'_> {
    fn session(&self) -> &dyn TelegramSession {
        &self.connection
    }

    async fn next(&self) -> Pushed {
        let mut updates = self.updates.lock().await;
        loop {
            let update = tokio::select! {
                update = updates.recv() => update,
                // Signed out over this connection: the next call says so (401), which ends it.
                () = self.signed_out.notified() => return Pushed::Closed,
            };
            // The channel ends with the pool: nothing more comes on this connection.
            let Some(update) = update else { return Pushed::Closed };
            if let Some(pushed) = updates::pushed(update) {
                return pushed;
            }
        }
    }

    async fn close(self: Box<Self>) {
        let Kept { connection, renewal, .. } = *self;
        renewal.abort();
        connection.adapter.kept.lock().unwrap_or_else(|p| p.into_inner()).remove(&connection.connector_id);
        connection.close().await;
    }
}

#[async_trait]
impl Telegram for GrammersTelegram {
    async fn connect(&self, account: &Account) -> Result<Box<dyn TelegramSession + '_>, TelegramError> {
        Ok(Box::new(self.connect_account(account, JOB_LEASE).await?))
    }

    async fn keep(&self, account: &Account) -> Result<Box<dyn KeptConnection + '_>, TelegramError> {
        let connector_id = account.connector_id.clone();
        if self.kept.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&connector_id) {
            return Err(TelegramError::Rejected("the account's connection is kept already".into()));
        }
        let (holder, session) = self.lease_session(&connector_id, KEPT_LEASE, false).await?;
        let (connection, updates) = self.open(connector_id.clone(), holder.clone(), session.clone(), PUSHED_BUFFER);
        let signed_out = Arc::new(tokio::sync::Notify::new());
        let shared = Shared { holder: holder.clone(), session, client: connection.client.clone(), signed_out: signed_out.clone() };
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).insert(connector_id.clone(), shared);
        let sessions = self.sessions.clone();
        let renewal = tokio::spawn(async move {
            let mut every = tokio::time::interval(KEPT_RENEW);
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(e) = sessions.renew(&connector_id, &holder, KEPT_LEASE).await {
                    tracing::warn!(connector_id, "kept connection's session lease not renewed: {e}");
                }
            }
        });
        Ok(Box::new(Kept { connection, updates: tokio::sync::Mutex::new(updates), renewal, signed_out }))
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
        match self.connect_account(account, CALL_TIMEOUT).await {
            Ok(conn) => {
                if let Err(e) = conn.call(&tl::functions::auth::LogOut {}).await {
                    // A session Telegram already dropped is as good as signed out.
                    tracing::warn!("auth.logOut failed ({e}); forgetting the session anyway");
                }
                conn.close().await;
                if let Some(kept) = self.kept.lock().unwrap_or_else(|p| p.into_inner()).get(&account.connector_id) {
                    kept.signed_out.notify_one();
                }
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
