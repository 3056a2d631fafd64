//! The sandbox Telegram: two MTProto data centres on loopback ([`dc`]) over one world of
//! users with phones, usernames and privacy settings, the messages they wrote each other,
//! read receipts, each account's updates as `updates.getDifference` hands them out, auth
//! keys and files. grammers, the app's only Telegram client, talks to it as to Telegram.
//!
//! What each method answers follows its core.telegram.org page and the TL schema of layer
//! 230 ([`rpc`]); the world keeps what Telegram keeps, and it persists ([`journal`]): a
//! restarted sandbox remembers what it delivered, which `random_id`s it saw and whose keys
//! are logged in.
//!
//! Simplification, said once: message ids come from one counter for every mailbox. Telegram
//! numbers each user's private-chat mailbox on its own; ids from one increasing counter are
//! still increasing in every mailbox, which is all a client may rely on.

pub mod dc;
mod files;
mod journal;
pub mod rpc;
mod srp;
mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha1::Digest;

use crate::clock::now_secs;
use crate::domain::formatting::TextEntity;
use crate::adapters::grammers::{KeyRegistry, RegisteredKeys};
use crate::ports::IncomingKind;
use journal::{Event, Journal};

/// "Who can find me by my number" (core.telegram.org/api/privacy, `inputPrivacyKeyAddedByPhone`),
/// which also stands here for who may see the number (`inputPrivacyKeyPhoneNumber`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhonePrivacy {
    Everybody,
    /// "My contacts": the number resolves only for accounts in the owner's contacts.
    Contacts,
    /// "My contacts" with nobody in them: Telegram offers no "Nobody" here, this is its effect.
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
    /// The data centre the account lives on: logins elsewhere are sent there (`PHONE_MIGRATE_X`).
    pub dc: i32,
    /// Some auth key is logged in as this account (the app's session of a connector). The
    /// clients write from their own apps, which are not simulated.
    pub logged_in: bool,
    /// The cloud password (two-step verification), if the account has one; never shown.
    #[serde(skip)]
    pub cloud_password: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
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
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub file: Option<ReceivedFile>,
    pub date: i64,
    pub read: bool,
    /// When the sender last edited it (core.telegram.org/constructor/message `edit_date`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub edit_date: Option<i64>,
}

/// A file as the sandbox Telegram holds it: counted and hashed when its upload finished.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReceivedFile {
    /// Telegram's document or photo id, and the data centre holding its bytes.
    pub id: i64,
    pub dc: i32,
    pub file_name: String,
    pub mime_type: String,
    /// The size the sender declared, and the bytes that actually arrived.
    pub size: u64,
    pub received_bytes: u64,
    pub sha256: String,
    /// `ogg_opus`, `ogg`, `webm`, `jpeg`, `png`, `pdf` or `other`, from the first bytes.
    pub format: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duration: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub waveform: Option<Vec<u8>>,
    /// The waveform's length, for a glance.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub waveform_bytes: Option<usize>,
}

/// A failure the next matching call answers with, as Telegram would.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    FloodWait { seconds: u32 },
    PeerFlood,
    PrivacyRestricted,
    /// `AUTH_KEY_UNREGISTERED` (401).
    Unauthorized,
    /// Any RPC error: `{"kind":"rpc","code":420,"message":"FROZEN_METHOD_INVALID"}`.
    Rpc { code: i32, message: String },
    /// The call is executed, then the connection drops before its answer.
    DropAfterDelivery,
    /// `updates.differenceTooLong` for the next difference.
    DifferenceTooLong,
    /// A repeated `random_id` answers the original message instead of `RANDOM_ID_DUPLICATE`.
    DuplicateAsOriginal,
    /// The account moves to data centre `dc`: the next call answers `USER_MIGRATE_<dc>`.
    UserMigrate { dc: i32 },
    /// The file asked for moves to data centre `dc` (`FILE_MIGRATE_<dc>`).
    FileMigrate { dc: i32 },
    /// `contacts.importContacts` is past the account's limit: its numbers come back in `retry_contacts`.
    ImportLimited,
    /// The users in the answer are `min` constructors (as Telegram sends in some contexts).
    MinUsers,
    /// `account.getPassword` names SRP parameters a client cannot check (`g` = 8).
    BadSrp,
}

