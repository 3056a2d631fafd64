//! Send later, end to end over the tab's API: a scheduled message leaves once at its time
//! (the sweep driven "as of" a time before and after it), survives a restart of the local
//! runner, can be cancelled or edited until it leaves and not after, and sweeps racing each
//! other or a cancel send nothing twice.

use std::time::Duration;

use olchat_tests::deployed::{answering, free_port, lead_tab, local_runner};
use olchat_tests::{TestApp, eventually, fresh_key, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::app::schedule::sweep;
use shared::clock::now_millis;
use shared::sandbox::seed;

const IVAN: &str = "phone:+79161234567";
const WAIT: Duration = Duration::from_secs(10);
const HOUR: i64 = 3_600_000;

fn schedule_body(text: &str, send_at: Value) -> Value {
    json!({ "connector_id": "sales", "recipient": IVAN, "text": text, "idempotency_key": fresh_key(),
            "send_at": send_at, "create_activity": true })
}

/// Schedules `text` for `send_at` (unix ms); its id.
async fn schedule(app: &TestApp, token: &str, text: &str, send_at: i64) -> String {
    let answer = app.send(token, schedule_body(text, json!(send_at))).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    answer.body["message_id"].as_str().expect("message id").to_owned()
}

/// How often the sandbox Telegram received `text`.
async fn received(app: &TestApp, text: &str) -> usize {
    app.telegram_messages().await.iter().filter(|m| m["text"] == text).count()
}

/// The sweep as of `at`, then every job it queued run to its end; how many it released.
async fn sweep_as_of(app: &TestApp, at: i64) -> usize {
    let released = sweep(&app.app.services, at).await.expect("the sweep runs");
    app.settled().await;
    released
}

async fn view(app: &TestApp, token: &str, id: &str) -> Value {
    let answer = app.get(token, &format!("/api/messages/{id}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

async fn activity_showing(app: &TestApp, id: &str, title: &str) {
    eventually(WAIT, &format!("the activity showing {title}"), || async {
        app.activities().await.into_iter().find(|a| a["origin_id"] == id && a["status"]["title"] == title)
    })
    .await;
}

#[tokio::test]
async fn a_scheduled_message_leaves_once_at_its_time_and_not_before() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let due = now_millis() + HOUR;
    let id = schedule(&app, &token, "At nine sharp", due).await;
    let scheduled = view(&app, &token, &id).await;
    assert_eq!((scheduled["status"].as_str(), scheduled["send_at"].as_i64()), (Some("scheduled"), Some(due)));
    activity_showing(&app, &id, "Scheduled").await;

    assert_eq!(sweep_as_of(&app, due - 1).await, 0, "a millisecond early");
    assert_eq!(received(&app, "At nine sharp").await, 0);
    assert_eq!(view(&app, &token, &id).await["status"], "scheduled");

    assert_eq!(sweep_as_of(&app, due).await, 1);
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    activity_showing(&app, &id, "Sent").await;
    assert_eq!(sweep_as_of(&app, due + HOUR).await, 0, "a later sweep finds nothing more");
    assert_eq!(received(&app, "At nine sharp").await, 1);
    let listed = app.get(&token, "/api/messages").await.body;
    let entry = listed["messages"].as_array().unwrap().iter().find(|m| m["id"] == id.as_str()).cloned().expect("listed on the card");
    assert_eq!((entry["status"].as_str(), entry["send_at"].as_i64()), (Some("sent"), Some(due)));
}

#[tokio::test]
async fn a_time_already_come_sends_at_once_and_the_card_says_which_time_zone() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let id = schedule(&app, &token, "Right now", now_millis() - 1_000).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    let card = app.get(&token, "/api/card").await.body;
    assert_eq!(card["time_zone"], "Europe/Moscow", "the user's TIME_ZONE from user.current");
}

#[tokio::test]
async fn a_scheduled_message_can_be_cancelled_until_it_leaves_and_not_after() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let due = now_millis() + HOUR;
    let id = schedule(&app, &token, "Never mind", due).await;
    let cancelled = app.post_raw(&token, &format!("/api/messages/{id}/cancel"), String::new()).await;
    assert_eq!((cancelled.status, cancelled.body["status"].as_str()), (StatusCode::OK, Some("cancelled")), "{}", cancelled.body);
    activity_showing(&app, &id, "Cancelled").await;
    assert_eq!(sweep_as_of(&app, due).await, 0);
    assert_eq!(received(&app, "Never mind").await, 0);
    let again = app.post_raw(&token, &format!("/api/messages/{id}/cancel"), String::new()).await;
    assert_eq!((again.status, again.body["error"].as_str()), (StatusCode::CONFLICT, Some("not_scheduled")), "{}", again.body);

    let left = schedule(&app, &token, "Too late to stop", due).await;
    assert_eq!(sweep_as_of(&app, due).await, 1);
    app.wait_for_status(&token, &left, "sent", WAIT).await;
    let late = app.post_raw(&token, &format!("/api/messages/{left}/cancel"), String::new()).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
    let late_edit = app.put_json(&token, &format!("/api/messages/{left}"), json!({ "text": "x", "send_at": due + HOUR })).await;
    assert_eq!(late_edit.status, StatusCode::CONFLICT, "{}", late_edit.body);
    app.settled().await;
    assert_eq!(received(&app, "Too late to stop").await, 1, "a refused cancel sends nothing extra");
    assert_eq!(view(&app, &token, &left).await["status"], "sent");
}

#[tokio::test]
async fn a_scheduled_message_gets_a_new_text_and_time_until_it_leaves() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let first = now_millis() + HOUR;
    let id = schedule(&app, &token, "Draft", first).await;
    let later = first + HOUR;
    let edited = app.put_json(&token, &format!("/api/messages/{id}"), json!({ "text": "Final words", "send_at": later })).await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!((edited.body["text"].as_str(), edited.body["send_at"].as_i64()), (Some("Final words"), Some(later)));
    assert_eq!(sweep_as_of(&app, first).await, 0, "no longer due at the old time");
    assert_eq!(app.telegram_messages().await.iter().filter(|m| m["text"] == "Draft" || m["text"] == "Final words").count(), 0);
    assert_eq!(sweep_as_of(&app, later).await, 1);
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    assert_eq!((received(&app, "Final words").await, received(&app, "Draft").await), (1, 0));
}

