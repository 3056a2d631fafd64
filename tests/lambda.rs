//! The deployable Lambda binaries, run by `cargo lambda watch` (the Lambda Runtime API
//! emulator; PyPI `cargo-lambda`) against moto, each invoked with its sample from `events/`.
//! `sam local invoke` needs Docker; this runs the same events through the same binaries.
//! First a fresh deployment refuses each HTTP sample; then, with the state the worker samples
//! name put into the table (`olchat_tests::samples`), each worker binary runs its job to the
//! end against the sandbox portal.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use olchat_tests::moto::{Moto, free_port, provision};
use olchat_tests::{drain, samples, spawn_app, workspace};
use serde_json::{Value, json};
use shared::crypto::MasterKey;
use shared::domain::{MessageStatus, Publication};
use shared::work::Job;
use shared::ports::JobQueue;
use shared::sandbox::seed;

/// `CARGO_LAMBDA`, else the venv `.ci/run` makes, else `cargo-lambda` on the PATH.
fn cargo_lambda() -> PathBuf {
    if let Ok(path) = std::env::var("CARGO_LAMBDA") {
        return path.into();
    }
    let venv = PathBuf::from("/opt/olchat-tools/bin/cargo-lambda");
    if venv.exists() { venv } else { "cargo-lambda".into() }
}

/// Stops `cargo lambda watch` and the functions it started (its process group) when dropped;
/// keeps what they wrote (the functions' JSON logs) for the assertion messages.
struct Watch(Child, tempfile::NamedTempFile);

