//! Accepting a message from the tab, and showing how its delivery goes.

use serde::{Deserialize, Serialize};

use super::card::telegram_problem;
use super::connectors::{may_use, not_permitted, usable_connector};
use super::openlines::{ChatClient, chat_client};
use super::uploads::{self, FileRef, VoiceRef};
use super::{AppError, ErrorKind, Services, schedule, templates};
use crate::auth::Claims;
use crate::clock::now_millis;
use crate::domain::message::{MAX_PARTS, NewMessage, TEXT_LIMIT, split_text};
use crate::domain::{Budget, Failure, Message, MessageStatus, Part, Publication, PublicationMode, Peer, RecipientKey, SendAs, TelegramUser};
use crate::i18n::{Lang, text};
use crate::work::Job;
use crate::ports::TelegramError;
use crate::repo::RepoError;
use crate::repo::connectors::{Connector, ConnectorStatus};
use crate::repo::resolutions::Resolution;
use crate::repo::safety::Counter;

#[derive(Debug, Deserialize)]
pub struct SendRequest {
    pub connector_id: String,
    pub recipient: String,
    /// Optional when files or a voice note go along.
    #[serde(default)]
    pub text: String,
    pub idempotency_key: String,
    #[serde(default)]
    pub attachments: Vec<FileRef>,
    /// Files go uncompressed (as documents), photos included.
    #[serde(default)]
    pub as_document: bool,
    #[serde(default)]
    pub voice: Option<VoiceRef>,
    #[serde(default)]
    pub publication: PublicationMode,
    #[serde(default)]
    pub create_activity: bool,
    /// Send later: when (unix ms). A time already come (within a minute's grace) sends at once.
    #[serde(default)]
    pub send_at: Option<i64>,
    /// The template the text was filled from: then no placeholder may be left in it.
    #[serde(default)]
    pub template_id: Option<String>,
    /// Which of that template's files go along (by key): each message sends its own copy.
    #[serde(default)]
    pub template_files: Vec<String>,
}

#[derive(Serialize)]
pub struct MessageView {
    pub id: String,
    pub status: MessageStatus,
    pub reason: Option<String>,
    pub text: String,
    /// File names of the attachments.
    pub files: Vec<String>,
    pub voice: bool,
    pub parts: usize,
    pub recipient: String,
    pub connector: String,
    pub created_at: i64,
    pub publication: PublicationMode,
    /// The Open Line chat it was published to, or why not.
    pub published: Option<Publication>,
    /// When a scheduled message goes (or went), unix ms.
    pub send_at: Option<i64>,
}