/// Which calls an injected fault hits: a group, or one method by its TL name
/// (`upload.saveBigFilePart`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    /// `messages.sendMessage` and `messages.sendMedia`.
    #[default]
    Send,
    /// Look-ups (`contacts.*`) and login steps (`auth.*`, `account.getPassword`).
    Resolve,
    /// `updates.getDifference`.
    Updates,
    /// `upload.saveFilePart` and `upload.saveBigFilePart`.
    Upload,
    /// `upload.getFile`.
    Download,
    /// Every call an authorised account makes.
    Any,
    #[serde(untagged)]
    Method(String),
}

impl FaultTarget {
    fn hits(&self, method: &str) -> bool {
        match self {
            FaultTarget::Send => matches!(method, "messages.sendMessage" | "messages.sendMedia"),
            FaultTarget::Resolve => method.starts_with("contacts.") || method.starts_with("auth.") || method == "account.getPassword",
            FaultTarget::Updates => method == "updates.getDifference",
            FaultTarget::Upload => method.starts_with("upload.save"),
            FaultTarget::Download => method == "upload.getFile",
            FaultTarget::Any => true,
            FaultTarget::Method(name) => name == method,
        }
    }
}

/// The sandbox's login code; any other is wrong, except [`EXPIRED_CODE`].
pub const LOGIN_CODE: &str = "12345";
/// A code the sandbox treats as expired.
pub const EXPIRED_CODE: &str = "00000";
/// How long a code or a QR token stays valid.
const CODE_TTL_SECS: i64 = 300;
const QR_TTL_SECS: i64 = 30;
/// The sandbox's data centres: 1 and 2, as Telegram numbers its first ones.
pub const DCS: [i32; 2] = [1, 2];

/// A login under way on one auth key (Telegram ties `phone_code_hash` to the key that asked).
#[derive(Clone, Debug, Default)]
struct SimLogin {
    phone: String,
    phone_code_hash: String,
    code_sent_at: i64,
    /// The account that passed the code (or scanned the QR code) and still owes its cloud password.
    awaiting_password: Option<i64>,
    qr: Option<QrToken>,
}

#[derive(Clone, Debug)]
struct QrToken {
    token: Vec<u8>,
    shown_at: i64,
    /// Who accepted it on their phone (`auth.acceptLoginToken`).
    accepted_by: Option<i64>,
}

/// What an account's `getDifference` reports, in `pts` order (an update's `pts` is its
/// position in the log, from 1).
#[derive(Clone, Copy, Debug)]
enum SimUpdate {
    /// A message the account sent or received.
    Message(i32),
    /// `user_id` read the account's messages up to `max_id`.
    ReadOutbox { user_id: i64, max_id: i32 },
    /// A message of the account's chats was edited (`updateEditMessage`).
    Edit(i32),
    /// A message of the account's chats was deleted (`updateDeleteMessages`).
    Delete(i32),
}

/// More updates than this behind and `getDifference` answers `differenceTooLong`.
pub const TOO_LONG_GAP: usize = 1000;
/// At most this many updates per difference; the rest come in the next (`differenceSlice`).
pub const DIFFERENCE_SLICE: usize = 100;
/// Message ids start from the clock, so a sandbox started on a fresh data directory never
/// reuses an id an app stored before.
const ID_EPOCH: i64 = 1_700_000_000;

/// An auth key as a data centre knows it.
#[derive(Clone, Debug)]
struct AuthKey {
    dc: i32,
    key: [u8; 256],
    /// The account logged in with it, if any.
    user_id: Option<i64>,
}

