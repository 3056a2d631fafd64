//! A message's life: (scheduled →) queued → sending → sent → read, or failed with a reason;
//! a scheduled one may be cancelled until it leaves.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::automation::Origin;
use super::lease::{Lease, Leased};
use super::publication::{Publication, PublicationMode};
use super::{EntityRef, Peer, RecipientKey, TelegramUser};
use crate::i18n::Lang;

/// Telegram's limit for one text message, counted in UTF-16 code units as Telegram does.
pub const TEXT_LIMIT: usize = 4096;
/// More parts than this is not a chat message any more; refused at the door.
pub const MAX_PARTS: usize = 10;
/// How far ahead a message may be scheduled.
pub const MAX_AHEAD_DAYS: i64 = 365;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Waits in the due-time index for its `send_at`; editable and cancellable until then.
    Scheduled,
    Queued,
    Sending,
    Sent,
    Read,
    Failed,
    Cancelled,
}

impl MessageStatus {
    /// Nothing more will be sent for a message in a final state.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Sent | Self::Read | Self::Failed | Self::Cancelled)
    }
}

/// Why a message was not delivered; rendered in the user's language when shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Failure {
    /// No account, or the number is hidden by the owner's privacy settings.
    Privacy,
    UsernameNotFound,
    /// The recipient does not accept messages from strangers.
    PrivacyRestricted,
    /// The connector's Telegram session is no longer authorised.
    ConnectorUnauthorized,
    /// Telegram limited the account for spam (PEER_FLOOD).
    ConnectorLimited,
    /// Telegram refused for another reason.
    Rejected { detail: String },
    /// Automation was given nothing to say.
    EmptyText,
    /// Automation found no account to send from: none chosen and none the responsible used.
    NoConnector,
    /// Automation found nothing on the record to write to: no phone, username or link.
    NoRecipient,
    /// The account's daily budget was used up, and its administrator chose failing over waiting.
    OverBudget { budget: Budget, limit: u32 },
    /// Automation named a template that was deleted since.
    TemplateGone,
    /// Automation's template has placeholders the record could not fill (`CONTACT.PHONE`).
    TemplateUnfilled { fields: Vec<String> },
}

/// The daily budgets of an account that automation can use up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    NewChats,
    PhoneLookups,
}

/// How a file goes to Telegram.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SendAs {
    Photo,
    Document,
    /// `waveform` is Telegram's packed 5-bit format.
    Voice { duration_secs: u32, waveform: Vec<u8> },
}

/// A file of a message, in blob storage under `key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub key: String,
    pub file_name: String,
    pub mime_type: String,
    pub size: u64,
    pub send_as: SendAs,
}

/// One part of a message as Telegram sees it: a text, or a file (with an empty text).
/// Text parts come first, then one part per file; each is one send with its own `random_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Attachment>,
    pub sent: bool,
    /// Telegram's id, when Telegram told us (not for a send it reported as a duplicate).
    pub telegram_id: Option<i32>,
}

/// A message from a card to one Telegram account, and how far its delivery got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub member_id: String,
    /// The portal user who sent it.
    pub user_id: u64,
    pub entity: EntityRef,
    pub connector_id: String,
    pub recipient: RecipientKey,
    pub recipient_name: String,
    pub peer: Peer,
    pub parts: Vec<Part>,
    pub status: MessageStatus,
    pub failure: Option<Failure>,
    /// While waiting out a Telegram flood limit: when the next try is due (unix ms).
    pub retry_at: Option<i64>,
    pub created_at: i64,
    /// The sender's language, for what the portal shows of this message (the activity).
    #[serde(default = "default_lang")]
    pub lang: Lang,
    /// The client's name as Telegram gives it, for the Open Line chat.
    #[serde(default)]
    pub client_name: String,
    #[serde(default)]
    pub publication: PublicationMode,
    /// Set once published (or given up): a redelivered job never publishes twice.
    #[serde(default)]
    pub published: Option<Publication>,
    #[serde(default)]
    pub create_activity: bool,
    #[serde(default)]
    pub activity: Option<ActivityShown>,
    /// Set before the activity is first created: a retry after a crash looks it up
    /// instead of creating a second one.
    #[serde(default)]
    pub activity_requested: bool,
    /// Held by the openline job publishing it or updating its activity: a concurrent job
    /// for the same message waits instead of doing either again.
    #[serde(default)]
    pub lease: Option<Lease>,
    /// Set when automation asked for it rather than someone in the tab: told how it went.
    #[serde(default)]
    pub origin: Option<Origin>,
    /// When a scheduled message is due (unix ms); kept once it left, to show when it was meant to.
    #[serde(default)]
    pub send_at: Option<i64>,
}

