//! Blobs as files in a directory, written through a temporary file so a reader never
//! sees half a file. Upload URLs point at this server's `/blobs/` route, signed like S3's
//! presigned URLs ([`SignedLinks`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::links::SignedLinks;
use crate::ports::blobs::{BlobReader, Download, UploadTarget, check_key};
use crate::ports::{BlobError, Blobs};

pub struct DirBlobs {
    root: PathBuf,
    links: SignedLinks,
}

impl DirBlobs {
    pub fn new(root: impl Into<PathBuf>, links: SignedLinks) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root, links })
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

    async fn copy(&self, from: &str, to: &str) -> Result<bool, BlobError> {
        match tokio::fs::File::open(self.path(from)?).await {
            Ok(mut file) => write_atomically(&self.path(to)?, &mut file).await.map(|_| true).map_err(io),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_dir_all(self.path(prefix.trim_end_matches('/'))?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }

    async fn upload_target(&self, key: &str, content_type: &str, size: u64, valid_for: Duration) -> Result<UploadTarget, BlobError> {
        self.path(key)?;
        let url = self.links.upload_url(key, size, content_type, valid_for);
        Ok(UploadTarget { url, headers: vec![("content-type".into(), content_type.into())] })
    }

    async fn open_download(&self, key: &str) -> Result<Option<Download>, BlobError> {
        Ok(self.get(key).await?.map(|(size, reader)| Download::Stream(size, reader)))
    }
}
