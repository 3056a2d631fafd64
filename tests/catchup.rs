//! The other direction, end to end: what clients do in the sandbox Telegram (reply, send
//! files, read) reaches the Open Line and the activity through the catch-up worker
//! (`updates.getDifference`), exactly once, through repeats, gaps and lost sessions.

use std::time::Duration;

use olchat_tests::{TestApp, eventually, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::jobs::Outcome;
use shared::work::Job;
use shared::ports::IncomingKind;
use shared::repo::connectors::ConnectorStatus;
use shared::sandbox::seed;
use shared::sandbox::openlines::GREETING;
use shared::sandbox::telegram::ClientFile;

const IVAN: &str = "phone:+79161234567";
const IVAN_ID: i64 = 1001;
const OLGA_ID: i64 = 1002;
const DMITRY_ID: i64 = 1005;
const WAIT: Duration = Duration::from_secs(10);

/// An instance whose catch-ups run only when the test says.
async fn spawn_manual() -> TestApp {
    spawn_app_with(|s| s.catch_up_every = None).await
}

/// One catch-up of the sales connector, as the telegram-worker runs it.
async fn catch_up(app: &TestApp) -> Outcome {
    let job = Job::CatchUp { member_id: seed::DEMO_MEMBER_ID.into(), connector_id: "sales".into() };
    app.run_job(&job.to_body(), 1).await
}

/// Sends Ivan a message published as incoming, with an activity; waits until it is sent and
/// the catch-up that follows a send has taken the account's state. The message id.
async fn write_to_ivan(app: &TestApp, token: &str, text: &str) -> String {
    let id = app.send_published(token, IVAN, text, "incoming", true).await;
    app.wait_for_status(token, &id, "sent", WAIT).await;
    eventually(WAIT, "the account's updates state", || async {
        app.app.services.mailbox.catch_up_state("sales").await.unwrap().map(drop)
    })
    .await;
    id
}

/// `from` writes to the sales account in the sandbox Telegram; the message id.
async fn client_writes(app: &TestApp, from: i64, text: &str, attach: &str) -> i64 {
    let body = json!({ "from_user_id": from, "to_user_id": seed::SALES_ACCOUNT, "text": text, "attach": attach });
    let answer = app.post_json("/sandbox/telegram/reply", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["message_id"].as_i64().unwrap()
}

/// The Open Line messages the client wrote, once there are `count`.
async fn client_messages(app: &TestApp, count: usize) -> Vec<Value> {
    eventually(WAIT, &format!("{count} client messages in the Open Line"), || async {
        let incoming: Vec<Value> = app.ol_messages().await.into_iter().filter(|m| m["external_id"].as_str().is_some_and(|e| e.starts_with("tg-"))).collect();
        (incoming.len() >= count).then_some(incoming)
    })
    .await
}

fn texts(messages: &[Value]) -> Vec<&str> {
    messages.iter().map(|m| m["text"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_reply_reaches_the_open_line_once_even_when_the_same_difference_is_read_twice() {
    let app = spawn_manual().await;
    let token = app.lead_tab().await;
    write_to_ivan(&app, &token, "Here is our offer").await;
    let before = app.app.services.mailbox.catch_up_state("sales").await.unwrap().unwrap();

    // Ivan answers on the sandbox's Telegram page, as a person would: a form, then the page again.
    let form = [("from_user_id", IVAN_ID.to_string()), ("to_user_id", seed::SALES_ACCOUNT.to_string()),
        ("text", "Thanks! Is delivery included?".into()), ("attach", "photo".into())];
    let page = app.http.post(app.url("/sandbox/telegram/reply")).form(&form).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "the redirect leads back to the page");
    let page = page.text().await.unwrap();
    assert!(page.contains("Thanks! Is delivery included?") && page.contains("Reply as Ivan Petrov"), "{page}");

    assert_eq!(catch_up(&app).await, Outcome::Done);
    let forwarded = client_messages(&app, 1).await;
    let reply = &forwarded[0];
    assert_eq!((reply["direction"].as_str(), reply["author"].as_str()), (Some("incoming"), Some("Ivan Petrov")));
    assert_eq!(reply["text"], "Thanks! Is delivery included?");
    let ours = app.ol_messages().await.into_iter().find(|m| m["text"].as_str().unwrap().ends_with("Here is our offer")).unwrap();
    assert_eq!(reply["chat_id"], ours["chat_id"], "the reply lands in the chat of our message");

    // The photo went Telegram → storage → a download URL Bitrix24 fetches: the same bytes.
    let url = reply["files"][0]["url"].as_str().unwrap();
    let bytes = app.http.get(url).send().await.unwrap().bytes().await.unwrap();
    let sent = app.telegram_messages().await.into_iter().find(|m| m["text"] == "Thanks! Is delivery included?").unwrap();
    assert_eq!(sent["file"]["size"].as_u64(), Some(bytes.len() as u64));
    assert!(bytes.starts_with(b"\x89PNG"));

    // The state is set back, as after a crash before it was stored: the same difference again.
    app.app.services.mailbox.save_catch_up_state("sales", &before).await.unwrap();
    assert_eq!(catch_up(&app).await, Outcome::Done);
    assert_eq!(catch_up(&app).await, Outcome::Done);
    app.settled().await;
    assert_eq!(client_messages(&app, 1).await.len(), 1, "posted once");

    // And the catch-up goes on from there.
    client_writes(&app, IVAN_ID, "Also, can you invoice us?", "none").await;
    assert_eq!(catch_up(&app).await, Outcome::Done);
    assert_eq!(texts(&client_messages(&app, 2).await), ["Thanks! Is delivery included?", "Also, can you invoice us?"]);
}

#[tokio::test]
async fn documents_and_voice_notes_arrive_as_files_and_formatting_as_bbcode() {
    let app = spawn_manual().await;
    let token = app.lead_tab().await;
    write_to_ivan(&app, &token, "Send us the details").await;
    client_writes(&app, IVAN_ID, "", "document").await;
    client_writes(&app, IVAN_ID, "", "voice").await;
    assert_eq!(catch_up(&app).await, Outcome::Done);
    let files = client_messages(&app, 2).await;
    let names: Vec<&str> = files.iter().map(|m| m["files"][0]["name"].as_str().unwrap()).collect();
    // A voice note has no file name in Telegram: it is named after its message.
    assert_eq!(names[0], "price-list.pdf");
    assert!(names[1].starts_with("voice-") && names[1].ends_with(".ogg"), "{names:?}");
    let voice = app.http.get(files[1]["files"][0]["url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(shared::domain::voice::sniff_container(&voice), Some(shared::domain::voice::VoiceContainer::Ogg));
}

#[tokio::test]
async fn a_clients_bbcode_arrives_in_the_open_line_as_text() {
    let app = spawn_manual().await;
    let token = app.lead_tab().await;
    write_to_ivan(&app, &token, "Here is our offer").await;
    let typed = "[b]Fake:[/b] [url=javascript:alert(1)]x[/url]";
    client_writes(&app, IVAN_ID, typed, "none").await;
    assert_eq!(catch_up(&app).await, Outcome::Done);
    let shown = &client_messages(&app, 1).await[0]["shown"];
    // No operator signature, no link, no tag at all: the client's characters, as typed.
    assert_eq!((&shown["signature"], &shown["links"], &shown["effects"]), (&Value::Null, &json!([]), &json!([])), "{shown}");
    assert_eq!(shown["text"].as_str().unwrap().replace('\u{200B}', ""), typed, "U+200B shows nothing");
}

#[tokio::test]
async fn reading_turns_the_activity_read_within_a_catch_up_interval_and_tells_open_lines() {
    // The schedule on, as in the sandbox: nobody asks for a catch-up.
    let app = spawn_app_with(|s| s.catch_up_every = Some(Duration::from_millis(500))).await;
    let token = app.lead_tab().await;
    let id = app.send_published(&token, IVAN, "Your order is ready", "incoming", true).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    let chat = eventually(WAIT, "the chat", || async { app.ol_messages().await.first().and_then(|m| m["chat_id"].as_u64()) }).await;
    let operator = app.operator_writes(chat, 2, "We deliver tomorrow").await;
    eventually(WAIT, "the operator's reply in Telegram", || async { (app.telegram_messages().await.len() == 2).then_some(()) }).await;

    let read = app.post_json("/sandbox/telegram/read", json!({ "user_id": IVAN_ID })).await;
    assert_eq!(read.body["read"], 2);
    eventually(WAIT, "the activity showing read", || async {
        app.activities().await.into_iter().find(|a| a["origin_id"] == id.as_str() && a["status"]["title"] == "Read").map(drop)
    })
    .await;
    app.wait_for_status(&token, &id, "read", WAIT).await;
    eventually(WAIT, "the operator's reply marked read", || async {
        app.ol_messages().await.into_iter().find(|m| m["id"] == operator && m["read"] == true).map(drop)
    })
    .await;

    // A client's reply comes in on the schedule as well.
    client_writes(&app, IVAN_ID, "Great, thank you", "none").await;
    assert_eq!(texts(&client_messages(&app, 1).await), ["Great, thank you"]);
}

#[tokio::test]
async fn a_session_that_turns_unauthorized_marks_the_connector_as_needing_login() {
    let app = spawn_manual().await;
    let token = app.lead_tab().await;
    write_to_ivan(&app, &token, "Hello").await;
    app.inject_telegram_fault(json!({ "kind": "unauthorized" }), "updates", 1).await;
    assert!(matches!(catch_up(&app).await, Outcome::Failed(_)));
    let connector = app.app.services.connectors.get(seed::DEMO_MEMBER_ID, "sales").await.unwrap().unwrap();
    assert_eq!(connector.status, ConnectorStatus::NeedsLogin);
    let admin = app.admin_token().await;
    let listed = app.get(&admin, "/api/connectors").await.body;
    let sales = listed["connectors"].as_array().unwrap().iter().find(|c| c["id"] == "sales").unwrap().clone();
    assert_eq!(sales["status"], "needs_login", "the administrator sees it");
    // Until it logs in again there is nothing to read: no call (it would fail), no failure.
    app.inject_telegram_fault(json!({ "kind": "unauthorized" }), "updates", 1).await;
    assert_eq!(catch_up(&app).await, Outcome::Done);
}

#[tokio::test]
async fn a_gap_too_long_for_a_difference_recovers_without_losing_or_duplicating() {
    let app = spawn_manual().await;
    let token = app.lead_tab().await;
    let ours = write_to_ivan(&app, &token, "Shall we meet?").await;
    client_writes(&app, IVAN_ID, "one", "none").await;
    assert_eq!(catch_up(&app).await, Outcome::Done);
    client_messages(&app, 1).await;

    // Much happens while nobody looks: two replies, and Ivan reads our message.
    client_writes(&app, IVAN_ID, "two", "none").await;
    client_writes(&app, IVAN_ID, "three", "none").await;
    app.post_json("/sandbox/telegram/read", json!({ "user_id": IVAN_ID })).await;
    // Even with the last handled message forgotten, what was forwarded is recognised.
    let mailbox = &app.app.services.mailbox;
    let mut saved = mailbox.catch_up_state("sales").await.unwrap().unwrap();
    saved.last_message_id = 0;
    mailbox.save_catch_up_state("sales", &saved).await.unwrap();
    app.inject_telegram_fault(json!({ "kind": "difference_too_long" }), "updates", 1).await;

    assert_eq!(catch_up(&app).await, Outcome::Done);
    assert_eq!(texts(&client_messages(&app, 3).await), ["one", "two", "three"]);
    app.wait_for_status(&token, &ours, "read", WAIT).await;
    let recovered = mailbox.catch_up_state("sales").await.unwrap().unwrap();
    assert!(recovered.state.pts > saved.state.pts, "the state starts again from now");

    // The catch-up goes on normally, and nothing came twice.
    client_writes(&app, IVAN_ID, "four", "none").await;
    assert_eq!(catch_up(&app).await, Outcome::Done);
    app.settled().await;
    assert_eq!(texts(&client_messages(&app, 4).await), ["one", "two", "three", "four"]);
}

#[tokio::test]
async fn strangers_reach_the_open_line_only_when_the_connector_accepts_everyone() {
    let app = spawn_manual().await;
    // Initialise the state: the first look starts from now.
    assert_eq!(catch_up(&app).await, Outcome::Done);
    client_writes(&app, OLGA_ID, "Hi, I saw your ad", "none").await;
    assert_eq!(catch_up(&app).await, Outcome::Done);
    app.settled().await;
    assert!(app.ol_messages().await.is_empty(), "nobody wrote to Olga: not forwarded");

    let admin = app.admin_token().await;
    let set = app.put_json(&admin, "/api/connectors/sales/accept-all", json!({ "accept_all": true })).await;
    assert_eq!((set.status, &set.body["accept_all"]), (StatusCode::OK, &json!(true)), "{}", set.body);
    let refused = app.put_json(&admin, "/api/connectors/sales/accept-all", json!({ "accept_all": "yes" })).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);

    client_writes(&app, OLGA_ID, "Hello again", "none").await;
    assert_eq!(catch_up(&app).await, Outcome::Done);
    let forwarded = client_messages(&app, 1).await;
    assert_eq!((forwarded[0]["text"].as_str(), forwarded[0]["author"].as_str()), (Some("Hello again"), Some("Olga Smirnova")));
    assert_eq!(forwarded.len(), 1);
    // Olga wrote first, so answering her opens no new chat.
    assert!(app.app.services.safety.knows_chat("sales", OLGA_ID).await.unwrap());
}

/// Whether the client got Open Lines' greeting through the sales account.
async fn greeted(app: &TestApp, client: i64) -> bool {
    app.telegram_messages().await.iter().any(|m| m["to_user_id"] == client && m["text"] == GREETING)
}

#[tokio::test]
async fn open_lines_greetings_reach_clients_only_when_an_administrator_allows_them() {
    let app = spawn_manual().await;
    let admin = app.admin_token().await;
    let connector = |state: Value| state["connectors"]["olchat_telegram"]["NEED_SYSTEM_MESSAGES"].clone();
    assert_eq!(connector(app.portal_state(seed::DEMO_MEMBER_ID).await), json!(false), "off by default");
    assert_eq!(connectors_view(&app, &admin).await["system_messages"], false);
    app.put_json(&admin, "/api/connectors/sales/accept-all", json!({ "accept_all": true })).await;
    catch_up(&app).await;
    client_writes(&app, OLGA_ID, "Hi, I saw your ad", "none").await;
    catch_up(&app).await;
    client_messages(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!greeted(&app, OLGA_ID).await, "no greeting while off");

    let tab = app.open_card("lead", 1, "en").await.unwrap();
    let path = "/api/connectors/system-messages";
    assert_eq!(app.put_json(&tab, path, json!({ "system_messages": true })).await.status, StatusCode::UNAUTHORIZED, "admins only");
    let on = app.put_json(&admin, path, json!({ "system_messages": true })).await;
    assert_eq!((on.status, &on.body["system_messages"]), (StatusCode::OK, &json!(true)), "{}", on.body);
    assert_eq!(connector(app.portal_state(seed::DEMO_MEMBER_ID).await), json!(true), "registered again with it");
    assert!(app.app.services.portals.get(seed::DEMO_MEMBER_ID).await.unwrap().unwrap().system_messages);

    // A new client's first message opens a new chat, and Open Lines greets them through the account.
    client_writes(&app, DMITRY_ID, "Hello, is the shop open?", "none").await;
    catch_up(&app).await;
    eventually(WAIT, "the greeting in Telegram", || async { greeted(&app, DMITRY_ID).await.then_some(()) }).await;
    assert!(!greeted(&app, OLGA_ID).await);
}

async fn connectors_view(app: &TestApp, admin: &str) -> Value {
    let answer = app.get(admin, "/api/connectors").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

#[tokio::test]
async fn the_schedule_catches_up_every_connected_account() {
    let app = spawn_app().await;
    eventually(WAIT, "both demo connectors caught up", || async {
        let mailbox = &app.app.services.mailbox;
        let sales = mailbox.catch_up_state("sales").await.unwrap();
        let care = mailbox.catch_up_state("support").await.unwrap();
        (sales.is_some() && care.is_some()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_file_too_large_to_bring_over_is_named_and_holds_nothing_up() {
    let app = spawn_manual().await;
    let token = app.lead_tab().await;
    write_to_ivan(&app, &token, "Send the video").await;
    let limit = shared::repo::mailbox::RECEIVED_FILE_LIMIT as usize;
    let video = ClientFile { kind: IncomingKind::Document, file_name: "tour.mp4".into(), mime_type: "video/mp4".into(), bytes: vec![0; limit + 1], duration: None };
    app.app.sandbox().telegram.reply(IVAN_ID, seed::SALES_ACCOUNT, "Here it is", Some(video)).unwrap();
    assert_eq!(catch_up(&app).await, Outcome::Done);
    let forwarded = client_messages(&app, 1).await;
    let text = forwarded[0]["text"].as_str().unwrap();
    assert!(text.starts_with("Here it is") && text.contains("tour.mp4 (50 MB): too large"), "{text}");
    assert!(forwarded[0]["files"].as_array().is_none_or(Vec::is_empty));
}

#[tokio::test]
async fn an_sqs_batch_retries_a_waiting_job_and_holds_the_rest_of_its_group_behind_it() {
    let app = spawn_manual().await;
    assert_eq!(catch_up(&app).await, Outcome::Done); // the sales account's first look: its state from now
    app.inject_telegram_fault(json!({ "kind": "flood_wait", "seconds": 30 }), "updates", 1).await;
    let record = |id: &str, connector: &str| {
        let job = Job::CatchUp { member_id: seed::DEMO_MEMBER_ID.into(), connector_id: connector.into() };
        json!({ "messageId": id, "receiptHandle": format!("receipt-{id}"), "body": job.to_body(),
                "attributes": { "ApproximateReceiveCount": "1", "MessageGroupId": connector } })
    };
    let batch = json!({ "Records": [record("a", "sales"), record("b", "sales"), record("c", "support")] });
    let batch = serde_json::from_value(batch).unwrap();
    let response = shared::lambda::handle_sqs(&app.app.services, shared::ports::JobQueue::Telegram, batch).await;
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, ["a", "b"], "the flood wait retries a, and b waits behind it in the sales group");
    assert!(app.app.services.mailbox.catch_up_state("support").await.unwrap().is_some(), "another group goes on");
}

/// A client's change to their message in the sandbox Telegram (`edit` or `delete`).
async fn client_revises(app: &TestApp, change: &str, from: i64, message_id: i64, text: &str) {
    let answer = app.post_json(&format!("/sandbox/telegram/{change}"), json!({ "from_user_id": from, "message_id": message_id, "text": text })).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
}

#[tokio::test]
async fn a_clients_edit_and_deletion_reach_the_open_line_once() {
    let app = spawn_manual().await;
    let token = app.lead_tab().await;
    write_to_ivan(&app, &token, "Here is our offer").await;
    let first = client_writes(&app, IVAN_ID, "Deliver on Monday", "none").await;
    let second = client_writes(&app, IVAN_ID, "To Lenina 1", "none").await;
    assert_eq!(catch_up(&app).await, Outcome::Done);
    client_messages(&app, 2).await;

    client_revises(&app, "edit", IVAN_ID, first, "Deliver on Tuesday").await;
    client_revises(&app, "delete", IVAN_ID, second, "").await;
    let before = app.app.services.mailbox.catch_up_state("sales").await.unwrap().unwrap();
    assert_eq!(catch_up(&app).await, Outcome::Done);
    let changed = eventually(WAIT, "the edit and the deletion in the Open Line", || async {
        let messages = client_messages(&app, 2).await;
        (messages[0]["edited"] == true && messages[1]["deleted"] == true).then_some(messages)
    })
    .await;
    assert_eq!(changed[0]["text"], "Deliver on Tuesday", "{changed:?}");
    assert_eq!((changed[0]["external_id"].as_str(), changed[1]["text"].as_str()), (Some(format!("tg-sales-{first}").as_str()), Some("")));

    // The same difference again changes nothing more: no call to the portal either.
    app.settled().await;
    let calls = app.portal_requests().await;
    app.app.services.mailbox.save_catch_up_state("sales", &before).await.unwrap();
    assert_eq!(catch_up(&app).await, Outcome::Done);
    app.settled().await;
    assert_eq!(app.portal_requests().await, calls);
    assert_eq!(texts(&client_messages(&app, 2).await), ["Deliver on Tuesday", ""]);
}

#[tokio::test]
async fn a_client_edits_and_deletes_from_the_sandbox_page() {
    let app = spawn_manual().await;
    let token = app.lead_tab().await;
    write_to_ivan(&app, &token, "Here is our offer").await;
    let id = client_writes(&app, IVAN_ID, "Tomorow", "none").await;
    let page = app.http.get(app.url("/sandbox/telegram")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("action=/sandbox/telegram/edit") && page.contains(">Delete</button>"), "{page}");
    let edit = [("from_user_id", IVAN_ID.to_string()), ("message_id", id.to_string()), ("text", "Tomorrow".into())];
    let page = app.http.post(app.url("/sandbox/telegram/edit")).form(&edit).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Tomorrow<small> (edited)"), "{page}");
    let delete = [("from_user_id", IVAN_ID.to_string()), ("message_id", id.to_string())];
    let page = app.http.post(app.url("/sandbox/telegram/delete")).form(&delete).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("Tomorrow"), "gone for both sides: {page}");
}

#[tokio::test]
async fn a_message_deleted_before_it_was_forwarded_never_reaches_the_open_line() {
    let app = spawn_manual().await;
    let token = app.lead_tab().await;
    write_to_ivan(&app, &token, "Here is our offer").await;
    let gone = client_writes(&app, IVAN_ID, "Oops, wrong chat", "none").await;
    let kept = client_writes(&app, IVAN_ID, "Sounds good", "none").await;
    client_revises(&app, "edit", IVAN_ID, kept, "Sounds great").await;
    client_revises(&app, "delete", IVAN_ID, gone, "").await;
    assert_eq!(catch_up(&app).await, Outcome::Done);
    app.settled().await;
    let incoming = client_messages(&app, 1).await;
    assert_eq!(texts(&incoming), ["Sounds great"], "the edited text, and nothing of the deleted message");
}

/// The schedule's tick at `at` (the one before a minute earlier), run to its end.
async fn tick(app: &TestApp, at: i64) {
    assert_eq!(shared::jobs::catch_up::request_all(&app.app.services, 1, at, 60_000).await, Outcome::Done);
    app.settled().await;
}

/// The sandbox data centres' connections so far, all of them.
fn connections(app: &TestApp) -> u64 {
    app.app.sandbox().telegram.stats().connections.values().sum()
}

#[tokio::test]
async fn an_idle_account_is_caught_up_once_a_quarter_hour_and_a_send_keeps_it_caught_up_every_minute() {
    use shared::domain::cadence::AFTER_SEND_MS;
    const MINUTE: i64 = 60_000;
    let app = spawn_manual().await;
    let token = app.lead_tab().await;
    let svc = &app.app.services;
    // A send keeps its account caught up at every tick for the hour after it.
    let sent = app.send_published(&token, IVAN, "Hello", "none", false).await;
    app.wait_for_status(&token, &sent, "sent", WAIT).await;
    let sent_at = shared::clock::now_millis();
    let sales = || async { svc.connectors.all().await.unwrap().into_iter().find(|c| c.id == "sales").unwrap() };
    let marked = sales().await.active_until;
    assert!(marked > sent_at + AFTER_SEND_MS - 60_000 && marked <= sent_at + AFTER_SEND_MS, "{marked} vs {sent_at}");
    app.settled().await;
    let accounts = svc.connectors.all().await.unwrap().len() as u64;

    // The schedule's ticks of a whole day, a minute apart, starting when no activity is left.
    let start = marked + MINUTE;
    let before = connections(&app);
    for minute in 1..=1440 {
        tick(&app, start + minute * MINUTE).await;
    }
    let idle_day = connections(&app) - before;
    println!("an idle day: {idle_day} Telegram connections for {accounts} accounts");
    assert_eq!(idle_day, 96 * accounts, "once a quarter hour each, one connection each time");

    // A send at noon of the next day: caught up at every tick of the hour that follows.
    let noon = start + 1440 * MINUTE + 720 * MINUTE;
    assert!(svc.connectors.mark_active(seed::DEMO_MEMBER_ID, "sales", noon + AFTER_SEND_MS, noon).await.unwrap(), "it had been idle");
    assert!(!svc.connectors.mark_active(seed::DEMO_MEMBER_ID, "sales", noon + MINUTE + AFTER_SEND_MS, noon + MINUTE).await.unwrap(), "nothing written a minute later");
    let before = connections(&app);
    for minute in 1..=60 {
        tick(&app, noon + minute * MINUTE).await;
    }
    let active_hour = connections(&app) - before;
    println!("the hour after a send: {active_hour} Telegram connections");
    // 59 minutes inside its window for the sales account, and the quarter-hour marks of all.
    assert!((59..=59 + 4 * accounts + 1).contains(&active_hour), "{active_hour}");
}