/// What the calls made: for `GET /sandbox/telegram/stats`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Connections accepted, by data centre.
    pub connections: HashMap<i32, u64>,
    /// RPC calls, by TL method name.
    pub calls: HashMap<String, u64>,
    /// Encrypted messages received from clients (each a request, a resend or a container).
    pub frames: u64,
    /// `Updates` pushed to sessions without being asked (one per session reached).
    pub pushes: u64,
    /// The same, by the account (Telegram user id) calling or pushed to.
    pub accounts: HashMap<i64, AccountStats>,
}

/// What one account's sessions did and were told.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AccountStats {
    /// Connections that made an API call as the account (other than only files').
    pub connections: u64,
    /// RPC calls made as the account, by TL method name.
    pub calls: HashMap<String, u64>,
    /// `Updates` pushed to its sessions.
    pub pushes: u64,
    /// Its sessions that receive its updates now (live connections, one per auth key).
    pub listening: u64,
}

/// What a connection is told from outside its own calls.
#[derive(Debug)]
pub(crate) enum Push {
    /// `Updates`, serialized: sent as a content-related message of its own.
    Updates(Vec<u8>),
    /// The data centre drops the connection (a restart, a network change).
    Close,
}

/// The session that receives an auth key's updates: the connection of its most recent API
/// call other than a file's (core.telegram.org/api/updates#subscribing-to-updates: "When any
/// high-level API query is executed on behalf of an authorized user, the session identifier
/// will be stored in association with the user identifier and the current authorization key
/// identifier ... except these file handling methods"; "only one notification will be sent at
/// a time, per key, to the most recent session"). The stricter reading: a connection that
/// only logged in, only uploaded or downloaded, or never called at all gets nothing.
struct Subscriber {
    /// When it last called, in calls made on the data centres: the most recent win.
    last_call: u64,
    push: tokio::sync::mpsc::UnboundedSender<Push>,
}

/// How many of an account's sessions get each update: "the server will find a list of the
/// 10 most recent active sessions and send messages to those sessions" (core.telegram.org/api/updates).
const PUSHED_SESSIONS: usize = 10;

#[derive(Default)]
struct State {
    users: Vec<SimUser>,
    logins: HashMap<i64, SimLogin>,
    keys: HashMap<i64, AuthKey>,
    /// Every message, in the order written.
    received: Vec<ReceivedMessage>,
    next_message_id: i32,
    /// Each account's updates, by user id.
    updates: HashMap<i64, Vec<SimUpdate>>,
    /// (sender, random_id) of every delivered message, and its id: Telegram drops repeats.
    random_ids: HashMap<(i64, i64), i32>,
    faults: VecDeque<(Fault, FaultTarget)>,
    /// Phone and username look-ups asked so far: what a connector's budget guards.
    lookups: u64,
    stats: Stats,
    /// `srp_id` → the server's secret `b` of an `account.getPassword` answer.
    srp: HashMap<i64, srp::Challenge>,
    /// Authorizations exported for another data centre (`auth.exportAuthorization`).
    exported: HashMap<i64, (i64, Vec<u8>)>,
    /// The cloud passwords' verifiers, made once per process (PBKDF2 is slow on purpose).
    verifiers: HashMap<i64, srp::Verifier>,
    /// Each auth key's session that receives its updates, by key id.
    subscribers: HashMap<i64, Subscriber>,
    /// Calls made so far (what orders the subscribers).
    calls_made: u64,
}

pub struct SandboxTelegram {
    state: Mutex<State>,
    journal: Journal,
    files: files::Files,
    /// The data centres' loopback addresses, once they listen.
    addresses: Mutex<HashMap<i32, std::net::SocketAddr>>,
    /// What the server salts derive from (they change hourly, as Telegram's do).
    salt_secret: [u8; 32],
    /// Where the data centres' ports are kept between runs.
    ports_file: std::path::PathBuf,
}

