//! The card: its connectors and the Telegram accounts found in its fields.

use serde::Serialize;
use serde_json::Value;

use super::connectors::{may_use, not_permitted};
use super::install::CONNECTOR_ID;
use super::openlines::{ChatClient, chat_client};
use super::portal::{PortalClient, batch_record};
use super::{AppError, Services};
use crate::auth::Claims;
use crate::domain::contact::contact_points;
use crate::domain::{ContactPoint, EntityRef, EntityType, FieldSource, OpenLineChat, RecipientKey, TelegramUser};
use crate::i18n::{Lang, text};
use crate::ports::TelegramError;
use crate::repo::connectors::{Connector, ConnectorStatus};
use crate::work::Job;
use crate::repo::resolutions::Resolution;
use crate::repo::safety::{Counter, Paced};

#[derive(Serialize)]
pub struct CardView {
    pub entity: EntityView,
    pub connectors: Vec<ConnectorView>,
    pub connector_id: Option<String>,
    pub recipients: Vec<RecipientView>,
    /// Contact sync progress of the selected connector; `None` when not syncing.
    pub sync: Option<SyncProgress>,
    /// The zone "send later" is picked in: the user's own (a CRM record has no time zone
    /// field); `None` when the user keeps the portal's, and the tab uses the browser's.
    pub time_zone: Option<String>,
}

#[derive(Serialize)]
pub struct SyncProgress {
    pub done: u64,
    pub total: u64,
}

#[derive(Serialize)]
pub struct EntityView {
    #[serde(rename = "type")]
    pub kind: EntityType,
    pub id: u64,
    pub title: String,
}

#[derive(Serialize)]
pub struct ConnectorView {
    pub id: String,
    pub name: String,
    pub phone: String,
    pub username: Option<String>,
    pub status: ConnectorStatus,
}

#[derive(Serialize)]
pub struct SourceView {
    #[serde(flatten)]
    pub field: FieldSource,
    pub label: String,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    Found,
    NotFound,
    Error,
}

#[derive(Serialize)]
pub struct AccountView {
    pub user_id: i64,
    pub name: String,
    pub username: Option<String>,
}

#[derive(Serialize)]
pub struct RecipientView {
    pub key: RecipientKey,
    pub source: SourceView,
    pub state: RecipientState,
    pub account: Option<AccountView>,
    pub explanation: Option<String>,
}

pub async fn load_card(svc: &Services, claims: &Claims, connector: Option<&str>) -> Result<CardView, AppError> {
    // Only the connectors this user may send from are offered; asking for another is refused.
    let (connectors, others): (Vec<Connector>, Vec<Connector>) = svc.connectors.list(&claims.portal).await?.into_iter().partition(|c| may_use(claims, c));
    if connector.is_some_and(|id| others.iter().any(|c| c.id == id)) {
        return Err(not_permitted(claims.lang));
    }
    let selected = select_connector(svc, claims, &connectors, connector).await?;
    let sync = match selected {
        Some(c) if c.status != ConnectorStatus::NeedsLogin => contact_sync(svc, c).await?,
        _ => None,
    };
    let mut portal = PortalClient::user(svc, &claims.portal, claims.user).await?;
    let ContactRecord { title, points, .. } = read_record(&mut portal, claims.entity, false).await?;
    let keys: Vec<RecipientKey> = points.iter().map(|p| p.key.clone()).collect();
    svc.cards.save_recipients(&claims.portal, claims.entity, &keys).await?;
    let mut recipients = Vec::with_capacity(points.len());
    for point in points {
        let state = match selected {
            Some(c) => resolve(svc, c, &point.key).await,
            None => Err(RecipientProblem::NoConnector),
        };
        recipients.push(recipient_view(claims.lang, point, state));
    }
    Ok(CardView {
        entity: EntityView { kind: claims.entity.kind, id: claims.entity.id, title },
        connectors: connectors.iter().map(connector_view).collect(),
        connector_id: selected.map(|c| c.id.clone()),
        recipients,
        sync,
        time_zone: claims.time_zone.clone(),
    })
}

