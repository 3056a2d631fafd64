//! Uploads go from the browser straight to blob storage (S3 presigned PUT, or this server's
//! signed URL when embedded): file size is not bound by Lambda's payload limit.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AppError, Services};
use crate::auth::{AdminClaims, Claims};
use crate::domain::voice::{MAX_LEVEL, MAX_LEVELS, pack_waveform};
use crate::domain::{Attachment, SendAs};
use crate::i18n::{Lang, text};
use crate::repo::templates::TemplateFile;
use crate::repo::uploads::AnnouncedUpload;

const URL_LIFETIME: Duration = Duration::from_secs(3600);
/// Upload slots one user may open a day: a busy manager's files, not a free file host.
pub const UPLOADS_PER_DAY: u32 = 500;
/// Telegram's limit for one file.
pub const MAX_UPLOAD: u64 = 2 * 1024 * 1024 * 1024;
/// Files of one message (Telegram's album size).
pub const MAX_FILES: usize = 10;
/// Larger images go as documents: Telegram compresses photos up to 10 MB.
const MAX_PHOTO: u64 = 10 * 1024 * 1024;
const PHOTO_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];
/// A voice note is remuxed in memory; an hour of browser Opus is about 15 MB.
pub const MAX_VOICE: u64 = 32 * 1024 * 1024;
const MAX_VOICE_SECS: u32 = 3 * 3600;

/// A file the browser uploaded, as named in `POST /api/send` or a template. Its size and type are the
/// ones announced for its slot, not what the request says now.
#[derive(Debug, Deserialize)]
pub struct FileRef {
    pub key: String,
    pub name: String,
}

/// A recording from the tab: its upload, length and waveform (levels 0..=31).
#[derive(Debug, Deserialize)]
pub struct VoiceRef {
    pub key: String,
    pub duration: f64,
    #[serde(default)]
    pub waveform: Vec<u8>,
}

#[derive(Debug, Deserialize)]
pub struct UploadRequest {
    pub name: String,
    pub size: u64,
    #[serde(default)]
    pub content_type: String,
}

#[derive(Serialize)]
pub struct UploadSlot {
    /// Names the file in a later send.
    pub key: String,
    pub url: String,
    pub method: &'static str,
    pub headers: serde_json::Value,
}

/// A file name reduced to what every store accepts, keeping its extension readable.
pub fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    let bounded: String = trimmed.chars().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect();
    if bounded.is_empty() { "file".into() } else { bounded }
}

/// A MIME type as `type/subtype`, or the generic binary type.
fn mime_type(content_type: &str) -> String {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let valid = essence.len() <= 100
        && essence.split_once('/').is_some_and(|(t, s)| {
            let token = |x: &str| !x.is_empty() && x.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'));
            token(t) && token(s)
        });
    if valid { essence } else { "application/octet-stream".into() }
}

/// A portal's files for messages: uploads, and the copies of template files a message sends.
/// They expire (the bucket's lifecycle rule): once sent, Telegram and the Open Line have them.
pub fn uploads_folder(member_id: &str) -> String {
    format!("uploads/{member_id}")
}

/// A portal's template files: kept until their template lets them go.
pub fn templates_folder(member_id: &str) -> String {
    format!("templates/{member_id}")
}

/// Who uploads: a manager for a message, an administrator for a template. Either upload lands
/// in the portal's uploads, which expire: a template keeps its own copy once saved, so a file
/// uploaded and never saved goes too.
pub struct Uploader<'a> {
    portal: &'a str,
    user: u64,
    lang: Lang,
}

impl<'a> Uploader<'a> {
    pub fn manager(claims: &'a Claims) -> Self {
        Self { portal: &claims.portal, user: claims.user, lang: claims.lang }
    }

    pub fn administrator(admin: &'a AdminClaims) -> Self {
        Self { portal: &admin.portal, user: admin.user, lang: admin.lang }
    }
}

