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
    /// Stores a copy of `from` under `to` within the store (no bytes through this process
    /// where the store can copy itself); `false` when nothing is stored under `from`.
    async fn copy(&self, from: &str, to: &str) -> Result<bool, BlobError>;
    /// Deletes every blob whose key lies under the folder `prefix` (`uploads/{member_id}`).
    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError>;
    /// Where a browser PUTs one file straight to storage, without credentials, until it
    /// expires: exactly `size` bytes of `content_type`, and only if nothing is stored there yet.
    async fn upload_target(&self, key: &str, content_type: &str, size: u64, valid_for: Duration) -> Result<UploadTarget, BlobError>;
    /// How a holder of a valid download link gets the file (see [`crate::links`]).
    async fn open_download(&self, key: &str) -> Result<Option<Download>, BlobError>;
}

/// A URL and the headers the browser must send with its `PUT`.
pub struct UploadTarget {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

pub enum Download {
    /// Fetched from elsewhere, at a URL valid for a few minutes (S3's, presigned now).
    Redirect(String),
    /// Streamed from here.
    Stream(u64, BlobReader),
}
