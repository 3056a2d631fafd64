//! The local server's HTTP/1 loop: a deadline for every request's head, a pause limit on
//! every body, and a bound on the connections served at once; the app's on a thread of its
//! own. (On Lambda, API Gateway holds the connections.)

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutBody;

use crate::settings::ServerLimits;

/// [`serve`] on a thread of its own with a single-threaded runtime, until the returned task is
/// aborted or dropped with its runtime. A request is then never handed from one worker thread to
/// another (each hand-off wakes a thread whose CPU may be idle: on the shared runtime a tab's
/// opening took ~40 µs more, BENCHMARKS.md) and never waits behind a job on the shared runtime.
/// What a request spawns runs on that thread too.
pub fn serve_on_own_thread(listener: TcpListener, router: Router, limits: ServerLimits) -> std::io::Result<JoinHandle<()>> {
    let listener = listener.into_std()?;
    let (stop, stopped) = oneshot::channel::<()>();
    // Never sent: dropped when the thread ends.
    let (alive, ended) = oneshot::channel::<()>();
    std::thread::Builder::new().name("http".into()).spawn(move || {
        let _alive = alive;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime for the server");
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("the listener moves to the server's runtime");
            tokio::select! {
                () = serve(listener, router, limits) => {}
                _ = stopped => {}
            }
        });
    })?;
    Ok(tokio::spawn(async move {
        // Dropping `stop` (this task aborted) stops the server's thread; while the task lives,
        // the thread can only have ended by a panic, which the task's awaiter must see.
        let _stop = stop;
        let _ = ended.await;
        panic!("the HTTP server's thread ended");
    }))
}

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
