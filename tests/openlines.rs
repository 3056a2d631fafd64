//! Bitrix24 for real, end to end through the sandbox portal: install, events, the three
//! publication modes, chat creation, operator replies, and the activity's statuses.

use std::time::Duration;

use olchat_tests::{TestApp, eventually, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::sandbox::seed;

const IVAN: &str = "phone:+79161234567";
const WAIT: Duration = Duration::from_secs(10);

/// The Open Line messages once there are `count` of them.
async fn ol_messages(app: &TestApp, count: usize) -> Vec<Value> {
    eventually(WAIT, &format!("{count} Open Line messages"), || async {
        let messages = app.ol_messages().await;
        (messages.len() >= count).then_some(messages)
    })
    .await
}

/// The activity of `message_id` once its status tag reads `title`.
async fn activity_showing(app: &TestApp, message_id: &str, title: &str) -> Value {
    eventually(WAIT, &format!("an activity showing {title}"), || async {
        let activities = app.activities().await;
        activities.into_iter().find(|a| a["origin_id"] == message_id && a["status"]["title"] == title)
    })
    .await
}

fn titles(activity: &Value) -> Vec<String> {
    activity["history"].as_array().unwrap().iter().map(|s| s["title"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_install_flow_registers_everything_on_a_fresh_portal() {
    let app = spawn_app().await;
    let fresh = app.portal_state(seed::FRESH_MEMBER_ID).await;
    assert_eq!((fresh["installed"].as_bool(), fresh["placements"].as_array().map(Vec::len)), (Some(false), Some(0)));

    let (status, page) = app.install(seed::FRESH_MEMBER_ID, "page").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("BX24.installFinish()"), "{page}");
    let state = app.portal_state(seed::FRESH_MEMBER_ID).await;
    assert_eq!(state["application_token_set"], true);
    let placements = state["placements"].as_array().unwrap();
    let codes: Vec<&str> = placements.iter().map(|p| p["placement"].as_str().unwrap()).collect();
    assert_eq!(codes, ["CRM_LEAD_DETAIL_TAB", "CRM_DEAL_DETAIL_TAB", "CRM_CONTACT_DETAIL_TAB", "CRM_COMPANY_DETAIL_TAB"]);
    assert!(placements.iter().all(|p| p["handler"] == app.url("/placement")));
    assert_eq!(placements[0]["langAll"]["ru"]["TITLE"], "Написать в Telegram");
    assert_eq!(placements[0]["langAll"]["en"]["TITLE"], "Write in Telegram");
    let connector = &state["connectors"]["olchat_telegram"];
    assert_eq!(connector["PLACEMENT_HANDLER"], app.url("/bitrix/connector"));
    assert!(connector["ICON"]["DATA_IMAGE"].as_str().unwrap().starts_with("data:image/svg+xml"));
    assert_eq!(state["active"], json!([["olchat_telegram", "7"]]));
    let mut events: Vec<&str> = state["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    events.sort();
    let expected = ["ONAPPUNINSTALL", "ONAPPUPDATE", "ONIMCONNECTORLINEDELETE", "ONIMCONNECTORMESSAGEADD", "ONIMCONNECTORMESSAGEDELETE",
        "ONIMCONNECTORMESSAGEUPDATE", "ONIMCONNECTORSTATUSDELETE"];
    assert_eq!(events, expected);
    // Open Lines' own messages do not reach clients unless an administrator allows it.
    assert_eq!(connector["NEED_SYSTEM_MESSAGES"], false);
    // The Contact Center shows the connector as connected on its line.
    assert_eq!(state["connector_data"]["olchat_telegram|7"]["NAME"], "OLChat for Telegram");
    assert_eq!(state["installed"], true, "the install page finished the install");
    assert!(state["events"].as_array().unwrap().iter().all(|e| e["handler"] == app.url("/bitrix/events")));

    // Reinstalling, by the page or by ONAPPINSTALL, registers nothing twice.
    assert_eq!(app.install(seed::FRESH_MEMBER_ID, "page").await.0, 200);
    assert_eq!(app.install(seed::FRESH_MEMBER_ID, "event").await.0, 200);
    // The set-up the event queued, run here to its end: it registers nothing twice.
    let set_up = json!({ "kind": "set_up", "member_id": seed::FRESH_MEMBER_ID }).to_string();
    assert_eq!(app.run_job(&set_up, 1).await, shared::jobs::Outcome::Done);
    let again = app.portal_state(seed::FRESH_MEMBER_ID).await;
    for list in ["placements", "events", "active"] {
        assert_eq!(again[list], state[list], "{list} after reinstalls");
    }
}

#[tokio::test]
async fn onappinstall_alone_installs_and_the_demo_portals_went_through_it_too() {
    let app = spawn_app().await;
    let (status, body) = app.install(seed::FRESH_MEMBER_ID, "event").await;
    assert_eq!(status, 200, "{body}");
    let state = eventually(WAIT, "the queued set-up", || async {
        let state = app.portal_state(seed::FRESH_MEMBER_ID).await;
        (state["events"].as_array().map(Vec::len) == Some(7)).then_some(state)
    })
    .await;
    assert_eq!(state["placements"].as_array().unwrap().len(), 4);
    assert_eq!(state["active"], json!([["olchat_telegram", "7"]]));
    let demo = app.portal_state(seed::DEMO_MEMBER_ID).await;
    assert_eq!((demo["placements"].as_array().unwrap().len(), demo["events"].as_array().unwrap().len()), (4, 7));
}

#[tokio::test]
async fn installs_the_portal_does_not_confirm_are_refused() {
    let app = spawn_app().await;
    let form = |auth: &str, placement: &str| {
        vec![
            ("AUTH_ID", auth.to_owned()),
            ("REFRESH_ID", format!("{auth}-refresh")),
            ("member_id", seed::FRESH_MEMBER_ID.to_owned()),
            ("PLACEMENT", placement.to_owned()),
        ]
    };
    let install = |query: String, form: Vec<(&'static str, String)>| {
        let request = app.http.post(app.url(&format!("/bitrix/install?{query}"))).form(&form);
        async move { request.send().await.unwrap().status() }
    };
    let query = format!("DOMAIN={}&PROTOCOL=1&LANG=en", seed::FRESH_DOMAIN);
    assert_eq!(install(query.clone(), form("made-up", "DEFAULT")).await, StatusCode::UNAUTHORIZED);
    // Genuine tokens of another portal, claimed for this one: the OAuth server tells them apart.
    let (access, refresh) = app.app.sandbox().portal.issue_tokens(seed::DEMO_MEMBER_ID, 1);
    let borrowed = vec![("AUTH_ID", access), ("REFRESH_ID", refresh), ("member_id", seed::FRESH_MEMBER_ID.to_owned()), ("PLACEMENT", "DEFAULT".to_owned())];
    assert_eq!(install(query.clone(), borrowed).await, StatusCode::UNAUTHORIZED);
    // Without a refresh token a first install cannot be verified.
    let bare = vec![("AUTH_ID", "x".to_owned()), ("member_id", seed::FRESH_MEMBER_ID.to_owned()), ("PLACEMENT", "DEFAULT".to_owned())];
    assert_eq!(install(query.clone(), bare).await, StatusCode::BAD_REQUEST);
    let before = app.portal_requests().await;
    assert_eq!(install("DOMAIN=169.254.169.254&LANG=en".into(), form("x", "DEFAULT")).await, StatusCode::BAD_REQUEST);
    assert_eq!(install("DOMAIN=evil.example.com&LANG=en".into(), form("x", "DEFAULT")).await, StatusCode::BAD_REQUEST);
    assert_eq!(app.portal_requests().await, before, "no request may leave for a host a request named");
    assert_eq!(install(query.clone(), form("x", "CRM_LEAD_DETAIL_TAB")).await, StatusCode::BAD_REQUEST);
    assert_eq!(install(query, vec![]).await, StatusCode::BAD_REQUEST);
    assert_eq!(app.portal_state(seed::FRESH_MEMBER_ID).await["placements"], json!([]));
    // An installed portal is only ever called at the domain it installed from.
    let known = format!("DOMAIN={}&LANG=en", seed::OTHER_DOMAIN);
    let other = vec![("AUTH_ID", "x".to_owned()), ("member_id", seed::DEMO_MEMBER_ID.to_owned()), ("PLACEMENT", "DEFAULT".to_owned())];
    assert_eq!(install(known, other).await, StatusCode::FORBIDDEN);
    // An employee's genuine token names our app, but only an administrator re-installs: the
    // portal's tokens and application_token stay.
    let (access, refresh) = app.app.sandbox().portal.issue_tokens(seed::DEMO_MEMBER_ID, 2);
    let employee = vec![("AUTH_ID", access), ("REFRESH_ID", refresh), ("APPLICATION_TOKEN", "chosen-by-employee".to_owned()),
        ("member_id", seed::DEMO_MEMBER_ID.to_owned()), ("PLACEMENT", "DEFAULT".to_owned())];
    assert_eq!(install(format!("DOMAIN={}&LANG=en", seed::DEMO_DOMAIN), employee).await, StatusCode::UNAUTHORIZED);
    let portal = app.app.services.portals.get(seed::DEMO_MEMBER_ID).await.unwrap().unwrap();
    assert!(!app.app.services.portals.application_token_matches(&portal, "chosen-by-employee"));
}

#[tokio::test]
async fn incoming_publication_creates_the_chat_as_the_client_marked_olchat() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let first = app.send_published(&token, IVAN, "Hello, Ivan!", "incoming", false).await;
    app.wait_for_status(&token, &first, "sent", WAIT).await;
    let messages = ol_messages(&app, 1).await;
    let m = &messages[0];
    assert_eq!((m["direction"].as_str(), m["author"].as_str()), (Some("incoming"), Some("Ivan Petrov")));
    assert_eq!(m["text"], "[b]OLChat[/b][br]Hello, Ivan!");
    let chat_id = m["chat_id"].as_u64().unwrap();
    let view = app.get(&token, &format!("/api/messages/{first}")).await.body;
    assert_eq!((view["published"]["state"].as_str(), view["published"]["ol_chat_id"].as_u64()), (Some("published"), Some(chat_id)));

    // The next message goes to the same chat; a redelivered publish job repeats nothing.
    let second = app.send_published(&token, IVAN, "Second", "incoming", false).await;
    app.wait_for_status(&token, &second, "sent", WAIT).await;
    let messages = ol_messages(&app, 2).await;
    assert_eq!(messages[1]["chat_id"].as_u64(), Some(chat_id));
    let job = json!({ "kind": "publish", "message_id": first, "member_id": seed::DEMO_MEMBER_ID }).to_string();
    assert_eq!(app.run_job(&job, 2).await, shared::jobs::Outcome::Done);
    app.settled().await;
    assert_eq!(app.ol_messages().await.len(), 2);
    assert_eq!(app.telegram_messages().await.len(), 2);
    assert_eq!(app.portal_state(seed::DEMO_MEMBER_ID).await["chats"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_employees_bbcode_published_as_the_clients_message_takes_no_effect() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let typed = "[b]Fake:[/b] [url=javascript:alert(1)]x[/url] [USER=1]boss[/USER] [SEND=/cmd]go[/SEND]";
    let id = app.send_published(&token, IVAN, typed, "incoming", false).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    let shown = &ol_messages(&app, 1).await[0]["shown"];
    // Only our own mark takes effect; the employee's text reads as typed (U+200B shows nothing).
    assert_eq!(shown["effects"], json!(["[b]", "[/b]", "[br]"]), "{shown}");
    assert_eq!((&shown["links"], &shown["signature"]), (&json!([]), &Value::Null));
    assert_eq!(shown["text"].as_str().unwrap().replace('\u{200B}', ""), format!("OLChat\n{typed}"));
    // The client got the text as written, not formatted.
    assert_eq!(app.telegram_messages().await[0]["text"], typed);
}

#[tokio::test]
async fn outgoing_publication_is_the_employees_and_reaches_the_client_once() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let id = app.send_published(&token, IVAN, "Your order ships today", "outgoing", false).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    let m = ol_messages(&app, 1).await.remove(0);
    assert_eq!((m["direction"].as_str(), m["author"].as_str(), m["author_id"].as_u64()), (Some("outgoing"), Some("Anna Smirnova"), Some(1)));
    assert_eq!(m["text"], "Your order ships today");
    // An employee's message through the connector opens no session: the chat is found by its dialog.
    let published = eventually(WAIT, "the publication recorded", || async {
        app.app.services.messages.get(&id).await.unwrap().and_then(|m| m.published)
    })
    .await;
    assert_eq!(published, shared::domain::Publication::Published { ol_chat_id: m["chat_id"].as_u64() });
    assert_eq!(app.telegram_messages().await.len(), 1);
}

#[tokio::test]
async fn an_operator_writing_the_text_we_published_still_reaches_the_client() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let id = app.send_published(&token, IVAN, "Ok", "outgoing", false).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    let chat = ol_messages(&app, 1).await[0]["chat_id"].as_u64().unwrap();
    // Bitrix24 sends no event for our own publication, so nothing waits for an echo to swallow this.
    app.operator_writes(chat, 2, "Ok").await;
    let received = eventually(WAIT, "the operator's Ok in Telegram", || async {
        let received = app.telegram_messages().await;
        (received.len() == 2).then_some(received)
    })
    .await;
    assert_eq!(received[1]["text"], "Boris Ivanov:\nOk");
}

#[tokio::test]
async fn without_publication_nothing_reaches_open_lines() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let id = app.send_published(&token, IVAN, "Just Telegram", "none", false).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    // A later published message: one connector sends in order, so the first was handed on
    // before it; the openline queue keeps no order, so a job the first queued gets a moment more.
    app.send_published(&token, IVAN, "Published", "incoming", false).await;
    ol_messages(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = app.ol_messages().await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert!(published[0]["text"].as_str().unwrap().ends_with("Published"));
    assert!(app.activities().await.is_empty());
    assert_eq!(app.telegram_messages().await.len(), 2);
    let bad = app.send(&token, json!({ "connector_id": "sales", "recipient": IVAN, "text": "x", "idempotency_key": "p", "publication": "sideways" })).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_activity_shows_sent_then_read() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let id = app.send_published(&token, IVAN, "Have a look at the offer", "incoming", true).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    let sent = activity_showing(&app, &id, "Sent").await;
    assert_eq!((sent["owner"]["type_id"].as_u64(), sent["owner"]["id"].as_u64()), (Some(1), Some(1)));
    assert_eq!(sent["subject"], "Telegram message to @ivan_petrov");
    assert_eq!(sent["layout"]["body"]["blocks"]["text"]["properties"]["value"], "Have a look at the offer");
    assert_eq!(sent["status"]["type"], "primary");

    let read = app.post_json("/sandbox/telegram/read", json!({ "user_id": 1001 })).await;
    assert_eq!(read.status, StatusCode::OK);
    let read = activity_showing(&app, &id, "Read").await;
    assert_eq!(read["status"]["type"], "success");
    assert_eq!(read["completed"], true);
    assert!(titles(&read).ends_with(&["Sent".to_owned(), "Read".to_owned()]), "{read}");
    app.wait_for_status(&token, &id, "read", WAIT).await;
    assert_eq!(app.activities().await.len(), 1, "one activity, updated in place");
}

#[tokio::test]
async fn the_activity_shows_a_failure_with_its_reason() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    app.inject_telegram_fault(json!({ "kind": "privacy_restricted" }), "send", 1).await;
    let id = app.send_published(&token, IVAN, "hello", "incoming", true).await;
    app.wait_for_status(&token, &id, "failed", WAIT).await;
    let failed = activity_showing(&app, &id, "Failed").await;
    assert_eq!(failed["status"]["type"], "failure");
    let reason = failed["layout"]["body"]["blocks"]["reason"]["properties"]["value"].as_str().unwrap();
    assert!(reason.contains("only from their contacts"), "{reason}");
    app.settled().await;
    assert!(app.ol_messages().await.is_empty(), "an undelivered message is not published");
}

/// Publishes one message so that Ivan's chat exists; its id.
async fn ivans_chat(app: &TestApp, token: &str) -> u64 {
    let id = app.send_published(token, IVAN, "Hello", "incoming", false).await;
    app.wait_for_status(token, &id, "sent", WAIT).await;
    ol_messages(app, 1).await[0]["chat_id"].as_u64().unwrap()
}

#[tokio::test]
async fn an_operator_reply_reaches_the_client_once_formatted() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let chat = ivans_chat(&app, &token).await;
    let reply = app.operator_writes(chat, 2, "[b]Good news[/b], Ivan![br]See [url=https://shop.example/o/1]your order[/url]").await;
    let received = eventually(WAIT, "the reply in Telegram", || async {
        let received = app.telegram_messages().await;
        (received.len() == 2).then_some(received)
    })
    .await;
    let to_ivan = &received[1];
    assert_eq!((to_ivan["to_username"].as_str(), to_ivan["from_username"].as_str()), (Some("ivan_petrov"), Some("olchat_sales")));
    // The portal keeps the operator's signature by default; BBCode became Telegram entities.
    assert_eq!(to_ivan["text"], "Boris Ivanov:\nGood news, Ivan!\nSee your order");
    let kinds: Vec<&str> = to_ivan["entities"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["bold", "bold", "text_url"]);
    eventually(WAIT, "the reply's delivery status", || async {
        app.ol_messages().await.iter().find(|m| m["id"] == reply && m["delivered"] == true).map(drop)
    })
    .await;

    // A redelivered job, and the same event delivered again, send nothing more.
    let job = json!({ "kind": "reply", "member_id": seed::DEMO_MEMBER_ID, "connector_id": "sales", "line": "1",
        "external_chat_id": "sales-1001", "ol_chat_id": chat, "im_message_id": reply, "text": "[b]Good news[/b]" });
    assert_eq!(app.run_job(&job.to_string(), 2).await, shared::jobs::Outcome::Done);
    app.settled().await;
    assert_eq!(app.telegram_messages().await.len(), 2);

    // With the signature setting off, the operator's name is stripped.
    app.app.services.portals.update(seed::DEMO_MEMBER_ID, |p| std::mem::replace(&mut p.keep_operator_signature, false)).await.unwrap();
    app.operator_writes(chat, 2, "Plain reply").await;
    let last = eventually(WAIT, "the second reply", || async { app.telegram_messages().await.get(2).cloned() }).await;
    assert_eq!(last["text"], "Plain reply");
}

#[tokio::test]
async fn an_undelivered_reply_is_shown_to_the_operator() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let chat = ivans_chat(&app, &token).await;
    app.inject_telegram_fault(json!({ "kind": "privacy_restricted" }), "send", 1).await;
    app.operator_writes(chat, 2, "Are you there?").await;
    // The app may not write into the chat (only its members may, `im-message-add.md`): the
    // operator who wrote is notified instead.
    let notice = eventually(WAIT, "a notification to the operator", || async {
        app.get_json("/sandbox/portal/notifications").await["notifications"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(notice["user_id"], 2);
    let text = notice["message"].as_str().unwrap();
    assert!(text.contains("did not reach the client") && text.contains(&format!("#{chat}")), "{notice}");
    assert_eq!(app.telegram_messages().await.len(), 1);
}

#[tokio::test]
async fn events_without_the_portals_application_token_are_refused_and_nothing_is_queued() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let chat = ivans_chat(&app, &token).await;
    let event = |member: &str, application_token: &str| {
        format!(
            "event=ONIMCONNECTORMESSAGEADD&data%5BCONNECTOR%5D=olchat_telegram&data%5BLINE%5D=1\
             &data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bchat_id%5D={chat}&data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bmessage_id%5D=999\
             &data%5BMESSAGES%5D%5B0%5D%5Bmessage%5D%5Buser_id%5D=1&data%5BMESSAGES%5D%5B0%5D%5Bmessage%5D%5Btext%5D=forged\
             &data%5BMESSAGES%5D%5B0%5D%5Bchat%5D%5Bid%5D=sales-1001\
             &auth%5Bmember_id%5D={member}&auth%5Bapplication_token%5D={application_token}&auth%5Bdomain%5D={}",
            seed::DEMO_DOMAIN
        )
    };
    for (member, forged) in [(seed::DEMO_MEMBER_ID, "guessed"), (seed::DEMO_MEMBER_ID, ""), ("unknown-portal", "guessed")] {
        assert_eq!(app.post_event(&event(member, forged)).await, StatusCode::UNAUTHORIZED, "{member} {forged}");
    }
    let uninstall = format!("event=ONAPPUNINSTALL&data%5BCLEAN%5D=1&auth%5Bmember_id%5D={}&auth%5Bapplication_token%5D=guessed", seed::DEMO_MEMBER_ID);
    assert_eq!(app.post_event(&uninstall).await, StatusCode::UNAUTHORIZED);
    for garbage in ["", "not an event", "event=X"] {
        assert_eq!(app.post_event(garbage).await, StatusCode::BAD_REQUEST, "{garbage:?}");
    }
    app.settled().await;
    assert_eq!(app.telegram_messages().await.len(), 1, "nothing forged reached Telegram");
    assert!(app.app.services.portals.get(seed::DEMO_MEMBER_ID).await.unwrap().is_some(), "no forged uninstall");
    assert_eq!(app.get(&token, "/api/card").await.status, StatusCode::OK);
}

#[tokio::test]
async fn create_chat_creates_it_once_and_invites_the_chosen_employees() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let employees = app.get(&token, "/api/employees").await;
    assert_eq!(employees.status, StatusCode::OK, "{}", employees.body);
    let names: Vec<&str> = employees.body["employees"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    // `user.get` answers 50 a page: the employees past the first page are there too.
    assert_eq!(names.len() as u64, seed::DEMO_EMPLOYEES, "{names:?}");
    assert_eq!((&names[..3], names.last()), (&["Anna Smirnova", "Boris Ivanov", "Clara Orlova"][..], Some(&"Employee No60")));

    let created = app.post_raw(&token, "/api/chats", json!({ "connector_id": "sales", "recipient": IVAN, "user_ids": [2, 3] }).to_string()).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!((created.body["created"].as_bool(), created.body["invited"].clone()), (Some(true), json!([2, 3])));
    let chat_id = created.body["chat_id"].as_u64().unwrap();
    let state = app.portal_state(seed::DEMO_MEMBER_ID).await;
    let chats = state["chats"].clone();
    assert_eq!((chats[0]["id"].as_u64(), chats[0]["members"].clone()), (Some(chat_id), json!([2, 3])));
    // Bitrix24's tracker bound the new chat to a lead of its own, not to the card: invitations went there.
    let bound = &chats[0]["crm"];
    assert_eq!(bound[0], "lead");
    assert_ne!(bound[1], 1, "a new lead for the client who had no chat");
    let note = ol_messages(&app, 1).await.remove(0);
    assert_eq!((note["direction"].as_str(), note["author_id"].as_u64()), (Some("outgoing"), Some(1)));

    // Asked again, the chat exists: nothing new is written; publishing later uses it.
    let again = app.post_raw(&token, "/api/chats", json!({ "connector_id": "sales", "recipient": IVAN, "user_ids": [3] }).to_string()).await;
    assert_eq!((again.body["created"].as_bool(), again.body["chat_id"].as_u64()), (Some(false), Some(chat_id)));
    assert_eq!(again.body["invited"], json!([3]), "already in the chat (WRONG_REQUEST) counts as invited");
    let id = app.send_published(&token, IVAN, "In the same chat", "incoming", false).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    assert_eq!(ol_messages(&app, 2).await[1]["chat_id"].as_u64(), Some(chat_id));
    app.settled().await;
    assert_eq!(app.telegram_messages().await.len(), 1, "the chat's opening note is not sent to the client");

    let cases = [
        (json!({ "connector_id": "sales", "recipient": IVAN, "user_ids": [999] }), "unknown_employee"),
        (json!({ "connector_id": "sales", "recipient": "phone:+79000000000" }), "unknown_recipient"),
        (json!({ "connector_id": "nope", "recipient": IVAN }), "unknown_connector"),
    ];
    for (body, code) in cases {
        let answer = app.post_raw(&token, "/api/chats", body.to_string()).await;
        assert_eq!((answer.status, answer.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(code)), "{}", answer.body);
    }
    assert_eq!(app.post_raw(&token, "/api/chats", "{".into()).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn expired_portal_tokens_mid_flow_are_refreshed_transparently() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    for round in 0..2 {
        // Every token the portal issued expires, the app's own included; refresh tokens rotate.
        app.portal_fault(json!({ "expire_tokens": true })).await;
        let id = app.send_published(&token, IVAN, &format!("round {round}"), "incoming", true).await;
        app.wait_for_status(&token, &id, "sent", WAIT).await;
        activity_showing(&app, &id, "Sent").await;
        ol_messages(&app, round + 1).await;
    }
}

#[tokio::test]
async fn rate_limited_portal_calls_back_off_and_nothing_is_lost() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    // More refusals than one call's retries: the job itself comes back later.
    app.portal_fault(json!({ "rate_limit_next": 4 })).await;
    let id = app.send_published(&token, IVAN, "despite the limit", "incoming", true).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    let within = Duration::from_secs(30);
    eventually(within, "the activity", || async {
        app.activities().await.into_iter().find(|a| a["origin_id"] == id.as_str() && a["status"]["title"] == "Sent")
    })
    .await;
    let messages = eventually(within, "the publication", || async { Some(app.ol_messages().await).filter(|m| !m.is_empty()) }).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(app.activities().await.len(), 1);
}

#[tokio::test]
async fn uninstall_signs_the_accounts_out_and_deletes_everything_the_portal_left() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let services = &app.app.services;
    let member = seed::DEMO_MEMBER_ID;
    // What a portal leaves behind: a message with its idempotency key, a chat link, an upload,
    // a template's file.
    let sent = app.send(&token, json!({ "connector_id": "sales", "recipient": IVAN, "text": "before", "idempotency_key": "k-uninstall",
        "publication": "incoming" })).await;
    let id = sent.body["message_id"].as_str().unwrap().to_owned();
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    ol_messages(&app, 1).await;
    let upload = format!("uploads/{member}/left/file.txt");
    services.blobs.put(&upload, &mut &b"left behind"[..]).await.unwrap();
    let template_file = format!("templates/{member}/left/price.pdf");
    services.blobs.put(&template_file, &mut &b"%PDF"[..]).await.unwrap();
    assert!(services.openlines.chat(member, "sales-1001").await.unwrap().is_some());

    let answer = app.post_json("/sandbox/portal/uninstall", json!({ "member_id": member })).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    eventually(WAIT, "the portal forgotten", || async { services.portals.get(member).await.unwrap().is_none().then_some(()) }).await;
    for owner in [shared::repo::portals::TokenOwner::App, shared::repo::portals::TokenOwner::User(1)] {
        assert!(services.portals.auth(member, owner).await.unwrap().is_none());
    }
    let refused = app.open_card("lead", 1, "en").await.expect_err("an uninstalled portal's placement is refused").to_string();
    assert!(refused.contains("403") && refused.contains("unknown_portal"), "{refused}");
    eventually(WAIT, "both accounts signed out in the sandbox Telegram", || async {
        let users = app.app.sandbox().telegram.users();
        let signed_in = |id: i64| users.iter().any(|u| u.id == id && u.logged_in);
        (!signed_in(seed::SALES_ACCOUNT) && !signed_in(seed::SUPPORT_ACCOUNT)).then_some(())
    })
    .await;
    eventually(WAIT, "the portal's data deleted", || async {
        let gone = services.messages.get(&id).await.unwrap().is_none()
            && services.openlines.chat(member, "sales-1001").await.unwrap().is_none()
            && services.blobs.size(&upload).await.unwrap().is_none()
            && services.blobs.size(&template_file).await.unwrap().is_none()
            && services.connectors.list(member).await.unwrap().is_empty()
            && services.connectors.all().await.unwrap().iter().all(|c| c.member_id != member);
        gone.then_some(())
    })
    .await;
    // The idempotency key is free again: a new message takes it.
    assert_eq!(services.messages.claim_idempotency_key(member, 1, "k-uninstall", "fresh").await.unwrap(), "fresh");
    // Installed again, it works as before.
    assert_eq!(app.install(member, "page").await.0, 200);
    let token = app.open_card("lead", 1, "en").await.expect("the reinstalled portal's tab opens");
    let card = app.get(&token, "/api/card").await;
    assert_eq!(card.status, StatusCode::OK, "{}", card.body);
}

#[tokio::test]
async fn the_connector_settings_page_connects_another_line() {
    let app = spawn_app().await;
    let post = |user: u64, line: &str| {
        let (access, _) = app.app.sandbox().portal.issue_tokens(seed::DEMO_MEMBER_ID, user);
        let options = json!({ "LINE": line, "CONNECTOR": "olchat_telegram", "ACTIVE_STATUS": false }).to_string();
        let form = [("AUTH_ID", access), ("member_id", seed::DEMO_MEMBER_ID.into()), ("PLACEMENT", "SETTING_CONNECTOR".into()), ("PLACEMENT_OPTIONS", options)];
        let request = app.http.post(app.url(&format!("/bitrix/connector?DOMAIN={}&LANG=en", seed::DEMO_DOMAIN))).form(&form);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(post(2, "2").await, StatusCode::FORBIDDEN, "only an administrator");
    assert_eq!(post(1, "x; drop").await, StatusCode::BAD_REQUEST);
    assert_eq!(post(1, "2").await, StatusCode::OK);
    let active = app.portal_state(seed::DEMO_MEMBER_ID).await["active"].clone();
    assert!(active.as_array().unwrap().contains(&json!(["olchat_telegram", "2"])), "{active}");
    let portal = app.app.services.portals.get(seed::DEMO_MEMBER_ID).await.unwrap().unwrap();
    assert_eq!(portal.line.as_deref(), Some("2"));
}

#[tokio::test]
async fn the_sandbox_page_lets_a_person_answer_as_an_operator() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let chat = ivans_chat(&app, &token).await;
    let page = app.http.get(app.url("/sandbox/openlines")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("Chat {chat} — Ivan Petrov")) && page.contains("Send as operator"), "{page}");
    let form = [("chat_id", chat.to_string()), ("user_id", "2".into()), ("text", "<b>not html</b>".into())];
    let answer = app.http.post(app.url("/sandbox/portal/openlines/operator")).form(&form).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "the form redirects back to the page");
    let page = answer.text().await.unwrap();
    assert!(page.contains("&lt;b&gt;not html") && !page.contains("<b>not html"), "escaped on the page: {page}");
    let received = eventually(WAIT, "the reply", || async { app.telegram_messages().await.get(1).cloned() }).await;
    assert_eq!(received["text"], "Boris Ivanov:\n<b>not html</b>");

    // The operator edits the reply from the page, then deletes it.
    let reply = app.ol_messages().await.into_iter().find(|m| m["author_id"] == 2).unwrap()["id"].as_u64().unwrap();
    assert!(page.contains("/sandbox/portal/openlines/operator/edit") && page.contains(">Delete</button>"), "{page}");
    let form = [("message_id", reply.to_string()), ("text", "Fixed".into())];
    let answer = app.http.post(app.url("/sandbox/portal/openlines/operator/edit")).form(&form).send().await.unwrap();
    assert!(answer.text().await.unwrap().contains(", edited): Fixed"), "the page shows the edit");
    reply_in_telegram(&app, "Boris Ivanov:\nFixed").await;
    let answer = app.http.post(app.url("/sandbox/portal/openlines/operator/delete")).form(&[("message_id", reply.to_string())]).send().await.unwrap();
    assert!(answer.text().await.unwrap().contains(", deleted): <"), "the page keeps the mark");
    eventually(WAIT, "the reply gone from Telegram", || async { (app.telegram_messages().await.len() == 1).then_some(()) }).await;
}

