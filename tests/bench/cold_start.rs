//! Cold start of each Lambda binary: process start → first event served, through a minimal
//! Lambda Runtime API served here, as a ratio to a hello-world `lambda_runtime` binary.
//! `cargo build --release -p placement -p send -p bitrix-events -p telegram-worker -p openline-worker -p hello-lambda`
//! then `cargo run --release -p olchat-tests --bin cold-start` (`LAMBDA_BINARIES=dir` if they
//! were built elsewhere).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use tokio::sync::{Mutex, mpsc};

const ROUNDS: usize = 15;

struct Api {
    event: Mutex<String>,
    done: mpsc::Sender<bool>,
    /// When the function asked for its first event: its init is over.
    ready: Mutex<Option<Instant>>,
}

async fn next(State(api): State<Arc<Api>>) -> (HeaderMap, String) {
    api.ready.lock().await.get_or_insert_with(Instant::now);
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", "bench-request".parse().unwrap());
    headers.insert("lambda-runtime-deadline-ms", "9999999999999".parse().unwrap());
    headers.insert("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:bench".parse().unwrap());
    headers.insert("lambda-runtime-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793".parse().unwrap());
    (headers, api.event.lock().await.clone())
}

async fn response(State(api): State<Arc<Api>>, Path(_id): Path<String>) -> &'static str {
    let _ = api.done.send(true).await;
    "ok"
}

async fn error(State(api): State<Arc<Api>>) -> &'static str {
    let _ = api.done.send(false).await;
    "ok"
}

/// Where the release binaries are: `LAMBDA_BINARIES`, else the workspace's target/release.
fn release(name: &str) -> PathBuf {
    let dir = std::env::var("LAMBDA_BINARIES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| olchat_tests::workspace().join("target/release"));
    dir.join(name)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (done, mut finished) = mpsc::channel(4);
    let api = Arc::new(Api { event: Mutex::new(String::new()), done, ready: Mutex::new(None) });
    // Real AWS protocols on loopback, so the first event's work is what it would be.
    let moto = olchat_tests::moto::Moto::start().await;
    let resources = olchat_tests::moto::provision(&moto.config().await, "bench", 10).await;
    let queue = |q: shared::ports::JobQueue| resources.queues[&q].clone();
    let (telegram, openline) = (queue(shared::ports::JobQueue::Telegram), queue(shared::ports::JobQueue::Openline));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let router = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(api.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let events = olchat_tests::workspace().join("events");
    let cases = [
        ("hello-lambda", "card.json"),
        ("placement", "card.json"),
        ("send", "messages.json"),
        ("bitrix-events", "bitrix-event.json"),
        ("telegram-worker", "telegram-worker.json"),
        ("openline-worker", "openline-worker.json"),
    ];
    // Configuration as deployed, with the key given directly: no AWS call during init.
    let env = [
        ("AWS_LAMBDA_RUNTIME_API", address.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("OLCHAT_S3_PATH_STYLE", "true"),
        ("OLCHAT_TABLE", resources.table.as_str()),
        ("OLCHAT_BUCKET", resources.bucket.as_str()),
        ("OLCHAT_TELEGRAM_QUEUE_URL", telegram.queue.as_str()),
        ("OLCHAT_TELEGRAM_DLQ_URL", telegram.dead_letters.as_str()),
        ("OLCHAT_OPENLINE_QUEUE_URL", openline.queue.as_str()),
        ("OLCHAT_OPENLINE_DLQ_URL", openline.dead_letters.as_str()),
        ("OLCHAT_ENCRYPTION_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
        ("OLCHAT_PUBLIC_URL", "https://bench.example"),
        ("BITRIX_CLIENT_ID", "bench"),
        ("BITRIX_CLIENT_SECRET", "bench"),
        ("RUST_LOG", "off"),
    ];
    println!("| binary | size (stripped) | init p50 (start → asks for its first event) | ratio | start → first event served p50 | ratio |\n|---|---|---|---|---|---|");
    let mut floor = None;
    for (binary, event) in cases {
        let path = release(binary);
        let size = std::fs::metadata(&path).map_err(|e| anyhow::anyhow!("{}: {e} (build it first)", path.display()))?.len();
        *api.event.lock().await = std::fs::read_to_string(events.join(event))?;
        let (mut inits, mut samples) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
        for _ in 0..ROUNDS {
            *api.ready.lock().await = None;
            let started = Instant::now();
            // As the template configures Lambda: one CA bundle file, no directory to scan
            // (otherwise rustls reads every file of /etc/ssl/certs at start).
            let mut child = Command::new(&path)
                .envs(env)
                .env_remove("SSL_CERT_DIR")
                .env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let served = tokio::time::timeout(Duration::from_secs(20), finished.recv()).await;
            samples.push(started.elapsed());
            inits.push(api.ready.lock().await.map_or(Duration::MAX, |at| at - started));
            child.kill()?;
            child.wait()?;
            match served {
                Ok(Some(true)) => {}
                other => anyhow::bail!("{binary} did not serve its event: {other:?}"),
            }
        }
        samples.sort();
        inits.sort();
        let (init, served) = (inits[ROUNDS / 2], samples[ROUNDS / 2]);
        let (init_floor, served_floor) = *floor.get_or_insert((init, served));
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {binary} | {:.1} MB | {:.1} ms | {:.2} × | {:.1} ms | {:.2} × |",
            size as f64 / 1e6,
            ms(init),
            init.as_secs_f64() / init_floor.as_secs_f64(),
            ms(served),
            served.as_secs_f64() / served_floor.as_secs_f64()
        );
    }
    Ok(())
}
