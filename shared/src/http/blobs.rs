//! `PUT`/`GET /blobs/{key}`: the embedded stand-in for S3 presigned URLs, so browsers upload
//! straight to storage here too. Bodies stream to and from disk.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::TryStreamExt;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::adapters::DirBlobs;
use crate::app::uploads::MAX_UPLOAD;
use crate::ports::Blobs;

#[derive(Deserialize)]
struct Signed {
    expires: i64,
    signature: String,
}

pub fn routes(blobs: Arc<DirBlobs>) -> Router {
    Router::new().route("/blobs/{*key}", get(download).put(upload)).with_state(blobs)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": "blob", "message": message }))).into_response()
}

async fn upload(State(blobs): State<Arc<DirBlobs>>, Path(key): Path<String>, signed: Result<Query<Signed>, QueryRejection>, body: Body) -> Response {
    if !signed.is_ok_and(|Query(s)| blobs.verify("PUT", &key, s.expires, &s.signature)) {
        return refuse(StatusCode::FORBIDDEN, "The upload URL is invalid or has expired.");
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    // One byte past the limit tells an oversize upload from one of exactly the limit.
    let mut reader = StreamReader::new(stream).take(MAX_UPLOAD + 1);
    match blobs.put(&key, &mut reader).await {
        Ok(size) if size > MAX_UPLOAD => {
            let _ = blobs.delete(&key).await;
            refuse(StatusCode::PAYLOAD_TOO_LARGE, "The file is larger than Telegram's 2 GB limit.")
        }
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::warn!("upload failed: {e:#}");
            refuse(StatusCode::BAD_REQUEST, "The upload was interrupted; try again.")
        }
    }
}

async fn download(State(blobs): State<Arc<DirBlobs>>, Path(key): Path<String>, signed: Result<Query<Signed>, QueryRejection>) -> Response {
    if !signed.is_ok_and(|Query(s)| blobs.verify("GET", &key, s.expires, &s.signature)) {
        return refuse(StatusCode::FORBIDDEN, "The download URL is invalid or has expired.");
    }
    match blobs.get(&key).await {
        Ok(Some((size, reader))) => {
            let headers = [(header::CONTENT_LENGTH, size.to_string()), (header::CONTENT_TYPE, "application/octet-stream".into())];
            (headers, Body::from_stream(ReaderStream::new(reader))).into_response()
        }
        Ok(None) => refuse(StatusCode::NOT_FOUND, "No such file."),
        Err(e) => {
            tracing::warn!("download failed: {e:#}");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "The file could not be read.")
        }
    }
}
