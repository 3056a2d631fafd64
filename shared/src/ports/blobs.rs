//! File storage streamed in and out: memory does not grow with the file.

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

#[async_trait]
pub trait Blobs: Send + Sync {
    /// Stores the stream under `key`, returning its size in bytes.
    async fn put(&self, key: &str, body: &mut (dyn AsyncRead + Send + Unpin)) -> Result<u64, BlobError>;
    /// The stored bytes and their size, or `None`.
    async fn get(&self, key: &str) -> Result<Option<(u64, BlobReader)>, BlobError>;
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
}
