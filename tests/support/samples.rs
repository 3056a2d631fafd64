//! The state the sample worker events in `events/` name, put into a deployment's storage:
//! the sandbox demo portal installed (its own tokens, the Open Line the sandbox activated),
//! the `sales` connector, and message `MESSAGE_ID` from the lead to Ivan Petrov. With it the
//! samples run a job that succeeds instead of one dropped for naming nothing.

use std::sync::Arc;

use aws_config::SdkConfig;
use shared::adapters::aws::DynamoTable;
use shared::adapters::grammers::session::TableSession;
use shared::adapters::grammers::{ApiCredentials, GrammersTelegram, KeyRegistry, Servers};
use shared::crypto::MasterKey;
use shared::ports::{Table, Telegram};
use shared::repo::Records;
use shared::repo::sessions::TelegramSessions;
use shared::sandbox::telegram::rpc as telegram_rpc;
use shared::app::Services;
use shared::crypto::Secret;
use shared::lambda::{AwsSettings, services};
use shared::ports::JobQueue;
use shared::domain::{EntityRef, EntityType, Message, MessageStatus, Part, Peer, PublicationMode, RecipientKey, TelegramUsername};
use shared::i18n::Lang;
use shared::repo::connectors::Connector;
use shared::repo::portals::{Portal, TokenOwner, UserAuth};
use shared::sandbox::seed;

use crate::TestApp;
use crate::moto::Resources;

/// The message `events/telegram-worker.json` sends and `events/openline-worker.json` publishes.
pub const MESSAGE_ID: &str = "0b6d3c1e-5f2a-4e8b-9c7d-1a2b3c4d5e6f";
pub const TEXT: &str = "Good afternoon! The chairs ship on Friday.";
/// Ivan Petrov, as the sandbox Telegram knows him.
pub const IVAN: i64 = 1001;

/// The services of a deployment on moto's `resources`, sealing with `encryption_key` (base64),
/// whose portals answer at `app`'s sandbox; no Telegram credentials (the port refuses).
pub async fn deployment(config: &SdkConfig, resources: &Resources, encryption_key: &str, app: &TestApp) -> Services {
    let settings = AwsSettings {
        table: resources.table.clone(),
        bucket: resources.bucket.clone(),
        telegram_queue: resources.queues[&JobQueue::Telegram].clone(),
        openline_queue: resources.queues[&JobQueue::Openline].clone(),
        encryption_key: Some(Secret::new(encryption_key)),
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
        check_rate: shared::bitrix::pacer::CHECK_RATE,
        // The sandbox portal answers on the loopback.
        allow_loopback_portals: true,
        public_url: app.app.url.clone(),
        telegram_api_id: None,
        telegram_api_hash: None,
        telegram_api_hash_parameter: None,
        limits: shared::repo::safety::SafetyLimits { phone_pace: std::time::Duration::ZERO, ..Default::default() },
    };
    let svc = services(config, &settings).await.expect("the services start");
    std::sync::Arc::try_unwrap(svc).ok().expect("nothing else holds the services yet")
}

/// The grammers adapter of a deployment on moto's `resources` (its sessions in the
/// deployment's table, sealed with `encryption_key`), against `app`'s sandbox data centres,
/// with the `sales` connector logged in as the sandbox sales account.
pub async fn sandbox_telegram(config: &SdkConfig, resources: &Resources, encryption_key: &str, app: &TestApp) -> Arc<dyn Telegram> {
    let table: Arc<dyn Table> = Arc::new(DynamoTable::new({ let dynamo = aws_sdk_dynamodb::Client::new(config); move || dynamo }, &resources.table));
    let sessions = TelegramSessions::new(Records::new(table), &MasterKey::from_base64(encryption_key).expect("a key"));
    let world = app.app.sandbox().telegram.clone();
    let sales = world.users().into_iter().find(|u| u.id == seed::SALES_ACCOUNT).expect("seeded");
    let session = TableSession::registered(&world.register_keys(Some(sales.id)), Some((sales.id, sales.access_hash)));
    sessions.save("sales", &session.to_bytes()).await.expect("the session is stored");
    let credentials = ApiCredentials { api_id: telegram_rpc::API_ID, api_hash: Secret::new(telegram_rpc::API_HASH) };
    Arc::new(GrammersTelegram::new(credentials, sessions, Servers::Registered(world)))
}

/// Installs the demo portal on a deployment the way the install flow leaves it, against the
/// sandbox portal of `app`: the portal with the line the app's own install activated there,
/// the portal's tokens (an administrator's, user 1) and user 1's, and the sales connector.
pub async fn install_demo_portal(svc: &Services, app: &TestApp) {
    let installed = app.app.services.portals.get(seed::DEMO_MEMBER_ID).await.unwrap().expect("the sandbox installed the demo portal");
    assert!(installed.line.is_some(), "the install activated the connector on a line: {installed:?}");
    let portal = Portal {
        member_id: seed::DEMO_MEMBER_ID.into(),
        domain: seed::DEMO_DOMAIN.into(),
        client_endpoint: app.app.sandbox().portal.rest_url.clone(),
        application_token: None,
        line: installed.line,
        keep_operator_signature: true,
        lang: Lang::En,
        system_messages: false,
        timeline: installed.timeline,
        region: installed.region,
        install_id: installed.install_id,
        provider_connector: None,
    };
    svc.portals.save(&portal).await.unwrap();
    for owner in [TokenOwner::App, TokenOwner::User(1)] {
        let (access, refresh) = app.app.sandbox().portal.issue_tokens(seed::DEMO_MEMBER_ID, 1);
        let auth = UserAuth { access_token: Secret::new(access), refresh_token: Some(Secret::new(refresh)) };
        svc.portals.save_auth(seed::DEMO_MEMBER_ID, owner, &auth).await.unwrap();
    }
    let sales = Connector::connected(seed::DEMO_MEMBER_ID, "sales", "Sales", "+79990001122".into(), None, seed::SALES_ACCOUNT);
    svc.connectors.save(&sales).await.unwrap();
}

/// The sample message as `POST /api/send` stores it (published as written by Anna Smirnova,
/// user 1, with an activity on the lead), in `status`; a sent one has its Telegram id.
pub fn message(app: &TestApp, status: MessageStatus) -> Message {
    let sent = status == MessageStatus::Sent;
    let ivan = app.app.sandbox().telegram.users().into_iter().find(|u| u.id == IVAN).expect("Ivan is a sandbox Telegram user");
    Message {
        id: MESSAGE_ID.into(),
        member_id: seed::DEMO_MEMBER_ID.into(),
        user_id: 1,
        entity: EntityRef { kind: EntityType::Lead, id: 1 },
        connector_id: "sales".into(),
        recipient: RecipientKey::Username(TelegramUsername::parse("ivan_petrov").unwrap()),
        recipient_name: "@ivan_petrov".into(),
        peer: Peer { user_id: ivan.id, access_hash: ivan.access_hash },
        parts: vec![Part { text: TEXT.into(), media: None, sent, telegram_id: sent.then_some(1) }],
        status,
        failure: None,
        retry_at: None,
        created_at: shared::clock::now_millis(),
        lang: Lang::En,
        client_name: "Ivan Petrov".into(),
        publication: PublicationMode::Outgoing,
        published: None,
        create_activity: true,
        activity: None,
        activity_requested: false,
        lease: None,
        origin: None,
        send_at: None,
    }
}
