//! The product over real HTTP: placement, card, send, worker, sandbox Telegram.

use std::time::Duration;

use olchat_tests::{TestApp, eventually, fresh_key, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::sandbox::seed;

const IVAN: &str = "phone:+79161234567";
const SVETLANA: &str = "phone:+79265554433";
const NO_ACCOUNT: &str = "phone:+74951002030";
const OLGA: &str = "username:olga_smirnova";
const WAIT: Duration = Duration::from_secs(10);

fn recipient<'a>(card: &'a Value, key: &str) -> &'a Value {
    card["recipients"].as_array().unwrap().iter().find(|r| r["key"] == key).unwrap_or_else(|| panic!("{key} in {card}"))
}

#[tokio::test]
async fn a_text_goes_from_the_lead_card_to_telegram() {
    let app = spawn_app().await;
    let token = app.open_card("lead", 1, "en").await.unwrap();
    let card = app.get(&token, "/api/card").await;
    assert_eq!(card.status, StatusCode::OK, "{}", card.body);
    let card = card.body;
    assert_eq!(card["connector_id"], "sales");
    assert_eq!(card["connectors"].as_array().unwrap().len(), 2);
    let ivan = recipient(&card, IVAN);
    assert_eq!((ivan["state"].as_str(), ivan["account"]["username"].as_str()), (Some("found"), Some("ivan_petrov")));
    assert_eq!(ivan["source"]["field"], "PHONE");
    assert_eq!(recipient(&card, OLGA)["source"]["field"], "IM");
    // The lead's linked contact hides her number; another number has no account at all.
    for hidden in [SVETLANA, NO_ACCOUNT] {
        let r = recipient(&card, hidden);
        assert_eq!(r["state"], "not_found");
        assert!(r["explanation"].as_str().unwrap().contains("Who can find me by my number"), "{r}");
    }

    let id = app.send_text(&token, IVAN, "Hello, Ivan!").await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    let received = app.telegram_messages().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["to_username"], "ivan_petrov");
    assert_eq!(received[0]["from_username"], "olchat_sales");
    assert_eq!((received[0]["text"].as_str(), received[0]["media"].as_str()), (Some("Hello, Ivan!"), Some("text")));
    let listed = app.get(&token, "/api/messages").await.body;
    assert_eq!(listed["messages"][0]["id"], id.as_str());
    assert_eq!(listed["messages"][0]["recipient"], "@ivan_petrov");
}

#[tokio::test]
async fn a_deal_card_lists_its_contacts_and_company() {
    let app = spawn_app().await;
    let token = app.open_card("deal", 1, "en").await.unwrap();
    let card = app.get(&token, "/api/card").await.body;
    let dmitry = recipient(&card, "phone:+79857776655");
    assert_eq!((dmitry["state"].as_str(), dmitry["source"]["entity_type"].as_str()), (Some("found"), Some("contact")));
    assert_eq!(recipient(&card, SVETLANA)["state"], "not_found");
    let shop = recipient(&card, "username:acme_shop");
    assert_eq!((shop["state"].as_str(), shop["source"]["field"].as_str()), (Some("found"), Some("WEB")));
    // The company hides its number from everybody.
    assert_eq!(recipient(&card, "phone:+74957771122")["state"], "not_found");
}

#[tokio::test]
async fn numbers_without_a_country_code_are_read_in_the_portals_own_country() {
    // A deployment set to another country still reads each portal's numbers in its own.
    let app = spawn_app_with(|s| s.phone_region = "US".into()).await;
    let demo = app.app.services.portals.get(seed::DEMO_MEMBER_ID).await.unwrap().unwrap();
    assert_eq!(demo.region.as_deref(), Some("RU"), "ru_project");
    let token = app.open_card("deal", 1, "en").await.unwrap();
    let card = app.get(&token, "/api/card").await.body;
    assert_eq!(recipient(&card, "phone:+79857776655")["state"], "found", "8 985 777-66-55 on the Russian portal");

    assert_eq!(app.install(seed::FRESH_MEMBER_ID, "page").await.0, 200);
    let fresh = app.app.services.portals.get(seed::FRESH_MEMBER_ID).await.unwrap().unwrap();
    assert_eq!(fresh.region.as_deref(), Some("DE"), "de_project");
    let token = app.tab_on(seed::FRESH_MEMBER_ID, seed::FRESH_DOMAIN, 1, "CRM_LEAD_DETAIL_TAB", seed::FRESH_LEAD).await;
    let card = app.get(&token, "/api/card").await;
    assert_eq!(card.status, StatusCode::OK, "{}", card.body);
    assert_eq!(recipient(&card.body, "phone:+49301234567")["source"]["field"], "PHONE", "{} on the German portal", seed::FRESH_LEAD_PHONE);
}

#[tokio::test]
async fn the_tab_speaks_the_portal_language() {
    let app = spawn_app().await;
    let ru = ["Откуда", "Кому", "Сообщение", "Отправить", "Публикация в Открытых линиях", "Без публикации", "Создать дело", "Создать чат"];
    let en = ["From", "To", "Message", "Send", "Publication in Open Lines", "Without publication", "Create activity", "Create chat"];
    for (lang, labels) in [("ru", ru), ("en", en)] {
        let form = app.placement_form(1, "CRM_LEAD_DETAIL_TAB", 1);
        let (status, page) = app.post_placement(&format!("DOMAIN={}&PROTOCOL=0&LANG={lang}", seed::DEMO_DOMAIN), &form).await;
        assert_eq!(status, StatusCode::OK);
        for label in labels {
            assert!(page.contains(&format!(">{label}<")), "{lang}: {label}");
        }
    }
    let token = app.open_card("contact", 2, "ru").await.unwrap();
    let card = app.get(&token, "/api/card").await.body;
    assert!(recipient(&card, SVETLANA)["explanation"].as_str().unwrap().contains("Мои контакты"));
}

