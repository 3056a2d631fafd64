//! Connecting Telegram accounts through the connectors page, against the sandbox Telegram:
//! phone → code → cloud password, QR, the clear refusals, disconnect, the Open Line link;
//! and every media kind arriving as itself.

use std::time::Duration;

use olchat_tests::{TestApp, fresh_key, launcher_form, page_token, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::domain::Formatted;
use shared::ports::{Media, MediaKind, Peer};
use shared::sandbox::seed;
use shared::sandbox::telegram::{EXPIRED_CODE, LOGIN_CODE};

const IVAN: &str = "phone:+79161234567";

async fn login(app: &TestApp, token: &str, step: &str, body: Value) -> (StatusCode, Value) {
    let answer = app.post_raw(token, &format!("/api/connectors/login/{step}"), body.to_string()).await;
    (answer.status, answer.body)
}

async fn connectors(app: &TestApp, token: &str) -> Vec<Value> {
    let answer = app.get(token, "/api/connectors").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["connectors"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_administrator_connects_an_account_by_phone_uses_it_and_disconnects_it() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    assert_eq!(connectors(&app, &admin).await.len(), 2, "the two demo connectors");

    let (status, code_step) = login(&app, &admin, "phone", json!({ "phone": "8 999 000-55-66" })).await;
    assert_eq!((status, code_step["step"].as_str()), (StatusCode::OK, Some("code")), "{code_step}");
    let login_id = code_step["login_id"].as_str().unwrap().to_owned();

    let (status, wrong) = login(&app, &admin, "code", json!({ "login_id": login_id, "code": "11111" })).await;
    assert_eq!((status, wrong["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("wrong_code")));
    assert!(wrong["message"].as_str().unwrap().contains("not right"), "{wrong}");

    let (status, done) = login(&app, &admin, "code", json!({ "login_id": login_id, "code": LOGIN_CODE })).await;
    assert_eq!((status, done["step"].as_str()), (StatusCode::OK, Some("done")), "{done}");
    assert_eq!(done["connector"]["username"], "olchat_marketing");
    assert_eq!(done["connector"]["phone"], seed::SPARE_PHONE);
    let listed = connectors(&app, &admin).await;
    let new = listed.iter().find(|c| c["id"] == login_id.as_str()).expect("listed");
    assert_eq!(new["status"], "connected");
    let (status, again) = login(&app, &admin, "code", json!({ "login_id": login_id, "code": LOGIN_CODE })).await;
    assert_eq!((status, again["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("code_expired")), "a finished login is over");

    // The new account sends from a card.
    let tab = app.open_card("lead", 1, "en").await.unwrap();
    let card = app.get(&tab, &format!("/api/card?connector={login_id}")).await;
    assert_eq!(card.status, StatusCode::OK, "{}", card.body);
    let key = format!("k-{login_id}");
    let sent = app.send(&tab, json!({ "connector_id": login_id, "recipient": IVAN, "text": "from marketing", "idempotency_key": key })).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
    let id = sent.body["message_id"].as_str().unwrap();
    app.wait_for_status(&tab, id, "sent", Duration::from_secs(10)).await;
    let received = app.telegram_messages().await;
    assert!(received.iter().any(|m| m["from_user_id"] == seed::SPARE_ACCOUNT && m["text"] == "from marketing"), "{received:?}");

    // Disconnected: signed out, gone from the list, and its session with it.
    let answer = app.post_raw(&admin, &format!("/api/connectors/{login_id}/disconnect"), String::new()).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    assert!(connectors(&app, &admin).await.iter().all(|c| c["id"] != login_id.as_str()));
    assert!(!app.app.sandbox().telegram.users().iter().find(|u| u.id == seed::SPARE_ACCOUNT).unwrap().logged_in);
    let gone = app.post_raw(&admin, &format!("/api/connectors/{login_id}/disconnect"), String::new()).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_cloud_password_is_asked_for_and_checked() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (_, step) = login(&app, &admin, "phone", json!({ "phone": seed::GUARDED_PHONE })).await;
    let login_id = step["login_id"].as_str().unwrap().to_owned();
    let (status, step) = login(&app, &admin, "code", json!({ "login_id": login_id, "code": LOGIN_CODE })).await;
    assert_eq!((status, step["step"].as_str(), step["hint"].as_str()), (StatusCode::OK, Some("password"), Some("sandbox")));
    let (status, wrong) = login(&app, &admin, "password", json!({ "login_id": login_id, "password": "guess" })).await;
    assert_eq!((status, wrong["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("wrong_password")));
    let (status, done) = login(&app, &admin, "password", json!({ "login_id": login_id, "password": seed::CLOUD_PASSWORD })).await;
    assert_eq!((status, done["step"].as_str()), (StatusCode::OK, Some("done")), "{done}");
    assert_eq!(done["connector"]["name"], "Director Office");
}

#[tokio::test]
async fn expired_codes_unknown_numbers_and_flood_waits_are_said_plainly() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (_, step) = login(&app, &admin, "phone", json!({ "phone": seed::SPARE_PHONE })).await;
    let login_id = step["login_id"].as_str().unwrap();
    let (status, expired) = login(&app, &admin, "code", json!({ "login_id": login_id, "code": EXPIRED_CODE })).await;
    assert_eq!((status, expired["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("code_expired")));
    let (status, unknown) = login(&app, &admin, "code", json!({ "login_id": "nope", "code": LOGIN_CODE })).await;
    assert_eq!((status, unknown["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("code_expired")));

    // Telegram sends a code to a number it does not know too; signing in says there is no account.
    let (_, step) = login(&app, &admin, "phone", json!({ "phone": "+7 495 100-20-30" })).await;
    let login_id = step["login_id"].as_str().expect("a code step").to_owned();
    let (status, none) = login(&app, &admin, "code", json!({ "login_id": login_id, "code": LOGIN_CODE })).await;
    assert_eq!((status, none["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("no_account")));
    let (status, bad) = login(&app, &admin, "phone", json!({ "phone": "12" })).await;
    assert_eq!((status, bad["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_phone")));

    app.inject_telegram_fault(json!({ "kind": "flood_wait", "seconds": 42 }), "resolve", 1).await;
    let (status, flood) = login(&app, &admin, "phone", json!({ "phone": seed::SPARE_PHONE })).await;
    assert_eq!((status, flood["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("flood_wait")));
    assert!(flood["message"].as_str().unwrap().contains("42"), "{flood}");
}

#[tokio::test]
async fn a_qr_code_logs_an_account_in_once_scanned() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (status, qr) = login(&app, &admin, "qr", json!({})).await;
    assert_eq!((status, qr["step"].as_str()), (StatusCode::OK, Some("qr")), "{qr}");
    assert!(qr["svg"].as_str().unwrap().contains("<svg"), "a QR image");
    let login_id = qr["login_id"].as_str().unwrap().to_owned();
    let (_, again) = login(&app, &admin, "qr", json!({ "login_id": login_id })).await;
    assert_eq!(again["step"], "qr", "not scanned yet: a fresh code");
    assert_ne!(again["svg"], qr["svg"]);

    let scanned = app.post_json("/sandbox/telegram/qr", json!({ "user_id": seed::SPARE_ACCOUNT })).await;
    assert_eq!(scanned.status, StatusCode::NO_CONTENT);
    let (status, done) = login(&app, &admin, "qr", json!({ "login_id": login_id })).await;
    assert_eq!((status, done["step"].as_str()), (StatusCode::OK, Some("done")), "{done}");
    assert_eq!(done["connector"]["telegram_user_id"], Value::Null, "the page gets no internal ids");
    assert_eq!(done["connector"]["username"], "olchat_marketing");
}

#[tokio::test]
async fn only_administrators_manage_connectors_and_lines_are_numbers() {
    let app = spawn_app().await;
    let (status, page) = app.open_connectors(2, "en").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    let (status, page) = app.open_connectors(1, "ru").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Коннекторы Telegram"), "Russian page");
    let admin = page_token(&page).unwrap();

    let tab = app.open_card("lead", 1, "en").await.unwrap();
    assert_eq!(app.get(&tab, "/api/connectors").await.status, StatusCode::UNAUTHORIZED, "a tab's token is not an admin's");
    assert_eq!(app.get(&admin, "/api/card").await.status, StatusCode::UNAUTHORIZED, "nor the other way round");

    let linked = app.put_json(&admin, "/api/connectors/sales/line", json!({ "line": "3" })).await;
    assert_eq!((linked.status, linked.body["line"].as_str()), (StatusCode::OK, Some("3")));
    let bad = app.put_json(&admin, "/api/connectors/sales/line", json!({ "line": "3; drop" })).await;
    assert_eq!((bad.status, bad.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_line")));
    let unknown = app.put_json(&admin, "/api/connectors/nope/line", json!({ "line": "1" })).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let sales = app.app.services.connectors.get(seed::DEMO_MEMBER_ID, "sales").await.unwrap().unwrap();
    assert_eq!(sales.line.as_deref(), Some("3"));
}

#[tokio::test]
async fn the_sandbox_launcher_opens_the_connectors_page() {
    let app = spawn_app().await;
    let launcher = app.http.get(app.url("/sandbox/connectors?lang=en")).send().await.unwrap().text().await.unwrap();
    let (action, _) = launcher_form(&launcher).unwrap();
    assert!(action.starts_with(&format!("{}/connectors?DOMAIN=", app.app.url)), "{launcher}");
    let index = app.http.get(app.url("/sandbox")).send().await.unwrap().text().await.unwrap();
    assert!(index.contains("/sandbox/connectors"));
}

#[tokio::test]
async fn every_media_kind_arrives_as_itself_and_a_repeat_is_dropped() {
    let app = spawn_app().await;
    let sales = app.app.services.connectors.get(seed::DEMO_MEMBER_ID, "sales").await.unwrap().unwrap().account();
    let ivan = app.app.sandbox().telegram.users().into_iter().find(|u| u.id == 1001).unwrap();
    let peer = Peer { user_id: ivan.id, access_hash: ivan.access_hash };
    let kinds = [
        (MediaKind::Photo, "photo"),
        (MediaKind::Document, "document"),
        (MediaKind::Voice { duration_secs: 2, waveform: vec![0; 63] }, "voice"),
    ];
    // One connection for every send, as a job has.
    let telegram = app.app.services.telegram.connect(&sales).await.unwrap();
    let mut ids = Vec::new();
    let png = |len: usize| [&[0x89, b'P', b'N', b'G'][..], &vec![7u8; len - 4]].concat();
    for (i, (kind, name)) in kinds.into_iter().enumerate() {
        let bytes = png(100_000 + i);
        let media = Media { kind, file_name: format!("f{i}"), mime_type: "application/octet-stream".into(), size: bytes.len() as u64 };
        let body = Box::new(std::io::Cursor::new(bytes));
        let sent = telegram.send_media(peer, &media, body, &Formatted::plain(name), 500 + i as i64).await.unwrap();
        ids.push(sent.id.expect("Telegram names the message it made"));
    }
    let received = app.telegram_messages().await;
    let kinds: Vec<_> = received.iter().map(|m| (m["media"].as_str().unwrap(), m["text"].as_str().unwrap())).collect();
    assert_eq!(kinds, [("photo", "photo"), ("document", "document"), ("voice", "voice")]);
    let received_ids: Vec<_> = received.iter().map(|m| m["id"].as_i64().unwrap() as i32).collect();
    assert_eq!(received_ids, ids, "each send answers the id of the message it made");
    let sizes: Vec<_> = received.iter().map(|m| m["file"]["received_bytes"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [100_000, 100_001, 100_002], "every byte was read");

    let media = Media { kind: MediaKind::Photo, file_name: "again".into(), mime_type: "image/png".into(), size: 100_000 };
    let again = telegram.send_media(peer, &media, Box::new(std::io::Cursor::new(png(100_000))), &Formatted::plain("photo"), 500).await;
    assert_eq!(again.unwrap().id, Some(ids[0]), "the same random_id is not delivered again, and still names its message");
    telegram.close().await;
    assert_eq!(app.telegram_messages().await.len(), 3);
    let stats: Value = app.http.get(app.url("/sandbox/telegram/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["calls"]["messages.sendMedia"], 4, "{stats}");
}

const OLGA: &str = "username:olga_smirnova";

async fn send_from_sales(app: &TestApp, tab: &str, recipient: &str) -> (StatusCode, Value) {
    let answer = app.send(tab, json!({ "connector_id": "sales", "recipient": recipient, "text": "hi", "idempotency_key": fresh_key() })).await;
    (answer.status, answer.body)
}

#[tokio::test]
async fn new_chats_beyond_the_daily_budget_are_refused_and_shown() {
    let app = olchat_tests::spawn_app_with(|s| s.limits.new_chats_per_day = 1).await;
    let tab = app.open_card("lead", 1, "en").await.unwrap();
    assert_eq!(app.get(&tab, "/api/card").await.status, StatusCode::OK);
    assert_eq!(send_from_sales(&app, &tab, IVAN).await.0, StatusCode::ACCEPTED);
    let (status, refused) = send_from_sales(&app, &tab, OLGA).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("budget_new_chats")));
    assert!(refused["message"].as_str().unwrap().contains("banned"), "{refused}");
    assert_eq!(send_from_sales(&app, &tab, IVAN).await.0, StatusCode::ACCEPTED, "an existing chat is no new one");

    let admin = app.admin_token().await;
    let listed = app.get(&admin, "/api/connectors").await.body;
    let sales = listed["connectors"].as_array().unwrap().iter().find(|c| c["id"] == "sales").unwrap().clone();
    assert_eq!(sales["usage"]["new_chats"], 1);
    assert_eq!(listed["limits"]["new_chats_per_day"], 1);
}

#[tokio::test]
async fn phone_look_ups_are_paced_and_budgeted() {
    let app = olchat_tests::spawn_app_with(|s| s.limits.phone_pace = Duration::from_secs(1)).await;
    let tab = app.open_card("lead", 1, "en").await.unwrap();
    let started = std::time::Instant::now();
    let card = app.get(&tab, "/api/card").await.body;
    let phones = card["recipients"].as_array().unwrap().iter().filter(|r| r["key"].as_str().unwrap().starts_with("phone:")).count();
    assert!(phones >= 2, "{card}");
    assert!(started.elapsed() >= Duration::from_secs(phones as u64 - 1), "{phones} look-ups took {:?}", started.elapsed());

    let app = olchat_tests::spawn_app_with(|s| s.limits.phone_lookups_per_day = 1).await;
    let tab = app.open_card("lead", 1, "en").await.unwrap();
    let card = app.get(&tab, "/api/card").await.body;
    let over: Vec<&Value> = card["recipients"].as_array().unwrap().iter().filter(|r| r["state"] == "error").collect();
    assert_eq!(over.len(), phones - 1, "{card}");
    assert!(over[0]["explanation"].as_str().unwrap().contains("looked up 1 phone"), "{card}");
}

#[tokio::test]
async fn a_limited_account_still_writes_to_its_chats_but_opens_no_new_ones() {
    let app = spawn_app().await;
    let tab = app.open_card("lead", 1, "en").await.unwrap();
    assert_eq!(app.get(&tab, "/api/card").await.status, StatusCode::OK);
    app.inject_telegram_fault(json!({ "kind": "peer_flood" }), "send", 1).await;
    let (_, sent) = send_from_sales(&app, &tab, IVAN).await;
    app.wait_for_status(&tab, sent["message_id"].as_str().unwrap(), "failed", Duration::from_secs(10)).await;
    let sales = app.app.services.connectors.get(seed::DEMO_MEMBER_ID, "sales").await.unwrap().unwrap();
    assert_eq!(sales.status, shared::repo::connectors::ConnectorStatus::Limited);
    let admin = app.admin_token().await;
    let listed = app.get(&admin, "/api/connectors").await.body;
    let shown = listed["connectors"].as_array().unwrap().iter().find(|c| c["id"] == "sales").unwrap()["status"].clone();
    assert_eq!(shown, "limited", "the administrator is told");

    let (status, refused) = send_from_sales(&app, &tab, OLGA).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("connector_limited")));
    assert_eq!(send_from_sales(&app, &tab, IVAN).await.0, StatusCode::ACCEPTED, "its existing chat still works");
}

#[tokio::test]
async fn an_administrator_sets_one_connectors_own_budgets() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let put = |id: &str, budgets: Value| {
        let (app, admin, path) = (&app, admin.clone(), format!("/api/connectors/{id}/budgets"));
        async move {
            let request = app.http.put(app.url(&path)).bearer_auth(admin).json(&json!({ "budgets": budgets }));
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, view) = put("sales", json!({ "new_chats_per_day": 1, "phone_lookups_per_day": 7 })).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!((view["budgets"]["new_chats_per_day"].as_u64(), view["own_budgets"].as_bool()), (Some(1), Some(true)));
    let listed = connectors(&app, &admin).await;
    let support = listed.iter().find(|c| c["id"] == "support").unwrap();
    assert_eq!((support["budgets"]["new_chats_per_day"].as_u64(), support["own_budgets"].as_bool()), (Some(40), Some(false)));

    // The sales account's own budget applies to its sends; the other keeps the default.
    let tab = app.open_card("lead", 1, "en").await.unwrap();
    assert_eq!(app.get(&tab, "/api/card").await.status, StatusCode::OK);
    assert_eq!(send_from_sales(&app, &tab, IVAN).await.0, StatusCode::ACCEPTED);
    let (status, refused) = send_from_sales(&app, &tab, OLGA).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("budget_new_chats")));

    let (status, bad) = put("sales", json!({ "new_chats_per_day": 100000, "phone_lookups_per_day": 7 })).await;
    assert_eq!((status, bad["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_budgets")));
    assert_eq!(put("nope", Value::Null).await.0, StatusCode::NOT_FOUND);
    let (status, reset) = put("sales", Value::Null).await;
    assert_eq!((status, reset["own_budgets"].as_bool(), reset["budgets"]["new_chats_per_day"].as_u64()), (StatusCode::OK, Some(false), Some(40)));
    assert_eq!(send_from_sales(&app, &tab, OLGA).await.0, StatusCode::ACCEPTED);
}

fn offered(card: &Value) -> Vec<&str> {
    card["connectors"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn an_administrator_decides_who_may_write_from_an_account() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    assert!(connectors(&app, &admin).await.iter().all(|c| c["access"] == json!({ "kind": "everyone" })), "everyone, by default");
    let people = app.get(&admin, "/api/connectors/people").await;
    assert_eq!(people.status, StatusCode::OK, "{}", people.body);
    assert_eq!(people.body["employees"].as_array().unwrap().len() as u64, seed::DEMO_EMPLOYEES, "every page of user.get");
    let departments: Vec<&str> = people.body["departments"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(departments, ["Customer care", "Demo Company", "Sales"], "department.get, sorted by name");

    let only_boris = json!({ "access": { "kind": "chosen", "users": [seed::BORIS], "departments": [] } });
    let tab = app.lead_tab_of(seed::CLARA).await;
    assert_eq!(app.put_json(&tab, "/api/connectors/sales/access", only_boris.clone()).await.status, StatusCode::UNAUTHORIZED, "admins only");
    let nobody = app.put_json(&admin, "/api/connectors/sales/access", json!({ "access": { "kind": "chosen", "users": [], "departments": [] } })).await;
    assert_eq!((nobody.status, nobody.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_access")));
    let set = app.put_json(&admin, "/api/connectors/sales/access", only_boris).await;
    assert_eq!((set.status, &set.body["access"]["users"]), (StatusCode::OK, &json!([seed::BORIS])), "{}", set.body);

    // Boris writes from it.
    let boris = app.lead_tab_of(seed::BORIS).await;
    let card = app.get(&boris, "/api/card").await.body;
    assert_eq!((offered(&card), card["connector_id"].as_str()), (vec!["sales", "support"], Some("sales")));
    let (status, sent) = send_from_sales(&app, &boris, IVAN).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let sent = sent["message_id"].as_str().unwrap();

    // Clara's tab does not offer it, and every route refuses it.
    let clara = app.lead_tab_of(seed::CLARA).await;
    let card = app.get(&clara, "/api/card").await;
    assert_eq!((card.status, offered(&card.body), card.body["connector_id"].as_str()), (StatusCode::OK, vec!["support"], Some("support")));
    let refused = app.get(&clara, "/api/card?connector=sales").await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (StatusCode::FORBIDDEN, Some("connector_not_permitted")));
    assert!(refused.body["message"].as_str().unwrap().contains("administrator"), "{}", refused.body);
    let (status, refused) = send_from_sales(&app, &clara, IVAN).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::FORBIDDEN, Some("connector_not_permitted")));
    let chat = app.post_raw(&clara, "/api/chats", json!({ "connector_id": "sales", "recipient": IVAN }).to_string()).await;
    assert_eq!((chat.status, chat.body["error"].as_str()), (StatusCode::FORBIDDEN, Some("connector_not_permitted")));
    assert_eq!(app.get(&clara, &format!("/api/messages/{sent}")).await.status, StatusCode::FORBIDDEN, "nor its conversation");
    assert_eq!(app.get(&clara, "/api/messages").await.body["messages"], json!([]));
    assert_eq!(app.get(&boris, "/api/messages").await.body["messages"][0]["id"], sent);

    // A department's members may; the others no longer.
    let care = json!({ "access": { "kind": "chosen", "users": [], "departments": [seed::CARE_DEPARTMENT] } });
    assert_eq!(app.put_json(&admin, "/api/connectors/sales/access", care).await.status, StatusCode::OK);
    let clara = app.lead_tab_of(seed::CLARA).await;
    assert_eq!(offered(&app.get(&clara, "/api/card?connector=sales").await.body), ["sales", "support"]);
    assert_eq!(send_from_sales(&app, &clara, IVAN).await.0, StatusCode::ACCEPTED);
    assert_eq!(app.get(&boris, "/api/card?connector=sales").await.status, StatusCode::FORBIDDEN);

    let everyone = app.put_json(&admin, "/api/connectors/sales/access", json!({ "access": { "kind": "everyone" } })).await;
    assert_eq!(everyone.body["access"], json!({ "kind": "everyone" }));
    assert_eq!(send_from_sales(&app, &boris, IVAN).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_administrator_keeps_or_drops_numbers_imported_to_find_their_owners() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let list = app.get(&admin, "/api/connectors").await.body;
    let sales = |body: &Value| body["connectors"].as_array().unwrap().iter().find(|c| c["id"] == "sales").cloned().unwrap();
    assert_eq!(sales(&list)["keep_imported_contacts"], false, "dropped by default");
    let set = app.put_json(&admin, "/api/connectors/sales/keep-imported-contacts", json!({ "keep_imported_contacts": true })).await;
    assert_eq!((set.status, &set.body["keep_imported_contacts"]), (StatusCode::OK, &json!(true)), "{}", set.body);
    assert_eq!(sales(&app.get(&admin, "/api/connectors").await.body)["keep_imported_contacts"], true);
    let stored = app.app.services.connectors.get(seed::DEMO_MEMBER_ID, "sales").await.unwrap().unwrap();
    assert!(stored.keep_imported_contacts);
    // The body names the setting of its route; anything else is refused.
    let wrong = app.put_json(&admin, "/api/connectors/sales/keep-imported-contacts", json!({ "accept_all": false })).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);
    let unknown = app.put_json(&admin, "/api/connectors/sales/everything", json!({ "everything": true })).await;
    assert!(unknown.status.is_client_error(), "{}", unknown.status);
}
