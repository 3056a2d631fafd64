//! A simulated Telegram behind the telegram port: users with phones, usernames and
//! privacy settings; a log of what they wrote each other; read receipts; each account's
//! updates as `updates.getDifference` hands them out; injectable failures.
//!
//! It models the Telegram methods the port stands for, as core.telegram.org documents them:
//! `messages.sendMessage` (a repeated `random_id` is not delivered twice), `contacts.resolvePhone`
//! (privacy: "Who can find me by my number"), `updates.getDifference` (slices, `differenceTooLong`).
//! Issue 12 replaces it with an MTProto data centre.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::clock::now_secs;
use crate::crypto::Secret;
use crate::domain::formatting::TextEntity;
use crate::domain::{Formatted, PhoneE164, TelegramUsername};
use crate::ports::blobs::BlobReader;
use crate::ports::{
    Account, Contact, Difference, HISTORY_LIMIT, HistoryPage, IncomingKind, IncomingMessage, LoggedIn, LoginError, LoginStep, Media, MediaKind, Peer,
    RemoteFile, SentMessage, Telegram, TelegramError, TelegramUser, Update, UpdatesState,
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
    /// The app holds a session of this account (a connector's); calls without one answer
    /// AUTH_KEY_UNREGISTERED. The clients write from their own apps, which are not simulated.
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
    /// The bytes of a file a client sent, for `upload.getFile`.
    #[serde(skip)]
    pub content: Option<Arc<[u8]>>,
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
    /// `updates.differenceTooLong` for the next difference.
    DifferenceTooLong,
}

/// Which calls an injected fault hits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    #[default]
    Send,
    /// Look-ups and login steps.
    Resolve,
    /// `updates.getDifference`.
    Updates,
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

/// What an account's `getDifference` reports, in `pts` order (an update's `pts` is its
/// position in the log, from 1).
#[derive(Clone, Copy, Debug)]
enum SimUpdate {
    /// A message the account sent or received.
    Message(i32),
    /// `user_id` read the account's messages up to `max_id`.
    ReadOutbox { user_id: i64, max_id: i32 },
}

/// More updates than this behind and Telegram answers `differenceTooLong`.
const TOO_LONG_GAP: usize = 1000;
/// At most this many updates per difference; the rest come in the next (`differenceSlice`).
pub const DIFFERENCE_SLICE: usize = 100;
/// Message ids start from the clock, so a restarted sandbox never reuses an id an app
/// already stored (its state outlives this process).
const ID_EPOCH: i64 = 1_700_000_000;

#[derive(Default)]
struct State {
    users: Vec<SimUser>,
    logins: HashMap<String, SimLogin>,
    /// Every message, in the order written.
    received: Vec<ReceivedMessage>,
    next_message_id: i32,
    /// Each account's updates, by user id.
    updates: HashMap<i64, Vec<SimUpdate>>,
    /// (sender, random_id) of every delivered message: Telegram drops repeats.
    random_ids: HashMap<(i64, i64), i32>,
    send_faults: VecDeque<Fault>,
    resolve_faults: VecDeque<Fault>,
    update_faults: VecDeque<Fault>,
    /// Phone and username look-ups asked so far: what a connector's budget guards.
    lookups: u64,
}

#[derive(Default)]
pub struct SandboxTelegram {
    state: Mutex<State>,
}

