//! `GET /blobs/{key}`: a file behind the app's own signed link (streamed from here, or
//! redirected to S3), for Bitrix24 fetching published files. `PUT /blobs/{key}`: the embedded
//! stand-in for S3 presigned PUTs, so browsers upload straight to storage here too, bound
//! as S3 binds them: the announced size and type, once. Bodies stream to and from disk.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, put};
use futures_util::TryStreamExt;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio_util::io::{ReaderStream, StreamReader};

use super::AppState;
use crate::links::Grant;
use crate::ports::blobs::Download;

#[derive(Deserialize)]
struct Signed {
    expires: i64,
    signature: String,
    size: Option<u64>,
}

/// Downloads, for every deployment.
pub fn download_routes() -> Router<AppState> {
    Router::new().route("/blobs/{*key}", get(download))
}

/// Uploads, where blobs live on this server's disk.
pub fn upload_routes() -> Router<AppState> {
    Router::new().route("/blobs/{*key}", put(upload))
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": "blob", "message": message }))).into_response()
}

async fn upload(State(svc): State<AppState>, Path(key): Path<String>, signed: Result<Query<Signed>, QueryRejection>, headers: HeaderMap, body: Body) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let granted = signed.ok().and_then(|Query(s)| {
        let size = s.size?;
        svc.links.verify(&Grant { method: "PUT", key: &key, expires: s.expires, size: Some(size), content_type }, &s.signature).then_some(size)
    });
    let Some(size) = granted else {
        return refuse(StatusCode::FORBIDDEN, "The upload URL is invalid or has expired, or the file is not the one announced.");
    };
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length != size) {
        return refuse(StatusCode::FORBIDDEN, "The file's length is not the one announced.");
    }
    // An upload slot is used once, as S3's `If-None-Match: *` makes it there.
    match svc.blobs.size(&key).await {
        Ok(None) => {}
        Ok(Some(_)) => return refuse(StatusCode::PRECONDITION_FAILED, "This upload slot was used already."),
        Err(e) => {
            tracing::warn!("upload check failed: {e:#}");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "The upload could not be stored.");
        }
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    // One byte past the announced size tells a longer body from one of exactly that size.
    let mut reader = StreamReader::new(stream).take(size + 1);
    match svc.blobs.put(&key, &mut reader).await {
        Ok(stored) if stored != size => {
            let _ = svc.blobs.delete(&key).await;
            refuse(StatusCode::BAD_REQUEST, "The file is not the size announced.")
        }
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::warn!("upload failed: {e:#}");
            refuse(StatusCode::BAD_REQUEST, "The upload was interrupted; try again.")
        }
    }
}

async fn download(State(svc): State<AppState>, Path(key): Path<String>, signed: Result<Query<Signed>, QueryRejection>) -> Response {
    let granted = signed.is_ok_and(|Query(s)| svc.links.verify(&Grant { method: "GET", key: &key, expires: s.expires, size: None, content_type: "" }, &s.signature));
    if !granted {
        return refuse(StatusCode::FORBIDDEN, "The download URL is invalid or has expired.");
    }
    match svc.blobs.open_download(&key).await {
        Ok(Some(Download::Redirect(url))) => Redirect::temporary(&url).into_response(),
        Ok(Some(Download::Stream(size, reader))) => {
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