#[tokio::test]
async fn an_app_update_sets_up_again_and_may_bring_a_new_application_token() {
    let app = spawn_app().await;
    let portal = &app.app.sandbox().portal;
    let genuine = portal.install(seed::DEMO_MEMBER_ID).unwrap().application_token;
    let update = |application_token: &str, access_token: &str| {
        format!(
            "event=ONAPPUPDATE&data%5BVERSION%5D=2&auth%5Bmember_id%5D={}&auth%5Bdomain%5D={}\
             &auth%5Baccess_token%5D={access_token}&auth%5Bapplication_token%5D={application_token}",
            seed::DEMO_MEMBER_ID,
            seed::DEMO_DOMAIN
        )
    };
    let (access, _) = portal.issue_tokens(seed::DEMO_MEMBER_ID, 1);
    let before = app.portal_state(seed::DEMO_MEMBER_ID).await;
    assert_eq!(app.post_event(&update(&genuine, &access)).await, StatusCode::OK);
    let set_up = json!({ "kind": "set_up", "member_id": seed::DEMO_MEMBER_ID }).to_string();
    assert_eq!(app.run_job(&set_up, 1).await, shared::jobs::Outcome::Done);
    let after = app.portal_state(seed::DEMO_MEMBER_ID).await;
    assert_eq!((&after["placements"], &after["events"]), (&before["placements"], &before["events"]), "nothing bound twice");

    // A new application_token is taken only with an access token the portal confirms.
    assert_eq!(app.post_event(&update("rotated", "made-up")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.post_event(&update("rotated", &access)).await, StatusCode::OK);
    let stored = app.app.services.portals.get(seed::DEMO_MEMBER_ID).await.unwrap().unwrap();
    assert!(app.app.services.portals.application_token_matches(&stored, "rotated"));
    assert!(!app.app.services.portals.application_token_matches(&stored, &genuine));
}

#[tokio::test]
async fn a_publication_that_cannot_be_made_says_why_and_the_message_stays_sent() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    app.app.services.portals.update(seed::DEMO_MEMBER_ID, |p| p.line.take().is_some()).await.unwrap();
    let id = app.send_published(&token, IVAN, "No line", "outgoing", false).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    let view = eventually(WAIT, "the publication outcome", || async {
        let view = app.get(&token, &format!("/api/messages/{id}")).await.body;
        (!view["published"].is_null()).then_some(view)
    })
    .await;
    assert_eq!(view["published"]["state"], "failed");
    assert!(view["published"]["reason"].as_str().unwrap().contains("not connected to an Open Line"), "{view}");
    assert!(app.ol_messages().await.is_empty());
}