/// The connector's contact sync while it runs; the first card opened with a connector
/// starts it. Recipients resolve on demand meanwhile.
pub async fn contact_sync(svc: &Services, connector: &Connector) -> Result<Option<SyncProgress>, AppError> {
    let progress = match svc.resolutions.sync(&connector.id).await? {
        Some(progress) => progress,
        None => {
            if svc.resolutions.start_sync(&connector.id).await? {
                let job = Job::SyncContacts { member_id: connector.member_id.clone(), connector_id: connector.id.clone() };
                if let Err(e) = job.enqueue(svc.queue.as_ref(), std::time::Duration::ZERO).await {
                    // Unclaimed, so the next card starts it again.
                    svc.resolutions.cancel_sync(&connector.id).await?;
                    return Err(AppError::internal(format!("queue: {e:#}")));
                }
            }
            svc.resolutions.sync(&connector.id).await?.unwrap_or_default()
        }
    };
    Ok((!progress.finished).then_some(SyncProgress { done: progress.done, total: progress.total }))
}

/// The asked-for connector, else the one this user used last, else the first connected one.
async fn select_connector<'c>(
    svc: &Services,
    claims: &Claims,
    connectors: &'c [Connector],
    asked: Option<&str>,
) -> Result<Option<&'c Connector>, AppError> {
    if let Some(id) = asked {
        return connectors
            .iter()
            .find(|c| c.id == id)
            .map(Some)
            .ok_or_else(|| AppError::invalid("unknown_connector", "No such Telegram connector on this portal."));
    }
    let last = svc.connectors.last_used(&claims.portal, claims.user).await?;
    Ok(connectors
        .iter()
        .find(|c| Some(&c.id) == last.as_ref())
        .or_else(|| connectors.iter().find(|c| c.status == ConnectorStatus::Connected))
        .or(connectors.first()))
}

fn connector_view(c: &Connector) -> ConnectorView {
    ConnectorView { id: c.id.clone(), name: c.name.clone(), phone: c.phone.clone(), username: c.username.clone(), status: c.status }
}

/// A record as its card shows it, and where its client can be written to.
pub struct ContactRecord {
    pub title: String,
    /// The record's fields as `crm.<type>.get` returns them.
    pub fields: Value,
    pub points: Vec<ContactPoint>,
    /// Its linked contacts and company as `crm.<type>.get` returns them, in the order read.
    pub linked: Vec<(EntityType, Value)>,
    /// Its responsible employee (`ASSIGNED_BY_ID`) as `user.get` returns them, when asked for.
    pub responsible: Option<Value>,
}

/// Reads the record and, for a lead or a deal, its linked contacts and company, in two
/// batches, with the token `portal` holds (the user's own in the tab, the portal's for
/// automation); with `with_responsible` also the record's responsible employee, in the second
/// batch (`user.get` by `ID`, `api-reference/user/user-get.md`).
pub async fn read_record(portal: &mut PortalClient<'_>, entity: EntityRef, with_responsible: bool) -> Result<ContactRecord, AppError> {
    let region = portal.svc.phone_region_of(&portal.portal);
    let EntityRef { kind, id } = entity;
    let mut first = vec![("record".to_owned(), format!("{}?id={id}", kind.get_method()))];
    if kind == EntityType::Deal {
        first.push(("contacts".to_owned(), format!("crm.deal.contact.items.get?id={id}")));
    }
    let batch = portal.batch(&first).await?;
    let record = batch_record(&batch, "record")?;
    let title = record_title(kind, &record);
    let mut points = Vec::new();
    contact_points(kind, id, &title, &record, region, CONNECTOR_ID, &mut points);

    let linked_ids = linked_records(kind, &record, batch.results.get("contacts"));
    let mut commands: Vec<(String, String)> = linked_ids
        .iter()
        .map(|(t, i)| (format!("{}_{i}", t.as_str()), format!("{}?id={i}", t.get_method())))
        .collect();
    let responsible_id = id_field(&record, "ASSIGNED_BY_ID").filter(|_| with_responsible);
    if let Some(user) = responsible_id {
        commands.push(("responsible".to_owned(), format!("user.get?FILTER[ID]={user}")));
    }
    let mut linked = Vec::new();
    let mut responsible = None;
    if !commands.is_empty() {
        let batch = portal.batch(&commands).await?;
        for ((linked_kind, linked_id), (key, _)) in linked_ids.iter().zip(&commands) {
            // A linked record the user may not see is skipped, not an error for the whole card.
            let Some(found) = batch.results.get(key) else { continue };
            let linked_title = record_title(*linked_kind, found);
            contact_points(*linked_kind, *linked_id, &linked_title, found, region, CONNECTOR_ID, &mut points);
            linked.push((*linked_kind, found.clone()));
        }
        responsible = batch.results.get("responsible").and_then(|users| users.get(0)).cloned();
    }
    Ok(ContactRecord { title, fields: record, points, linked, responsible })
}

