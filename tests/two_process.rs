//! The app exactly as deployed: the sandbox portal as its own process ("Bitrix24"), the app
//! in real mode as another, pointed at it over HTTP and installed through the real install
//! flow. Needs the `local` binary built (`cargo build -p local`; tests/run does it first).

use std::time::Duration;

use olchat_tests::deployed::Deployed;
use olchat_tests::{eventually, fresh_key};
use reqwest::StatusCode;
use serde_json::json;
use shared::sandbox::seed;
use shared::sandbox::telegram::LOGIN_CODE;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn the_app_in_real_mode_is_installed_by_a_portal_in_another_process_and_publishes_there() {
    let deployed = Deployed::start().await;
    deployed.app_says("real mode").await;
    deployed.app_says("Portals: FOR TESTING, a stand-in portal only").await;
    deployed.app_says("Telegram: the sandbox Telegram in this process").await;
    deployed.portal_says("running on its own").await;
    // Real mode has no sandbox: neither its pages nor its portal.
    for path in ["/sandbox", "/sandbox/open?entity=lead&id=1", "/sandbox/portal/openlines/messages"] {
        let status = deployed.http.get(format!("{}{path}", deployed.app_url)).send().await.unwrap().status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }

    let (status, page) = deployed.install(seed::DEMO_MEMBER_ID).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("BX24.installFinish()"), "{page}");
    let state = deployed.portal_json(&format!("/sandbox/portal/state?member_id={}", seed::DEMO_MEMBER_ID)).await;
    assert!(state["placements"].as_array().is_some_and(|p| !p.is_empty()), "the install bound the card tabs: {state}");

    // The administrator connects a Telegram account on the app's own page.
    let admin = deployed.open("/sandbox/connectors?lang=en").await;
    let step = deployed.post(&admin, "/api/connectors/login/phone", json!({ "phone": seed::SPARE_PHONE })).await;
    assert_eq!(step.status, StatusCode::OK, "{}", step.body);
    let login_id = step.body["login_id"].as_str().unwrap().to_owned();
    let done = deployed.post(&admin, "/api/connectors/login/code", json!({ "login_id": login_id, "code": LOGIN_CODE })).await;
    assert_eq!(done.body["step"], "done", "{}", done.body);

    // A manager opens the lead's tab through the portal's placement POST and sends.
    let tab = deployed.open("/sandbox/open?entity=lead&id=1&lang=en").await;
    let card = deployed.get(&tab, &format!("/api/card?connector={login_id}")).await;
    assert_eq!(card.status, StatusCode::OK, "{}", card.body);
    let body = json!({ "connector_id": login_id, "recipient": "phone:+79161234567", "text": "Across two processes",
                       "idempotency_key": fresh_key(), "publication": "outgoing", "create_activity": true });
    let sent = deployed.post(&tab, "/api/send", body).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
    let id = sent.body["message_id"].as_str().unwrap().to_owned();

    let published = eventually(WAIT, "the publication in the portal's Open Line", || async {
        let messages = deployed.portal_json("/sandbox/portal/openlines/messages").await;
        messages["messages"].as_array()?.iter().find(|m| m["text"] == "Across two processes").cloned()
    })
    .await;
    assert_eq!(published["direction"], "outgoing", "{published}");
    eventually(WAIT, "the activity marked sent", || async {
        let activities = deployed.portal_json("/sandbox/portal/activities").await;
        activities["activities"].as_array()?.iter().find(|a| a["origin_id"] == id.as_str() && a["status"]["title"] == "Sent").cloned()
    })
    .await;
    let view = deployed.get(&tab, &format!("/api/messages/{id}")).await;
    assert_eq!(view.body["status"], "sent", "{}", view.body);
}

#[tokio::test]
async fn some_real_credentials_without_the_rest_refuse_to_start_and_say_what_is_missing() {
    let bin = olchat_tests::deployed::local_binary();
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(bin)
        .env_clear()
        .env("OLCHAT_ADDR", "127.0.0.1:0")
        .env("OLCHAT_DATA_DIR", dir.path())
        .env("BITRIX_CLIENT_ID", "local.abc123")
        .env("OLCHAT_PUBLIC_URL", "http://olchat.example.com")
        .output()
        .unwrap();
    assert!(!output.status.success(), "it must not start");
    let said = String::from_utf8_lossy(&output.stderr);
    for missing in ["BITRIX_CLIENT_SECRET", "OLCHAT_ENCRYPTION_KEY", "TELEGRAM_API_ID", "TELEGRAM_API_HASH", "must start with https://"] {
        assert!(said.contains(missing), "{missing} in: {said}");
    }
    assert!(!said.contains("BITRIX_CLIENT_ID:"), "the client id is set: {said}");
    assert!(!dir.path().join("sandbox.key").exists(), "no sandbox started");
}