#[tokio::test]
async fn a_crash_after_creating_the_activity_does_not_create_a_second() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let id = app.send_published(&token, IVAN, "once", "none", true).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    activity_showing(&app, &id, "Sent").await;
    // As if the worker had stopped between crm.activity.configurable.add and recording its id.
    let services = &app.app.services;
    services.messages.update(&id, |m| m.activity.take().is_some()).await.unwrap();
    let job = json!({ "kind": "publish", "message_id": id, "member_id": seed::DEMO_MEMBER_ID }).to_string();
    assert_eq!(app.run_job(&job, 2).await, shared::jobs::Outcome::Done);
    assert_eq!(app.activities().await.len(), 1);
    assert!(services.messages.get(&id).await.unwrap().unwrap().activity.is_some(), "found again by its originId");
}

#[tokio::test]
async fn two_jobs_refreshing_the_portals_expired_token_at_once_both_go_on() {
    use shared::app::portal::PortalClient;
    let app = spawn_app().await;
    let svc = &app.app.services;
    let mut first = PortalClient::app(svc, seed::DEMO_MEMBER_ID).await.unwrap();
    let mut second = PortalClient::app(svc, seed::DEMO_MEMBER_ID).await.unwrap();
    app.portal_fault(json!({ "expire_tokens": true })).await;
    first.call("app.info", &json!({})).await.expect("the first refreshes");
    // The second's refresh token was rotated away by the first: it takes the stored pair.
    second.call("app.info", &json!({})).await.expect("the second goes on with the first's tokens");
}