impl SandboxTelegram {
    /// The world seeded with `users`, and what `data_dir` remembers of an earlier run.
    pub fn open(users: Vec<SimUser>, data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("sandbox-telegram");
        let next_message_id = i32::try_from((now_secs() - ID_EPOCH).max(1) * 8).unwrap_or(1);
        let mut state = State { users, next_message_id, ..State::default() };
        let journal = Journal::open(&dir.join("journal.jsonl"), |event| state.apply(event))?;
        let mut salt_secret = [0u8; 32];
        getrandom(&mut salt_secret);
        let files = files::Files::open(&dir)?;
        Ok(Self { state: Mutex::new(state), journal, files, addresses: Mutex::default(), salt_secret, ports_file: dir.join("ports.json") })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `event` and writes it down before anyone learns of it.
    fn record(&self, state: &mut State, event: Event) {
        self.record_by(state, None, event);
    }

    /// [`Self::record`] of what a call with auth key `acting` did: the updates it makes are
    /// pushed to every account's sessions but that one, which learns them from its answer
    /// (core.telegram.org/api/updates: the results of methods that change state carry the
    /// updates, and are applied as pushed ones are).
    fn record_by(&self, state: &mut State, acting: Option<i64>, event: Event) {
        self.journal.append(&event);
        let mut listening: Vec<i64> = state.subscribers.keys().filter_map(|k| state.keys.get(k)?.user_id).collect();
        listening.sort();
        listening.dedup();
        let before: Vec<(i64, i32)> = listening.into_iter().map(|user| (user, state.pts(user))).collect();
        state.apply(event);
        for (user, from) in before {
            if state.pts(user) > from {
                state.push(user, from, acting);
            }
        }
    }

    /// A connection's call as auth key `key_id` on it: unless a file's, the connection now
    /// receives the key's updates, if the key is logged in. `counted`: the connection has
    /// been counted among the account's already.
    pub(crate) fn called(&self, key_id: i64, method: &str, push: &tokio::sync::mpsc::UnboundedSender<Push>, counted: &mut bool) {
        let mut state = self.lock();
        state.calls_made += 1;
        let Some(user_id) = state.keys.get(&key_id).and_then(|k| k.user_id) else { return };
        let account = state.stats.accounts.entry(user_id).or_default();
        *account.calls.entry(method.to_owned()).or_default() += 1;
        if method.starts_with("upload.") {
            return;
        }
        if !std::mem::replace(counted, true) {
            account.connections += 1;
        }
        let last_call = state.calls_made;
        state.subscribers.insert(key_id, Subscriber { last_call, push: push.clone() });
    }

    /// The data centres drop every connection that receives `user_id`'s updates, as a restart
    /// or a network change would; how many.
    pub fn drop_connections(&self, user_id: i64) -> usize {
        let state = self.lock();
        let sessions = state.subscribers.iter().filter(|(key, _)| state.keys.get(key).is_some_and(|k| k.user_id == Some(user_id)));
        sessions.filter(|(_, s)| s.push.send(Push::Close).is_ok()).count()
    }

    pub fn received(&self) -> Vec<ReceivedMessage> {
        self.lock().received.clone()
    }

    /// How many messages it holds (without copying them out).
    pub fn message_count(&self) -> usize {
        self.lock().received.len()
    }

    pub fn lookups(&self) -> u64 {
        self.lock().lookups
    }

    pub fn stats(&self) -> Stats {
        let state = self.lock();
        let mut stats = state.stats.clone();
        for (key, subscriber) in &state.subscribers {
            if let Some(user_id) = state.keys.get(key).and_then(|k| k.user_id).filter(|_| !subscriber.push.is_closed()) {
                stats.accounts.entry(user_id).or_default().listening += 1;
            }
        }
        stats
    }

    pub fn users(&self) -> Vec<SimUser> {
        let state = self.lock();
        let logged_in: HashSet<i64> = state.keys.values().filter_map(|k| k.user_id).collect();
        state.users.iter().map(|u| SimUser { logged_in: logged_in.contains(&u.id), ..u.clone() }).collect()
    }

    /// The next `count` calls of `target` fail with `fault`.
    pub fn inject(&self, fault: Fault, target: FaultTarget, count: usize) {
        self.lock().faults.extend(std::iter::repeat_n((fault, target), count));
    }

    /// Where data centre `dc` listens.
    pub fn address(&self, dc: i32) -> Option<std::net::SocketAddr> {
        self.addresses.lock().unwrap_or_else(|p| p.into_inner()).get(&dc).copied()
    }

    /// The recipient opens the chat: everything sent to them so far is read, and each
    /// sender gets `updateReadHistoryOutbox`. How many messages turned read.
    pub fn read_all(&self, to_user_id: i64) -> usize {
        let mut state = self.lock();
        let unread = state.received.iter().filter(|m| m.to_user_id == to_user_id && !m.read).count();
        if unread > 0 {
            self.record(&mut state, Event::Read { to_user_id });
        }
        unread
    }

    /// `from_user_id` writes to `to_user_id` (a client answering a connected account), with
    /// an optional file; the new message's id.
    pub fn reply(&self, from_user_id: i64, to_user_id: i64, text: &str, file: Option<ClientFile>) -> Result<i32, String> {
        if text.trim().is_empty() && file.is_none() {
            return Err("write some text or attach a file".into());
        }
        let from = self.lock().users.iter().find(|u| u.id == from_user_id).cloned().ok_or_else(|| format!("no sandbox user {from_user_id}"))?;
        if !self.lock().users.iter().any(|u| u.id == to_user_id) {
            return Err(format!("no sandbox user {to_user_id}"));
        }
        let (media, received) = match file {
            None => ("text", None),
            Some(f) => {
                let stored = self.files.store_bytes(&f.bytes).map_err(|e| e.to_string())?;
                let received = ReceivedFile {
                    id: stored.id,
                    dc: from.dc,
                    file_name: f.file_name,
                    mime_type: f.mime_type,
                    size: stored.size,
                    received_bytes: stored.size,
                    sha256: stored.sha256,
                    format: stored.format.into(),
                    duration: f.duration,
                    waveform: None,
                    waveform_bytes: None,
                };
                (f.kind.as_str(), Some(received))
            }
        };
        let mut state = self.lock();
        let message = state.new_message(from_user_id, to_user_id, text.to_owned(), Vec::new(), media, received);
        let id = message.id;
        self.record(&mut state, Event::Message { message, random_id: None });
        Ok(id)
    }

    /// `from_user_id` edits a message they wrote (from their own app): the text changes for
    /// both sides, each gets `updateEditMessage`.
    pub fn edit(&self, from_user_id: i64, message_id: i32, text: &str) -> Result<(), String> {
        if text.trim().is_empty() {
            return Err("an edit keeps some text".into());
        }
        let mut state = self.lock();
        let m = state.message(message_id).filter(|m| m.from_user_id == from_user_id).ok_or_else(|| format!("user {from_user_id} wrote no message {message_id}"))?;
        if m.text == text {
            return Err("the text is the same".into());
        }
        self.record(&mut state, Event::Edited { id: message_id, text: text.to_owned(), entities: Vec::new(), edit_date: now_secs() });
        Ok(())
    }

    /// `from_user_id` deletes a message of their chat for both sides (`revoke`): it is gone,
    /// each side gets `updateDeleteMessages`.
    pub fn delete(&self, from_user_id: i64, message_id: i32) -> Result<(), String> {
        let mut state = self.lock();
        let known = state.message(message_id).is_some_and(|m| m.from_user_id == from_user_id || m.to_user_id == from_user_id);
        if !known {
            return Err(format!("user {from_user_id} has no message {message_id}"));
        }
        self.record(&mut state, Event::Deleted { ids: vec![message_id] });
        Ok(())
    }

    /// Someone scans the newest QR code on their phone as `user_id` (`auth.acceptLoginToken`
    /// from their app); `false` when none is shown.
    pub fn scan_qr(&self, user_id: i64) -> bool {
        let mut state = self.lock();
        let now = now_secs();
        let shown = state.logins.values_mut().filter_map(|l| l.qr.as_mut()).filter(|q| q.shown_at + QR_TTL_SECS > now && q.accepted_by.is_none());
        match shown.max_by_key(|q| q.shown_at) {
            Some(qr) => {
                qr.accepted_by = Some(user_id);
                true
            }
            None => false,
        }
    }

    /// How many messages went from `from_user_id` to `to_user_id`, by their text: the
    /// persistent count a crash test checks for losses and duplicates.
    pub fn delivered(&self, from_user_id: i64, to_user_id: i64) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for m in self.lock().received.iter().filter(|m| m.from_user_id == from_user_id && m.to_user_id == to_user_id) {
            *counts.entry(m.text.clone()).or_default() += 1;
        }
        counts
    }
}

