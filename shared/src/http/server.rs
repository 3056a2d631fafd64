//! The local server's HTTP/1 loop: a deadline for every request's head, a pause limit on
//! every body, and a bound on the connections served at once. (On Lambda, API Gateway holds
//! the connections.)

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutBody;

use crate::settings::ServerLimits;

/// Serves `router` on `listener` until the task is dropped. A connection is accepted only
/// with a free slot: past `max_connections` new ones wait in the kernel's backlog.
pub async fn serve(listener: TcpListener, router: Router, limits: ServerLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let slot = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, mostly: give the open connections time to close.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let request = request.map(|body| Body::new(TimeoutBody::new(limits.body_idle_timeout, body)));
            router.clone().oneshot(request)
        });
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {e}");
            }
            drop(slot);
        });
    }
}
