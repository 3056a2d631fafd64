//! File storage streamed in and out: memory does not grow with the file.

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncRead;

pub type BlobReader = Box<dyn AsyncRead + Send + Unpin>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid blob key {0:?}")]
    InvalidKey(String),
    #[error("blob backend failed")]
    Backend(#[from] anyhow::Error),
}

/// Keys are `a-z0-9._-` segments joined by `/`, none starting with a dot: the same key is
/// valid in every store and none escapes a directory.
pub fn check_key(key: &str) -> Result<(), BlobError> {
    let valid = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty() && !seg.starts_with('.') && seg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        });
    if valid { Ok(()) } else { Err(BlobError::InvalidKey(key.to_owned())) }
}

#[async_trait]
pub trait Blobs: Send + Sync {
    /// Stores the stream under `key`, returning its size in bytes.
    async fn put(&self, key: &str, body: &mut (dyn AsyncRead + Send + Unpin)) -> Result<u64, BlobError>;
    /// The stored bytes and their size, or `None`.
    async fn get(&self, key: &str) -> Result<Option<(u64, BlobReader)>, BlobError>;
    /// The stored size, or `None`, without reading the bytes.
    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError>;
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// Deletes every blob whose key lies under the folder `prefix` (`uploads/{member_id}`).
    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError>;
    /// A URL a browser PUTs the file to directly, without credentials, until it expires.
    async fn upload_url(&self, key: &str, content_type: &str, valid_for: Duration) -> Result<String, BlobError>;
    /// A URL anyone holding it may GET the file from until it expires (Bitrix24 downloads files).
    async fn download_url(&self, key: &str, valid_for: Duration) -> Result<String, BlobError>;
}