pub fn id_field(record: &Value, field: &str) -> Option<u64> {
    match record.get(field)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
    .filter(|&id| id > 0)
}

/// Contacts and company linked to a deal or a lead.
fn linked_records(kind: EntityType, record: &Value, deal_contacts: Option<&Value>) -> Vec<(EntityType, u64)> {
    let mut out = Vec::new();
    match kind {
        EntityType::Deal => {
            let contacts = deal_contacts.and_then(Value::as_array).into_iter().flatten();
            out.extend(contacts.filter_map(|c| id_field(c, "CONTACT_ID")).map(|i| (EntityType::Contact, i)));
        }
        EntityType::Lead => out.extend(id_field(record, "CONTACT_ID").map(|i| (EntityType::Contact, i))),
        EntityType::Contact | EntityType::Company => return out,
    }
    out.extend(id_field(record, "COMPANY_ID").map(|i| (EntityType::Company, i)));
    out
}

fn record_title(kind: EntityType, record: &Value) -> String {
    let field = |name: &str| record.get(name).and_then(Value::as_str).unwrap_or("").trim().to_owned();
    match kind {
        EntityType::Contact => format!("{} {}", field("NAME"), field("LAST_NAME")).trim().to_owned(),
        _ => field("TITLE"),
    }
}

pub enum RecipientProblem {
    NoConnector,
    NotFound,
    /// The connector's phone look-ups for today are used up.
    OverBudget(u32),
    Telegram(TelegramError),
    /// An Open Line chat with no chat link of ours.
    ChatUnknown,
    /// An Open Line chat of another connector, by its name.
    OtherConnector(String),
}

fn storage_problem(e: crate::repo::RepoError) -> RecipientProblem {
    RecipientProblem::Telegram(TelegramError::Transient(format!("storage: {e}")))
}

/// How long a card waits for the connector's next phone look-up slot.
const LOOKUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(8);

/// The account behind a key: an Open Line chat's from its chat link; others from the
/// cache, else asked of Telegram and cached.
pub async fn resolve(svc: &Services, connector: &Connector, key: &RecipientKey) -> Result<TelegramUser, RecipientProblem> {
    if let RecipientKey::OpenLine(chat) = key {
        return open_line_client(svc, connector, chat).await;
    }
    let cached = svc.resolutions.get(&connector.id, key).await.ok().flatten();
    let resolution = match cached {
        Some(found) => found,
        None => {
            if let RecipientKey::Phone(_) = key {
                phone_lookup_allowed(svc, connector).await?;
            }
            let asked = ask_telegram(svc, connector, key).await;
            let resolution = match asked.map_err(RecipientProblem::Telegram)? {
                Some(user) => Resolution::Found { user },
                None => Resolution::NotFound,
            };
            if let Err(e) = svc.resolutions.save(&connector.id, key, &resolution).await {
                tracing::warn!("resolution not cached: {e}");
            }
            resolution
        }
    };
    match resolution {
        Resolution::Found { user } => Ok(user),
        Resolution::NotFound => Err(RecipientProblem::NotFound),
    }
}

/// One look-up over one connection.
async fn ask_telegram(svc: &Services, connector: &Connector, key: &RecipientKey) -> Result<Option<TelegramUser>, TelegramError> {
    let telegram = svc.telegram.connect(&connector.account()).await?;
    let asked = match key {
        RecipientKey::Phone(p) => telegram.resolve_phone(p, connector.keep_imported_contacts).await,
        RecipientKey::Username(u) => telegram.resolve_username(u).await,
        RecipientKey::OpenLine(_) => unreachable!("answered from its chat link before"),
    };
    telegram.close().await;
    asked
}

