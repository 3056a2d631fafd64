//! The tab's and the connectors page's scripts and style, compiled into the binary: no front-end build step.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

const CACHE: &str = "public, max-age=300";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/assets/tab.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("../../assets/tab.js")) }))
        .route("/assets/connectors.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("../../assets/connectors.js")) }))
        .route("/assets/tab.css", get(|| async { asset("text/css; charset=utf-8", include_str!("../../assets/tab.css")) }))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, CACHE)], body)
}
