//! The single-server deployment keeps each account connected: one long-lived connection per
//! account takes the updates the sandbox data centres push (real MTProto on loopback), with
//! no catch-up schedule at all (`catch_up_every: None`), and falls back to the catch-up over
//! a new connection after the data centre dropped the old one. The first test runs the
//! `local` binary itself (`cargo build -p local` first; tests/run does it), as deployed.

use std::time::Duration;

use olchat_tests::deployed::{Process, answering, free_port, lead_tab, local_binary};
use olchat_tests::{TestApp, eventually, fresh_key, spawn_app_with};
use reqwest::StatusCode;
use serde_json::json;
use shared::repo::connectors::ConnectorStatus;
use shared::sandbox::seed;
use shared::sandbox::telegram::{AccountStats, Fault, FaultTarget};

const IVAN: &str = "phone:+79161234567";
const IVAN_ID: i64 = 1001;
const WAIT: Duration = Duration::from_secs(15);

/// An instance whose accounts stay connected, and nothing else catches up.
async fn spawn_listening() -> TestApp {
    let app = spawn_app_with(|s| {
        s.catch_up_every = None;
        s.keep_connected = true;
    })
    .await;
    listening(&app).await;
    app
}

/// Once the sales account's kept connection has had its first look.
async fn listening(app: &TestApp) {
    eventually(WAIT, "the sales account listening", || async { app.app.services.listening.covers("sales").then_some(()) }).await;
}

fn sales(app: &TestApp) -> AccountStats {
    app.app.sandbox().telegram.stats().accounts.get(&seed::SALES_ACCOUNT).cloned().unwrap_or_default()
}

fn calls(stats: &AccountStats, method: &str) -> u64 {
    stats.calls.get(method).copied().unwrap_or(0)
}