impl Leased for Message {
    fn lease(&mut self) -> &mut Option<Lease> {
        &mut self.lease
    }
}

fn default_lang() -> Lang {
    Lang::En
}

/// The CRM activity of a message and the status it shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityShown {
    pub id: u64,
    pub status: MessageStatus,
}

/// Who writes what to whom, for a new message.
pub struct NewMessage {
    pub id: String,
    pub member_id: String,
    pub user_id: u64,
    pub entity: EntityRef,
    pub connector_id: String,
    pub recipient: RecipientKey,
    pub lang: Lang,
    pub publication: PublicationMode,
    pub create_activity: bool,
    pub origin: Option<Origin>,
}

impl Message {
    /// A message to `user`, queued at `now` (unix ms): nothing of it sent, published or shown yet.
    pub fn queued(new: NewMessage, user: &TelegramUser, parts: Vec<Part>, now: i64) -> Self {
        Self {
            id: new.id,
            member_id: new.member_id,
            user_id: new.user_id,
            entity: new.entity,
            connector_id: new.connector_id,
            recipient: new.recipient,
            recipient_name: user.username.as_ref().map(|u| format!("@{u}")).unwrap_or_else(|| user.display_name()),
            peer: user.peer,
            parts,
            status: MessageStatus::Queued,
            failure: None,
            retry_at: None,
            created_at: now,
            lang: new.lang,
            client_name: user.display_name(),
            publication: new.publication,
            published: None,
            create_activity: new.create_activity,
            activity: None,
            activity_requested: false,
            lease: None,
            origin: new.origin,
            send_at: None,
        }
    }

    /// What a tab shows of it: a change of any of these is news to the tabs watching.
    pub fn shown(&self) -> impl PartialEq + use<> {
        let parts: Vec<(String, bool)> = self.parts.iter().map(|p| (p.text.clone(), p.sent)).collect();
        (self.status, self.failure.clone(), self.retry_at, self.send_at, parts, self.published.clone())
    }

    /// Held back until `at` (unix ms), when the sweep of the due-time index queues it.
    pub fn schedule(&mut self, at: i64) {
        self.status = MessageStatus::Scheduled;
        self.send_at = Some(at);
    }

    /// The sweep found it due at `due`: queued, unless it was cancelled or moved to another
    /// time meanwhile. `false` when it was not scheduled for `due`.
    pub fn release(&mut self, due: i64) -> bool {
        let due_now = self.status == MessageStatus::Scheduled && self.send_at == Some(due);
        if due_now {
            self.status = MessageStatus::Queued;
        }
        due_now
    }

    /// Released for `due` and not yet picked up by the worker: a sweep cut short after the
    /// release queues it again.
    pub fn released_for(&self, due: i64) -> bool {
        self.status == MessageStatus::Queued && self.send_at == Some(due)
    }

    /// `false` once it left (or was cancelled already).
    pub fn cancel(&mut self) -> bool {
        let scheduled = self.status == MessageStatus::Scheduled;
        if scheduled {
            self.status = MessageStatus::Cancelled;
        }
        scheduled
    }

    /// New text parts (the files stay) and a new time; `false` once it left.
    pub fn reschedule(&mut self, text_parts: Vec<Part>, at: i64) -> bool {
        if self.status != MessageStatus::Scheduled {
            return false;
        }
        self.parts.retain(|p| p.media.is_some());
        self.parts.splice(0..0, text_parts);
        self.send_at = Some(at);
        true
    }

    /// Claims the message for a send attempt; `false` when it is already final or not due yet.
    pub fn begin_sending(&mut self) -> bool {
        if self.status.is_final() || self.status == MessageStatus::Scheduled {
            return false;
        }
        self.status = MessageStatus::Sending;
        self.retry_at = None;
        true
    }

    /// The first part not yet sent, with its index.
    pub fn next_part(&self) -> Option<(usize, &Part)> {
        self.parts.iter().enumerate().find(|(_, p)| !p.sent)
    }

    pub fn part_sent(&mut self, index: usize, telegram_id: Option<i32>) {
        let part = &mut self.parts[index];
        part.sent = true;
        part.telegram_id = telegram_id;
        if self.parts.iter().all(|p| p.sent) {
            self.status = MessageStatus::Sent;
        }
    }

    /// Back to the queue until `retry_at` (unix ms).
    pub fn wait_until(&mut self, retry_at: i64) {
        self.status = MessageStatus::Queued;
        self.retry_at = Some(retry_at);
    }

    pub fn fail(&mut self, failure: Failure) {
        self.status = MessageStatus::Failed;
        self.failure = Some(failure);
    }

