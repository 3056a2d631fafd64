//! Blobs as files in a directory, written through a temporary file so a reader never
//! sees half a file. Upload and download URLs point at this server's `/blobs/` route,
//! signed like S3's presigned URLs: HMAC over method, key and expiry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::io::AsyncRead;

use crate::clock::now_secs;

use crate::ports::blobs::BlobReader;
use crate::ports::blobs::check_key;
use crate::ports::{BlobError, Blobs};

pub struct DirBlobs {
    root: PathBuf,
    /// Where this server answers (`http://127.0.0.1:8080`).
    base_url: String,
    signing_key: [u8; 32],
}

impl DirBlobs {
    pub fn new(root: impl Into<PathBuf>, base_url: &str, signing_key: [u8; 32]) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root, base_url: base_url.trim_end_matches('/').to_owned(), signing_key })
    }

    fn signature(&self, method: &str, key: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.signing_key).expect("HMAC takes any key length");
        mac.update(format!("{method}\n{key}\n{expires}").as_bytes());
        mac
    }

    fn signed_url(&self, method: &str, key: &str, valid_for: Duration) -> Result<String, BlobError> {
        self.path(key)?;
        let expires = now_secs() + valid_for.as_secs() as i64;
        let signature = URL_SAFE_NO_PAD.encode(self.signature(method, key, expires).finalize().into_bytes());
        Ok(format!("{}/blobs/{key}?expires={expires}&signature={signature}", self.base_url))
    }

    /// Whether a `/blobs/` request carries a valid, unexpired signature for `method` on `key`.
    pub fn verify(&self, method: &str, key: &str, expires: i64, signature: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(signature) else { return false };
        expires > now_secs() && self.path(key).is_ok() && self.signature(method, key, expires).verify_slice(&tag).is_ok()
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io(e: std::io::Error) -> BlobError {
    BlobError::Backend(e.into())
}

async fn write_atomically(path: &Path, body: &mut (dyn AsyncRead + Send + Unpin)) -> std::io::Result<u64> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let tmp = path.with_extension(format!("part-{}", uuid::Uuid::new_v4().simple()));
    let mut file = tokio::fs::File::create(&tmp).await?;
    let written = tokio::io::copy(body, &mut file).await;
    let finished = match written {
        Ok(n) => file.sync_all().await.map(|_| n),
        Err(e) => Err(e),
    };
    match finished {
        Ok(n) => tokio::fs::rename(&tmp, path).await.map(|_| n),
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

#[async_trait]
impl Blobs for DirBlobs {
    async fn put(&self, key: &str, body: &mut (dyn AsyncRead + Send + Unpin)) -> Result<u64, BlobError> {
        write_atomically(&self.path(key)?, body).await.map_err(io)
    }

    async fn get(&self, key: &str) -> Result<Option<(u64, BlobReader)>, BlobError> {
        match tokio::fs::File::open(self.path(key)?).await {
            Ok(file) => {
                let size = file.metadata().await.map_err(io)?.len();
                Ok(Some((size, Box::new(file))))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_dir_all(self.path(prefix.trim_end_matches('/'))?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }

    async fn upload_url(&self, key: &str, _content_type: &str, valid_for: Duration) -> Result<String, BlobError> {
        self.signed_url("PUT", key, valid_for)
    }

    async fn download_url(&self, key: &str, valid_for: Duration) -> Result<String, BlobError> {
        self.signed_url("GET", key, valid_for)
    }
}
