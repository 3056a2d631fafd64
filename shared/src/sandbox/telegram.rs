//! A simulated Telegram behind the telegram port: users with phones, usernames and
//! privacy settings; a log of what they received; read receipts; injectable failures.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::clock::now_secs;
use crate::crypto::Secret;
use crate::domain::formatting::TextEntity;
use crate::domain::{Formatted, PhoneE164, TelegramUsername};
use crate::ports::blobs::BlobReader;
use crate::ports::{
    Account, Contact, LoggedIn, LoginError, LoginStep, Media, MediaKind, Peer, SentMessage, Telegram, TelegramError, TelegramUser,
};

/// "Who can find me by my number".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhonePrivacy {
    Everybody,
    /// "My contacts": the number resolves only for accounts in the owner's contacts.
    Contacts,
    Nobody,
}

#[derive(Clone, Debug, Serialize)]
pub struct SimUser {
    pub id: i64,
    pub access_hash: i64,
    pub phone: String,
    pub username: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub phone_privacy: PhonePrivacy,
    /// False: only contacts may start a chat (USER_PRIVACY_RESTRICTED for others).
    pub accepts_strangers: bool,
    /// User ids in this user's contact list.
    pub contacts: Vec<i64>,
    /// A logged-out session answers AUTH_KEY_UNREGISTERED.
    pub logged_in: bool,
    /// The cloud password (two-step verification), if the account has one; never shown.
    #[serde(skip)]
    pub cloud_password: Option<String>,
}

impl SimUser {
    fn as_telegram_user(&self) -> TelegramUser {
        TelegramUser {
            peer: Peer { user_id: self.id, access_hash: self.access_hash },
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            username: self.username.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ReceivedMessage {
    pub id: i32,
    pub from_user_id: i64,
    pub from_username: Option<String>,
    pub to_user_id: i64,
    pub to_username: Option<String>,
    pub text: String,
    /// Formatting (bold, links...) as Telegram's entities.
    pub entities: Vec<TextEntity>,
    /// `text`, `photo`, `document` or `voice`.
    pub media: String,
    /// What arrived with a media send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<ReceivedFile>,
    pub date: i64,
    pub read: bool,
}

/// A file as the simulated Telegram received it: counted and hashed while streaming in.
#[derive(Clone, Debug, Serialize)]
pub struct ReceivedFile {
    pub file_name: String,
    pub mime_type: String,
    /// The size the sender declared, and the bytes that actually arrived.
    pub size: u64,
    pub received_bytes: u64,
    pub sha256: String,
    /// `ogg_opus`, `ogg`, `webm`, `jpeg`, `png`, `pdf` or `other`, from the first bytes.
    pub format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waveform_bytes: Option<usize>,
}

/// Enough of a file's start to tell its format.
const HEAD_BYTES: usize = 64;

fn file_format(head: &[u8]) -> &'static str {
    // An OGG stream's first page holds the codec's header packet right after its 27+1 byte header.
    if head.starts_with(b"OggS") {
        return if head.get(28..36) == Some(b"OpusHead") { "ogg_opus" } else { "ogg" };
    }
    match head {
        [0x1A, 0x45, 0xDF, 0xA3, ..] => "webm",
        [0xFF, 0xD8, 0xFF, ..] => "jpeg",
        [0x89, b'P', b'N', b'G', ..] => "png",
        [b'%', b'P', b'D', b'F', ..] => "pdf",
        _ => "other",
    }
}

/// Reads the whole stream in fixed chunks: its length, SHA-256 and first bytes.
async fn consume(mut body: BlobReader) -> Result<(u64, String, Vec<u8>), TelegramError> {
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(HEAD_BYTES);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = body.read(&mut chunk).await.map_err(|e| TelegramError::Transient(format!("upload interrupted: {e}")))?;
        if n == 0 {
            break;
        }
        let wanted = HEAD_BYTES.saturating_sub(head.len()).min(n);
        head.extend_from_slice(&chunk[..wanted]);
        hasher.update(&chunk[..n]);
        total += n as u64;
    }
    let sha = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((total, sha, head))
}

/// A failure the next matching call answers with.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    FloodWait { seconds: u32 },
    PeerFlood,
    PrivacyRestricted,
    Unauthorized,
    /// Delivers the message, then loses the answer (a connection drop after sending).
    DropAfterDelivery,
}

