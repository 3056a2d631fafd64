//! Every sample event in `events/` through its handler, in-process, on the AWS adapters
//! (moto) with the sandbox portal as the installed portal and the sandbox Telegram as the
//! Telegram port: what `sam local invoke` would do. The worker samples name a message that
//! exists (`olchat_tests::samples`), so each runs a job to its end: the send reaches Telegram,
//! the publication reaches the Open Line and the activity shows it sent.

use std::collections::BTreeMap;
use std::sync::Arc;

use lambda_http::aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::request::LambdaRequest;
use olchat_tests::moto::{Moto, provision};
use olchat_tests::{drain, samples, spawn_app};
use serde_json::Value;
use shared::app::Services;
use shared::crypto::MasterKey;
use shared::domain::{EntityRef, EntityType, MessageStatus, Publication};
use shared::i18n::Lang;
use shared::work::Job;
use shared::lambda::handle_sqs;
use shared::ports::JobQueue;
use shared::repo::portals::Portal;
use shared::sandbox::seed;
use tower::ServiceExt;

/// What each sample must answer: HTTP status and a string in the body, or no batch failures.
fn expectations() -> BTreeMap<&'static str, (u16, &'static str)> {
    BTreeMap::from([
        // The sample's portal is installed, but without the sample's application_token.
        ("bitrix-event.json", (401, "application_token")),
        ("card.json", (200, "\"recipients\"")),
        // A domain under `.test` is no portal's: refused before any request.
        ("install.json", (400, "bad_domain")),
        // Before any message was sent from the card.
        ("messages.json", (200, "\"messages\":[]")),
        // The sample's portal is installed but does not know the sample's AUTH_ID.
        ("placement.json", (401, "auth_not_confirmed")),
        // Ivan's phone, resolved when card.json opened the card: stored and queued.
        ("send.json", (202, "\"message_id\"")),
        ("uploads.json", (200, "X-Amz-Signature")),
        // The worker samples: checked one by one below, in the order a message goes.
        ("openline-schedule.json", (0, "")),
        ("openline-worker.json", (0, "")),
        ("telegram-worker.json", (0, "")),
    ])
}

/// A worker sample through `handle_sqs`; every record must be done (no batch failure).
async fn run_sqs_sample(svc: &Services, name: &str) {
    let raw = std::fs::read_to_string(events_dir().join(name)).unwrap();
    let queue = if name.starts_with("telegram") { JobQueue::Telegram } else { JobQueue::Openline };
    let batch: SqsEvent = serde_json::from_str(&raw).unwrap();
    let response: SqsBatchResponse = handle_sqs(svc, queue, batch).await;
    assert!(response.batch_item_failures.is_empty(), "{name}: {response:?}");
}


fn events_dir() -> std::path::PathBuf {
    olchat_tests::workspace().join("events")
}