/// A new sandbox session's auth keys, one per data centre, registered as the key exchange
/// would have made them (grammers trusts only Telegram's RSA keys, so the sandbox cannot run
/// the exchange): the out-of-band step the adapter's `Servers::Registered` takes for every
/// new session. Logged in as `user_id`, on that account's DC, when given (an account the
/// sandbox seeds as already connected).
impl KeyRegistry for SandboxTelegram {
    fn register_keys(&self, user_id: Option<i64>) -> RegisteredKeys {
        let mut state = self.lock();
        let home = user_id.and_then(|id| state.user(id)).map_or(2, |u| u.dc);
        let mut dcs = Vec::new();
        for dc in DCS {
            let Some(address) = self.address(dc) else { continue };
            let mut key = [0u8; 256];
            getrandom(&mut key);
            self.record(&mut state, Event::KeyRegistered { dc, key: key.to_vec(), user_id: user_id.filter(|_| home == dc) });
            dcs.push((dc, address, key));
        }
        RegisteredKeys { home_dc: home, dcs }
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

fn getrandom(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the OS gives random bytes");
}

fn random_i64() -> i64 {
    let mut b = [0u8; 8];
    getrandom(&mut b);
    i64::from_le_bytes(b)
}

/// key_id = the lower 64 bits of SHA1(auth_key) (core.telegram.org/mtproto/description#key-identifier-auth-key-id).
fn key_id(key: &[u8; 256]) -> i64 {
    let digest = sha1::Sha1::digest(key);
    i64::from_le_bytes(digest[12..20].try_into().expect("8 bytes"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl State {
    fn apply(&mut self, event: Event) {
        match event {
            Event::KeyRegistered { dc, key, user_id } => {
                let Ok(key) = <[u8; 256]>::try_from(key.as_slice()) else { return };
                self.keys.insert(key_id(&key), AuthKey { dc, key, user_id });
            }
            Event::KeyAuthorized { key_id, user_id } => {
                if let Some(k) = self.keys.get_mut(&key_id) {
                    k.user_id = user_id;
                }
            }
            Event::Message { message, random_id } => {
                self.next_message_id = self.next_message_id.max(message.id + 1);
                if let Some(random_id) = random_id {
                    self.random_ids.insert((message.from_user_id, random_id), message.id);
                }
                self.log(message.from_user_id, SimUpdate::Message(message.id));
                self.log(message.to_user_id, SimUpdate::Message(message.id));
                self.received.push(message);
            }
            Event::Edited { id, text, entities, edit_date } => {
                let Some(m) = self.message_mut(id) else { return };
                (m.text, m.entities, m.edit_date) = (text, entities, Some(edit_date));
                let sides = [m.from_user_id, m.to_user_id];
                for user in sides {
                    self.log(user, SimUpdate::Edit(id));
                }
            }
            Event::Deleted { ids } => {
                for id in ids {
                    let Some(at) = self.received.binary_search_by_key(&id, |m| m.id).ok() else { continue };
                    let m = self.received.remove(at);
                    self.log(m.from_user_id, SimUpdate::Delete(id));
                    self.log(m.to_user_id, SimUpdate::Delete(id));
                }
            }
            Event::Read { to_user_id } => {
                let mut newest: HashMap<i64, i32> = HashMap::new();
                for m in self.received.iter_mut().filter(|m| m.to_user_id == to_user_id && !m.read) {
                    m.read = true;
                    let max = newest.entry(m.from_user_id).or_default();
                    *max = (*max).max(m.id);
                }
                let mut senders: Vec<_> = newest.into_iter().collect();
                senders.sort();
                for (sender, max_id) in senders {
                    self.log(sender, SimUpdate::ReadOutbox { user_id: to_user_id, max_id });
                }
            }
            Event::Contacts { owner, added, removed } => {
                if let Some(u) = self.users.iter_mut().find(|u| u.id == owner) {
                    u.contacts.retain(|c| !removed.contains(c));
                    for id in added {
                        if !u.contacts.contains(&id) {
                            u.contacts.push(id);
                        }
                    }
                }
            }
            Event::UserMoved { user_id, dc } => {
                if let Some(u) = self.users.iter_mut().find(|u| u.id == user_id) {
                    u.dc = dc;
                }
            }
            Event::FileMoved { file_id, dc } => {
                for m in &mut self.received {
                    if let Some(f) = m.file.as_mut().filter(|f| f.id == file_id) {
                        f.dc = dc;
                    }
                }
            }
        }
    }

    fn new_message(&mut self, from: i64, to: i64, text: String, entities: Vec<TextEntity>, media: &str, file: Option<ReceivedFile>) -> ReceivedMessage {
        let id = self.next_message_id;
        self.next_message_id += 1;
        let username = |id: i64| self.users.iter().find(|u| u.id == id).and_then(|u| u.username.clone());
        ReceivedMessage {
            id,
            from_user_id: from,
            from_username: username(from),
            to_user_id: to,
            to_username: username(to),
            text,
            entities,
            media: media.into(),
            file,
            date: now_secs(),
            read: false,
            edit_date: None,
        }
    }

    fn log(&mut self, user_id: i64, update: SimUpdate) {
        self.updates.entry(user_id).or_default().push(update);
    }

    fn pts(&self, user_id: i64) -> i32 {
        self.updates.get(&user_id).map_or(0, Vec::len) as i32
    }

    fn user(&self, id: i64) -> Option<&SimUser> {
        self.users.iter().find(|u| u.id == id)
    }

    fn message(&self, id: i32) -> Option<&ReceivedMessage> {
        // Ids grow with the log: a binary search finds one among many.
        let at = self.received.binary_search_by_key(&id, |m| m.id).ok()?;
        self.received.get(at)
    }

    fn message_mut(&mut self, id: i32) -> Option<&mut ReceivedMessage> {
        let at = self.received.binary_search_by_key(&id, |m| m.id).ok()?;
        self.received.get_mut(at)
    }

    /// Pushes `user_id`'s updates after `from` to their most recent sessions, but the one of
    /// auth key `acting`.
    fn push(&mut self, user_id: i64, from: i32, acting: Option<i64>) {
        self.subscribers.retain(|_, s| !s.push.is_closed());
        let Some(updates) = rpc::pushed(self, user_id, from) else { return };
        let mut sessions: Vec<&Subscriber> = self
            .subscribers
            .iter()
            .filter(|(key, _)| Some(**key) != acting && self.keys.get(key).is_some_and(|k| k.user_id == Some(user_id)))
            .map(|(_, s)| s)
            .collect();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.last_call));
        let reached = sessions.iter().take(PUSHED_SESSIONS).filter(|s| s.push.send(Push::Updates(updates.clone())).is_ok()).count() as u64;
        self.stats.pushes += reached;
        self.stats.accounts.entry(user_id).or_default().pushes += reached;
    }

    /// The next fault aimed at `method`, if any.
    fn fault(&mut self, method: &str) -> Option<Fault> {
        let at = self.faults.iter().position(|(_, target)| target.hits(method))?;
        self.faults.remove(at).map(|(f, _)| f)
    }
}