pub async fn create_upload(svc: &Services, uploader: &Uploader<'_>, request: UploadRequest) -> Result<UploadSlot, AppError> {
    let Uploader { portal, user, lang } = uploader;
    check_size(*lang, request.size, MAX_UPLOAD)?;
    if !svc.uploads.take_daily(portal, *user, UPLOADS_PER_DAY).await? {
        tracing::warn!(member_id = %portal, user, "daily upload slots used up");
        return Err(AppError::invalid("uploads_per_day", text(*lang, "uploads_per_day", &[("count", &UPLOADS_PER_DAY.to_string())])));
    }
    let content_type = mime_type(&request.content_type);
    let key = format!("{}/{}/{}", uploads_folder(portal), uuid::Uuid::new_v4().simple(), safe_name(&request.name));
    let announced = AnnouncedUpload { user: *user, size: request.size, content_type: content_type.clone(), used_by: None };
    svc.uploads.open(portal, &key, &announced).await?;
    let target = svc.blobs.upload_target(&key, &content_type, request.size, URL_LIFETIME).await.map_err(|e| AppError::internal(format!("{e:#}")))?;
    let headers = target.headers.into_iter().map(|(name, value)| (name, serde_json::Value::String(value))).collect();
    Ok(UploadSlot { key, url: target.url, method: "PUT", headers: serde_json::Value::Object(headers) })
}

fn check_size(lang: Lang, size: u64, limit: u64) -> Result<(), AppError> {
    if size == 0 {
        return Err(AppError::invalid("empty_file", text(lang, "empty_file", &[])));
    }
    if size > limit {
        let mb = (limit / (1024 * 1024)).to_string();
        return Err(AppError::invalid("file_too_large", text(lang, "file_too_large", &[("mb", &mb)])));
    }
    Ok(())
}

/// An upload of this user, stored as announced (size and type); refused when the key is
/// another portal's or user's, not an upload, malformed, names nothing stored, or
/// the stored file is not the size announced (an S3 PUT binds it; this holds wherever the
/// file came from).
async fn announced_upload(svc: &Services, uploader: &Uploader<'_>, key: &str) -> Result<AnnouncedUpload, AppError> {
    let unknown = || AppError::invalid("unknown_upload", text(uploader.lang, "unknown_upload", &[]));
    let in_folder = key.strip_prefix(uploads_folder(uploader.portal).as_str()).is_some_and(|rest| rest.starts_with('/'));
    if !in_folder || crate::ports::blobs::check_key(key).is_err() {
        return Err(unknown());
    }
    let announced = svc.uploads.get(uploader.portal, key).await?.filter(|a| a.user == uploader.user).ok_or_else(unknown)?;
    let stored = svc.blobs.size(key).await.map_err(blobs_error)?.ok_or_else(unknown)?;
    if stored != announced.size {
        tracing::warn!(member_id = %uploader.portal, stored, announced = announced.size, "an upload is not the size announced");
        return Err(AppError::invalid("upload_mismatch", text(uploader.lang, "upload_mismatch", &[])));
    }
    Ok(announced)
}

fn blobs_error(e: crate::ports::BlobError) -> AppError {
    AppError::internal(format!("blobs: {e:#}"))
}

/// An upload becomes `owner`'s (a message's or a template's): a file goes into one only.
async fn use_upload(svc: &Services, uploader: &Uploader<'_>, key: &str, owner: &str) -> Result<(), AppError> {
    if svc.uploads.use_for(uploader.portal, key, owner).await? {
        return Ok(());
    }
    Err(AppError::invalid("upload_used", text(uploader.lang, "upload_used", &[])))
}

/// The message's uploads become its own.
pub async fn use_uploads(svc: &Services, claims: &Claims, files: &[Attachment], message_id: &str) -> Result<(), AppError> {
    for file in files {
        use_upload(svc, &Uploader::manager(claims), &file.key, message_id).await?;
    }
    Ok(())
}

/// An administrator's upload as a file of template `template_id`: the upload is the
/// template's now, which keeps a copy of its own under `templates/<member_id>/<template_id>/`.
pub async fn template_file(svc: &Services, admin: &AdminClaims, upload: &str, name: &str, template_id: &str) -> Result<TemplateFile, AppError> {
    let uploader = Uploader::administrator(admin);
    let AnnouncedUpload { size, content_type, .. } = announced_upload(svc, &uploader, upload).await?;
    use_upload(svc, &uploader, upload, template_id).await?;
    let name = display_name(name, upload);
    let key = format!("{}/{template_id}/{}/{}", templates_folder(&admin.portal), uuid::Uuid::new_v4().simple(), safe_name(&name));
    if !svc.blobs.copy(upload, &key).await.map_err(blobs_error)? {
        return Err(AppError::invalid("unknown_upload", text(admin.lang, "unknown_upload", &[])));
    }
    Ok(TemplateFile { key, name, size, content_type })
}