fn valid_idempotency_key(key: &str) -> bool {
    (1..=100).contains(&key.len()) && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Validates, stores under the client's idempotency key and queues; the message id.
/// A repeated submit with the same key returns the first message's id and sends nothing new.
pub async fn accept(svc: &Services, claims: &Claims, request: SendRequest) -> Result<String, AppError> {
    let lang = claims.lang;
    if !valid_idempotency_key(&request.idempotency_key) {
        return Err(AppError::invalid("bad_idempotency_key", text(lang, "bad_idempotency_key", &[])));
    }
    if request.template_id.is_some() {
        templates::refuse_unfilled(lang, &request.text)?;
    }
    let template_files = templates::chosen_files(svc, claims, request.template_id.as_deref(), &request.template_files).await?;
    if request.attachments.len() + template_files.len() > uploads::MAX_FILES {
        return Err(AppError::invalid("too_many_files", text(lang, "too_many_files", &[("count", &uploads::MAX_FILES.to_string())])));
    }
    let with_files = !request.attachments.is_empty() || !template_files.is_empty() || request.voice.is_some();
    let text_parts = text_parts(lang, &request.text, with_files)?;
    let now = now_millis();
    let send_at = request.send_at.map(|at| schedule::check_send_at(lang, at, now, now, with_files)).transpose()?.filter(|&at| at > now);
    let mut files = uploads::attachments(svc, claims, &request.attachments, request.as_document).await?;
    if let Some(voice) = &request.voice {
        files.push(uploads::voice_attachment(svc, claims, voice).await?);
    }
    let (connector, recipient, user) = recipient_account(svc, claims, &request.connector_id, &request.recipient).await?;

    let new_id = uuid::Uuid::new_v4().to_string();
    let id = svc.messages.claim_idempotency_key(&claims.portal, claims.user, &request.idempotency_key, &new_id).await?;
    if id != new_id {
        if let Some(earlier) = svc.messages.get(&id).await? {
            // The earlier submit may have crashed before queueing: queueing again is safe,
            // the worker sends a message only once.
            if earlier.status == MessageStatus::Queued {
                enqueue(svc, &earlier).await?;
            }
            return Ok(id);
        }
        // The earlier submit stopped between claiming the key and storing: finish its work.
    }
    uploads::use_uploads(svc, claims, &files, &id).await?;
    let copies = uploads::copied_attachments(svc, &claims.portal, &id, &template_files, request.as_document).await?;
    files.extend(copies.ok_or_else(|| templates::file_gone(lang))?);
    admit_from_tab(svc, lang, &connector, user.peer).await?;
    let new = NewMessage {
        id,
        member_id: claims.portal.clone(),
        user_id: claims.user,
        entity: claims.entity,
        connector_id: connector.id.clone(),
        recipient,
        lang,
        publication: request.publication,
        create_activity: request.create_activity,
        origin: None,
    };
    let file_parts = files.into_iter().map(|file| Part { text: String::new(), media: Some(file), sent: false, telegram_id: None });
    let mut message = Message::queued(new, &user, text_parts.into_iter().chain(file_parts).collect(), now);
    if let Some(at) = send_at {
        message.schedule(at);
        // In the index before the message exists: a crash between them leaves only an entry
        // the sweep drops, never a scheduled message nothing would send.
        svc.schedule.add(at, &message.id).await?;
    }
    svc.messages.create(&message).await?;
    if message.status == MessageStatus::Queued {
        enqueue(svc, &message).await?;
    }
    if message.create_activity {
        // The activity shows "queued" (or "scheduled") at once; the worker updates it as the message goes.
        publish_job(&message).enqueue(svc.queue.as_ref(), std::time::Duration::ZERO).await.map_err(|e| AppError::internal(format!("queue: {e:#}")))?;
    }
    svc.connectors.set_last_used(&claims.portal, claims.user, &connector.id).await?;
    tracing::info!(message_id = %message.id, parts = message.parts.len(), send_at = ?message.send_at, "message accepted");
    Ok(message.id)
}

/// The text as Telegram's parts; empty only when files or a voice note go along.
pub fn text_parts(lang: Lang, message_text: &str, with_files: bool) -> Result<Vec<Part>, AppError> {
    let message_text = message_text.trim();
    if message_text.is_empty() && !with_files {
        return Err(AppError::invalid("empty_text", text(lang, "empty_text", &[])));
    }
    let parts = if message_text.is_empty() { Vec::new() } else { split_text(message_text, TEXT_LIMIT) };
    if parts.len() > MAX_PARTS {
        let args = [("parts", MAX_PARTS.to_string()), ("limit", TEXT_LIMIT.to_string())];
        let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
        return Err(AppError::invalid("too_long", text(lang, "too_long", &args)));
    }
    Ok(parts.into_iter().map(|text| Part { text, media: None, sent: false, telegram_id: None }).collect())
}

/// The connector, the recipient and their Telegram account, if this card may write to them.
pub async fn recipient_account(svc: &Services, claims: &Claims, connector_id: &str, recipient: &str) -> Result<(Connector, RecipientKey, TelegramUser), AppError> {
    let found = card_recipient(svc, claims, connector_id, recipient).await?;
    if found.0.status == ConnectorStatus::NeedsLogin {
        return Err(AppError::invalid("connector_unavailable", text(claims.lang, "connector_unavailable", &[])));
    }
    Ok(found)
}

/// The connector, the recipient and their Telegram account, if this card may see them.
pub async fn card_recipient(svc: &Services, claims: &Claims, connector_id: &str, recipient: &str) -> Result<(Connector, RecipientKey, TelegramUser), AppError> {
    let lang = claims.lang;
    let connector = usable_connector(svc, claims, connector_id).await?;
    let unknown_recipient = || AppError::invalid("unknown_recipient", text(lang, "unknown_recipient", &[]));
    let recipient: RecipientKey = recipient.parse().map_err(|_| unknown_recipient())?;
    if !svc.cards.recipients(&claims.portal, claims.entity).await?.contains(&recipient) {
        return Err(unknown_recipient());
    }
    let user = match &recipient {
        RecipientKey::OpenLine(chat) => match chat_client(svc, &connector, chat).await? {
            ChatClient::Found(user) => Some(user),
            ChatClient::OtherConnector { name } => {
                return Err(AppError::invalid("other_connector", text(lang, "open_line_chat_other_connector", &[("connector", &name)])));
            }
            ChatClient::Unknown => None,
        },
        key => match svc.resolutions.get(&connector.id, key).await? {
            Some(Resolution::Found { user }) => Some(user),
            _ => None,
        },
    };
    let user = user.ok_or_else(|| AppError::invalid("recipient_not_on_telegram", text(lang, "recipient_not_on_telegram", &[])))?;
    Ok((connector, recipient, user))
}

/// Whether a message to `peer` may go: to someone this connector never wrote to it opens a
/// new chat, refused while Telegram limits the account and beyond the day's budget of new chats.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    Limited,
    OverBudget { limit: u32 },
}

