//! Uploads go from the browser straight to blob storage (S3 presigned PUT, or this server's
//! signed URL when embedded): file size is not bound by Lambda's payload limit.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AppError, Services};
use crate::auth::Claims;
use crate::http::blobs::MAX_UPLOAD;

const URL_LIFETIME: Duration = Duration::from_secs(3600);

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
fn safe_name(name: &str) -> String {
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

pub async fn create_upload(svc: &Services, claims: &Claims, request: UploadRequest) -> Result<UploadSlot, AppError> {
    if request.size == 0 {
        return Err(AppError::invalid("empty_file", "The file is empty."));
    }
    if request.size > MAX_UPLOAD {
        return Err(AppError::invalid("file_too_large", "Telegram accepts files up to 2 GB."));
    }
    let content_type = if request.content_type.is_empty() { "application/octet-stream".to_owned() } else { request.content_type };
    let key = format!("uploads/{}/{}/{}", claims.portal, uuid::Uuid::new_v4().simple(), safe_name(&request.name));
    let url = svc.blobs.upload_url(&key, &content_type, URL_LIFETIME).await.map_err(|e| AppError::internal(format!("{e:#}")))?;
    Ok(UploadSlot { key, url, method: "PUT", headers: serde_json::json!({ "content-type": content_type }) })
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn names_are_made_safe() {
        assert_eq!(safe_name("photo 1.JPG"), "photo_1.JPG");
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("C:\\docs\\отчёт.pdf"), "_____.pdf");
        assert_eq!(safe_name("..."), "file");
        assert_eq!(safe_name(&format!("{}.pdf", "a".repeat(200))).len(), 80);
    }
}