#[tokio::test]
async fn a_double_submit_sends_once() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let body = json!({ "connector_id": "sales", "recipient": IVAN, "text": "once", "idempotency_key": "double-click" });
    let (a, b) = tokio::join!(app.send(&token, body.clone()), app.send(&token, body.clone()));
    assert_eq!((a.status, b.status), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(a.body["message_id"], b.body["message_id"]);
    let id = a.body["message_id"].as_str().unwrap();
    app.wait_for_status(&token, id, "sent", WAIT).await;
    let again = app.send(&token, body).await;
    assert_eq!(again.body["message_id"], id);
    app.settled().await;
    assert_eq!(app.telegram_messages().await.len(), 1);
    assert_eq!(app.get(&token, "/api/messages").await.body["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_worker_crash_between_send_and_acknowledgement_sends_once() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    // Telegram delivers, then the answer is lost: the worker cannot know it was sent.
    app.inject_telegram_fault(json!({ "kind": "drop_after_delivery" }), "send", 1).await;
    let id = app.send_text(&token, IVAN, "exactly once").await;
    olchat_tests::eventually(WAIT, "the message delivered", || async { (app.telegram_messages().await.len() == 1).then_some(()) }).await;
    app.wait_for_status(&token, &id, "sending", WAIT).await;
    // The redelivered job (run here at once rather than after its backoff) resends with the
    // same random_id, which Telegram drops.
    let job = json!({ "kind": "send", "message_id": id, "connector_id": "sales" }).to_string();
    assert_eq!(app.run_job(&job, 2).await, shared::jobs::Outcome::Done);
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    // A job delivered again after the message was recorded as sent is a no-op.
    assert_eq!(app.run_job(&job, 3).await, shared::jobs::Outcome::Done);
    assert_eq!(app.telegram_messages().await.len(), 1);
}

#[tokio::test]
async fn flood_wait_retries_after_the_wait() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    // Longer than the few seconds the adapter sleeps through inside the call.
    app.inject_telegram_fault(json!({ "kind": "flood_wait", "seconds": 4 }), "send", 1).await;
    let id = app.send_text(&token, IVAN, "after the flood").await;
    let waiting = app.wait_for_status(&token, &id, "queued", WAIT).await;
    assert!(waiting["reason"].as_str().unwrap_or("").contains("wait"), "{waiting}");
    assert!(app.telegram_messages().await.is_empty());
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    assert_eq!(app.telegram_messages().await.len(), 1);
}

#[tokio::test]
async fn refusals_fail_the_message_with_the_reason() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    app.inject_telegram_fault(json!({ "kind": "privacy_restricted" }), "send", 1).await;
    let id = app.send_text(&token, IVAN, "hello").await;
    let failed = app.wait_for_status(&token, &id, "failed", WAIT).await;
    assert!(failed["reason"].as_str().unwrap().contains("only from their contacts"), "{failed}");

    app.inject_telegram_fault(json!({ "kind": "unauthorized" }), "send", 1).await;
    let id = app.send_text(&token, IVAN, "hello again").await;
    let failed = app.wait_for_status(&token, &id, "failed", WAIT).await;
    assert!(failed["reason"].as_str().unwrap().contains("logged out"), "{failed}");
    let card = app.get(&token, "/api/card").await.body;
    assert_eq!(card["connectors"][0]["status"], "needs_login");
    let refused = app.send(&token, json!({ "connector_id": "sales", "recipient": IVAN, "text": "x", "idempotency_key": "after-logout" })).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("connector_unavailable")));
    assert!(app.telegram_messages().await.is_empty());
}

#[tokio::test]
async fn long_text_is_split_into_several_messages() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let text = "word ".repeat(1500); // 7500 characters
    let id = app.send_text(&token, IVAN, &text).await;
    let view = app.wait_for_status(&token, &id, "sent", WAIT).await;
    assert_eq!(view["parts"], 2);
    let received = app.telegram_messages().await;
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|m| m["text"].as_str().unwrap().chars().count() <= 4096));
    let words: usize = received.iter().map(|m| m["text"].as_str().unwrap().split_whitespace().count()).sum();
    assert_eq!(words, 1500);
}