pub async fn admit_chat(svc: &Services, connector: &Connector, peer: Peer) -> Result<Admission, RepoError> {
    if svc.safety.knows_chat(&connector.id, peer.user_id).await? {
        return Ok(Admission::Admitted);
    }
    if connector.status == ConnectorStatus::Limited {
        return Ok(Admission::Limited);
    }
    let limit = svc.limits.budgets(connector).new_chats_per_day;
    if !svc.safety.take(&connector.id, Counter::NewChats, limit).await? {
        tracing::warn!(connector_id = connector.id, limit, "daily new-chat budget used up");
        return Ok(Admission::OverBudget { limit });
    }
    svc.safety.remember_chat(&connector.id, peer).await?;
    Ok(Admission::Admitted)
}

async fn admit_from_tab(svc: &Services, lang: Lang, connector: &Connector, peer: Peer) -> Result<(), AppError> {
    match admit_chat(svc, connector, peer).await? {
        Admission::Admitted => Ok(()),
        Admission::Limited => Err(AppError::invalid("connector_limited", text(lang, "connector_limited", &[]))),
        Admission::OverBudget { limit } => Err(AppError::invalid("budget_new_chats", text(lang, "budget_new_chats", &[("limit", &limit.to_string())]))),
    }
}

/// The message's send job, on its connector's queue group.
pub async fn enqueue(svc: &Services, message: &Message) -> Result<(), AppError> {
    let job = Job::Send { message_id: message.id.clone(), connector_id: message.connector_id.clone() };
    job.enqueue(svc.queue.as_ref(), std::time::Duration::ZERO).await.map_err(|e| AppError::internal(format!("queue: {e:#}")))
}

/// The Open Line job of a message: publication and activity.
pub fn publish_job(message: &Message) -> Job {
    Job::Publish { message_id: message.id.clone(), member_id: message.member_id.clone() }
}

pub async fn message_view(svc: &Services, claims: &Claims, id: &str) -> Result<MessageView, AppError> {
    let (message, connectors) = card_message(svc, claims, id).await?;
    Ok(view(claims.lang, &message, &connectors))
}

pub fn message_not_found() -> AppError {
    AppError::new(ErrorKind::NotFound, "message_not_found", "No such message.")
}