async fn open_line_client(svc: &Services, connector: &Connector, chat: &OpenLineChat) -> Result<TelegramUser, RecipientProblem> {
    match chat_client(svc, connector, chat).await.map_err(storage_problem)? {
        ChatClient::Found(user) => Ok(user),
        ChatClient::OtherConnector { name } => Err(RecipientProblem::OtherConnector(name)),
        ChatClient::Unknown => Err(RecipientProblem::ChatUnknown),
    }
}

/// Paces phone look-ups (one per `phone_pace` per account) and keeps them in the day's budget.
async fn phone_lookup_allowed(svc: &Services, connector: &Connector) -> Result<(), RecipientProblem> {
    if !svc.safety.slot(&connector.id, Paced::PhoneLookup, svc.limits.phone_pace, LOOKUP_PATIENCE).await.map_err(storage_problem)? {
        let seconds = svc.limits.phone_pace.as_secs().max(1) as u32;
        return Err(RecipientProblem::Telegram(TelegramError::FloodWait { seconds }));
    }
    let limit = svc.limits.budgets(connector).phone_lookups_per_day;
    if !svc.safety.take(&connector.id, Counter::PhoneLookups, limit).await.map_err(storage_problem)? {
        tracing::warn!(connector_id = connector.id, limit, "daily phone look-up budget used up");
        return Err(RecipientProblem::OverBudget(limit));
    }
    Ok(())
}

fn recipient_view(lang: Lang, point: ContactPoint, state: Result<TelegramUser, RecipientProblem>) -> RecipientView {
    let label = source_label(lang, &point.source);
    let (state, account, explanation) = match state {
        Ok(user) => (
            RecipientState::Found,
            Some(AccountView { user_id: user.peer.user_id, name: user.display_name(), username: user.username }),
            None,
        ),
        Err(RecipientProblem::NotFound) => {
            let key = if matches!(point.key, RecipientKey::Phone(_)) { "privacy_explanation" } else { "username_not_found" };
            (RecipientState::NotFound, None, Some(text(lang, key, &[])))
        }
        Err(RecipientProblem::NoConnector) => (RecipientState::Error, None, Some(text(lang, "choose_connector", &[]))),
        Err(RecipientProblem::OverBudget(limit)) => {
            (RecipientState::Error, None, Some(text(lang, "budget_phone_lookups", &[("limit", &limit.to_string())])))
        }
        Err(RecipientProblem::Telegram(e)) => (RecipientState::Error, None, Some(telegram_problem(lang, &e))),
        Err(RecipientProblem::ChatUnknown) => (RecipientState::NotFound, None, Some(text(lang, "open_line_chat_unknown", &[]))),
        Err(RecipientProblem::OtherConnector(name)) => {
            (RecipientState::Error, None, Some(text(lang, "open_line_chat_other_connector", &[("connector", &name)])))
        }
    };
    RecipientView { key: point.key, source: SourceView { field: point.source, label }, state, account, explanation }
}

/// What a Telegram error means for the user, in their language.
pub fn telegram_problem(lang: Lang, e: &TelegramError) -> String {
    match e {
        TelegramError::FloodWait { seconds } => text(lang, "flood_wait", &[("seconds", &seconds.to_string())]),
        TelegramError::Unauthorized(_) => text(lang, "connector_unauthorized", &[]),
        TelegramError::PeerFlood => text(lang, "connector_limited", &[]),
        TelegramError::PrivacyRestricted => text(lang, "privacy_restricted", &[]),
        TelegramError::Rejected(detail) | TelegramError::Transient(detail) => text(lang, "send_failed", &[("detail", detail)]),
    }
}

/// "Contact Ivan Petrov · Phone (mobile)".
fn source_label(lang: Lang, source: &FieldSource) -> String {
    let kind = text(lang, &format!("entity_{}", source.entity_type.as_str()), &[]);
    let field = text(lang, &format!("field_{}", source.field.to_ascii_lowercase()), &[]);
    let subtype = source.value_type.to_lowercase();
    let subtype = if subtype.is_empty() || subtype == "other" { String::new() } else { format!(" ({subtype})") };
    format!("{kind} {} · {field}{subtype}", source.entity_title).replace("  ", " ")
}