/// A sent message whose publication (incoming) and activity are due, with no job queued
/// for them yet: the test delivers the jobs itself.
async fn due_for_the_open_line(app: &TestApp, token: &str) -> (String, String) {
    let id = app.send_published(token, IVAN, "Exactly once", "none", false).await;
    app.wait_for_status(token, &id, "sent", WAIT).await;
    let due = |m: &mut shared::domain::Message| {
        (m.publication, m.create_activity) = (shared::domain::PublicationMode::Incoming, true);
        true
    };
    app.app.services.messages.update(&id, due).await.unwrap();
    let job = json!({ "kind": "publish", "message_id": id, "member_id": seed::DEMO_MEMBER_ID }).to_string();
    (id, job)
}

#[tokio::test]
async fn two_publish_jobs_delivered_at_once_publish_once_and_create_one_activity() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let (id, job) = due_for_the_open_line(&app, &token).await;
    // After the send and after a read: one batch of the openline queue, run unordered and at once.
    for _ in 0..2 {
        shared::ports::Queue::send(&app.app.queue, shared::ports::JobQueue::Openline, &job, seed::DEMO_MEMBER_ID, Duration::ZERO)
            .await
            .unwrap();
    }
    ol_messages(&app, 1).await;
    activity_showing(&app, &id, "Sent").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.ol_messages().await.len(), 1, "published once");
    assert_eq!(app.activities().await.len(), 1, "one activity");
}

