//! The conversation in the card's tab (`GET /api/conversation`): both sides of the chat with a
//! client, files playable from it, pages back, the history from before the app read back from
//! the sandbox Telegram once, a change marker answered 304, and edits and deletions from
//! either side.

use std::time::Duration;

use olchat_tests::{TestApp, eventually, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::jobs::Outcome;
use shared::sandbox::seed;
use shared::work::Job;

const IVAN: &str = "phone:+79161234567";
const IVAN_ID: i64 = 1001;
const WAIT: Duration = Duration::from_secs(10);

/// An instance whose catch-ups run only when the test says.
async fn spawn_manual() -> TestApp {
    spawn_app_with(|s| s.catch_up_every = None).await
}

/// Waits until the catch-up that follows a send has taken the account's updates state: what
/// happens after it is news to the next catch-up.
async fn state_taken(app: &TestApp) {
    eventually(WAIT, "the account's updates state", || async { app.app.services.mailbox.catch_up_state("sales").await.unwrap().map(drop) }).await;
}

async fn catch_up(app: &TestApp) {
    let job = Job::CatchUp { member_id: seed::DEMO_MEMBER_ID.into(), connector_id: "sales".into() };
    assert_eq!(app.run_job(&job.to_body(), 1).await, Outcome::Done);
}

/// `from` writes to `to` in the sandbox Telegram, as from their own app; the message id.
async fn writes(app: &TestApp, from: i64, to: i64, text: &str, attach: &str) -> i64 {
    let body = json!({ "from_user_id": from, "to_user_id": to, "text": text, "attach": attach });
    let answer = app.post_json("/sandbox/telegram/reply", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["message_id"].as_i64().unwrap()
}

fn conversation_path(extra: &str) -> String {
    format!("/api/conversation?connector=sales&recipient={}{extra}", urlencoding(IVAN))
}

fn urlencoding(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

/// The conversation with Ivan once nothing is being read back any more.
async fn conversation(app: &TestApp, token: &str) -> Value {
    eventually(WAIT, "the conversation, its history read back", || async {
        let answer = app.get(token, &conversation_path("")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        (answer.body["backfilling"] == false).then_some(answer.body)
    })
    .await
}

fn texts(view: &Value) -> Vec<String> {
    view["items"].as_array().unwrap().iter().map(|i| i["text"].as_str().unwrap_or_default().to_owned()).collect()
}

fn item<'v>(view: &'v Value, text: &str) -> &'v Value {
    view["items"].as_array().unwrap().iter().find(|i| i["text"] == text).unwrap_or_else(|| panic!("{text:?} in {view}"))
}

#[tokio::test]
async fn the_conversation_shows_both_sides_with_the_history_from_before_read_back_once() {
    let app = spawn_manual().await;
    // Before the app: Ivan and the account's owner wrote to each other from their own apps.
    writes(&app, IVAN_ID, seed::SALES_ACCOUNT, "Hello, do you deliver?", "none").await;
    writes(&app, seed::SALES_ACCOUNT, IVAN_ID, "Yes, all over Moscow", "document").await;
    let token = app.lead_tab().await;
    let ours = app.send_text(&token, IVAN, "Here is our offer").await;
    app.wait_for_status(&token, &ours, "sent", WAIT).await;
    state_taken(&app).await;

    let view = conversation(&app, &token).await;
    assert_eq!(texts(&view), ["Hello, do you deliver?", "Yes, all over Moscow", "Here is our offer"], "oldest first, ours once: {view}");
    let before = item(&view, "Hello, do you deliver?");
    assert_eq!((before["kind"].as_str(), before["out"].as_bool()), (Some("written"), Some(false)));
    let owners = item(&view, "Yes, all over Moscow");
    assert_eq!(owners["out"], true);
    assert_eq!(owners["files"][0]["name"], "price-list.pdf", "a file of the history is named");
    assert!(owners["files"][0]["url"].is_null(), "and not brought over");
    let sent = item(&view, "Here is our offer");
    assert_eq!((sent["kind"].as_str(), sent["status"].as_str(), sent["id"].as_str()), (Some("ours"), Some("sent"), Some(ours.as_str())));

    // Ivan answers with a photo, within the same second or not: the catch-up brings it after
    // ours, and the tab plays it from its link.
    writes(&app, IVAN_ID, seed::SALES_ACCOUNT, "Thanks! Here is the room", "photo").await;
    catch_up(&app).await;
    let view = conversation(&app, &token).await;
    assert_eq!(texts(&view).last().unwrap(), "Thanks! Here is the room");
    let reply = item(&view, "Thanks! Here is the room");
    assert_eq!(reply["files"][0]["kind"], "photo");
    let url = reply["files"][0]["url"].as_str().expect("the photo was brought over");
    let photo = app.http.get(url).send().await.unwrap();
    assert_eq!(photo.status(), StatusCode::OK);
    assert!(photo.bytes().await.unwrap().starts_with(b"\x89PNG"), "the client's photo itself");

    // Opened again, from another tab too: the history is not read again.
    let other = app.open_card("lead", 1, "ru").await.unwrap();
    assert_eq!(app.get(&other, "/api/card").await.status, StatusCode::OK);
    let again = conversation(&app, &other).await;
    assert_eq!(texts(&again), texts(&view));
    app.settled().await;
    assert_eq!(app.app.services.safety.today("sales").await.unwrap().history_reads, 1, "one history page, once");
}

/// The tab looks again when news can come: just after the next tick's catch-ups when replies
/// come with them, every few seconds when they come any time.
#[tokio::test]
async fn a_look_says_when_the_next_one_can_bring_news() {
    let look_within = |app: &TestApp, token: &str| {
        let request = app.http.get(app.url(&conversation_path(""))).bearer_auth(token);
        async move {
            let answer = request.send().await.unwrap();
            let header = answer.headers().get("x-olchat-look-within").expect("the look says when to look again");
            header.to_str().unwrap().parse::<i64>().unwrap()
        }
    };
    let ticking = spawn_app_with(|s| s.catch_up_every = Some(Duration::from_secs(60))).await;
    let token = ticking.lead_tab().await;
    let before = shared::clock::now_millis();
    let within = look_within(&ticking, &token).await;
    let after = shared::clock::now_millis();
    // 10 s after one of the minute's ticks (multiples of 60 s since the epoch), within 70 s.
    assert!((1..=70_000).contains(&within), "{within}");
    // The server looked at some moment between `before` and `after`: that moment + `within`
    // falls on a tick + 10 s.
    let off = (before + within - 10_000).rem_euclid(60_000);
    assert!(off == 0 || off >= 60_000 - (after - before), "{within} ms from {before}..{after}");

    let live = spawn_manual().await;
    let token = live.lead_tab().await;
    assert_eq!(look_within(&live, &token).await, shared::domain::cadence::LIVE_LOOK_MS, "no ticks: news any time");
}

#[tokio::test]
async fn an_open_tab_polls_a_marker_answered_304_until_something_changes() {
    let app = spawn_manual().await;
    let token = app.lead_tab().await;
    let ours = app.send_text(&token, IVAN, "Your order is ready").await;
    app.wait_for_status(&token, &ours, "sent", WAIT).await;
    let view = conversation(&app, &token).await;
    let rev = view["rev"].as_str().unwrap().to_owned();
    assert_eq!(view["peer"], IVAN_ID);
    let poll = |rev: String, peer: Option<i64>| {
        let peer = peer.map(|p| format!("&peer={p}")).unwrap_or_default();
        let request = app.http.get(app.url(&conversation_path(&format!("&rev={rev}{peer}")))).bearer_auth(&token);
        async move { request.send().await.unwrap().status() }
    };
    // With the peer it named, a poll is answered from the marker alone; either way 304.
    assert_eq!(poll(rev.clone(), None).await, StatusCode::NOT_MODIFIED);
    assert_eq!(poll(rev.clone(), Some(IVAN_ID)).await, StatusCode::NOT_MODIFIED);
    // A marker that is not that peer's is no shortcut: the card's own conversation answers.
    assert_eq!(poll(rev.clone(), Some(IVAN_ID + 1)).await, StatusCode::NOT_MODIFIED, "the card's look, which is unchanged");
    assert_eq!(poll("forged".into(), Some(IVAN_ID)).await, StatusCode::OK);

    // Ivan reads it: the status change is news.
    let read = app.post_json("/sandbox/telegram/read", json!({ "user_id": IVAN_ID })).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    catch_up(&app).await;
    assert_eq!(poll(rev.clone(), None).await, StatusCode::OK);
    assert_eq!(poll(rev.clone(), Some(IVAN_ID)).await, StatusCode::OK);
    let view = conversation(&app, &token).await;
    assert_eq!(item(&view, "Your order is ready")["status"], "read");
    assert_ne!(view["rev"].as_str().unwrap(), rev);
}

#[tokio::test]
async fn the_conversation_pages_back_and_a_cursor_reaches_no_other_conversation() {
    let app = spawn_manual().await;
    for n in 1..=40 {
        writes(&app, IVAN_ID, seed::SALES_ACCOUNT, &format!("Message {n}"), "none").await;
    }
    let token = app.lead_tab().await;
    let newest = conversation(&app, &token).await;
    let expected: Vec<String> = (11..=40).map(|n| format!("Message {n}")).collect();
    assert_eq!(texts(&newest), expected, "the newest page, newest at the bottom");
    let cursor = newest["earlier"].as_str().expect("more further back").to_owned();
    let earlier = app.get(&token, &conversation_path(&format!("&before={}", cursor.replace('#', "%23")))).await;
    assert_eq!(earlier.status, StatusCode::OK, "{}", earlier.body);
    let expected: Vec<String> = (1..=10).map(|n| format!("Message {n}")).collect();
    assert_eq!(texts(&earlier.body), expected);
    assert!(earlier.body["earlier"].is_null(), "the first page");

    let foreign = cursor.replacen(&format!("talk#{IVAN_ID}#"), "talk#1002#", 1).replace('#', "%23");
    let refused = app.get(&token, &conversation_path(&format!("&before={foreign}"))).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_cursor")));
}

#[tokio::test]
async fn edits_and_deletions_on_either_side_show_in_the_conversation() {
    let app = spawn_manual().await;
    let token = app.lead_tab().await;
    let id = app.send_published(&token, IVAN, "Hello", "incoming", false).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    state_taken(&app).await;

    // The client edits one message and deletes another.
    let kept = writes(&app, IVAN_ID, seed::SALES_ACCOUNT, "Deliver on Monday", "none").await;
    let gone = writes(&app, IVAN_ID, seed::SALES_ACCOUNT, "My card number is 1234", "none").await;
    catch_up(&app).await;
    let edit = app.post_json("/sandbox/telegram/edit", json!({ "from_user_id": IVAN_ID, "message_id": kept, "text": "Deliver on Tuesday" })).await;
    assert_eq!(edit.status, StatusCode::NO_CONTENT, "{}", edit.body);
    let delete = app.post_json("/sandbox/telegram/delete", json!({ "from_user_id": IVAN_ID, "message_id": gone })).await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT, "{}", delete.body);
    catch_up(&app).await;
    let view = conversation(&app, &token).await;
    assert_eq!(item(&view, "Deliver on Tuesday")["edited"], true);
    let removed: Vec<&Value> = view["items"].as_array().unwrap().iter().filter(|i| i["deleted"] == true).collect();
    assert_eq!(removed.len(), 1, "{view}");
    assert_eq!(removed[0]["telegram_id"], gone);
    assert_eq!(removed[0]["text"], "", "nothing of a deleted message is kept");

    // An operator answers from the Open Line, then edits the answer, then deletes it.
    let chat = eventually(WAIT, "Ivan's Open Line chat", || async { app.ol_messages().await.first().and_then(|m| m["chat_id"].as_u64()) }).await;
    let reply = app.operator_writes(chat, 2, "We deliver on Tuesday").await;
    let answered = eventually(WAIT, "the operator's answer in the conversation", || async {
        let view = conversation(&app, &token).await;
        view["items"].as_array().unwrap().iter().find(|i| i["out"] == true).cloned()
    })
    .await;
    assert!(answered["text"].as_str().unwrap().ends_with("We deliver on Tuesday"), "{answered}");
    let app = &app;
    let revise = |change: &'static str, text: &'static str| async move {
        app.post_json(&format!("/sandbox/portal/openlines/operator/{change}"), json!({ "message_id": reply, "text": text })).await
    };
    assert_eq!(revise("edit", "We deliver on Wednesday").await.status, StatusCode::NO_CONTENT);
    eventually(WAIT, "the operator's edit in the conversation", || async {
        let view = conversation(&app, &token).await;
        view["items"].as_array().unwrap().iter().find(|i| i["out"] == true && i["edited"] == true && i["text"].as_str().unwrap().ends_with("Wednesday")).map(drop)
    })
    .await;
    assert_eq!(revise("delete", "").await.status, StatusCode::NO_CONTENT);
    eventually(WAIT, "the operator's deletion in the conversation", || async {
        let view = conversation(&app, &token).await;
        view["items"].as_array().unwrap().iter().find(|i| i["out"] == true && i["deleted"] == true).map(drop)
    })
    .await;
}

#[tokio::test]
async fn a_scheduled_message_waits_at_the_bottom_then_takes_its_place_when_it_leaves_or_is_cancelled() {
    let app = spawn_manual().await;
    let token = app.lead_tab().await;
    let now = shared::clock::now_millis();
    let schedule = |text: &str, at: i64| {
        let body = json!({ "connector_id": "sales", "recipient": IVAN, "text": text, "idempotency_key": olchat_tests::fresh_key(), "send_at": at });
        app.send(&token, body)
    };
    let later = schedule("Good morning!", now + 3_600_000).await.body["message_id"].as_str().unwrap().to_owned();
    let cancelled = schedule("Never mind", now + 7_200_000).await.body["message_id"].as_str().unwrap().to_owned();
    let sent = app.send_text(&token, IVAN, "Right now").await;
    app.wait_for_status(&token, &sent, "sent", WAIT).await;
    let view = conversation(&app, &token).await;
    assert_eq!(texts(&view), ["Right now", "Good morning!", "Never mind"], "scheduled ones last, by their time");

    assert_eq!(app.post_raw(&token, &format!("/api/messages/{cancelled}/cancel"), String::new()).await.status, StatusCode::OK);
    shared::app::schedule::sweep(&app.app.services, now + 3_600_000).await.unwrap();
    app.wait_for_status(&token, &later, "sent", WAIT).await;
    let view = conversation(&app, &token).await;
    assert_eq!(texts(&view), ["Right now", "Never mind", "Good morning!"], "each where it left or was called off");
    assert_eq!(item(&view, "Never mind")["status"], "cancelled");
    let good_morning = item(&view, "Good morning!");
    assert!(good_morning["key"].as_str().unwrap().starts_with("talk#"), "listed at its time now: {good_morning}");
}

#[tokio::test]
async fn a_message_and_its_place_in_the_conversation_expire_after_the_retention() {
    use std::time::Duration;
    let app = olchat_tests::spawn_app_with(|s| s.limits.retention = Duration::from_secs(4)).await;
    let token = app.lead_tab().await;
    let id = app.send_published(&token, "phone:+79161234567", "Kept a short while", "none", false).await;
    app.wait_for_status(&token, &id, "sent", Duration::from_secs(10)).await;
    let conversation = || async { app.get(&token, "/api/conversation?connector=sales&recipient=phone%3A%2B79161234567").await.body };
    let listed = conversation().await;
    assert!(listed["items"].as_array().unwrap().iter().any(|i| i["text"] == "Kept a short while"), "{listed}");
    // The table expires them (DynamoDB's TTL; SQLite's reads skip them, and a sweep deletes them).
    olchat_tests::eventually(Duration::from_secs(15), "the message expired", || async {
        let gone = app.app.services.messages.get(&id).await.unwrap().is_none();
        let unlisted = conversation().await["items"].as_array().is_some_and(|items| items.iter().all(|i| i["text"] != "Kept a short while"));
        (gone && unlisted).then_some(())
    })
    .await;
}
