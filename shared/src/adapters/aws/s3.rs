//! The blob port on S3: streamed in (multipart above one part) and out, and presigned
//! URLs so browsers upload straight to the bucket and Bitrix24 downloads from it (through
//! the app's own link, which redirects to one).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{OnFirstUse, on_first_use, sdk_error};
use crate::ports::blobs::{BlobReader, Download, UploadTarget, check_key};
use crate::ports::{BlobError, Blobs};

/// S3's smallest multipart part (but the last); memory holds one part at a time.
const PART: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct S3Blobs {
    client: OnFirstUse<Client>,
    bucket: String,
}

impl S3Blobs {
    /// Over the client `make` makes when first called.
    pub fn new(make: impl FnOnce() -> Client + Send + 'static, bucket: impl Into<String>) -> Self {
        Self { client: on_first_use(make), bucket: bucket.into() }
    }

    async fn put_multipart(&self, key: &str, first: Vec<u8>, body: &mut (dyn AsyncRead + Send + Unpin)) -> Result<u64, BlobError> {
        let started = self.client.create_multipart_upload().bucket(&self.bucket).key(key).send().await.map_err(backend)?;
        let upload_id = started.upload_id().unwrap_or_default().to_owned();
        let uploaded = self.upload_parts(key, &upload_id, first, body).await;
        match uploaded {
            Ok((parts, size)) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                    .send()
                    .await
                    .map_err(backend)?;
                Ok(size)
            }
            Err(e) => {
                let _ = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(&upload_id).send().await;
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        mut chunk: Vec<u8>,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<(Vec<CompletedPart>, u64), BlobError> {
        let (mut parts, mut size) = (Vec::new(), 0u64);
        while !chunk.is_empty() {
            let number = parts.len() as i32 + 1;
            size += chunk.len() as u64;
            let next = read_chunk(body).await?;
            let answer = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(backend)?;
            parts.push(CompletedPart::builder().part_number(number).set_e_tag(answer.e_tag().map(str::to_owned)).build());
            chunk = next;
        }
        Ok((parts, size))
    }

}

fn backend<E: std::error::Error + Send + Sync + 'static>(e: E) -> BlobError {
    BlobError::Backend(sdk_error(e))
}

/// Up to one part's bytes; fewer only at the end of the stream.
async fn read_chunk(body: &mut (dyn AsyncRead + Send + Unpin)) -> Result<Vec<u8>, BlobError> {
    let mut chunk = Vec::with_capacity(PART);
    body.take(PART as u64).read_to_end(&mut chunk).await.map_err(|e| BlobError::Backend(e.into()))?;
    Ok(chunk)
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn put(&self, key: &str, body: &mut (dyn AsyncRead + Send + Unpin)) -> Result<u64, BlobError> {
        check_key(key)?;
        let first = read_chunk(body).await?;
        if first.len() == PART {
            return self.put_multipart(key, first, body).await;
        }
        let size = first.len() as u64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .body(ByteStream::from(first))
            .send()
            .await
            .map_err(backend)?;
        Ok(size)
    }

    async fn get(&self, key: &str) -> Result<Option<(u64, BlobReader)>, BlobError> {
        check_key(key)?;
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(object) => {
                let size = object.content_length().unwrap_or(0).max(0) as u64;
                Ok(Some((size, Box::new(object.body.into_async_read()))))
            }
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        check_key(key)?;
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(object) => Ok(Some(object.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        check_key(key)?;
        self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(backend)?;
        Ok(())
    }

    /// CopyObject: one request, done inside S3, for objects up to 5 GB (Telegram's files
    /// are at most 2 GB).
    async fn copy(&self, from: &str, to: &str) -> Result<bool, BlobError> {
        check_key(from)?;
        check_key(to)?;
        // Keys are URL-safe already (`check_key`): the source needs no encoding.
        let source = format!("{}/{from}", self.bucket);
        match self.client.copy_object().bucket(&self.bucket).copy_source(source).key(to).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("NoSuchKey") => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }

    /// Lists the folder a page (1,000 keys) at a time and deletes each page in one request.
    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        let folder = format!("{}/", prefix.trim_end_matches('/'));
        check_key(folder.trim_end_matches('/'))?;
        loop {
            let listed = self.client.list_objects_v2().bucket(&self.bucket).prefix(&folder).send().await.map_err(backend)?;
            let keys: Vec<ObjectIdentifier> = listed.contents().iter().filter_map(|o| ObjectIdentifier::builder().key(o.key()?).build().ok()).collect();
            if keys.is_empty() {
                return Ok(());
            }
            let delete = Delete::builder().set_objects(Some(keys)).quiet(true).build().map_err(|e| BlobError::Backend(e.into()))?;
            self.client.delete_objects().bucket(&self.bucket).delete(delete).send().await.map_err(backend)?;
        }
    }

    /// The size and type are signed (the SDK signs `content-length` since
    /// awslabs/aws-sdk-rust#466), and `If-None-Match: *` makes S3 refuse a second PUT.
    async fn upload_target(&self, key: &str, content_type: &str, size: u64, valid_for: Duration) -> Result<UploadTarget, BlobError> {
        check_key(key)?;
        let config = PresigningConfig::expires_in(valid_for).map_err(|e| BlobError::Backend(e.into()))?;
        let size = i64::try_from(size).map_err(|e| BlobError::Backend(e.into()))?;
        let request = self.client.put_object().bucket(&self.bucket).key(key).content_type(content_type).content_length(size).if_none_match("*");
        let presigned = request.presigned(config).await.map_err(backend)?;
        // The browser sets the length (and host) itself: scripts may not.
        let headers = presigned
            .headers()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("host"))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
            .collect();
        Ok(UploadTarget { url: presigned.uri().to_owned(), headers })
    }

    /// A presigned GET valid for minutes, made when the app's own link is used: well within
    /// the life of the credentials that sign it.
    async fn open_download(&self, key: &str) -> Result<Option<Download>, BlobError> {
        check_key(key)?;
        let config = PresigningConfig::expires_in(REDIRECT_LIFETIME).map_err(|e| BlobError::Backend(e.into()))?;
        let request = self.client.get_object().bucket(&self.bucket).key(key);
        Ok(Some(Download::Redirect(request.presigned(config).await.map_err(backend)?.uri().to_owned())))
    }
}

const REDIRECT_LIFETIME: Duration = Duration::from_secs(300);