#[tokio::test]
async fn a_publish_job_finding_the_message_claimed_waits_and_then_finds_it_done() {
    use shared::jobs::Outcome;
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let (id, job) = due_for_the_open_line(&app, &token).await;
    // As if a job had died after imconnector.send.messages, its claim still live: Bitrix24
    // cannot tell whether it published, so nobody publishes until the lease ends.
    let services = &app.app.services;
    let held = |until: i64| move |m: &mut shared::domain::Message| {
        m.lease = Some(shared::domain::lease::Lease { holder: "died".into(), until });
        true
    };
    let now = shared::clock::now_millis();
    services.messages.update(&id, held(now + 60_000)).await.unwrap();
    assert!(matches!(app.run_job(&job, 1).await, Outcome::RetryAfter(_)));
    assert!(app.ol_messages().await.is_empty() && app.activities().await.is_empty());
    services.messages.update(&id, held(now - 1)).await.unwrap();

    // Two deliveries at once: one does the work, the other is told to come back.
    let (first, second) = tokio::join!(app.run_job(&job, 1), app.run_job(&job, 1));
    let waited = [&first, &second].iter().filter(|o| matches!(o, Outcome::RetryAfter(_))).count();
    assert_eq!((waited, first == Outcome::Done || second == Outcome::Done), (1, true), "{first:?} {second:?}");
    assert_eq!(app.run_job(&job, 2).await, Outcome::Done, "back later, it finds the work done");
    assert_eq!((app.ol_messages().await.len(), app.activities().await.len()), (1, 1));
    assert_eq!(services.messages.get(&id).await.unwrap().unwrap().lease, None, "released");
}