impl Watch {
    /// The end of what the watcher and its function wrote so far.
    fn logs(&self) -> String {
        let all = std::fs::read_to_string(self.1.path()).unwrap_or_default();
        let start = all.char_indices().rev().nth(6000).map_or(0, |(i, _)| i);
        all[start..].to_owned()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The watcher ignores SIGTERM; the functions it started exit once its API is gone.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Invokes the function with its sample, off the test's runtime: that runtime also serves the
/// sandbox portal the function calls, and must not be blocked while the function runs.
async fn invoke(port: u16, function: &'static str, event: &'static str) -> Value {
    tokio::task::spawn_blocking(move || invoke_blocking(port, function, event)).await.expect("the invocation ran")
}

fn invoke_blocking(port: u16, function: &str, event: &str) -> Value {
    let output = Command::new(cargo_lambda())
        .args(["lambda", "invoke", function, "-A", "127.0.0.1", "-P", &port.to_string(), "--output-format", "json"])
        .arg("--data-file")
        .arg(workspace().join("events").join(event))
        .current_dir(workspace())
        .output()
        .expect("cargo lambda invoke runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{function} {event}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{function} {event}: {e}: {stdout}"))
}

/// The Runtime API emulator serving one function's package; stopped when dropped.
async fn watch(function: &str, env: &[(&str, String)]) -> (Watch, u16) {
    let port = free_port();
    let log = tempfile::NamedTempFile::new().expect("a log file");
    // In a session of its own, without a terminal: the watcher manages process groups and
    // signals, and must not touch the test runner's.
    let child = Command::new("setsid")
        .arg(cargo_lambda())
        .args(["lambda", "watch", "--package", function, "-A", "127.0.0.1", "-P", &port.to_string(), "--ignore-changes"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(log.reopen().expect("the log file"))
        .stderr(log.reopen().expect("the log file"))
        .spawn()
        .expect("cargo lambda watch starts (pip install cargo-lambda; .ci/run installs it)");
    let watch = Watch(child, log);
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (watch, port)
}

#[tokio::test]
async fn the_lambda_binaries_answer_their_sample_events() {
    let moto = Moto::start().await;
    let config = moto.config().await;
    let resources = provision(&config, "lambda", 10).await;
    // The encryption key comes from SSM as in a deployment.
    let ssm = aws_sdk_ssm::Client::new(&config);
    let key = MasterKey::generate_key();
    let put = ssm.put_parameter().name("/olchat/encryption-key").value(&key);
    put.r#type(aws_sdk_ssm::types::ParameterType::SecureString).send().await.unwrap();

    let queue = |q: JobQueue| resources.queues[&q].clone();
    let env = [
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("OLCHAT_TABLE", resources.table.clone()),
        ("OLCHAT_BUCKET", resources.bucket.clone()),
        ("OLCHAT_S3_PATH_STYLE", "true".into()),
        ("OLCHAT_TELEGRAM_QUEUE_URL", queue(JobQueue::Telegram).queue),
        ("OLCHAT_TELEGRAM_DLQ_URL", queue(JobQueue::Telegram).dead_letters),
        ("OLCHAT_OPENLINE_QUEUE_URL", queue(JobQueue::Openline).queue),
        ("OLCHAT_OPENLINE_DLQ_URL", queue(JobQueue::Openline).dead_letters),
        ("OLCHAT_ENCRYPTION_KEY_PARAMETER", "/olchat/encryption-key".into()),
        ("BITRIX_CLIENT_ID", "local.test".into()),
        ("OLCHAT_PUBLIC_URL", "https://olchat.execute-api.eu-central-1.amazonaws.com".into()),
        ("BITRIX_CLIENT_SECRET", "test-secret".into()),
        // The deployment's portal is the sandbox's, on the loopback: a test's explicit opening.
        ("OLCHAT_ALLOW_LOOPBACK_PORTALS", "true".into()),
        // The grammers adapter is built at cold start; nothing here reaches Telegram.
        ("TELEGRAM_API_ID", "12345".into()),
        ("TELEGRAM_API_HASH", "0123456789abcdef0123456789abcdef".into()),
    ];
    // A fresh deployment: no portal installed, no session; every answer is a clear refusal.
    let cases = [
        ("placement", "placement.json", 403, "unknown_portal"),
        ("placement", "card.json", 401, "bad_session"),
        ("send", "send.json", 401, "bad_session"),
        ("send", "uploads.json", 401, "bad_session"),
        ("send", "messages.json", 401, "bad_session"),
        ("bitrix-events", "install.json", 400, "bad_domain"),
        ("bitrix-events", "bitrix-event.json", 401, "application_token"),
    ];
    for (function, event, status, code) in cases {
        let (_watch, port) = watch(function, &env).await;
        let answer = invoke(port, function, event).await;
        assert_eq!(answer["statusCode"], status, "{function} {event}: {answer}");
        let body = answer["body"].as_str().unwrap_or_default();
        assert!(body.contains(code), "{function} {event}: {body}");
    }

    // The deployment's portal is the sandbox demo portal; the sample message was sent, and its
    // worker stopped before handing it on (Telegram itself is out of reach: grammers needs a
    // real data centre). The telegram-worker's run hands it on: publication and catch-up queued.
    let app = spawn_app().await;
    let svc = samples::deployment(&config, &resources, &key, &app).await;
    samples::install_demo_portal(&svc, &app).await;
    svc.messages.create(&samples::message(&app, MessageStatus::Sent)).await.unwrap();
    let (watch_telegram, port) = watch("telegram-worker", &env).await;
    let answer = invoke(port, "telegram-worker", "telegram-worker.json").await;
    assert_eq!(answer["batchItemFailures"], json!([]), "telegram-worker: {answer}\n{}", watch_telegram.logs());
    drop(watch_telegram);
    let publish = Job::Publish { message_id: samples::MESSAGE_ID.into(), member_id: seed::DEMO_MEMBER_ID.into() };
    let handed_on = drain(&svc, JobQueue::Openline).await;
    assert!(handed_on.contains(&publish), "{handed_on:?}");
    let caught_up = drain(&svc, JobQueue::Telegram).await;
    assert!(caught_up.contains(&Job::CatchUp { member_id: seed::DEMO_MEMBER_ID.into(), connector_id: "sales".into() }), "{caught_up:?}");

    // The openline-worker publishes it into the Open Line as Anna's, and creates the lead's
    // activity showing it sent.
    let (watch_openline, port) = watch("openline-worker", &env).await;
    let answer = invoke(port, "openline-worker", "openline-worker.json").await;
    assert_eq!(answer["batchItemFailures"], json!([]), "openline-worker: {answer}\n{}", watch_openline.logs());
    let message = svc.messages.get(samples::MESSAGE_ID).await.unwrap().unwrap();
    assert!(matches!(message.published, Some(Publication::Published { .. })), "{message:?}\n{}", watch_openline.logs());
    let published: Vec<_> = app.ol_messages().await.into_iter().filter(|m| m["text"] == samples::TEXT).collect();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!((published[0]["direction"].as_str(), published[0]["author"].as_str()), (Some("outgoing"), Some("Anna Smirnova")));
    let activities = app.activities().await;
    let activity = activities.iter().find(|a| a["layout"].to_string().contains(samples::TEXT)).expect("the activity was created");
    assert_eq!(activity["status"]["title"], "Sent", "{activity}");
}