/// A template's files as the message's (or automated request's) own attachments: each copied
/// into the portal's uploads under `owner`, so the template may change or go meanwhile. The
/// same owner gets the same keys: a retry copies over its own copies. `None` when a file is
/// no longer stored (its template let it go).
pub async fn copied_attachments(svc: &Services, member_id: &str, owner: &str, files: &[TemplateFile], as_document: bool) -> Result<Option<Vec<Attachment>>, AppError> {
    let mut out = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let key = format!("{}/{owner}/{i}-{}", uploads_folder(member_id), safe_name(&file.name));
        if !svc.blobs.copy(&file.key, &key).await.map_err(blobs_error)? {
            tracing::warn!(member_id, owner, "a template's file is no longer stored");
            return Ok(None);
        }
        let send_as = send_as(file.size, &file.content_type, as_document);
        out.push(Attachment { key, file_name: file.name.clone(), mime_type: file.content_type.clone(), size: file.size, send_as });
    }
    Ok(Some(out))
}

/// A photo (Telegram compresses it) unless sent as a document, too large or not an image
/// Telegram takes as a photo.
fn send_as(size: u64, mime_type: &str, as_document: bool) -> SendAs {
    if !as_document && size <= MAX_PHOTO && PHOTO_TYPES.contains(&mime_type) { SendAs::Photo } else { SendAs::Document }
}

/// A name to show in Telegram: the user's own, without path or control characters.
fn display_name(name: &str, key: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() { key.rsplit('/').next().unwrap_or("file").to_owned() } else { cleaned.to_owned() }
}

/// The files of a message, checked against storage: photos (unless `as_document`) and documents.
pub async fn attachments(svc: &Services, claims: &Claims, files: &[FileRef], as_document: bool) -> Result<Vec<Attachment>, AppError> {
    if files.len() > MAX_FILES {
        return Err(AppError::invalid("too_many_files", text(claims.lang, "too_many_files", &[("count", &MAX_FILES.to_string())])));
    }
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let AnnouncedUpload { size, content_type: mime_type, .. } = announced_upload(svc, &Uploader::manager(claims), &file.key).await?;
        let send_as = send_as(size, &mime_type, as_document);
        out.push(Attachment { key: file.key.clone(), file_name: display_name(&file.name, &file.key), mime_type, size, send_as });
    }
    Ok(out)
}

/// A voice note, checked against storage; its waveform packed for Telegram.
pub async fn voice_attachment(svc: &Services, claims: &Claims, voice: &VoiceRef) -> Result<Attachment, AppError> {
    let size = announced_upload(svc, &Uploader::manager(claims), &voice.key).await?.size;
    check_size(claims.lang, size, MAX_VOICE)?;
    let valid = voice.duration.is_finite()
        && voice.duration > 0.0
        && voice.duration <= f64::from(MAX_VOICE_SECS)
        && voice.waveform.len() <= MAX_LEVELS
        && voice.waveform.iter().all(|l| *l <= MAX_LEVEL);
    if !valid {
        return Err(AppError::invalid("bad_voice", text(claims.lang, "bad_voice", &[])));
    }
    Ok(Attachment {
        key: voice.key.clone(),
        file_name: "voice.ogg".into(),
        mime_type: "audio/ogg".into(),
        size,
        send_as: SendAs::Voice { duration_secs: voice.duration.round().max(1.0) as u32, waveform: pack_waveform(&voice.waveform) },
    })
}

#[cfg(test)]
mod tests {
    use super::{display_name, mime_type, safe_name};

    #[test]
    fn mime_types_are_kept_only_when_well_formed() {
        assert_eq!(mime_type("image/JPEG"), "image/jpeg");
        assert_eq!(mime_type("audio/webm;codecs=opus"), "audio/webm");
        assert_eq!(mime_type(""), "application/octet-stream");
        assert_eq!(mime_type("text/html\r\nx: y"), "application/octet-stream");
    }

    #[test]
    fn display_names_keep_the_users_name_without_paths() {
        assert_eq!(display_name("C:\\docs\\отчёт.pdf", "uploads/p/x/_____.pdf"), "отчёт.pdf");
        assert_eq!(display_name("a\u{0}b", "k"), "ab");
        assert_eq!(display_name("", "uploads/p/x/file.bin"), "file.bin");
    }

    #[test]
    fn names_are_made_safe() {
        assert_eq!(safe_name("photo 1.JPG"), "photo_1.JPG");
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("C:\\docs\\отчёт.pdf"), "_____.pdf");
        assert_eq!(safe_name("..."), "file");
        assert_eq!(safe_name(&format!("{}.pdf", "a".repeat(200))).len(), 80);
    }
}