/// A client's message to the sales account, stored as the catch-up stores it; its forward job.
async fn received_from_ivan(app: &TestApp, telegram_id: i32) -> String {
    let services = &app.app.services;
    let found = services.resolutions.get("sales", &IVAN.parse().unwrap()).await.unwrap();
    let Some(shared::repo::resolutions::Resolution::Found { user }) = found else { panic!("Ivan resolved: {found:?}") };
    let received = shared::repo::mailbox::Received {
        telegram_id, from: user, date: 0, text: "Is it in stock?".into(), files: vec![], forwarded: false, lease: None,
        edited: false, deleted: false, removed: false,
    };
    assert!(services.mailbox.receive("sales", &received).await.unwrap());
    let job = shared::work::Job::ForwardReceived { member_id: seed::DEMO_MEMBER_ID.into(), connector_id: "sales".into(), telegram_ids: vec![telegram_id] };
    job.to_body()
}

fn forwarded(messages: &[Value]) -> usize {
    messages.iter().filter(|m| m["external_id"].as_str().is_some_and(|e| e.starts_with("tg-"))).count()
}

#[tokio::test]
async fn a_client_message_forwarded_twice_at_once_is_posted_once() {
    use shared::jobs::Outcome;
    let app = olchat_tests::spawn_app_with(|s| s.catch_up_every = None).await;
    app.lead_tab().await;
    let job = received_from_ivan(&app, 501).await;
    let (first, second) = tokio::join!(app.run_job(&job, 1), app.run_job(&job, 1));
    let waited = [&first, &second].iter().filter(|o| matches!(o, Outcome::RetryAfter(_))).count();
    assert_eq!((waited, first == Outcome::Done || second == Outcome::Done), (1, true), "{first:?} {second:?}");
    assert_eq!(app.run_job(&job, 2).await, Outcome::Done);
    assert_eq!(forwarded(&app.ol_messages().await), 1, "posted once");
}