    /// The recipient read it; `false` unless it was sent and not yet read.
    pub fn mark_read(&mut self) -> bool {
        let was_sent = self.status == MessageStatus::Sent;
        if was_sent {
            self.status = MessageStatus::Read;
        }
        was_sent
    }

    /// The newest Telegram id of its parts; reading up to it means reading all.
    pub fn last_telegram_id(&self) -> Option<i32> {
        self.parts.iter().filter_map(|p| p.telegram_id).max()
    }

    /// The text the user wrote (its text parts joined).
    pub fn text(&self) -> String {
        self.parts.iter().filter(|p| p.media.is_none()).map(|p| p.text.as_str()).collect::<Vec<_>>().join("\n")
    }

    pub fn attachments(&self) -> impl Iterator<Item = &Attachment> {
        self.parts.iter().filter_map(|p| p.media.as_ref())
    }

    /// Due for the Open Line: delivered, to be published, and not published yet.
    pub fn awaits_publication(&self) -> bool {
        self.publication != PublicationMode::None
            && matches!(self.status, MessageStatus::Sent | MessageStatus::Read)
            && self.published.is_none()
    }

    /// Its activity is missing or shows an older status.
    pub fn activity_stale(&self) -> bool {
        self.create_activity && self.activity.is_none_or(|a| a.status != self.status)
    }
}