/// Sweeps on threads of their own, so their reads and conditional writes interleave (the
/// SQLite table answers without yielding: sweeps on one thread would run one after another).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sweeps_racing_each_other_or_a_cancel_send_nothing_twice() {
    const MESSAGES: usize = 20;
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let due = now_millis() + HOUR;
    let mut ids = Vec::new();
    for i in 0..MESSAGES {
        ids.push(schedule(&app, &token, &format!("race {i}"), due).await);
    }
    let svc = &app.app.services;
    let sweeps: Vec<_> = (0..4)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { sweep(&svc, due).await.expect("the sweep runs") })
        })
        .collect();
    let mut released = 0;
    for s in sweeps {
        released += s.await.unwrap();
    }
    assert_eq!(released, MESSAGES, "each message released by one sweep");
    for id in &ids {
        app.wait_for_status(&token, id, "sent", WAIT).await;
    }
    app.settled().await;
    for i in 0..MESSAGES {
        assert_eq!(received(&app, &format!("race {i}")).await, 1, "race {i}");
    }

    // A cancel and a sweep at once: one of them wins, never both.
    let id = schedule(&app, &token, "cancel or send", due).await;
    let cancel_path = format!("/api/messages/{id}/cancel");
    let (swept, cancel) = tokio::join!(sweep(svc, due), app.post_raw(&token, &cancel_path, String::new()));
    let swept = swept.expect("the sweep runs");
    app.settled().await;
    match cancel.status {
        StatusCode::OK => assert_eq!((swept, received(&app, "cancel or send").await), (0, 0)),
        StatusCode::CONFLICT => {
            app.wait_for_status(&token, &id, "sent", WAIT).await;
            assert_eq!((swept, received(&app, "cancel or send").await), (1, 1));
        }
        other => panic!("the cancel answered {other}: {}", cancel.body),
    }
}

#[tokio::test]
async fn bad_times_and_foreign_messages_are_refused_clearly() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let now = now_millis();
    for (send_at, status, code) in [
        (json!(now - 10 * 60_000), StatusCode::UNPROCESSABLE_ENTITY, "send_at_past"),
        (json!(now + 400 * 24 * HOUR), StatusCode::UNPROCESSABLE_ENTITY, "send_at_too_far"),
        (json!("tomorrow at nine"), StatusCode::BAD_REQUEST, "bad_json"),
        (json!(1.5e12), StatusCode::BAD_REQUEST, "bad_json"),
    ] {
        let answer = app.send(&token, schedule_body("x", send_at.clone())).await;
        assert_eq!((answer.status, answer.body["error"].as_str()), (status, Some(code)), "{send_at}: {}", answer.body);
        assert!(!answer.body["message"].as_str().unwrap_or("").is_empty(), "{}", answer.body);
    }
    let id = schedule(&app, &token, "Kept", now + HOUR).await;
    let path = format!("/api/messages/{id}");
    for (body, status) in [
        (json!({ "text": "x", "send_at": now - 10 * 60_000 }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "text": "  ", "send_at": now + HOUR }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "text": "x" }), StatusCode::BAD_REQUEST),
    ] {
        let answer = app.put_json(&token, &path, body.clone()).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
    }
    // A file goes while its upload is kept: a week from upload, so at most 5 days ahead.
    let upload = app.upload(&token, "/api/uploads", "plan.pdf", "application/pdf", b"%PDF plan".to_vec()).await;
    let mut with_file = schedule_body("x", json!(now + 6 * 24 * HOUR));
    with_file["attachments"] = json!([{ "key": upload, "name": "plan.pdf" }]);
    let answer = app.send(&token, with_file.clone()).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("send_at_files_too_far")), "{}", answer.body);
    with_file["send_at"] = json!(now + 4 * 24 * HOUR);
    let answer = app.send(&token, with_file).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let later = app.put_json(&token, &format!("/api/messages/{}", answer.body["message_id"].as_str().unwrap()), json!({ "text": "x", "send_at": now + 6 * 24 * HOUR })).await;
    assert_eq!(later.body["error"], "send_at_files_too_far", "an edit keeps the bound");
    let missing = app.put_json(&token, &format!("/api/messages/{}", uuid_like()), json!({ "text": "x", "send_at": now + HOUR })).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // Another card's tab changes nothing of this card's message.
    let deal = app.tab_on(seed::DEMO_MEMBER_ID, seed::DEMO_DOMAIN, 1, "CRM_DEAL_DETAIL_TAB", 1).await;
    assert_eq!(app.post_raw(&deal, &format!("{path}/cancel"), String::new()).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.put_json(&deal, &path, json!({ "text": "x", "send_at": now + HOUR })).await.status, StatusCode::NOT_FOUND);
    let kept = view(&app, &token, &id).await;
    assert_eq!((kept["status"].as_str(), kept["text"].as_str()), (Some("scheduled"), Some("Kept")));
}