/// A message of the token's own card through a connector this user may use, and the
/// portal's connectors: a tab on one record reads or changes nothing of another.
pub async fn card_message(svc: &Services, claims: &Claims, id: &str) -> Result<(Message, Vec<Connector>), AppError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(message_not_found());
    }
    let message = svc.messages.get(id).await?.filter(|m| m.member_id == claims.portal && m.entity == claims.entity).ok_or_else(message_not_found)?;
    let connectors = svc.connectors.list(&claims.portal).await?;
    if !visible(claims, &message, &connectors) {
        return Err(not_permitted(claims.lang));
    }
    Ok((message, connectors))
}

/// The card's conversation through the connectors this user may use.
pub async fn recent_on_card(svc: &Services, claims: &Claims) -> Result<Vec<MessageView>, AppError> {
    let messages = svc.messages.recent_on_card(&claims.portal, claims.entity, 30).await?;
    let connectors = svc.connectors.list(&claims.portal).await?;
    Ok(messages.iter().filter(|m| visible(claims, m, &connectors)).map(|m| view(claims.lang, m, &connectors)).collect())
}

/// A message went through a connector this user may use (or one since disconnected, which
/// guards nobody's account any more).
fn visible(claims: &Claims, message: &Message, connectors: &[Connector]) -> bool {
    connectors.iter().find(|c| c.id == message.connector_id).is_none_or(|c| may_use(claims, c))
}

pub fn view(lang: Lang, m: &Message, connectors: &[Connector]) -> MessageView {
    let reason = match (&m.failure, m.retry_at) {
        (Some(failure), _) => Some(failure_text(lang, failure)),
        (None, Some(at)) if m.status == MessageStatus::Queued => {
            let seconds = ((at - now_millis()) / 1000).max(1) as u32;
            Some(telegram_problem(lang, &TelegramError::FloodWait { seconds }))
        }
        _ => None,
    };
    MessageView {
        id: m.id.clone(),
        status: m.status,
        reason,
        text: m.text(),
        files: m.attachments().filter(|a| !matches!(a.send_as, SendAs::Voice { .. })).map(|a| a.file_name.clone()).collect(),
        voice: m.attachments().any(|a| matches!(a.send_as, SendAs::Voice { .. })),
        parts: m.parts.len(),
        recipient: m.recipient_name.clone(),
        connector: connectors.iter().find(|c| c.id == m.connector_id).map(|c| c.name.clone()).unwrap_or_default(),
        created_at: m.created_at,
        publication: m.publication,
        published: m.published.clone(),
        send_at: m.send_at,
    }
}

pub fn failure_text(lang: Lang, failure: &Failure) -> String {
    match failure {
        Failure::Privacy => text(lang, "privacy_explanation", &[]),
        Failure::UsernameNotFound => text(lang, "username_not_found", &[]),
        Failure::PrivacyRestricted => text(lang, "privacy_restricted", &[]),
        Failure::ConnectorUnauthorized => text(lang, "connector_unauthorized", &[]),
        Failure::ConnectorLimited => text(lang, "connector_limited", &[]),
        Failure::Rejected { detail } => text(lang, "send_failed", &[("detail", detail)]),
        Failure::EmptyText => text(lang, "empty_text", &[]),
        Failure::NoConnector => text(lang, "automation_no_connector", &[]),
        Failure::NoRecipient => text(lang, "automation_no_recipient", &[]),
        Failure::TemplateGone => text(lang, "template_not_found", &[]),
        Failure::TemplateUnfilled { fields } => text(lang, "automation_template_unfilled", &[("fields", &fields.join(", "))]),
        Failure::OverBudget { budget, limit } => {
            let key = match budget {
                Budget::NewChats => "budget_new_chats",
                Budget::PhoneLookups => "budget_phone_lookups",
            };
            text(lang, key, &[("limit", &limit.to_string())])
        }
    }
}