async fn client_writes(app: &TestApp, text: &str) {
    let body = json!({ "from_user_id": IVAN_ID, "to_user_id": seed::SALES_ACCOUNT, "text": text, "attach": "none" });
    let answer = app.post_json("/sandbox/telegram/reply", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

async fn in_open_line(app: &TestApp, text: &str) {
    eventually(WAIT, &format!("{text:?} in the Open Line"), || async {
        app.ol_messages().await.into_iter().any(|m| m["text"] == text && m["external_id"].as_str().is_some_and(|e| e.starts_with("tg-"))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_single_server_deployment_delivers_a_clients_reply_without_any_catch_up() {
    let (dir, http) = (tempfile::tempdir().unwrap(), reqwest::Client::new());
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut command = std::process::Command::new(local_binary());
    // No catch-up schedule at all; accounts stay connected (the default).
    command.env_clear().env("RUST_LOG", "warn").env("OLCHAT_ADDR", &url[7..]).env("OLCHAT_DATA_DIR", dir.path()).env("OLCHAT_CATCH_UP_SECS", "0");
    let process = Process::spawn(command);
    answering(&http, &url).await;
    let stats = || async { http.get(format!("{url}/sandbox/telegram/stats")).send().await.unwrap().json::<serde_json::Value>().await.unwrap() };
    let sales = |stats: serde_json::Value| stats["accounts"][seed::SALES_ACCOUNT.to_string()].clone();
    eventually(WAIT, "the sales account's connection receiving its updates", || async { (sales(stats().await)["listening"] == 1).then_some(()) }).await;
    let tab = lead_tab(&http, &url).await;
    let card = http.get(format!("{url}/api/card?connector=sales")).bearer_auth(&tab).send().await.unwrap();
    assert_eq!(card.status(), StatusCode::OK);
    let body = json!({ "connector_id": "sales", "recipient": IVAN, "text": "Here is our offer", "idempotency_key": fresh_key(),
                       "publication": "incoming", "create_activity": true });
    let sent = http.post(format!("{url}/api/send")).bearer_auth(&tab).json(&body).send().await.unwrap();
    let (code, sent) = (sent.status(), sent.json::<serde_json::Value>().await.unwrap());
    assert_eq!(code, StatusCode::ACCEPTED, "{sent}");
    let id = sent["message_id"].as_str().unwrap().to_owned();
    let status = |id: String| {
        let (http, url, tab) = (&http, &url, &tab);
        async move { http.get(format!("{url}/api/messages/{id}")).bearer_auth(tab).send().await.ok()?.json::<serde_json::Value>().await.ok() }
    };
    eventually(WAIT, "the offer sent", || async { status(id.clone()).await.filter(|m| m["status"] == "sent") }).await;

    let reply = json!({ "from_user_id": IVAN_ID, "to_user_id": seed::SALES_ACCOUNT, "text": "Pushed to the process", "attach": "none" });
    let written = std::time::Instant::now();
    assert_eq!(http.post(format!("{url}/sandbox/telegram/reply")).json(&reply).send().await.unwrap().status(), StatusCode::OK);
    eventually(WAIT, "the reply in the Open Line", || async {
        let messages: serde_json::Value = http.get(format!("{url}/sandbox/portal/openlines/messages")).send().await.ok()?.json().await.ok()?;
        messages["messages"].as_array()?.iter().any(|m| m["text"] == "Pushed to the process").then_some(())
    })
    .await;
    let took = written.elapsed();
    let sales = sales(stats().await);
    assert_eq!(sales["calls"]["updates.getDifference"], serde_json::Value::Null, "no catch-up: {sales}");
    assert_eq!(sales["connections"], 1, "{sales}");
    eprintln!("the local process: a client's reply reached the Open Line {} ms after it was written", took.as_millis());
    process.kill();
}

#[tokio::test]
async fn a_reply_and_a_read_arrive_pushed_over_the_one_kept_connection_with_no_polling() {
    let app = spawn_listening().await;
    let token = app.lead_tab().await;
    let id = app.send_published(&token, IVAN, "Here is our offer", "incoming", true).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;

    let started = std::time::Instant::now();
    client_writes(&app, "Thanks! Is delivery included?").await;
    in_open_line(&app, "Thanks! Is delivery included?").await;
    let reply_in = started.elapsed();

    assert!(app.app.sandbox().telegram.read_all(IVAN_ID) > 0);
    app.wait_for_status(&token, &id, "read", WAIT).await;

    let stats = sales(&app);
    assert_eq!(stats.connections, 1, "one connection for the account, its send included: {stats:?}");
    assert_eq!(calls(&stats, "updates.getDifference"), 0, "nothing polled: {stats:?}");
    assert_eq!(calls(&stats, "updates.getState"), 1, "the first look only: {stats:?}");
    assert!(stats.pushes >= 2, "the reply and the read came pushed: {stats:?}");
    eprintln!("a client's reply reached the Open Line {} ms after it was written (pushed)", reply_in.as_millis());
}

#[tokio::test]
async fn a_dropped_connection_comes_back_after_a_pause_and_catches_up_what_came_meanwhile() {
    let app = spawn_listening().await;
    let token = app.lead_tab().await;
    let id = app.send_published(&token, IVAN, "Here is our offer", "incoming", true).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    // The tab's look-ups done: no job connects on its own while the connection is down.
    app.settled().await;
    let before = sales(&app);

    // The data centre drops the connection; the first catch-up after it fails once more.
    app.app.sandbox().telegram.inject(Fault::Rpc { code: 500, message: "INTERNAL".into() }, FaultTarget::Updates, 1);
    assert_eq!(app.app.sandbox().telegram.drop_connections(seed::SALES_ACCOUNT), 1);
    let dropped = std::time::Instant::now();
    eventually(WAIT, "the listener noticing the drop", || async { (!app.app.services.listening.covers("sales")).then_some(()) }).await;
    // Written while no connection of the account was up: nobody is pushed it.
    client_writes(&app, "Did you get my message?").await;

    in_open_line(&app, "Did you get my message?").await;
    listening(&app).await;
    let back_in = dropped.elapsed();
    let after = sales(&app);
    assert_eq!(after.connections, before.connections + 1, "one new connection: {after:?}");
    assert_eq!(calls(&after, "updates.getDifference"), calls(&before, "updates.getDifference") + 2, "the failed catch-up and the one after it: {after:?}");
    // Two pauses: at least half of 2 s, then at least half of 4 s.
    assert!(back_in >= Duration::from_secs(3), "backed off: {back_in:?}");

    // And pushes flow on the new connection.
    client_writes(&app, "Hello again").await;
    in_open_line(&app, "Hello again").await;
    assert_eq!(calls(&sales(&app), "updates.getDifference"), calls(&after, "updates.getDifference"), "pushed, not polled");
}

#[tokio::test]
async fn a_send_while_listening_goes_over_the_kept_connection() {
    let app = spawn_listening().await;
    let before = sales(&app);
    let token = app.lead_tab().await;
    let id = app.send_published(&token, IVAN, "Over the kept connection", "incoming", true).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    let after = sales(&app);
    assert_eq!(after.connections, before.connections, "no second connection: {after:?}");
    assert_eq!(calls(&after, "messages.sendMessage"), calls(&before, "messages.sendMessage") + 1);
    // Its own update moved the account's state on: a reply now follows it with no gap.
    client_writes(&app, "Got it").await;
    in_open_line(&app, "Got it").await;
    assert_eq!(calls(&sales(&app), "updates.getDifference"), 0, "{:?}", sales(&app));
}

#[tokio::test]
async fn a_session_telegram_refuses_ends_the_listener_and_asks_for_a_new_login() {
    let app = spawn_listening().await;
    app.app.sandbox().telegram.inject(Fault::Unauthorized, FaultTarget::Updates, 1);
    assert_eq!(app.app.sandbox().telegram.drop_connections(seed::SALES_ACCOUNT), 1);
    eventually(WAIT, "the connector marked as needing a login", || async {
        let connector = app.app.services.connectors.get(seed::DEMO_MEMBER_ID, "sales").await.unwrap()?;
        (connector.status == ConnectorStatus::NeedsLogin).then_some(())
    })
    .await;
    eventually(WAIT, "no session of the account listening", || async { (sales(&app).listening == 0).then_some(()) }).await;
    assert!(!app.app.services.listening.covers("sales"));
    // Its session is given back: a new login starts at once (a held one would keep it
    // waiting, then answer that the session is busy).
    let phone = app.app.sandbox().telegram.users().into_iter().find(|u| u.id == seed::SALES_ACCOUNT).unwrap().phone;
    let phone = shared::domain::PhoneE164::parse(&phone, None).unwrap();
    let step = tokio::time::timeout(Duration::from_secs(5), app.app.services.telegram.send_code("sales", &phone)).await;
    assert!(matches!(step, Ok(Ok(shared::ports::LoginStep::CodeSent { .. }))), "{step:?}");
}

#[tokio::test]
async fn a_disconnected_account_keeps_no_connection() {
    let app = spawn_listening().await;
    let admin = app.admin_token().await;
    let answer = app.post_raw(&admin, "/api/connectors/sales/disconnect", String::new()).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    eventually(WAIT, "no session of the account listening", || async { (sales(&app).listening == 0).then_some(()) }).await;
    eventually(WAIT, "the listener gone", || async { (!app.app.services.listening.covers("sales")).then_some(()) }).await;
}

#[tokio::test]
async fn an_account_logged_in_again_while_listening_is_listened_to_on_its_new_session() {
    let app = spawn_listening().await;
    let admin = app.admin_token().await;
    let phone = app.app.sandbox().telegram.users().into_iter().find(|u| u.id == seed::SALES_ACCOUNT).unwrap().phone;
    // The old session signs out over the kept connection, which gives the account back for the login.
    let step = app.post_raw(&admin, "/api/connectors/login/phone", json!({ "phone": phone, "reconnect": "sales" }).to_string()).await;
    assert_eq!(step.status, StatusCode::OK, "{}", step.body);
    let login_id = step.body["login_id"].as_str().unwrap().to_owned();
    let done = app.post_raw(&admin, "/api/connectors/login/code", json!({ "login_id": login_id, "code": shared::sandbox::telegram::LOGIN_CODE }).to_string()).await;
    assert_eq!(done.body["step"], "done", "{}", done.body);
    listening(&app).await;
    eventually(WAIT, "one session of the account listening", || async { (sales(&app).listening == 1).then_some(()) }).await;
    let token = app.lead_tab().await;
    let id = app.send_published(&token, IVAN, "After the new login", "incoming", true).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    client_writes(&app, "Still here").await;
    in_open_line(&app, "Still here").await;
}

#[tokio::test]
async fn what_an_administrator_changes_applies_to_the_next_pushed_message() {
    let app = spawn_listening().await;
    let admin = app.admin_token().await;
    let set = app.put_json(&admin, "/api/connectors/sales/accept-all", json!({ "accept_all": true })).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    // Olga, whom nobody here wrote to, reaches the Open Line now.
    let body = json!({ "from_user_id": 1002, "to_user_id": seed::SALES_ACCOUNT, "text": "Hi, I saw your ad", "attach": "none" });
    assert_eq!(app.post_json("/sandbox/telegram/reply", body).await.status, StatusCode::OK);
    in_open_line(&app, "Hi, I saw your ad").await;
}