/// Splits text into parts Telegram accepts, preferring line breaks, then spaces.
pub fn split_text(text: &str, limit: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while utf16_len(rest) > limit {
        let hard = byte_index_at_utf16(rest, limit);
        let window = &rest[..hard];
        let cut = window
            .rfind('\n')
            .or_else(|| window.rfind(char::is_whitespace))
            .filter(|&i| i > 0)
            .unwrap_or(hard);
        parts.push(rest[..cut].trim_end().to_owned());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

fn byte_index_at_utf16(s: &str, units: usize) -> usize {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += c.len_utf16();
        if used > units {
            return i;
        }
    }
    s.len()
}

/// Telegram's `random_id` for part `part` of our message: the same on every retry, so
/// Telegram itself drops a repeated send.
pub fn random_id(message_id: &str, part: usize) -> i64 {
    let digest = Sha256::new().chain_update(message_id.as_bytes()).chain_update(part.to_le_bytes()).finalize();
    i64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(parts: &[&str]) -> Message {
        Message {
            id: "m".into(),
            member_id: "p".into(),
            user_id: 1,
            entity: EntityRef { kind: crate::domain::EntityType::Lead, id: 1 },
            connector_id: "c".into(),
            recipient: "username:ivan_p".parse().unwrap(),
            recipient_name: "Ivan".into(),
            peer: Peer { user_id: 1, access_hash: 2 },
            parts: parts.iter().map(|t| Part { text: t.to_string(), media: None, sent: false, telegram_id: None }).collect(),
            status: MessageStatus::Queued,
            failure: None,
            retry_at: None,
            created_at: 0,
            lang: Lang::En,
            client_name: "Ivan Petrov".into(),
            publication: PublicationMode::Incoming,
            published: None,
            create_activity: true,
            activity: None,
            activity_requested: false,
            lease: None,
            origin: None,
            send_at: None,
        }
    }

    #[test]
    fn a_scheduled_message_leaves_once_and_only_for_its_time() {
        let mut m = message(&["a"]);
        m.schedule(1_000);
        assert!(!m.begin_sending(), "not before the sweep releases it");
        assert!(!m.release(999), "an index entry of an earlier time releases nothing");
        assert!(m.release(1_000));
        assert!(m.released_for(1_000));
        assert!(!m.release(1_000), "a second sweep releases nothing more");
        assert!(!m.cancel(), "too late to cancel once queued");
        assert!(m.begin_sending());
    }

    #[test]
    fn a_scheduled_message_is_edited_or_cancelled_until_it_leaves() {
        let mut m = message(&["old"]);
        let file = Attachment { key: "k".into(), file_name: "a.pdf".into(), mime_type: "application/pdf".into(), size: 3, send_as: SendAs::Document };
        m.parts.push(Part { text: String::new(), media: Some(file), sent: false, telegram_id: None });
        m.schedule(1_000);
        let new = vec![Part { text: "new".into(), media: None, sent: false, telegram_id: None }];
        assert!(m.reschedule(new.clone(), 2_000));
        assert_eq!((m.text(), m.attachments().count(), m.send_at), ("new".to_owned(), 1, Some(2_000)));
        assert!(!m.release(1_000), "the old time is no longer due");
        assert!(m.cancel());
        assert!(!m.reschedule(new, 3_000) && !m.release(2_000) && !m.begin_sending());
        assert!(m.status.is_final());
    }

    #[test]
    fn published_once_after_delivery_and_read_only_when_sent() {
        let mut m = message(&["a"]);
        assert!(!m.awaits_publication(), "not before it is delivered");
        assert!(!m.mark_read());
        m.begin_sending();
        m.part_sent(0, Some(7));
        assert!(m.awaits_publication() && m.activity_stale());
        m.published = Some(Publication::Published { ol_chat_id: Some(1) });
        m.activity = Some(ActivityShown { id: 3, status: MessageStatus::Sent });
        assert!(!m.awaits_publication() && !m.activity_stale());
        assert_eq!(m.last_telegram_id(), Some(7));
        assert!(m.mark_read());
        assert!(!m.mark_read());
        assert!(m.activity_stale(), "the activity must now show read");
    }

    #[test]
    fn sent_once_every_part_is() {
        let mut m = message(&["a", "b"]);
        assert!(m.begin_sending());
        assert_eq!(m.next_part().map(|(i, p)| (i, p.text.as_str())), Some((0, "a")));
        m.part_sent(0, Some(10));
        assert_eq!(m.status, MessageStatus::Sending);
        assert_eq!(m.next_part().map(|(i, p)| (i, p.text.as_str())), Some((1, "b")));
        m.part_sent(1, None);
        assert_eq!((m.status, m.next_part()), (MessageStatus::Sent, None));
        assert!(!m.begin_sending(), "a sent message is never sent again");
    }

    #[test]
    fn files_are_parts_after_the_text_and_not_in_it() {
        let mut m = message(&["hello"]);
        let file = Attachment { key: "k".into(), file_name: "a.pdf".into(), mime_type: "application/pdf".into(), size: 3, send_as: SendAs::Document };
        m.parts.push(Part { text: String::new(), media: Some(file.clone()), sent: false, telegram_id: None });
        assert!(m.begin_sending());
        m.part_sent(0, Some(1));
        let (index, part) = m.next_part().expect("the file is next");
        assert_eq!((index, part.media.as_ref()), (1, Some(&file)));
        assert_ne!(random_id(&m.id, 0), random_id(&m.id, 1), "each part has its own random_id");
        // A crash before recording the file part: the retry finds the same part and random_id.
        assert_eq!(m.next_part().map(|(i, _)| i), Some(1));
        m.part_sent(1, Some(2));
        assert_eq!(m.status, MessageStatus::Sent);
        assert_eq!(m.text(), "hello");
        assert_eq!(m.attachments().count(), 1);
        let stored: Message = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(stored, m);
    }

    #[test]
    fn waits_and_fails() {
        let mut m = message(&["a"]);
        m.begin_sending();
        m.wait_until(99);
        assert_eq!((m.status, m.retry_at), (MessageStatus::Queued, Some(99)));
        assert!(m.begin_sending());
        m.fail(Failure::Privacy);
        assert!(!m.begin_sending());
        assert_eq!(m.failure, Some(Failure::Privacy));
    }

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_text("hello", TEXT_LIMIT), ["hello"]);
    }

    #[test]
    fn splits_at_line_breaks_then_spaces() {
        assert_eq!(split_text("aaaa\nbbbb cc", 6), ["aaaa", "bbbb", "cc"]);
        assert_eq!(split_text("abcdefgh", 3), ["abc", "def", "gh"]);
    }

    #[test]
    fn counts_utf16_like_telegram() {
        let emoji = "😀".repeat(3000); // 2 UTF-16 units each
        let parts = split_text(&emoji, TEXT_LIMIT);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| utf16_len(p) <= TEXT_LIMIT));
    }

    #[test]
    fn random_ids_are_stable_and_distinct() {
        // Stable across processes and releases: a retry after a restart must reuse it.
        assert_eq!(random_id("m1", 0), 6_627_857_985_381_838_406);
        assert_ne!(random_id("m1", 0), random_id("m1", 1));
        assert_ne!(random_id("m1", 0), random_id("m2", 0));
    }

    proptest! {
        #[test]
        fn parts_fit_and_keep_every_word(words in proptest::collection::vec("[a-zа-я😀]{1,12}", 1..400), limit in 32usize..200) {
            let text = words.join(" ");
            let parts = split_text(&text, limit);
            prop_assert!(parts.iter().all(|p| utf16_len(p) <= limit && !p.is_empty()));
            let joined = parts.join(" ");
            prop_assert_eq!(joined.split_whitespace().collect::<Vec<_>>(), text.split_whitespace().collect::<Vec<_>>());
        }
    }
}