#[tokio::test]
async fn a_forward_that_failed_is_posted_on_its_retry() {
    use shared::jobs::Outcome;
    let app = olchat_tests::spawn_app_with(|s| s.catch_up_every = None).await;
    app.lead_tab().await;
    let job = received_from_ivan(&app, 502).await;
    // More refusals than one call's retries: the forward fails and must not keep its claim.
    app.portal_fault(json!({ "rate_limit_next": 3 })).await;
    assert!(matches!(app.run_job(&job, 1).await, Outcome::RetryAfter(_)));
    assert_eq!(forwarded(&app.ol_messages().await), 0);
    assert_eq!(app.run_job(&job, 2).await, Outcome::Done);
    assert_eq!(forwarded(&app.ol_messages().await), 1, "posted on the retry");
    assert!(app.app.services.mailbox.received("sales", 502).await.unwrap().unwrap().forwarded);
}

#[tokio::test]
async fn a_quiet_portals_own_tokens_are_refreshed_before_they_die() {
    let app = spawn_app().await;
    let services = &app.app.services;
    let app_owner = shared::repo::portals::TokenOwner::App;
    let stored = || async { services.portals.auth(seed::DEMO_MEMBER_ID, app_owner).await.unwrap().unwrap().refresh_token.unwrap().expose().to_owned() };
    let before = stored().await;
    // Fresh tokens are left alone: no refresh token is spent for nothing.
    shared::app::portal::keep_portals_alive(services, shared::app::portal::KEEP_ALIVE_AFTER).await.unwrap();
    assert_eq!(stored().await, before);
    // Past the age, the pair is traded for a new one (the old refresh token is spent).
    shared::app::portal::keep_portals_alive(services, Duration::ZERO).await.unwrap();
    let after = stored().await;
    assert_ne!(after, before);
    let url = app.url(&format!("/sandbox/portal/oauth/token/?grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={before}",
        shared::sandbox::CLIENT_ID, shared::sandbox::CLIENT_SECRET));
    let spent = app.http.get(url).send().await.unwrap();
    assert_eq!(spent.status(), StatusCode::BAD_REQUEST, "the old refresh token was used up");
}

