//! The portal's message templates: kept by its administrators on the connectors page, filled
//! from a card in the tab and by the robot (placeholders: `domain::template`).

use serde::{Deserialize, Serialize};

use super::card::{ContactRecord, read_record};
use super::connectors::refresh_automation;
use super::portal::PortalClient;
use super::send::text_parts;
use super::{AppError, ErrorKind, Services};
use crate::auth::{AdminClaims, Claims};
use crate::domain::EntityRef;
use crate::domain::template::{Filled, Sources, fill, unfilled};
use crate::i18n::{Lang, text};
use crate::repo::templates::{MAX_TEMPLATES, Template};

/// As long as a name shows whole in a list.
const NAME_LIMIT: usize = 100;
/// The placeholders' entity for the record's responsible employee, as the record names its id.
const RESPONSIBLE: &str = "ASSIGNED_BY";

#[derive(Deserialize)]
pub struct TemplateInput {
    pub name: String,
    pub text: String,
}

/// What the tab offers: a template's name, its text only once filled from the card.
#[derive(Serialize)]
pub struct TemplateChoice {
    pub id: String,
    pub name: String,
}

#[derive(Serialize)]
pub struct FilledView {
    pub text: String,
    /// The placeholders this card could not fill (`CONTACT.PHONE`), still in the text.
    pub missing: Vec<String>,
}

pub async fn list(svc: &Services, admin: &AdminClaims) -> Result<Vec<Template>, AppError> {
    Ok(svc.templates.list(&admin.portal).await?)
}

pub async fn create(svc: &Services, admin: &AdminClaims, input: TemplateInput) -> Result<Template, AppError> {
    let template = checked(admin.lang, uuid::Uuid::new_v4().to_string(), input)?;
    if svc.templates.list(&admin.portal).await?.len() >= MAX_TEMPLATES {
        let limit = MAX_TEMPLATES.to_string();
        return Err(AppError::invalid("too_many_templates", text(admin.lang, "template_too_many", &[("limit", &limit)])));
    }
    svc.templates.put(&admin.portal, &template).await?;
    changed(svc, admin, &template.id).await;
    Ok(template)
}

pub async fn update(svc: &Services, admin: &AdminClaims, id: &str, input: TemplateInput) -> Result<Template, AppError> {
    let template = checked(admin.lang, id.to_owned(), input)?;
    if !svc.templates.replace(&admin.portal, &template).await? {
        return Err(not_found(admin.lang));
    }
    changed(svc, admin, id).await;
    Ok(template)
}

pub async fn delete(svc: &Services, admin: &AdminClaims, id: &str) -> Result<(), AppError> {
    svc.templates.get(&admin.portal, id).await?.ok_or_else(|| not_found(admin.lang))?;
    svc.templates.delete(&admin.portal, id).await?;
    changed(svc, admin, id).await;
    Ok(())
}

/// The robot's "Template" lists the portal's templates: registered again once they change.
async fn changed(svc: &Services, admin: &AdminClaims, id: &str) {
    tracing::info!(template_id = id, "template saved or deleted");
    refresh_automation(svc, &admin.portal).await;
}

/// A template as given, or why it cannot be kept: a name and a text a message may hold.
fn checked(lang: Lang, id: String, input: TemplateInput) -> Result<Template, AppError> {
    let name = input.name.trim();
    if name.is_empty() {
        return Err(AppError::invalid("template_name_empty", text(lang, "template_name_empty", &[])));
    }
    if name.chars().count() > NAME_LIMIT {
        return Err(AppError::invalid("template_name_too_long", text(lang, "template_name_too_long", &[("limit", &NAME_LIMIT.to_string())])));
    }
    let body = input.text.trim();
    if body.is_empty() {
        return Err(AppError::invalid("template_text_empty", text(lang, "template_text_empty", &[])));
    }
    // No longer than a message from the tab may be (Telegram's parts).
    text_parts(lang, body, false)?;
    Ok(Template { id, name: name.to_owned(), text: body.to_owned() })
}

fn not_found(lang: Lang) -> AppError {
    AppError::new(ErrorKind::NotFound, "template_not_found", text(lang, "template_not_found", &[]))
}

/// The templates the tab offers.
pub async fn offered(svc: &Services, claims: &Claims) -> Result<Vec<TemplateChoice>, AppError> {
    let templates = svc.templates.list(&claims.portal).await?;
    Ok(templates.into_iter().map(|t| TemplateChoice { id: t.id, name: t.name }).collect())
}

/// Template `id` filled from the token's own card, read with the user's own token (what they
/// may not see fills nothing).
pub async fn fill_for_card(svc: &Services, claims: &Claims, id: &str) -> Result<FilledView, AppError> {
    let template = svc.templates.get(&claims.portal, id).await?.ok_or_else(|| not_found(claims.lang))?;
    let mut portal = PortalClient::user(svc, &claims.portal, claims.user).await?;
    let record = read_record(&mut portal, claims.entity, true).await?;
    let Filled { text, missing } = fill_from(&template.text, claims.entity, &record);
    Ok(FilledView { text, missing })
}

/// `text` filled from a record read with its responsible ([`read_record`]): the tab's and the robot's.
pub fn fill_from(text: &str, entity: EntityRef, record: &ContactRecord) -> Filled {
    fill(text, &sources(entity, record))
}

/// What a record's placeholders name: the record under its type (`DEAL`), its first linked
/// contact (`CONTACT`) and its company (`COMPANY`), and its responsible (`ASSIGNED_BY`).
fn sources(entity: EntityRef, record: &ContactRecord) -> Sources {
    let mut sources = Sources::new();
    for (kind, fields) in &record.linked {
        sources.entry(kind.as_str().to_ascii_uppercase()).or_insert_with(|| fields.clone());
    }
    sources.insert(entity.kind.as_str().to_ascii_uppercase(), record.fields.clone());
    if let Some(user) = &record.responsible {
        sources.insert(RESPONSIBLE.to_owned(), user.clone());
    }
    sources
}

/// A text sent from a template must have every placeholder filled: raw braces never reach
/// the client, even when the tab's own check is bypassed.
pub fn refuse_unfilled(lang: Lang, message_text: &str) -> Result<(), AppError> {
    let missing = unfilled(message_text);
    if missing.is_empty() {
        return Ok(());
    }
    Err(AppError::bad_request("template_unfilled", text(lang, "template_unfilled", &[("fields", &missing.join(", "))])))
}
