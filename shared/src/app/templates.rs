//! The portal's message templates: kept by its administrators on the connectors page, filled
//! from a card in the tab and by the robot (placeholders: `domain::template`).

use serde::{Deserialize, Serialize};

use super::card::{ContactRecord, read_record};
use super::connectors::refresh_automation;
use super::portal::PortalClient;
use super::send::text_parts;
use super::uploads::{FileRef, MAX_FILES, template_file};
use super::{AppError, ErrorKind, Services};
use crate::auth::{AdminClaims, Claims};
use crate::domain::EntityRef;
use crate::domain::template::{Filled, Sources, fill, unfilled};
use crate::i18n::{Lang, text};
use crate::repo::templates::{MAX_TEMPLATES, Template, TemplateFile};

/// As long as a name shows whole in a list.
const NAME_LIMIT: usize = 100;
/// The placeholders' entity for the record's responsible employee, as the record names its id.
const RESPONSIBLE: &str = "ASSIGNED_BY";

#[derive(Deserialize)]
pub struct TemplateInput {
    pub name: String,
    pub text: String,
    /// Its files: the template's own, kept, and the administrator's new uploads.
    #[serde(default)]
    pub files: Vec<FileRef>,
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
    /// What goes along unless the manager removes it: named by key in the send.
    pub files: Vec<TemplateFile>,
}

pub async fn list(svc: &Services, admin: &AdminClaims) -> Result<Vec<Template>, AppError> {
    Ok(svc.templates.list(&admin.portal).await?)
}

pub async fn create(svc: &Services, admin: &AdminClaims, input: TemplateInput) -> Result<Template, AppError> {
    let mut template = checked(admin.lang, uuid::Uuid::new_v4().to_string(), &input)?;
    if svc.templates.list(&admin.portal).await?.len() >= MAX_TEMPLATES {
        let limit = MAX_TEMPLATES.to_string();
        return Err(AppError::invalid("too_many_templates", text(admin.lang, "template_too_many", &[("limit", &limit)])));
    }
    template.files = saved_files(svc, admin, &template.id, &input.files, &[]).await?;
    svc.templates.put(&admin.portal, &template).await?;
    changed(svc, admin, &template.id).await;
    Ok(template)
}

pub async fn update(svc: &Services, admin: &AdminClaims, id: &str, input: TemplateInput) -> Result<Template, AppError> {
    let mut template = checked(admin.lang, id.to_owned(), &input)?;
    let stored = svc.templates.get(&admin.portal, id).await?.ok_or_else(|| not_found(admin.lang))?;
    template.files = saved_files(svc, admin, id, &input.files, &stored.files).await?;
    if !svc.templates.replace(&admin.portal, &template).await? {
        return Err(not_found(admin.lang));
    }
    let dropped: Vec<TemplateFile> = stored.files.into_iter().filter(|f| !template.files.contains(f)).collect();
    let_go(svc, &dropped).await;
    changed(svc, admin, id).await;
    Ok(template)
}

pub async fn delete(svc: &Services, admin: &AdminClaims, id: &str) -> Result<(), AppError> {
    let stored = svc.templates.get(&admin.portal, id).await?.ok_or_else(|| not_found(admin.lang))?;
    svc.templates.delete(&admin.portal, id).await?;
    let_go(svc, &stored.files).await;
    changed(svc, admin, id).await;
    Ok(())
}

/// The files a template is saved with, in the order given, each once: those it has already
/// stay as stored; the others must be the administrator's own uploads, now the template's.
async fn saved_files(svc: &Services, admin: &AdminClaims, id: &str, given: &[FileRef], stored: &[TemplateFile]) -> Result<Vec<TemplateFile>, AppError> {
    if given.len() > MAX_FILES {
        return Err(AppError::invalid("too_many_files", text(admin.lang, "too_many_files", &[("count", &MAX_FILES.to_string())])));
    }
    let mut files: Vec<TemplateFile> = Vec::with_capacity(given.len());
    for file in given {
        if files.iter().any(|f| f.key == file.key) {
            continue;
        }
        files.push(match stored.iter().find(|f| f.key == file.key) {
            Some(kept) => kept.clone(),
            None => template_file(svc, admin, &file.key, &file.name, id).await?,
        });
    }
    Ok(files)
}

/// Deletes files no template has any longer. Messages sent their own copies; a file that
/// fails to go is only storage, so the change it follows stands.
async fn let_go(svc: &Services, files: &[TemplateFile]) {
    for file in files {
        if let Err(e) = svc.blobs.delete(&file.key).await {
            tracing::warn!(error = %format!("{e:#}"), "a template's removed file stays stored");
        }
    }
}

/// The robot's "Template" lists the portal's templates: registered again once they change.
async fn changed(svc: &Services, admin: &AdminClaims, id: &str) {
    tracing::info!(template_id = id, "template saved or deleted");
    refresh_automation(svc, &admin.portal).await;
}

/// A template as given, or why it cannot be kept: a name and a text a message may hold.
fn checked(lang: Lang, id: String, input: &TemplateInput) -> Result<Template, AppError> {
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
    Ok(Template { id, name: name.to_owned(), text: body.to_owned(), files: Vec::new() })
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
    Ok(FilledView { text, missing, files: template.files })
}

/// The files of template `id` a send names, checked to be that template's.
pub async fn chosen_files(svc: &Services, claims: &Claims, id: Option<&str>, keys: &[String]) -> Result<Vec<TemplateFile>, AppError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let Some(id) = id else { return Err(file_gone(claims.lang)) };
    let template = svc.templates.get(&claims.portal, id).await?.ok_or_else(|| not_found(claims.lang))?;
    let mut chosen: Vec<TemplateFile> = Vec::with_capacity(keys.len());
    for key in keys {
        let file = template.files.iter().find(|f| &f.key == key).ok_or_else(|| file_gone(claims.lang))?;
        if !chosen.contains(file) {
            chosen.push(file.clone());
        }
    }
    Ok(chosen)
}

/// A template file that is not (or no longer) the template's: the manager picks it again.
pub fn file_gone(lang: Lang) -> AppError {
    AppError::invalid("template_file_gone", text(lang, "template_file_gone", &[]))
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