/// The sandbox's login code; any other is wrong, except [`EXPIRED_CODE`].
pub const LOGIN_CODE: &str = "12345";
/// A code the sandbox treats as expired.
pub const EXPIRED_CODE: &str = "00000";
/// How long a code or a QR token stays valid.
const CODE_TTL_SECS: i64 = 300;
const QR_TTL_SECS: i64 = 30;

/// A login under way, by the id its connector will get.
#[derive(Clone, Debug, Default)]
struct SimLogin {
    user_id: Option<i64>,
    phone_code_hash: String,
    code_sent_at: i64,
    awaiting_password: bool,
    qr_token: Option<String>,
}

#[derive(Default)]
struct State {
    users: Vec<SimUser>,
    logins: HashMap<String, SimLogin>,
    received: Vec<ReceivedMessage>,
    /// (sender, random_id) of every delivered message: Telegram drops repeats.
    random_ids: HashMap<(i64, i64), i32>,
    send_faults: VecDeque<Fault>,
    resolve_faults: VecDeque<Fault>,
}

#[derive(Default)]
pub struct SandboxTelegram {
    state: Mutex<State>,
}

impl SandboxTelegram {
    pub fn new(users: Vec<SimUser>) -> Self {
        Self { state: Mutex::new(State { users, ..State::default() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn received(&self) -> Vec<ReceivedMessage> {
        self.lock().received.clone()
    }

    pub fn users(&self) -> Vec<SimUser> {
        self.lock().users.clone()
    }

    /// The next `count` sends (or look-ups and login steps) fail with `fault`.
    pub fn inject(&self, fault: Fault, on_resolve: bool, count: usize) {
        let mut state = self.lock();
        let queue = if on_resolve { &mut state.resolve_faults } else { &mut state.send_faults };
        queue.extend(std::iter::repeat_n(fault, count));
    }

    /// The recipient opens the chat: everything sent to them so far is read.
    pub fn read_all(&self, to_user_id: i64) -> usize {
        let mut state = self.lock();
        let unread = state.received.iter_mut().filter(|m| m.to_user_id == to_user_id && !m.read);
        unread.map(|m| m.read = true).count()
    }

    /// Someone scans the newest QR code on their phone as `user_id`; `false` when none is shown.
    pub fn scan_qr(&self, user_id: i64) -> bool {
        let mut state = self.lock();
        let now = now_secs();
        let shown = state.logins.values_mut().filter(|l| l.qr_token.is_some() && l.code_sent_at + QR_TTL_SECS > now);
        match shown.max_by_key(|l| l.code_sent_at) {
            Some(login) => {
                login.user_id = Some(user_id);
                true
            }
            None => false,
        }
    }

    pub fn set_logged_in(&self, user_id: i64, logged_in: bool) {
        if let Some(u) = self.lock().users.iter_mut().find(|u| u.id == user_id) {
            u.logged_in = logged_in;
        }
    }
}

fn fault_error(fault: &Fault) -> TelegramError {
    match fault {
        Fault::FloodWait { seconds } => TelegramError::FloodWait { seconds: *seconds },
        Fault::PeerFlood => TelegramError::PeerFlood,
        Fault::PrivacyRestricted => TelegramError::PrivacyRestricted,
        Fault::Unauthorized => TelegramError::Unauthorized("AUTH_KEY_UNREGISTERED".into()),
        Fault::DropAfterDelivery => TelegramError::Transient("connection lost".into()),
    }
}

impl State {
    /// Delivers to `peer` as Telegram would: faults first, then duplicates, then privacy.
    fn deliver(&mut self, account: &Account, peer: Peer, text: &Formatted, media: &str, file: Option<ReceivedFile>, random_id: i64) -> Result<SentMessage, TelegramError> {
        let fault = self.send_faults.pop_front();
        if let Some(f) = fault.as_ref().filter(|f| **f != Fault::DropAfterDelivery) {
            return Err(fault_error(f));
        }
        let me = self.session(account)?.clone();
        if self.random_ids.contains_key(&(me.id, random_id)) {
            return Ok(SentMessage { id: None }); // RANDOM_ID_DUPLICATE
        }
        let to = self
            .users
            .iter()
            .find(|u| u.id == peer.user_id && u.access_hash == peer.access_hash)
            .ok_or_else(|| TelegramError::Rejected("PEER_ID_INVALID".into()))?
            .clone();
        if !to.accepts_strangers && !to.contacts.contains(&me.id) {
            return Err(TelegramError::PrivacyRestricted);
        }
        let id = self.received.len() as i32 + 1;
        self.received.push(ReceivedMessage {
            id,
            from_user_id: me.id,
            from_username: me.username.clone(),
            to_user_id: to.id,
            to_username: to.username.clone(),
            text: text.text.clone(),
            entities: text.entities.clone(),
            media: media.into(),
            file,
            date: now_secs(),
            read: false,
        });
        self.random_ids.insert((me.id, random_id), id);
        match fault {
            Some(f) => Err(fault_error(&f)),
            None => Ok(SentMessage { id: Some(id) }),
        }
    }

    fn session(&self, account: &Account) -> Result<&SimUser, TelegramError> {
        self.users
            .iter()
            .find(|u| u.id == account.user_id && u.logged_in)
            .ok_or_else(|| TelegramError::Unauthorized("AUTH_KEY_UNREGISTERED".into()))
    }

    /// The login's account signs in, unless its cloud password is still to come.
    fn finish_login(&mut self, login: &str) -> Result<LoginStep, LoginError> {
        let found = self.logins.get_mut(login).ok_or(LoginError::CodeExpired)?;
        let user_id = found.user_id.ok_or(LoginError::CodeExpired)?;
        let user = self.users.iter_mut().find(|u| u.id == user_id).ok_or(LoginError::NoAccount)?;
        if user.cloud_password.is_some() && !found.awaiting_password {
            found.awaiting_password = true;
            return Ok(LoginStep::PasswordNeeded { hint: Some("sandbox".into()) });
        }
        user.logged_in = true;
        let done = LoggedIn { user: user.as_telegram_user(), phone: user.phone.trim_start_matches('+').to_owned() };
        self.logins.remove(login);
        Ok(LoginStep::Done(done))
    }

    fn resolve_fault(&mut self) -> Result<(), TelegramError> {
        match self.resolve_faults.pop_front() {
            Some(fault) => Err(fault_error(&fault)),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Telegram for SandboxTelegram {
    async fn resolve_phone(&self, account: &Account, phone: &PhoneE164) -> Result<Option<TelegramUser>, TelegramError> {
        let mut state = self.lock();
        state.resolve_fault()?;
        let me = state.session(account)?.id;
        // A hidden number answers exactly like an unregistered one, as in Telegram.
        Ok(state
            .users
            .iter()
            .find(|u| u.phone == phone.as_str())
            .filter(|u| match u.phone_privacy {
                PhonePrivacy::Everybody => true,
                PhonePrivacy::Contacts => u.contacts.contains(&me),
                PhonePrivacy::Nobody => false,
            })
            .map(SimUser::as_telegram_user))
    }

    async fn resolve_username(&self, account: &Account, username: &TelegramUsername) -> Result<Option<TelegramUser>, TelegramError> {
        let mut state = self.lock();
        state.resolve_fault()?;
        state.session(account)?;
        Ok(state
            .users
            .iter()
            .find(|u| u.username.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(username.as_str())))
            .map(SimUser::as_telegram_user))
    }

    async fn send_text(&self, account: &Account, peer: Peer, text: &Formatted, random_id: i64) -> Result<SentMessage, TelegramError> {
        self.lock().deliver(account, peer, text, "text", None, random_id)
    }

    async fn send_media(&self, account: &Account, peer: Peer, media: &Media, body: BlobReader, caption: &Formatted, random_id: i64) -> Result<SentMessage, TelegramError> {
        // The upload streams in before the send, as with Telegram's upload.saveFilePart.
        let (received_bytes, sha256, head) = consume(body).await?;
        if received_bytes != media.size {
            // Telegram checks the parts against the size the upload announced.
            return Err(TelegramError::Rejected("FILE_PARTS_INVALID".into()));
        }
        let (kind, duration, waveform_bytes) = match &media.kind {
            MediaKind::Photo => ("photo", None, None),
            MediaKind::Document => ("document", None, None),
            MediaKind::Voice { duration_secs, waveform } => ("voice", Some(*duration_secs), Some(waveform.len())),
        };
        let file = ReceivedFile {
            file_name: media.file_name.clone(),
            mime_type: media.mime_type.clone(),
            size: media.size,
            received_bytes,
            sha256,
            format: file_format(&head),
            duration,
            waveform_bytes,
        };
        self.lock().deliver(account, peer, caption, kind, Some(file), random_id)
    }

    async fn send_code(&self, login: &str, phone: &PhoneE164) -> Result<LoginStep, LoginError> {
        let mut state = self.lock();
        state.resolve_fault()?;
        let user_id = state.users.iter().find(|u| u.phone == phone.as_str()).ok_or(LoginError::NoAccount)?.id;
        let phone_code_hash = format!("sandbox-{login}");
        let sim = SimLogin { user_id: Some(user_id), phone_code_hash: phone_code_hash.clone(), code_sent_at: now_secs(), ..SimLogin::default() };
        state.logins.insert(login.to_owned(), sim);
        Ok(LoginStep::CodeSent { phone_code_hash: Secret::new(phone_code_hash) })
    }

    async fn sign_in(&self, login: &str, phone: &PhoneE164, phone_code_hash: &Secret, code: &str) -> Result<LoginStep, LoginError> {
        let mut state = self.lock();
        state.resolve_fault()?;
        let user_id = state.users.iter().find(|u| u.phone == phone.as_str()).map(|u| u.id);
        let found = state.logins.get(login).filter(|l| l.phone_code_hash == phone_code_hash.expose() && l.user_id == user_id);
        let found = found.ok_or(LoginError::CodeExpired)?;
        if code.trim() == EXPIRED_CODE || found.code_sent_at + CODE_TTL_SECS <= now_secs() {
            return Err(LoginError::CodeExpired);
        }
        if code.trim() != LOGIN_CODE {
            return Err(LoginError::InvalidCode);
        }
        state.finish_login(login)
    }

    async fn check_password(&self, login: &str, password: &Secret) -> Result<LoginStep, LoginError> {
        let mut state = self.lock();
        state.resolve_fault()?;
        let found = state.logins.get(login).filter(|l| l.awaiting_password).ok_or(LoginError::CodeExpired)?;
        let user = state.users.iter().find(|u| Some(u.id) == found.user_id).ok_or(LoginError::NoAccount)?;
        if user.cloud_password.as_deref() != Some(password.expose()) {
            return Err(LoginError::InvalidPassword);
        }
        state.finish_login(login)
    }

    async fn qr_login(&self, login: &str) -> Result<LoginStep, LoginError> {
        let mut state = self.lock();
        state.resolve_fault()?;
        let scanned = state.logins.get(login).is_some_and(|l| l.user_id.is_some());
        if scanned {
            return state.finish_login(login);
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let now = now_secs();
        let sim = SimLogin { qr_token: Some(token.clone()), code_sent_at: now, ..SimLogin::default() };
        state.logins.insert(login.to_owned(), sim);
        Ok(LoginStep::Qr { url: format!("tg://login?token={token}"), expires: now + QR_TTL_SECS })
    }

    async fn log_out(&self, account: &Account) -> Result<(), TelegramError> {
        self.set_logged_in(account.user_id, false);
        Ok(())
    }

    async fn contacts(&self, account: &Account) -> Result<Vec<Contact>, TelegramError> {
        let state = self.lock();
        let me = state.session(account)?.clone();
        let contacts = state.users.iter().filter(|u| me.contacts.contains(&u.id));
        Ok(contacts.map(|u| Contact { user: u.as_telegram_user(), phone: Some(u.phone.trim_start_matches('+').to_owned()) }).collect())
    }

    async fn read_outbox_max_id(&self, account: &Account, peer: Peer) -> Result<i32, TelegramError> {
        let state = self.lock();
        let me = state.session(account)?.id;
        let read = state.received.iter().filter(|m| m.from_user_id == me && m.to_user_id == peer.user_id && m.read);
        Ok(read.map(|m| m.id).max().unwrap_or(0))
    }
}
