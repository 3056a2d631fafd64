//! Every sample event in `events/` through its handler, in-process, on the AWS adapters
//! (moto) with the sandbox portal as the installed portal: what `sam local invoke` would do.

use std::collections::BTreeMap;

use lambda_http::aws_lambda_events::event::sqs::SqsEvent;
use lambda_http::request::LambdaRequest;
use olchat_tests::moto::{Moto, provision};
use olchat_tests::spawn_app;
use serde_json::Value;
use shared::crypto::{Sealer, Secret};
use shared::domain::{EntityRef, EntityType};
use shared::i18n::Lang;
use shared::lambda::{AwsSettings, handle_sqs, services};
use shared::ports::JobQueue;
use shared::repo::connectors::{Connector, ConnectorStatus};
use shared::repo::portals::{Portal, TokenOwner, UserAuth};
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
        ("messages.json", (200, "\"messages\":[]")),
        // The sample's portal is installed but does not know the sample's AUTH_ID.
        ("placement.json", (401, "auth_not_confirmed")),
        // No Telegram adapter on this deployment yet: the recipient was never resolved.
        ("send.json", (422, "recipient_not_on_telegram")),
        ("uploads.json", (200, "X-Amz-Signature")),
        ("openline-schedule.json", (0, "")),
        ("openline-worker.json", (0, "")),
        ("telegram-worker.json", (0, "")),
    ])
}

#[tokio::test]
async fn every_sample_event_runs_through_its_handler() {
    let app = spawn_app().await;
    let moto = Moto::start().await;
    let config = moto.config().await;
    let resources = provision(&config, "events", 10).await;
    let settings = AwsSettings {
        table: resources.table.clone(),
        bucket: resources.bucket.clone(),
        telegram_queue: resources.queues[&JobQueue::Telegram].clone(),
        openline_queue: resources.queues[&JobQueue::Openline].clone(),
        encryption_key: Some(Secret::new(Sealer::generate_key())),
        encryption_key_parameter: None,
        bitrix_client_id: shared::sandbox::CLIENT_ID.into(),
        bitrix_app_code: shared::sandbox::APP_CODE.into(),
        bitrix_client_secret: Some(Secret::new(shared::sandbox::CLIENT_SECRET)),
        bitrix_client_secret_parameter: None,
        bitrix_oauth_url: shared::sandbox::Sandbox::oauth_url(&app.app.url),
        s3_path_style: true,
        phone_region: "RU".into(),
        session_minutes: 60,
        portal_rate: Default::default(),
        public_url: app.app.url.clone(),
        // A deployment without Telegram credentials: the port refuses, the tab says why.
        telegram_api_id: None,
        telegram_api_hash: None,
        telegram_api_hash_parameter: None,
        limits: shared::repo::safety::SafetyLimits { phone_pace: std::time::Duration::ZERO, ..Default::default() },
    };
    let svc = services(&config, &settings).await.unwrap();

    // Two portals installed on this deployment, both answering at the sandbox portal.
    let rest = app.app.sandbox.portal.rest_url.clone();
    for (member_id, domain) in [(seed::DEMO_MEMBER_ID, seed::DEMO_DOMAIN), ("8f1d8c3a5b6e4f0a9c2d1e7b3a4c5d6e", "example.bitrix24.com")] {
        let portal = Portal {
            member_id: member_id.into(),
            domain: domain.into(),
            client_endpoint: rest.clone(),
            application_token: None,
            line: None,
            keep_operator_signature: true,
            lang: Lang::En,
            system_messages: false,
            timeline: None,
            region: None,
        };
        svc.portals.save(&portal).await.unwrap();
    }
    let (access, refresh) = app.app.sandbox.portal.issue_tokens(seed::DEMO_MEMBER_ID, 1);
    let auth = UserAuth { access_token: Secret::new(access), refresh_token: Some(Secret::new(refresh)) };
    svc.portals.save_auth(seed::DEMO_MEMBER_ID, TokenOwner::User(1), &auth).await.unwrap();
    let sales = Connector {
        id: "sales".into(),
        member_id: seed::DEMO_MEMBER_ID.into(),
        name: "Sales".into(),
        phone: "+79990001122".into(),
        username: None,
        telegram_user_id: seed::SALES_ACCOUNT,
        status: ConnectorStatus::Connected,
        line: None,
        budgets: None,
        accept_all: false,
        access: Default::default(),
    };
    svc.connectors.save(&sales).await.unwrap();
    let token = svc.sessions.issue(seed::DEMO_MEMBER_ID, 1, Vec::new(), EntityRef { kind: EntityType::Lead, id: 1 }, Lang::En);

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    files.sort();
    let expected = expectations();
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let &(status, needle) = expected.get(name).unwrap_or_else(|| panic!("events/{name} has no expectation in tests/events.rs"));
        let raw = std::fs::read_to_string(&path).unwrap().replace("SESSION_TOKEN", &token);
        let event: Value = serde_json::from_str(&raw).unwrap();
        if event.get("Records").is_some() {
            let queue = if name.starts_with("telegram") { JobQueue::Telegram } else { JobQueue::Openline };
            let batch: SqsEvent = serde_json::from_value(event).unwrap();
            let response = handle_sqs(&svc, queue, batch).await;
            assert!(response.batch_item_failures.is_empty(), "{name}: {response:?}");
            continue;
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
    // The schedule's tick queued a catch-up of the connector, in its FIFO group.
    let queued = svc.queue.receive(JobQueue::Telegram, 10, std::time::Duration::from_secs(30)).await.unwrap();
    assert!(queued.iter().any(|d| d.body.contains("\"catch_up\"") && d.body.contains("\"sales\"")), "{queued:?}");
}

/// The request lambda_http hands the router, with its body as axum's.
fn http_request(event: LambdaRequest) -> axum::http::Request<axum::body::Body> {
    let request: lambda_http::http::Request<lambda_http::Body> = event.into();
    request.map(|body| axum::body::Body::from(body.to_vec()))
}