impl SandboxTelegram {
    pub fn new(users: Vec<SimUser>) -> Self {
        let next_message_id = i32::try_from((now_secs() - ID_EPOCH).max(1) * 8).unwrap_or(1);
        Self { state: Mutex::new(State { users, next_message_id, ..State::default() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn received(&self) -> Vec<ReceivedMessage> {
        self.lock().received.clone()
    }

    pub fn lookups(&self) -> u64 {
        self.lock().lookups
    }

    pub fn users(&self) -> Vec<SimUser> {
        self.lock().users.clone()
    }

    /// The next `count` calls of `target` fail with `fault`.
    pub fn inject(&self, fault: Fault, target: FaultTarget, count: usize) {
        let mut state = self.lock();
        let queue = match target {
            FaultTarget::Send => &mut state.send_faults,
            FaultTarget::Resolve => &mut state.resolve_faults,
            FaultTarget::Updates => &mut state.update_faults,
        };
        queue.extend(std::iter::repeat_n(fault, count));
    }

    /// The recipient opens the chat: everything sent to them so far is read, and each
    /// sender gets `updateReadHistoryOutbox`. How many messages turned read.
    pub fn read_all(&self, to_user_id: i64) -> usize {
        let mut state = self.lock();
        let mut newest: HashMap<i64, i32> = HashMap::new();
        let mut count = 0;
        for m in state.received.iter_mut().filter(|m| m.to_user_id == to_user_id && !m.read) {
            m.read = true;
            count += 1;
            let max = newest.entry(m.from_user_id).or_default();
            *max = (*max).max(m.id);
        }
        for (sender, max_id) in newest {
            state.log(sender, SimUpdate::ReadOutbox { user_id: to_user_id, max_id });
        }
        count
    }

    /// `from_user_id` writes to `to_user_id` (a client answering a connected account), with
    /// an optional file; the new message's id.
    pub fn reply(&self, from_user_id: i64, to_user_id: i64, text: &str, file: Option<ClientFile>) -> Result<i32, String> {
        let mut state = self.lock();
        let find = |id: i64| state.users.iter().find(|u| u.id == id).cloned().ok_or_else(|| format!("no sandbox user {id}"));
        let (from, to) = (find(from_user_id)?, find(to_user_id)?);
        if text.trim().is_empty() && file.is_none() {
            return Err("write some text or attach a file".into());
        }
        let (media, received_file, content) = match file {
            None => ("text", None, None),
            Some(f) => {
                let received = ReceivedFile {
                    file_name: f.file_name,
                    mime_type: f.mime_type,
                    size: f.bytes.len() as u64,
                    received_bytes: f.bytes.len() as u64,
                    sha256: Sha256::digest(&f.bytes).iter().map(|b| format!("{b:02x}")).collect(),
                    format: file_format(&f.bytes[..f.bytes.len().min(HEAD_BYTES)]),
                    duration: f.duration,
                    waveform_bytes: None,
                };
                (f.kind.as_str(), Some(received), Some(Arc::from(f.bytes)))
            }
        };
        Ok(state.push_message(&from, &to, &Formatted::plain(text), media, received_file, content))
    }
}

/// A file a sandbox client sends.
pub struct ClientFile {
    pub kind: IncomingKind,
    pub file_name: String,
    pub mime_type: String,
    pub bytes: Vec<u8>,
    pub duration: Option<u32>,
}

impl IncomingKind {
    fn as_str(self) -> &'static str {
        match self {
            IncomingKind::Photo => "photo",
            IncomingKind::Document => "document",
            IncomingKind::Voice => "voice",
        }
    }
}

impl SandboxTelegram {

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
        Fault::DifferenceTooLong => TelegramError::Rejected("differenceTooLong answers getDifference only".into()),
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
        let id = self.push_message(&me, &to, text, media, file, None);
        self.random_ids.insert((me.id, random_id), id);
        match fault {
            Some(f) => Err(fault_error(&f)),
            None => Ok(SentMessage { id: Some(id) }),
        }
    }

    /// Writes a message into the log and into both sides' updates.
    fn push_message(&mut self, from: &SimUser, to: &SimUser, text: &Formatted, media: &str, file: Option<ReceivedFile>, content: Option<Arc<[u8]>>) -> i32 {
        let id = self.next_message_id;
        self.next_message_id += 1;
        self.received.push(ReceivedMessage {
            id,
            from_user_id: from.id,
            from_username: from.username.clone(),
            to_user_id: to.id,
            to_username: to.username.clone(),
            text: text.text.clone(),
            entities: text.entities.clone(),
            media: media.into(),
            file,
            date: now_secs(),
            read: false,
            content,
        });
        self.log(from.id, SimUpdate::Message(id));
        self.log(to.id, SimUpdate::Message(id));
        id
    }

    fn log(&mut self, user_id: i64, update: SimUpdate) {
        self.updates.entry(user_id).or_default().push(update);
    }

    fn updates_state(&self, user_id: i64) -> UpdatesState {
        let pts = self.updates.get(&user_id).map_or(0, Vec::len);
        UpdatesState { pts: pts as i32, qts: 0, date: now_secs() as i32, seq: 0 }
    }

    /// A message `me` received, as the app sees it; `None` for one `me` sent.
    fn incoming(&self, me: i64, m: &ReceivedMessage) -> Option<IncomingMessage> {
        if m.to_user_id != me {
            return None;
        }
        let from = self.users.iter().find(|u| u.id == m.from_user_id)?.as_telegram_user();
        let kind = match m.media.as_str() {
            "photo" => Some(IncomingKind::Photo),
            "voice" => Some(IncomingKind::Voice),
            "document" => Some(IncomingKind::Document),
            _ => None,
        };
        let file = kind.zip(m.file.as_ref()).map(|(kind, f)| RemoteFile {
            kind,
            file_name: f.file_name.clone(),
            mime_type: f.mime_type.clone(),
            size: f.size,
            location: m.id.to_le_bytes().to_vec(),
        });
        let text = Formatted { text: m.text.clone(), entities: m.entities.clone() };
        Some(IncomingMessage { id: m.id, from, date: m.date, text, file })
    }

    fn message(&self, id: i32) -> Option<&ReceivedMessage> {
        self.received.iter().find(|m| m.id == id)
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
        state.lookups += 1;
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
        state.lookups += 1;
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

    async fn updates_state(&self, account: &Account) -> Result<UpdatesState, TelegramError> {
        let state = self.lock();
        let me = state.session(account)?.id;
        Ok(state.updates_state(me))
    }

    async fn difference(&self, account: &Account, from: UpdatesState) -> Result<Difference, TelegramError> {
        let mut state = self.lock();
        match state.update_faults.pop_front() {
            Some(Fault::DifferenceTooLong) => return Ok(Difference::TooLong),
            Some(fault) => return Err(fault_error(&fault)),
            None => {}
        }
        let me = state.session(account)?.id;
        let log = state.updates.get(&me).map(Vec::as_slice).unwrap_or_default();
        let start = usize::try_from(from.pts).unwrap_or(0);
        if start > log.len() {
            // A state from before this sandbox restarted: start over from now.
            return Ok(Difference::Updates { updates: Vec::new(), state: state.updates_state(me), more: false });
        }
        if log.len() - start > TOO_LONG_GAP {
            return Ok(Difference::TooLong);
        }
        let end = log.len().min(start + DIFFERENCE_SLICE);
        let updates = log[start..end]
            .iter()
            .filter_map(|u| match *u {
                SimUpdate::Message(id) => state.message(id).and_then(|m| state.incoming(me, m)).map(Update::Message),
                SimUpdate::ReadOutbox { user_id, max_id } => Some(Update::ReadOutbox { user_id, max_id }),
            })
            .collect();
        let next = UpdatesState { pts: end as i32, qts: 0, date: now_secs() as i32, seq: 0 };
        Ok(Difference::Updates { updates, state: next, more: end < log.len() })
    }

    async fn history(&self, account: &Account, peer: Peer, after_id: i32) -> Result<HistoryPage, TelegramError> {
        let state = self.lock();
        let me = state.session(account)?.id;
        let between = |m: &&ReceivedMessage| {
            (m.from_user_id, m.to_user_id) == (me, peer.user_id) || (m.from_user_id, m.to_user_id) == (peer.user_id, me)
        };
        let page: Vec<&ReceivedMessage> = state.received.iter().filter(|m| m.id > after_id).filter(between).take(HISTORY_LIMIT).collect();
        let next_after = page.last().map(|m| m.id).filter(|_| page.len() == HISTORY_LIMIT);
        Ok(HistoryPage { messages: page.iter().filter_map(|m| state.incoming(me, m)).collect(), next_after })
    }

    async fn download(&self, account: &Account, file: &RemoteFile, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64, TelegramError> {
        let content = {
            let state = self.lock();
            let me = state.session(account)?.id;
            let id = file.location.as_slice().try_into().map(i32::from_le_bytes).map_err(|_| TelegramError::Rejected("LOCATION_INVALID".into()))?;
            let found = state.message(id).filter(|m| m.to_user_id == me || m.from_user_id == me);
            found.and_then(|m| m.content.clone()).ok_or_else(|| TelegramError::Rejected("FILE_REFERENCE_INVALID".into()))?
        };
        sink.write_all(&content).await.map_err(|e| TelegramError::Transient(format!("download interrupted: {e}")))?;
        Ok(content.len() as u64)
    }

    async fn read_outbox_max_id(&self, account: &Account, peer: Peer) -> Result<i32, TelegramError> {
        let state = self.lock();
        let me = state.session(account)?.id;
        let read = state.received.iter().filter(|m| m.from_user_id == me && m.to_user_id == peer.user_id && m.read);
        Ok(read.map(|m| m.id).max().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::seed::{self, SALES_ACCOUNT};

    const IVAN: i64 = 1001;

    fn sales() -> Account {
        Account { connector_id: "sales".into(), user_id: SALES_ACCOUNT }
    }

    fn messages(d: &Difference) -> Vec<String> {
        let Difference::Updates { updates, .. } = d else { panic!("{d:?}") };
        updates.iter().filter_map(|u| if let Update::Message(m) = u { Some(m.text.text.clone()) } else { None }).collect()
    }

    #[tokio::test]
    async fn differences_come_in_slices_then_too_long_past_the_gap() {
        let tg = SandboxTelegram::new(seed::telegram_users());
        let start = tg.updates_state(&sales()).await.unwrap();
        for i in 0..DIFFERENCE_SLICE + 5 {
            tg.reply(IVAN, SALES_ACCOUNT, &format!("m{i}"), None).unwrap();
        }
        let first = tg.difference(&sales(), start).await.unwrap();
        let Difference::Updates { state, more: true, .. } = &first else { panic!("{first:?}") };
        assert_eq!(messages(&first).len(), DIFFERENCE_SLICE);
        let rest = tg.difference(&sales(), *state).await.unwrap();
        assert!(matches!(rest, Difference::Updates { more: false, .. }));
        assert_eq!(messages(&rest), (DIFFERENCE_SLICE..DIFFERENCE_SLICE + 5).map(|i| format!("m{i}")).collect::<Vec<_>>());

        for _ in 0..TOO_LONG_GAP {
            tg.reply(IVAN, SALES_ACCOUNT, "more", None).unwrap();
        }
        assert_eq!(tg.difference(&sales(), start).await.unwrap(), Difference::TooLong);
    }

    #[tokio::test]
    async fn reading_tells_the_sender_and_history_pages_forward() {
        let tg = SandboxTelegram::new(seed::telegram_users());
        let start = tg.updates_state(&sales()).await.unwrap();
        let ivan = tg.users().into_iter().find(|u| u.id == IVAN).unwrap().as_telegram_user().peer;
        let ours = tg.send_text(&sales(), ivan, &Formatted::plain("offer"), 7).await.unwrap().id.unwrap();
        let first = tg.reply(IVAN, SALES_ACCOUNT, "thanks", None).unwrap();
        assert_eq!(tg.read_all(IVAN), 1);
        let Difference::Updates { updates, .. } = tg.difference(&sales(), start).await.unwrap() else { panic!() };
        assert!(matches!(updates.as_slice(), [Update::Message(m), Update::ReadOutbox { user_id: IVAN, max_id }] if m.id == first && *max_id == ours));

        for i in 0..HISTORY_LIMIT {
            tg.reply(IVAN, SALES_ACCOUNT, &format!("h{i}"), None).unwrap();
        }
        let page = tg.history(&sales(), ivan, 0).await.unwrap();
        assert_eq!(page.messages.len(), HISTORY_LIMIT - 1, "ours is on the page but not in it");
        assert_eq!(page.messages[0].id, first);
        let next = tg.history(&sales(), ivan, page.next_after.unwrap()).await.unwrap();
        assert_eq!((next.messages.len(), next.next_after), (2, None));
    }
}
