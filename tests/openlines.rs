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
    assert_eq!(events, ["ONAPPUNINSTALL", "ONAPPUPDATE", "ONIMCONNECTORLINEDELETE", "ONIMCONNECTORMESSAGEADD", "ONIMCONNECTORSTATUSDELETE"]);
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
        (state["events"].as_array().map(Vec::len) == Some(5)).then_some(state)
    })
    .await;
    assert_eq!(state["placements"].as_array().unwrap().len(), 4);
    assert_eq!(state["active"], json!([["olchat_telegram", "7"]]));
    let demo = app.portal_state(seed::DEMO_MEMBER_ID).await;
    assert_eq!((demo["placements"].as_array().unwrap().len(), demo["events"].as_array().unwrap().len()), (4, 5));
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.ol_messages().await.len(), 2);
    assert_eq!(app.telegram_messages().await.len(), 2);
    assert_eq!(app.portal_state(seed::DEMO_MEMBER_ID).await["chats"].as_array().unwrap().len(), 1);
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
    // A later published message: one connector sends in order, and one portal's Open Line
    // work runs in order, so once it is in, anything the first had queued has run.
    app.send_published(&token, IVAN, "Published", "incoming", false).await;
    let published = ol_messages(&app, 1).await;
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
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    tokio::time::sleep(Duration::from_millis(500)).await;
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
    tokio::time::sleep(Duration::from_millis(300)).await;
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
async fn uninstall_deletes_the_portals_tokens_and_telegram_sessions() {
    let app = spawn_app().await;
    app.lead_tab().await;
    let answer = app.post_json("/sandbox/portal/uninstall", json!({ "member_id": seed::DEMO_MEMBER_ID })).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let services = &app.app.services;
    eventually(WAIT, "the portal forgotten", || async { services.portals.get(seed::DEMO_MEMBER_ID).await.unwrap().is_none().then_some(()) }).await;
    assert!(services.connectors.list(seed::DEMO_MEMBER_ID).await.unwrap().is_empty());
    for owner in [shared::repo::portals::TokenOwner::App, shared::repo::portals::TokenOwner::User(1)] {
        assert!(services.portals.auth(seed::DEMO_MEMBER_ID, owner).await.unwrap().is_none());
    }
    assert!(app.open_card("lead", 1, "en").await.is_err(), "an uninstalled portal's placement is refused");
    // Installed again, it works as before.
    assert_eq!(app.install(seed::DEMO_MEMBER_ID, "page").await.0, 200);
    assert!(app.open_card("lead", 1, "en").await.is_ok());
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