#[tokio::test]
async fn every_sample_event_runs_through_its_handler() {
    let app = spawn_app().await;
    let moto = Moto::start().await;
    let config = moto.config().await;
    let resources = provision(&config, "events", 10).await;
    // A deployment on moto whose grammers adapter talks to the sandbox data centres.
    let key = MasterKey::generate_key();
    let mut svc = samples::deployment(&config, &resources, &key, &app).await;
    svc.telegram = samples::sandbox_telegram(&config, &resources, &key, &app).await;
    let svc = Arc::new(svc);

    // The demo portal (the worker samples' message is its), and a second portal, both
    // answering at the sandbox portal.
    samples::install_demo_portal(&svc, &app).await;
    let other = Portal {
        member_id: "8f1d8c3a5b6e4f0a9c2d1e7b3a4c5d6e".into(),
        domain: "example.bitrix24.com".into(),
        client_endpoint: app.app.sandbox().portal.rest_url.clone(),
        application_token: None,
        line: None,
        keep_operator_signature: true,
        lang: Lang::En,
        system_messages: false,
        timeline: None,
        region: None,
        install_id: String::new(),
        provider_connector: None,
    };
    svc.portals.save(&other).await.unwrap();
    let demo = svc.portals.get(seed::DEMO_MEMBER_ID).await.unwrap().expect("the demo portal is installed");
    let token = svc.sessions.issue(&demo.installed(), 1, Vec::new(), None, EntityRef { kind: EntityType::Lead, id: 1 }, Lang::En);

    let dir = events_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    files.sort();
    let expected = expectations();
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let &(status, needle) = expected.get(name).unwrap_or_else(|| panic!("events/{name} has no expectation in tests/events.rs"));
        let raw = std::fs::read_to_string(&path).unwrap().replace("SESSION_TOKEN", &token);
        let event: Value = serde_json::from_str(&raw).unwrap();
        if event.get("Records").is_some() {
            continue; // below
        }
        let request: LambdaRequest = serde_json::from_value(event).unwrap();
        let request = http_request(request);
        let router = match request.uri().path() {
            "/placement" | "/api/card" => shared::http::placement_router(svc.clone()),
            path if path.starts_with("/bitrix/") => shared::http::bitrix_events_router(svc.clone()),
            _ => shared::http::send_router(svc.clone()),
        };
        let response = router.oneshot(request).await.unwrap();
        let code = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(code, status, "{name}: {body}");
        assert!(body.contains(needle), "{name}: {body}");
    }
    // send.json stored its message and queued its send.
    let queued = drain(&svc, JobQueue::Telegram).await;
    assert!(queued.iter().any(|j| matches!(j, Job::Send { connector_id, .. } if connector_id == "sales")), "{queued:?}");

    // The schedule's tick queues a catch-up of every connected account, in its FIFO group.
    run_sqs_sample(&svc, "openline-schedule.json").await;
    let queued = drain(&svc, JobQueue::Telegram).await;
    assert!(queued.contains(&Job::CatchUp { member_id: seed::DEMO_MEMBER_ID.into(), connector_id: "sales".into() }), "{queued:?}");

    // The telegram-worker sends the sample's message: Ivan gets it from the sales account,
    // the message is sent, and its publication is handed to the openline-worker.
    svc.messages.create(&samples::message(&app, MessageStatus::Queued)).await.unwrap();
    run_sqs_sample(&svc, "telegram-worker.json").await;
    let message = svc.messages.get(samples::MESSAGE_ID).await.unwrap().unwrap();
    assert_eq!(message.status, MessageStatus::Sent, "{message:?}");
    let received = app.app.sandbox().telegram.received();
    let got = received.iter().find(|m| m.text == samples::TEXT).expect("the sample's text reached Telegram");
    assert_eq!((got.from_user_id, got.to_user_id, got.media.as_str()), (seed::SALES_ACCOUNT, samples::IVAN, "text"));
    assert_eq!(message.parts[0].telegram_id, Some(got.id));
    let handed_on = drain(&svc, JobQueue::Openline).await;
    let publish = Job::Publish { message_id: samples::MESSAGE_ID.into(), member_id: seed::DEMO_MEMBER_ID.into() };
    assert!(handed_on.contains(&publish), "{handed_on:?}");

    // The openline-worker publishes it as Anna's, once, and the lead's activity shows it sent.
    run_sqs_sample(&svc, "openline-worker.json").await;
    let message = svc.messages.get(samples::MESSAGE_ID).await.unwrap().unwrap();
    assert!(matches!(message.published, Some(Publication::Published { .. })), "{message:?}");
    let published: Vec<_> = app.ol_messages().await.into_iter().filter(|m| m["text"] == samples::TEXT).collect();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!((published[0]["direction"].as_str(), published[0]["author"].as_str()), (Some("outgoing"), Some("Anna Smirnova")));
    let activities = app.activities().await;
    let activity = activities.iter().find(|a| a["layout"].to_string().contains(samples::TEXT)).expect("the activity was created");
    assert_eq!(activity["owner"], serde_json::json!({ "type_id": 1, "id": 1 }), "on the lead");
    assert_eq!(activity["status"]["title"], "Sent", "{activity}");
    // A redelivery repeats nothing.
    run_sqs_sample(&svc, "openline-worker.json").await;
    assert_eq!(app.ol_messages().await.iter().filter(|m| m["text"] == samples::TEXT).count(), 1);
}

/// The request lambda_http hands the router, with its body as axum's.
fn http_request(event: LambdaRequest) -> axum::http::Request<axum::body::Body> {
    let request: lambda_http::http::Request<lambda_http::Body> = event.into();
    request.map(|body| axum::body::Body::from(body.to_vec()))
}