#[tokio::test]
async fn only_someone_who_may_use_its_account_changes_a_scheduled_message() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let only_boris = json!({ "access": { "kind": "chosen", "users": [seed::BORIS], "departments": [] } });
    assert_eq!(app.put_json(&admin, "/api/connectors/sales/access", only_boris).await.status, StatusCode::OK);
    let boris = app.lead_tab_of(seed::BORIS).await;
    assert_eq!(app.get(&boris, "/api/card").await.status, StatusCode::OK);
    let due = now_millis() + HOUR;
    let id = schedule(&app, &boris, "Boris's own", due).await;
    // Clara opens the same lead: the sales account is not hers to use.
    let clara = app.lead_tab_of(seed::CLARA).await;
    let path = format!("/api/messages/{id}");
    let cancel = app.post_raw(&clara, &format!("{path}/cancel"), String::new()).await;
    assert_eq!((cancel.status, cancel.body["error"].as_str()), (StatusCode::FORBIDDEN, Some("connector_not_permitted")), "{}", cancel.body);
    let edit = app.put_json(&clara, &path, json!({ "text": "Clara's", "send_at": due })).await;
    assert_eq!(edit.status, StatusCode::FORBIDDEN, "{}", edit.body);
    assert_eq!(view(&app, &boris, &id).await["text"], "Boris's own");
    assert_eq!(app.post_raw(&boris, &format!("{path}/cancel"), String::new()).await.status, StatusCode::OK);
}

fn uuid_like() -> &'static str {
    "00000000-0000-4000-8000-000000000000"
}

/// The local runner (its own schedule tick, every 5 s in sandbox mode) is killed while a
/// message waits for its time, and started again on the same data directory: the message
/// leaves once, from the table.
#[tokio::test]
async fn a_scheduled_message_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let http = reqwest::Client::new();
    let first = local_runner(&url, dir.path());
    answering(&http, &url).await;
    let token = lead_tab(&http, &url).await;
    let card = eventually(WAIT * 3, "the sales connector", || async {
        let card = http.get(format!("{url}/api/card?connector=sales")).bearer_auth(&token).send().await.ok()?;
        (card.status() == StatusCode::OK).then_some(())
    });
    card.await;
    let due = now_millis() + 8_000;
    let body = schedule_body("After the restart", json!(due));
    let answer = http.post(format!("{url}/api/send")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    let id = answer.json::<Value>().await.unwrap()["message_id"].as_str().unwrap().to_owned();
    first.kill();
    assert!(now_millis() < due, "killed before it was due");

    let _second = local_runner(&url, dir.path());
    answering(&http, &url).await;
    let token = lead_tab(&http, &url).await;
    let sent = eventually(Duration::from_secs(60), "the scheduled message sent", || async {
        let view: Value = http.get(format!("{url}/api/messages/{id}")).bearer_auth(&token).send().await.ok()?.json().await.ok()?;
        (view["status"] == "sent").then_some(())
    });
    sent.await;
    let log: Value = http.get(format!("{url}/sandbox/telegram/messages")).send().await.unwrap().json().await.unwrap();
    let copies: Vec<&Value> = log["messages"].as_array().unwrap().iter().filter(|m| m["text"] == "After the restart").collect();
    assert_eq!(copies.len(), 1);
    // Telegram's date is in whole seconds.
    assert!(copies[0]["date"].as_i64().unwrap() >= due / 1000, "not before its time: {}", copies[0]);
}