#[tokio::test]
async fn bad_send_requests_get_a_clear_4xx_and_lose_nothing() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let kept = app.send_text(&token, IVAN, "kept").await;
    app.wait_for_status(&token, &kept, "sent", WAIT).await;
    let send = |connector: &str, recipient: &str, text: String, key: &str| {
        json!({ "connector_id": connector, "recipient": recipient, "text": text, "idempotency_key": key })
    };
    let cases = [
        (send("sales", IVAN, "   ".into(), "a"), "empty_text"),
        (send("nope", IVAN, "hi".into(), "b"), "unknown_connector"),
        (send("sales", "phone:+79000000000", "hi".into(), "c"), "unknown_recipient"),
        (send("sales", "garbage", "hi".into(), "d"), "unknown_recipient"),
        (send("sales", SVETLANA, "hi".into(), "e"), "recipient_not_on_telegram"),
        (send("sales", IVAN, "x".repeat(50_000), "f"), "too_long"),
        (send("sales", IVAN, "hi".into(), "not a valid key!"), "bad_idempotency_key"),
    ];
    for (body, code) in cases {
        let answer = app.send(&token, body).await;
        assert_eq!((answer.status, answer.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(code)), "{}", answer.body);
        assert!(!answer.body["message"].as_str().unwrap().is_empty());
    }
    for raw in ["{bad json", "[]", r#"{"connector_id": 5}"#, ""] {
        let answer = app.post_raw(&token, "/api/send", raw.into()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{raw}");
        assert_eq!(answer.body["error"], "bad_json");
    }
    let unknown = app.get(&token, "/api/messages/not-a-message").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let listed = app.get(&token, "/api/messages").await.body;
    assert_eq!(listed["messages"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(app.telegram_messages().await.len(), 1);
}

#[tokio::test]
async fn the_api_refuses_missing_forged_and_expired_sessions() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let response = app.http.get(app.url("/api/card")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (payload, signature) = token.split_once('.').unwrap();
    let mut forged = payload.to_owned();
    forged.replace_range(..1, if &payload[..1] == "e" { "f" } else { "e" });
    for bad in [format!("{forged}.{signature}"), "garbage".into(), format!("{payload}.AAAA")] {
        let answer = app.get(&bad, "/api/card").await;
        assert_eq!((answer.status, answer.body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("bad_session")));
        assert_eq!(app.send(&bad, json!({})).await.status, StatusCode::UNAUTHORIZED);
    }
    // A token signed with the right key but past its expiry.
    let mut claims = app.app.services.sessions.verify::<shared::auth::Claims>(&token).unwrap();
    claims.exp = 1;
    let expired = app.app.services.sessions.sign(&claims);
    let answer = app.get(&expired, "/api/messages").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.body["message"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn placements_are_verified_before_anything_is_trusted() {
    let app = spawn_app().await;
    let query = format!("DOMAIN={}&PROTOCOL=0&LANG=en", seed::DEMO_DOMAIN);
    let good = app.placement_form(1, "CRM_LEAD_DETAIL_TAB", 1);
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        good.iter().map(|(k, v)| (k.clone(), if k == name { value.to_owned() } else { v.clone() })).collect()
    };
    let without = |name: &str| -> Vec<(String, String)> { good.iter().filter(|(k, _)| k != name).cloned().collect() };
    let cases = [
        (query.clone(), without("AUTH_ID"), StatusCode::BAD_REQUEST),
        (query.clone(), without("member_id"), StatusCode::BAD_REQUEST),
        (query.clone(), with("PLACEMENT_OPTIONS", "{not json"), StatusCode::BAD_REQUEST),
        (query.clone(), with("PLACEMENT_OPTIONS", r#"{"ID":"-3"}"#), StatusCode::BAD_REQUEST),
        (query.clone(), with("PLACEMENT", "CRM_QUOTE_DETAIL_TAB"), StatusCode::BAD_REQUEST),
        ("PROTOCOL=0&LANG=en".into(), good.clone(), StatusCode::BAD_REQUEST),
        (query.clone(), with("member_id", "unknown-portal"), StatusCode::FORBIDDEN),
        (query.clone(), with("AUTH_ID", "stolen-or-made-up"), StatusCode::UNAUTHORIZED),
    ];
    for (q, form, expected) in cases {
        let (status, page) = app.post_placement(&q, &form).await;
        assert_eq!(status, expected, "{q} {form:?}: {page}");
        assert!(page.contains("role=alert") && !page.contains("olchat-token"), "{page}");
    }
    // A DOMAIN other than the one stored at install: refused without calling anyone.
    let before = app.portal_requests().await;
    let (status, page) = app.post_placement("DOMAIN=evil.example.com&PROTOCOL=1&LANG=en", &good).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert_eq!(app.portal_requests().await, before, "no request may leave for an unknown host");
    // The genuine placement still works afterwards.
    assert_eq!(app.post_placement(&query, &good).await.0, StatusCode::OK);
}

#[tokio::test]
async fn another_portals_record_is_not_readable() {
    let app = spawn_app().await;
    // Lead 5 exists only on the other portal; the demo portal's user asks for it: the
    // placement reads the record with the user's token first, and there is none.
    let refused = app.open_card("lead", 5, "en").await.unwrap_err().to_string();
    assert!(refused.contains("404") && refused.contains("not_found"), "{refused}");
    // And a message id of this portal is not visible from a session of another portal.
    let lead = app.lead_tab().await;
    let id = app.send_text(&lead, IVAN, "mine").await;
    let mut claims = app.app.services.sessions.verify::<shared::auth::Claims>(&lead).unwrap();
    claims.portal = seed::OTHER_MEMBER_ID.into();
    claims.install = app.app.services.portals.get(seed::OTHER_MEMBER_ID).await.unwrap().expect("installed").install_id;
    let other = app.app.services.sessions.sign(&claims);
    assert_eq!(app.get(&other, &format!("/api/messages/{id}")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn expired_portal_tokens_refresh_and_rate_limits_back_off() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    app.portal_fault(json!({ "expire_tokens": true })).await;
    let card = app.get(&token, "/api/card").await;
    assert_eq!(card.status, StatusCode::OK, "{}", card.body);
    app.portal_fault(json!({ "rate_limit_next": 2 })).await;
    let card = app.get(&token, "/api/card").await;
    assert_eq!(card.status, StatusCode::OK, "{}", card.body);
    assert_eq!(recipient(&card.body, IVAN)["state"], "found");
}

#[tokio::test]
async fn telegram_flood_during_resolution_is_explained() {
    let app = spawn_app().await;
    app.inject_telegram_fault(json!({ "kind": "flood_wait", "seconds": 30 }), "contacts.resolvePhone", 1).await;
    let token = app.open_card("contact", 1, "en").await.unwrap();
    let card = app.get(&token, "/api/card").await.body;
    let dmitry = recipient(&card, "phone:+79857776655");
    assert_eq!(dmitry["state"], "error");
    assert!(dmitry["explanation"].as_str().unwrap().contains("30"));
    // Not cached: the next look resolves.
    let card = app.get(&token, "/api/card").await.body;
    assert_eq!(recipient(&card, "phone:+79857776655")["state"], "found");
}

#[tokio::test]
async fn uploads_go_straight_to_storage_through_a_signed_url() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let slot = app.post_raw(&token, "/api/uploads", json!({ "name": "../price list.pdf", "size": 11, "content_type": "application/pdf" }).to_string()).await;
    assert_eq!(slot.status, StatusCode::OK, "{}", slot.body);
    let (key, url) = (slot.body["key"].as_str().unwrap(), slot.body["url"].as_str().unwrap());
    assert!(key.ends_with("/price_list.pdf") && key.starts_with("uploads/"), "{key}");
    let put = app.http.put(url).header("content-type", "application/pdf").body("hello world").send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    // Stored, and only a signed URL reads it back.
    let (size, _) = app.app.services.blobs.get(key).await.unwrap().expect("stored");
    assert_eq!(size, 11);
    let download = app.app.services.links.download_url(key, Duration::from_secs(60));
    assert_eq!(app.http.get(&download).send().await.unwrap().text().await.unwrap(), "hello world");
    let tampered = url.replace("signature=", "signature=x");
    assert_eq!(app.http.put(&tampered).body("evil").send().await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(app.http.get(app.url(&format!("/blobs/{key}"))).send().await.unwrap().status(), StatusCode::FORBIDDEN);

    for (body, code) in [
        (json!({ "name": "a.txt", "size": 0 }), "empty_file"),
        (json!({ "name": "a.mkv", "size": 3u64 * 1024 * 1024 * 1024 }), "file_too_large"),
    ] {
        let answer = app.post_raw(&token, "/api/uploads", body.to_string()).await;
        assert_eq!((answer.status, answer.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(code)));
    }
    assert_eq!(app.post_raw(&token, "/api/uploads", "{".into()).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_upload_is_bound_to_what_was_announced_and_used_once() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let (app, token) = (&app, token.as_str());
    let announce = |size: u64| {
        let body = json!({ "name": "a.pdf", "size": size, "content_type": "application/pdf" }).to_string();
        async move { app.post_raw(token, "/api/uploads", body).await.body }
    };
    let put = |slot: &Value, body: &'static str| {
        let request = app.http.put(slot["url"].as_str().unwrap()).header("content-type", "application/pdf").body(body);
        async move { request.send().await.unwrap().status() }
    };
    // Larger than announced: refused by its length, or cut off when it streams without one.
    let slot = announce(4).await;
    assert_eq!(put(&slot, "%PDF and more").await, StatusCode::FORBIDDEN);
    assert_eq!(put_chunked(slot["url"].as_str().unwrap(), "application/pdf", &["%PDF", " and more"]).await, 400);
    let key = slot["key"].as_str().unwrap();
    assert!(app.app.services.blobs.size(key).await.unwrap().is_none(), "nothing kept of an oversized upload");
    // Another type than announced breaks the signature.
    let other_type = app.http.put(slot["url"].as_str().unwrap()).header("content-type", "text/html").body("%PDF").send().await.unwrap();
    assert_eq!(other_type.status(), StatusCode::FORBIDDEN);
    // As announced it is stored, once.
    assert_eq!(put(&slot, "%PDF").await, StatusCode::OK);
    assert_eq!(put(&slot, "evil").await, StatusCode::PRECONDITION_FAILED);

    let send = |attachments: Value| app.send(token, json!({ "connector_id": "sales", "recipient": IVAN, "idempotency_key": fresh_key(), "attachments": attachments }));
    let file = json!([{ "key": key, "name": "a.pdf" }]);
    assert_eq!(send(file.clone()).await.status, StatusCode::ACCEPTED);
    let again = send(file).await;
    assert_eq!((again.status, again.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("upload_used")), "{}", again.body);

    // A file stored under a slot but not as announced (however it got there) is not attached.
    let slot = announce(4).await;
    let key = slot["key"].as_str().unwrap();
    app.app.services.blobs.put(key, &mut &b"%PDF-1.7 longer"[..]).await.unwrap();
    let mismatch = send(json!([{ "key": key, "name": "a.pdf" }])).await;
    assert_eq!(mismatch.body["error"], "upload_mismatch", "{}", mismatch.body);
    // Nor is a colleague's upload, though it is this portal's.
    let colleague = app.lead_tab_of(seed::BORIS).await;
    let theirs = app.post_raw(&colleague, "/api/uploads", json!({ "name": "b.pdf", "size": 4, "content_type": "application/pdf" }).to_string()).await.body;
    assert_eq!(put(&theirs, "%PDF").await, StatusCode::OK);
    let borrowed = send(json!([{ "key": theirs["key"], "name": "b.pdf" }])).await;
    assert_eq!(borrowed.body["error"], "unknown_upload", "{}", borrowed.body);
}

#[tokio::test]
async fn upload_slots_per_user_and_day_are_limited() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let body = json!({ "name": "a.txt", "size": 1 }).to_string();
    for _ in 0..shared::app::uploads::UPLOADS_PER_DAY {
        assert_eq!(app.post_raw(&token, "/api/uploads", body.clone()).await.status, StatusCode::OK);
    }
    let refused = app.post_raw(&token, "/api/uploads", body.clone()).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("uploads_per_day")));
    // A colleague has slots of their own.
    let colleague = app.lead_tab_of(seed::BORIS).await;
    assert_eq!(app.post_raw(&colleague, "/api/uploads", body).await.status, StatusCode::OK);
}

/// A PUT whose body streams in chunks, with no length announced; the status code.
async fn put_chunked(url: &str, content_type: &str, chunks: &[&str]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = reqwest::Url::parse(url).unwrap();
    let mut stream = tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap())).await.unwrap();
    let path = format!("{}?{}", url.path(), url.query().unwrap_or(""));
    let mut request = format!("PUT {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", url.authority());
    for chunk in chunks {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("no status line: {answer}"))
}

/// Uploads `bytes` as the tab does; the key.
async fn upload(app: &TestApp, token: &str, name: &str, content_type: &str, bytes: Vec<u8>) -> String {
    app.upload(token, "/api/uploads", name, content_type, bytes).await
}

/// The first page of an OGG/Opus stream as Firefox records it (enough to be recognised).
fn ogg_opus() -> Vec<u8> {
    let mut page = b"OggS".to_vec();
    page.resize(28, 0);
    page.extend_from_slice(b"OpusHead\x01\x01\0\0\x80\xbb\0\0\0\0\0");
    page
}

#[tokio::test]
async fn files_and_a_voice_note_go_as_their_own_sends_after_the_text() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let photo = upload(&app, &token, "chair.jpg", "image/jpeg", [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[7; 5000]].concat()).await;
    let pdf = upload(&app, &token, "offer.pdf", "application/pdf", b"%PDF-1.4 offer".to_vec()).await;
    let voice = upload(&app, &token, "voice.ogg", "audio/ogg", ogg_opus()).await;
    let body = json!({
        "connector_id": "sales", "recipient": IVAN, "text": "Our offer", "idempotency_key": fresh_key(),
        "attachments": [
            { "key": photo, "name": "chair.jpg", "size": 5004, "content_type": "image/jpeg" },
            { "key": pdf, "name": "Offer <2026>.pdf", "size": 14, "content_type": "application/pdf" },
        ],
        "voice": { "key": voice, "duration": 2.4, "waveform": [0, 31, 15, 8] },
        "publication": "incoming",
    });
    let answer = app.send(&token, body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let id = answer.body["message_id"].as_str().unwrap();
    let view = app.wait_for_status(&token, id, "sent", WAIT).await;
    assert_eq!(view["files"], json!(["chair.jpg", "Offer <2026>.pdf"]));
    assert_eq!(view["voice"], true);
    assert_eq!(view["text"], "Our offer");

    let received = app.telegram_messages().await;
    let kinds: Vec<&str> = received.iter().map(|m| m["media"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["text", "photo", "document", "voice"]);
    assert_eq!(received[1]["file"]["received_bytes"], 5004);
    assert_eq!(received[1]["file"]["format"], "jpeg");
    assert_eq!(received[2]["file"]["file_name"], "Offer <2026>.pdf");
    assert_eq!(received[2]["file"]["mime_type"], "application/pdf");
    let voice = &received[3]["file"];
    assert_eq!((voice["format"].as_str(), voice["mime_type"].as_str(), voice["duration"].as_u64()), (Some("ogg_opus"), Some("audio/ogg"), Some(2)));
    assert_eq!(voice["waveform_bytes"], 3, "4 levels of 5 bits");

    // The Open Line gets the text and the files as URLs Bitrix24 downloads.
    let deadline = tokio::time::Instant::now() + WAIT;
    let ol = loop {
        let all: Value = app.http.get(app.url("/sandbox/portal/openlines/messages")).send().await.unwrap().json().await.unwrap();
        if let Some(m) = all["messages"].as_array().unwrap().iter().find(|m| m["text"].as_str().unwrap().ends_with("Our offer")) {
            break m.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "not published: {all}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let names: Vec<&str> = ol["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["chair.jpg", "Offer <2026>.pdf", "voice.ogg"]);
    let pdf_url = ol["files"][1]["url"].as_str().unwrap();
    assert_eq!(app.http.get(pdf_url).send().await.unwrap().text().await.unwrap(), "%PDF-1.4 offer");
}

#[tokio::test]
async fn send_as_document_keeps_photos_uncompressed_and_text_is_optional() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let photo = upload(&app, &token, "chair.png", "image/png", b"\x89PNG\r\n\x1a\nrest".to_vec()).await;
    let body = json!({
        "connector_id": "sales", "recipient": IVAN, "idempotency_key": fresh_key(), "as_document": true,
        "attachments": [{ "key": photo, "name": "chair.png", "size": 12, "content_type": "image/png" }],
    });
    let answer = app.send(&token, body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    app.wait_for_status(&token, answer.body["message_id"].as_str().unwrap(), "sent", WAIT).await;
    let received = app.telegram_messages().await;
    assert_eq!(received.len(), 1, "no empty text part");
    assert_eq!((received[0]["media"].as_str(), received[0]["file"]["format"].as_str()), (Some("document"), Some("png")));
}

#[tokio::test]
async fn attachments_must_be_this_portals_finished_uploads() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let mine = upload(&app, &token, "a.pdf", "application/pdf", b"%PDF".to_vec()).await;
    let foreign = mine.replacen(seed::DEMO_MEMBER_ID, seed::OTHER_MEMBER_ID, 1);
    let never_uploaded = format!("uploads/{}/0123/missing.pdf", seed::DEMO_MEMBER_ID);
    for (attachments, voice, code) in [
        (json!([{ "key": foreign, "name": "a.pdf" }]), Value::Null, "unknown_upload"),
        (json!([{ "key": never_uploaded, "name": "a.pdf" }]), Value::Null, "unknown_upload"),
        (json!([{ "key": format!("uploads/{}/../x", seed::DEMO_MEMBER_ID), "name": "a" }]), Value::Null, "unknown_upload"),
        (json!([]), Value::Null, "empty_text"),
        (json!([]), json!({ "key": mine, "duration": 3, "waveform": [32] }), "bad_voice"),
        (json!([]), json!({ "key": mine, "duration": 0, "waveform": [] }), "bad_voice"),
        (json!(vec![json!({ "key": mine, "name": "a.pdf" }); 11]), Value::Null, "too_many_files"),
    ] {
        let body = json!({ "connector_id": "sales", "recipient": IVAN, "idempotency_key": fresh_key(), "attachments": attachments, "voice": voice });
        let answer = app.send(&token, body).await;
        assert_eq!((answer.status, answer.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(code)), "{}", answer.body);
    }
    assert!(app.telegram_messages().await.is_empty());
}

#[tokio::test]
async fn a_voice_note_that_is_not_opus_fails_with_the_reason() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let voice = upload(&app, &token, "voice.wav", "audio/wav", b"RIFF....WAVE".to_vec()).await;
    let body = json!({ "connector_id": "sales", "recipient": IVAN, "idempotency_key": fresh_key(), "voice": { "key": voice, "duration": 1, "waveform": [] } });
    let answer = app.send(&token, body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let view = app.wait_for_status(&token, answer.body["message_id"].as_str().unwrap(), "failed", WAIT).await;
    assert!(view["reason"].as_str().unwrap().contains("neither OGG nor WebM"), "{view}");
}

#[tokio::test]
async fn the_emoji_picker_data_comes_from_the_emojis_crate() {
    let app = spawn_app().await;
    let data: Value = app.http.get(app.url("/assets/emoji.json")).send().await.unwrap().json().await.unwrap();
    let groups = data["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 9);
    assert_eq!(groups[0]["id"], "smileys");
    assert_eq!(groups[0]["emojis"][0], json!(["😀", "grinning face"]));
    let total: usize = groups.iter().map(|g| g["emojis"].as_array().unwrap().len()).sum();
    assert!(total > 1500, "{total}");
}

#[tokio::test]
async fn a_file_whose_send_answer_was_lost_is_not_sent_twice() {
    let app = spawn_app().await;
    let token = app.lead_tab().await;
    let pdf = upload(&app, &token, "offer.pdf", "application/pdf", b"%PDF-1.4 offer".to_vec()).await;
    let body = json!({ "connector_id": "sales", "recipient": IVAN, "text": "see the file", "idempotency_key": fresh_key(),
                       "attachments": [{ "key": pdf, "name": "offer.pdf" }] });
    let answer = app.send(&token, body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let id = answer.body["message_id"].as_str().unwrap().to_owned();
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    assert_eq!(app.telegram_messages().await.len(), 2);

    // A crash after the file went out but before it was recorded: the part is unsent again.
    app.app.services.messages.update(&id, |m| { m.parts[1].sent = false; m.status = shared::domain::MessageStatus::Queued; true }).await.unwrap();
    let job = json!({ "kind": "send", "message_id": id, "connector_id": "sales" }).to_string();
    assert_eq!(app.run_job(&job, 2).await, shared::jobs::Outcome::Done);
    let view = app.wait_for_status(&token, &id, "sent", WAIT).await;
    assert_eq!(view["files"], json!(["offer.pdf"]));
    let received = app.telegram_messages().await;
    assert_eq!(received.iter().map(|m| m["media"].as_str().unwrap()).collect::<Vec<_>>(), ["text", "document"], "the same random_id is dropped");
}

#[tokio::test]
async fn the_first_card_starts_the_contact_sync_and_its_contacts_resolve() {
    let app = spawn_app().await;
    let token = app.open_card("contact", 4, "en").await.unwrap();
    let pavel = "phone:+79037778899";
    // The tab opens at once; the sync of the sales account's 41 contacts runs meanwhile.
    let first = app.get(&token, "/api/card").await;
    assert_eq!(first.status, StatusCode::OK);
    let sync = first.body["sync"].as_object().unwrap_or_else(|| panic!("the tab shows the sync running: {}", first.body));
    assert!(sync["done"].as_u64() <= sync["total"].as_u64(), "{sync:?}");
    let card = eventually(WAIT, "the sync done and Pavel found", || async {
        let card = app.get(&token, "/api/card").await.body;
        if let Some(progress) = card["sync"].as_object() {
            assert!(progress["done"].as_u64() <= progress["total"].as_u64(), "{card}");
        }
        (card["sync"].is_null() && recipient(&card, pavel)["state"] == "found").then_some(card)
    })
    .await;
    // His number is hidden from everybody: only the contact list knows him.
    let found = recipient(&card, pavel);
    assert_eq!((found["state"].as_str(), found["account"]["name"].as_str()), (Some("found"), Some("Pavel Orlov")), "{card}");
    assert!(card["sync"].is_null());
    // Another connector has no such contact: the same number stays hidden from it.
    let other = app.get(&token, "/api/card?connector=support").await.body;
    assert_eq!(recipient(&other, pavel)["state"], "not_found");
}

/// The lead or contact whose Messenger field holds `imol`, once the portal's tracker made it.
async fn tracked_record(app: &TestApp, imol: &str) -> u64 {
    eventually(WAIT, &format!("a CRM record with {imol}"), || async {
        let portal = app.app.sandbox().portal.portal(seed::DEMO_MEMBER_ID).unwrap();
        let holds = |record: &Value| record["IM"].as_array().is_some_and(|im| im.iter().any(|e| e["VALUE"] == imol));
        portal.records.iter().find(|(_, record)| holds(record)).map(|((_, id), _)| *id)
    })
    .await
}

/// What another integration does on the portal: a REST call with a token of its own.
async fn portal_call(app: &TestApp, method: &str, mut params: Value) -> Value {
    let (access, _) = app.app.sandbox().portal.issue_tokens(seed::DEMO_MEMBER_ID, 1);
    params["auth"] = json!(access);
    let answer = app.http.post(app.url(&format!("/sandbox/portal/rest/{method}"))).json(&params).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "{method}");
    answer.json().await.unwrap()
}

/// A client's first message through `connector` (any connector of the portal, ours too).
async fn client_writes_through(app: &TestApp, connector: &str, chat: &str, user: &str) {
    let message = json!({ "user": { "id": user, "name": "Olga" }, "message": { "id": fresh_key(), "date": 0, "text": "Hello" }, "chat": { "id": chat } });
    let sent = portal_call(app, "imconnector.send.messages", json!({ "CONNECTOR": connector, "LINE": 1, "MESSAGES": [message] })).await;
    assert_eq!(sent["result"]["DATA"]["RESULT"][0]["SUCCESS"], true, "{sent}");
}

#[tokio::test]
async fn a_client_who_wrote_first_is_found_through_their_open_line_chat_without_a_look_up() {
    const OLGA_ID: i64 = 1002;
    let app = spawn_app_with(|s| s.catch_up_every = None).await;
    let admin = app.admin_token().await;
    let accept_all = app.put_json(&admin, "/api/connectors/sales/accept-all", json!({ "accept_all": true })).await;
    assert_eq!(accept_all.status, StatusCode::OK, "{}", accept_all.body);
    let catch_up = shared::work::Job::CatchUp { member_id: seed::DEMO_MEMBER_ID.into(), connector_id: "sales".into() }.to_body();
    assert_eq!(app.run_job(&catch_up, 1).await, shared::jobs::Outcome::Done, "the first look starts from now");
    // Olga writes first; the catch-up forwards her message, which opens the Open Line chat.
    app.app.sandbox().telegram.reply(OLGA_ID, seed::SALES_ACCOUNT, "Do you sell office chairs?", None).unwrap();
    assert_eq!(app.run_job(&catch_up, 1).await, shared::jobs::Outcome::Done);
    let lead = tracked_record(&app, "imol|olchat_telegram|1|sales-1002|tg1002").await;

    let (usage, lookups) = (app.app.services.safety.today("sales").await.unwrap(), app.app.sandbox().telegram.lookups());
    let token = app.open_card("lead", lead, "en").await.unwrap();
    let card = app.get(&token, "/api/card").await.body;
    let olga = recipient(&card, "openline:1|sales-1002|tg1002");
    assert_eq!((olga["state"].as_str(), olga["account"]["user_id"].as_i64()), (Some("found"), Some(OLGA_ID)), "{olga}");
    assert_eq!((olga["account"]["name"].as_str(), olga["source"]["value_type"].as_str()), (Some("Olga Smirnova"), Some("OPENLINE")));
    assert_eq!(app.app.sandbox().telegram.lookups(), lookups, "no Telegram look-up");
    assert_eq!(app.app.services.safety.today("sales").await.unwrap(), usage, "no budget spent");

    // The answer reaches her through the chat's connector, and opens no new chat: she wrote first.
    let id = app.send_text(&token, "openline:1|sales-1002|tg1002", "We do: 20 in stock.").await;
    app.wait_for_status(&token, &id, "sent", WAIT).await;
    let received = app.telegram_messages().await;
    assert_eq!((received.last().unwrap()["to_user_id"].as_i64(), received.last().unwrap()["from_user_id"].as_i64()), (Some(OLGA_ID), Some(seed::SALES_ACCOUNT)));
    assert_eq!(app.app.services.safety.today("sales").await.unwrap(), usage);

    // Another connector's chat is not ours, even with ids that look like ours.
    let icon = json!({ "DATA_IMAGE": "data:image/svg+xml;base64,PHN2Zy8+" });
    let register = json!({ "ID": "other_telegram", "NAME": "Another Telegram app", "PLACEMENT_HANDLER": "https://other.example/connector", "ICON": icon });
    portal_call(&app, "imconnector.register", register).await;
    portal_call(&app, "imconnector.activate", json!({ "CONNECTOR": "other_telegram", "LINE": 1, "ACTIVE": 1 })).await;
    client_writes_through(&app, "other_telegram", "sales-1002", "tg1002").await;
    let foreign = tracked_record(&app, "imol|other_telegram|1|sales-1002|tg1002").await;
    assert_ne!(foreign, lead);
    let token = app.open_card("lead", foreign, "en").await.unwrap();
    let card = app.get(&token, "/api/card").await.body;
    assert_eq!(card["recipients"], json!([]), "{card}");

    // Our connector's chat that this installation never opened: named, not looked up.
    client_writes_through(&app, "olchat_telegram", "sales-4242", "tg4242").await;
    let unknown = tracked_record(&app, "imol|olchat_telegram|1|sales-4242|tg4242").await;
    let token = app.open_card("lead", unknown, "en").await.unwrap();
    let card = app.get(&token, "/api/card").await.body;
    let stranger = recipient(&card, "openline:1|sales-4242|tg4242");
    assert_eq!(stranger["state"], "not_found");
    assert!(stranger["explanation"].as_str().unwrap().contains("does not know"), "{stranger}");
    assert_eq!(app.app.sandbox().telegram.lookups(), lookups);
}

#[tokio::test]
async fn the_demo_lead_of_a_client_who_wrote_first_shows_her_through_her_connector_only() {
    let app = spawn_app().await;
    let maria = "openline:1|sales-1008|tg1008";
    let token = app.open_card("lead", seed::MARIA_LEAD, "en").await.unwrap();
    let card = app.get(&token, "/api/card").await.body;
    assert_eq!(card["recipients"].as_array().unwrap().len(), 1, "{card}");
    let found = recipient(&card, maria);
    assert_eq!((found["state"].as_str(), found["account"]["name"].as_str()), (Some("found"), Some(seed::MARIA_NAME)), "{found}");
    assert!(found["source"]["label"].as_str().unwrap().contains("Maria Volkova — Open Line"), "{found}");

    let through_care = app.get(&token, "/api/card?connector=support").await.body;
    let other = recipient(&through_care, maria);
    assert_eq!(other["state"], "error");
    assert!(other["explanation"].as_str().unwrap().contains("“Sales team”"), "{other}");
    let refused = app.send(&token, json!({ "connector_id": "support", "recipient": maria, "text": "hi", "idempotency_key": fresh_key() })).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("other_connector")), "{}", refused.body);
}

/// The demo lead's placement form with an `AUTH_ID` no portal issued (well formed, so only
/// the portal can tell).
fn forged_placement(app: &TestApp, n: usize) -> Vec<(String, String)> {
    let mut form = app.placement_form(1, "CRM_LEAD_DETAIL_TAB", 1);
    form[0].1 = format!("{n:0>8}forgedforgedforgedforgedforged");
    form
}

/// POSTs `forms` as placements, all at once; each answer's status and `Retry-After`.
async fn placements_at_once(app: &TestApp, forms: Vec<Vec<(String, String)>>) -> Vec<(StatusCode, Option<String>)> {
    let url = app.url(&format!("/placement?DOMAIN={}&PROTOCOL=0&LANG=en", seed::DEMO_DOMAIN));
    let posts: Vec<_> = forms
        .into_iter()
        .map(|form| {
            let (http, url) = (app.http.clone(), url.clone());
            tokio::spawn(async move {
                let answer = http.post(url).form(&form).send().await.expect("the placement answers");
                (answer.status(), answer.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for post in posts {
        answers.push(post.await.expect("the request ran"));
    }
    answers
}

#[tokio::test]
async fn forged_placements_take_nothing_from_the_portals_work_and_a_genuine_placement_and_job_go_through() {
    let app = spawn_app_with(|s| {
        // A bucket that practically never drains: its level counts the calls real work made.
        s.portal_rate = shared::bitrix::pacer::PortalRate { per_sec: 0.0001, burst: 500.0 };
        s.catch_up_every = None;
    })
    .await;
    app.settled().await;
    let (svc, endpoint) = (&app.app.services, app.app.sandbox().portal.rest_url.clone());
    let (work, requests) = (svc.bitrix.work_level(&endpoint), app.portal_requests().await);

    let forged = placements_at_once(&app, (0..5).map(|n| forged_placement(&app, n)).collect()).await;
    assert!(forged.iter().all(|(status, _)| *status == StatusCode::UNAUTHORIZED), "{forged:?}");
    assert_eq!(app.portal_requests().await, requests + 5, "each forged token was checked once with the portal");
    let level = svc.bitrix.work_level(&endpoint);
    assert!((level - work).abs() < 0.01, "forged checks took no turn of real work: {work} → {level}");

    let genuine = placements_at_once(&app, vec![app.placement_form(1, "CRM_LEAD_DETAIL_TAB", 1)]).await;
    assert_eq!(genuine[0].0, StatusCode::OK, "the genuine placement went through");
    let mut portal = shared::app::portal::PortalClient::app(svc, seed::DEMO_MEMBER_ID).await.unwrap();
    portal.call("user.current", &json!({})).await.expect("a job's call goes through");
    // The portal counted the genuine check as our app's request, and the job's call.
    let level = svc.bitrix.work_level(&endpoint);
    assert!((level - work - 2.0).abs() < 0.01, "{work} → {level}");
}

#[tokio::test]
async fn a_flood_of_forged_placements_is_refused_at_once_past_the_checks_pace_with_retry_after() {
    let app = spawn_app_with(|s| s.catch_up_every = None).await;
    app.settled().await;
    let requests = app.portal_requests().await;
    let answers = placements_at_once(&app, (0..30).map(|n| forged_placement(&app, n)).collect()).await;
    let refused: Vec<_> = answers.iter().filter(|(status, _)| *status == StatusCode::SERVICE_UNAVAILABLE).collect();
    let checked = answers.iter().filter(|(status, _)| *status == StatusCode::UNAUTHORIZED).count();
    assert_eq!(refused.len() + checked, answers.len(), "{answers:?}");
    assert!(!refused.is_empty(), "past the checks' pace a forged placement is refused, not queued: {answers:?}");
    assert!(refused.iter().all(|(_, retry)| retry.as_deref().and_then(|r| r.parse::<u64>().ok()).is_some_and(|s| s >= 1)), "{refused:?}");
    assert_eq!(app.portal_requests().await, requests + checked as u64, "a refused placement never reached the portal");
}

#[tokio::test]
async fn no_access_token_travels_in_a_url() {
    let app = spawn_app().await;
    app.lead_tab().await;
    assert!(app.portal_requests().await > 0);
    assert_eq!(app.get_json("/sandbox/portal/stats").await["tokens_in_urls"], 0);
}

#[tokio::test]
async fn a_portal_on_the_loopback_is_not_called_unless_the_deployment_allows_it() {
    shared::telemetry::init("warn");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = shared::settings::Settings::ephemeral(dir.path().to_owned());
    settings.allow_loopback_portals = false;
    // The sandbox installs the app on its portals at start: the app refuses to confirm the
    // install with an OAuth server and portal on 127.0.0.1.
    let Err(e) = shared::embedded::start(settings).await else { panic!("the install on a loopback portal must be refused") };
    assert!(format!("{e:#}").contains("answered 401"), "{e:#}");
}