#[tokio::test]
async fn a_method_past_its_time_budget_waits_for_the_reset_and_is_not_called_meanwhile() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let id = app.send_published(&token, IVAN, "after the reset", "none", false).await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    // The portal blocks the method for an hour (OPERATION_TIME_LIMIT, `settings/performance/limits.md`).
    app.portal_fault(json!({ "block_method": { "method": "imconnector.send.messages", "seconds": 3600 } })).await;
    app.app.services.messages.update(&id, |m| std::mem::replace(&mut m.publication, shared::domain::PublicationMode::Incoming) != m.publication).await.unwrap();
    let publish = json!({ "kind": "publish", "message_id": id, "member_id": seed::DEMO_MEMBER_ID }).to_string();
    let first = app.run_job(&publish, 1).await;
    // No earlier answer of this method gave an `operating_reset_at`: the next one-minute basket.
    assert!(matches!(first, shared::jobs::Outcome::RetryAfter(d) if d >= Duration::from_secs(55)), "{first:?}");
    // Until then the method is not called again: the job comes back without a request to the portal.
    let before = app.portal_requests().await;
    let again = app.run_job(&publish, 2).await;
    assert!(matches!(again, shared::jobs::Outcome::RetryAfter(d) if d >= Duration::from_secs(50)), "{again:?}");
    assert_eq!(app.portal_requests().await, before, "no call to the blocked method before its reset");
    assert!(app.ol_messages().await.is_empty());
}

/// The reply `text` the operator wrote, once Telegram has it: its Telegram message.
async fn reply_in_telegram(app: &TestApp, text: &str) -> Value {
    eventually(WAIT, &format!("{text:?} in Telegram"), || async { app.telegram_messages().await.into_iter().find(|m| m["text"] == text) }).await
}

/// An operator's change to their message, through the sandbox portal's hook (`edit` or `delete`).
async fn operator_revises(app: &TestApp, change: &str, message_id: u64, text: &str) {
    let answer = app.post_json(&format!("/sandbox/portal/openlines/operator/{change}"), json!({ "message_id": message_id, "text": text })).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
}

#[tokio::test]
async fn an_operators_edited_and_deleted_reply_is_edited_and_deleted_on_telegram_once() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let chat = ivans_chat(&app, &token).await;
    let reply = app.operator_writes(chat, 2, "See you at [b]10[/b]").await;
    let sent = reply_in_telegram(&app, "Boris Ivanov:\nSee you at 10").await;
    eventually(WAIT, "the reply's delivery status", || async {
        app.ol_messages().await.iter().find(|m| m["id"] == reply && m["delivered"] == true).map(drop)
    })
    .await;

    operator_revises(&app, "edit", reply, "See you at [b]11[/b]").await;
    let edited = reply_in_telegram(&app, "Boris Ivanov:\nSee you at 11").await;
    assert_eq!(edited["id"], sent["id"], "the same message, edited");
    assert!(edited["edit_date"].is_i64(), "{edited}");
    let kinds: Vec<&str> = edited["entities"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["bold", "bold"]);
    // The same edit again (a repeated event) changes nothing more.
    operator_revises(&app, "edit", reply, "See you at [b]11[/b]").await;
    app.settled().await;
    let texts: Vec<Value> = app.telegram_messages().await.into_iter().map(|m| m["text"].clone()).collect();
    assert_eq!(texts, [json!("Hello"), json!("Boris Ivanov:\nSee you at 11")], "edited once, nothing sent");

    operator_revises(&app, "delete", reply, "").await;
    eventually(WAIT, "the reply gone from Telegram", || async { (app.telegram_messages().await.len() == 1).then_some(()) }).await;
    // Redelivered, the deletion's job finds it done: no connection, nothing else deleted.
    let job = json!({ "kind": "delete_reply", "member_id": seed::DEMO_MEMBER_ID, "connector_id": "sales", "line": "1",
        "external_chat_id": "sales-1001", "ol_chat_id": chat, "im_message_id": reply, "text": "" });
    let connections = app.get_json("/sandbox/telegram/stats").await["calls"]["messages.deleteMessages"].clone();
    assert_eq!(app.run_job(&job.to_string(), 2).await, shared::jobs::Outcome::Done);
    app.settled().await;
    assert_eq!(app.get_json("/sandbox/telegram/stats").await["calls"]["messages.deleteMessages"], connections);
    assert_eq!(app.telegram_messages().await[0]["text"], "Hello", "the client's chat keeps the rest");
}

#[tokio::test]
async fn a_change_to_a_message_we_do_not_know_is_ignored_with_200() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let chat = ivans_chat(&app, &token).await;
    let application_token = app.app.sandbox().portal.portal(seed::DEMO_MEMBER_ID).unwrap().installation.application_token.unwrap();
    for (event, message) in [("ONIMCONNECTORMESSAGEUPDATE", json!({ "id": ["77"], "text": "forged" })), ("ONIMCONNECTORMESSAGEDELETE", json!({ "id": "77" }))] {
        let body = json!({
            "event": event, "event_handler_id": 1, "ts": "1",
            "data": { "CONNECTOR": "olchat_telegram", "LINE": 1,
                      "MESSAGES": [{ "im": { "chat_id": chat, "message_id": 999_999 }, "message": message, "chat": { "id": "sales-1001" } }] },
            "auth": { "member_id": seed::DEMO_MEMBER_ID, "domain": seed::DEMO_DOMAIN, "application_token": application_token },
        });
        let form = serde_qs::Config::new().use_form_encoding(true).serialize_string(&body).unwrap();
        assert_eq!(app.post_event(&form).await, StatusCode::OK, "{event}");
    }
    app.settled().await;
    let telegram = app.telegram_messages().await;
    assert_eq!((telegram.len(), telegram[0]["text"].as_str()), (1, Some("Hello")));
    assert!(telegram[0].get("edit_date").is_none(), "{telegram:?}");
}
