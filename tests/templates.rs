//! Message templates end to end over real HTTP: an administrator keeps them on the connectors
//! page's API, the tab fills one from deal 1 of the sandbox portal (read as Bitrix24 answers
//! `crm.deal.get`, `crm.contact.get`, `crm.company.get` and `user.get`), a send refuses raw
//! placeholders, and the robot fills one from its run's document.

use std::time::Duration;

use olchat_tests::{TestApp, eventually, fresh_key, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::app::automation::ROBOT_CODE;
use shared::i18n::{Lang, text};
use shared::sandbox::seed;

const WAIT: Duration = Duration::from_secs(30);
/// Dmitry Sokolov, the first contact of deal 1 (found by his phone).
const DMITRY: i64 = 1005;
const DMITRY_PHONE: &str = "phone:+79857776655";
/// Every kind of placeholder deal 1 fills: its own fields, its contact's, its company's, its
/// responsible's (Boris Ivanov); and one it cannot (the contact has no EMAIL).
const ORDER: &str = "Hello {CONTACT.NAME} {CONTACT.LAST_NAME}! {DEAL.TITLE}: {DEAL.OPPORTUNITY} {DEAL.CURRENCY_ID}, {COMPANY.TITLE}. \
                     Yours, {ASSIGNED_BY.NAME} {ASSIGNED_BY.LAST_NAME}. {CONTACT.EMAIL}";
const ORDER_FILLED: &str = "Hello Dmitry Sokolov! Chairs for Acme Shop: 96000.00 RUB, Acme Shop LLC. Yours, Boris Ivanov. {CONTACT.EMAIL}";

async fn post_json_as(app: &TestApp, token: &str, path: &str, body: Value) -> olchat_tests::Answer {
    app.post_raw(token, path, body.to_string()).await
}

async fn add_template(app: &TestApp, admin: &str, name: &str, body: &str) -> String {
    let answer = post_json_as(app, admin, "/api/templates/admin", json!({ "name": name, "text": body })).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer.body["id"].as_str().expect("an id").to_owned()
}

async fn delete(app: &TestApp, token: &str, path: &str) -> StatusCode {
    app.http.delete(app.url(path)).bearer_auth(token).send().await.unwrap().status()
}

/// The robot's registered "Template" choices, as the sandbox portal keeps them.
fn robot_template_options(app: &TestApp) -> Value {
    let portal = app.app.sandbox().portal.portal(seed::DEMO_MEMBER_ID).unwrap();
    let robot = portal.installation.automations.iter().find(|a| a.code == ROBOT_CODE && a.is_robot).expect("the robot is registered");
    robot.fields["PROPERTIES"]["template"]["Options"].clone()
}

#[tokio::test]
async fn an_administrator_keeps_the_portals_templates_and_the_robot_offers_them() {
    let app = spawn_app().await;
    app.settled().await;
    let admin = app.admin_token().await;
    let id = add_template(&app, &admin, "  Order  ", "Your order {DEAL.TITLE}").await;
    let listed = app.get(&admin, "/api/templates/admin").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["templates"], json!([{ "id": id, "name": "Order", "text": "Your order {DEAL.TITLE}", "files": [] }]));

    let edited = app.put_json(&admin, &format!("/api/templates/admin/{id}"), json!({ "name": "Order status", "text": "{DEAL.TITLE}: {DEAL.STAGE_ID}" })).await;
    assert_eq!((edited.status, edited.body["name"].as_str()), (StatusCode::OK, Some("Order status")), "{}", edited.body);
    app.settled().await;
    let no_template = text(Lang::En, "robot_no_template", &[]);
    assert_eq!(robot_template_options(&app), json!({ "none": no_template, id.as_str(): "Order status" }), "registered again once changed");

    // Refused with the reason, in the administrator's language.
    let ru = olchat_tests::page_token(&app.open_connectors(1, "ru").await.1).unwrap();
    let cases = [
        (json!({ "name": " ", "text": "x" }), "template_name_empty", vec![]),
        (json!({ "name": "x".repeat(101), "text": "x" }), "template_name_too_long", vec![("limit", "100")]),
        (json!({ "name": "x", "text": "\n" }), "template_text_empty", vec![]),
        (json!({ "name": "x", "text": "x".repeat(4096 * 10 + 1) }), "too_long", vec![("parts", "10"), ("limit", "4096")]),
    ];
    for (body, key, args) in cases {
        let answer = post_json_as(&app, &ru, "/api/templates/admin", body).await;
        assert_eq!((answer.status, answer.body["message"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(text(Lang::Ru, key, &args).as_str())), "{key}");
    }
    assert_eq!(post_json_as(&app, &admin, "/api/templates/admin", json!({ "name": "x" })).await.status, StatusCode::BAD_REQUEST);
    let unknown = app.put_json(&admin, "/api/templates/admin/nope", json!({ "name": "x", "text": "y" })).await;
    assert_eq!((unknown.status, unknown.body["error"].as_str()), (StatusCode::NOT_FOUND, Some("template_not_found")));

    // A manager's tab token manages nothing, and a non-administrator gets no admin token at all.
    let manager = app.open_card("deal", 1, "en").await.unwrap();
    assert_eq!(app.get(&manager, "/api/templates/admin").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(post_json_as(&app, &manager, "/api/templates/admin", json!({ "name": "x", "text": "y" })).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(delete(&app, &manager, &format!("/api/templates/admin/{id}")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.open_connectors(seed::BORIS, "en").await.0, StatusCode::FORBIDDEN);

    assert_eq!(delete(&app, &admin, &format!("/api/templates/admin/{id}")).await, StatusCode::NO_CONTENT);
    assert_eq!(delete(&app, &admin, &format!("/api/templates/admin/{id}")).await, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&admin, "/api/templates/admin").await.body["templates"], json!([]));
    app.settled().await;
    assert_eq!(robot_template_options(&app), json!({ "none": no_template }), "a deleted template is no longer offered");
}

#[tokio::test]
async fn a_template_fills_from_a_deal_and_flags_a_missing_field() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let id = add_template(&app, &admin, "Order", ORDER).await;
    let tab = app.open_card("deal", 1, "en").await.unwrap();
    let offered = app.get(&tab, "/api/templates").await;
    assert_eq!((offered.status, &offered.body["templates"]), (StatusCode::OK, &json!([{ "id": id, "name": "Order" }])));
    let filled = post_json_as(&app, &tab, &format!("/api/templates/{id}/fill"), json!({})).await;
    assert_eq!(filled.status, StatusCode::OK, "{}", filled.body);
    assert_eq!(filled.body, json!({ "text": ORDER_FILLED, "missing": ["CONTACT.EMAIL"], "files": [] }));

    // On a contact's card, the deal's fields are not there to fill.
    let contact = app.open_card("contact", 1, "en").await.unwrap();
    let filled = post_json_as(&app, &contact, &format!("/api/templates/{id}/fill"), json!({})).await.body;
    assert_eq!(filled["missing"], json!(["DEAL.TITLE", "DEAL.OPPORTUNITY", "DEAL.CURRENCY_ID", "COMPANY.TITLE", "ASSIGNED_BY.NAME", "ASSIGNED_BY.LAST_NAME", "CONTACT.EMAIL"]));
    assert!(filled["text"].as_str().unwrap().starts_with("Hello Dmitry Sokolov! {DEAL.TITLE}"), "{filled}");

    let unknown = post_json_as(&app, &tab, "/api/templates/nope/fill", json!({})).await;
    assert_eq!((unknown.status, unknown.body["error"].as_str()), (StatusCode::NOT_FOUND, Some("template_not_found")));
    // Another portal's tab sees none of this portal's templates.
    assert_eq!(app.install(seed::FRESH_MEMBER_ID, "page").await.0, 200);
    let other = app.tab_on(seed::FRESH_MEMBER_ID, seed::FRESH_DOMAIN, 1, "CRM_LEAD_DETAIL_TAB", seed::FRESH_LEAD).await;
    assert_eq!(app.get(&other, "/api/templates").await.body["templates"], json!([]));
    assert_eq!(post_json_as(&app, &other, &format!("/api/templates/{id}/fill"), json!({})).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_send_from_a_template_is_refused_while_a_placeholder_remains() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let id = add_template(&app, &admin, "Order", ORDER).await;
    let tab = app.open_card("deal", 1, "en").await.unwrap();
    assert_eq!(app.get(&tab, "/api/card").await.status, StatusCode::OK);
    let send = |body: &str| {
        let request = json!({ "connector_id": "sales", "recipient": DMITRY_PHONE, "text": body, "idempotency_key": fresh_key(), "template_id": id });
        app.send(&tab, request)
    };
    let refused = send(ORDER_FILLED).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.body["error"], "template_unfilled");
    assert_eq!(refused.body["message"], text(Lang::En, "template_unfilled", &[("fields", "CONTACT.EMAIL")]));

    let edited = ORDER_FILLED.replace(" {CONTACT.EMAIL}", "");
    let accepted = send(&edited).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let message_id = accepted.body["message_id"].as_str().unwrap();
    app.wait_for_status(&tab, message_id, "sent", WAIT).await;
    let received: Vec<Value> = app.telegram_messages().await.into_iter().filter(|m| m["to_user_id"] == DMITRY).collect();
    assert_eq!(received.iter().map(|m| m["text"].as_str().unwrap()).collect::<Vec<_>>(), [edited.as_str()]);
}

async fn fire(app: &TestApp, properties: Value) -> Value {
    let body = json!({ "member_id": seed::DEMO_MEMBER_ID, "code": ROBOT_CODE, "entity": "deal", "id": 1, "properties": properties });
    let answer = app.post_json("/sandbox/portal/automation/fire", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let workflow = answer.body["workflow_id"].as_str().expect("a workflow id").to_owned();
    eventually(WAIT, "the robot's result", || async {
        let runs = app.get_json("/sandbox/portal/automation/runs").await;
        let run = runs["runs"].as_array()?.iter().find(|r| r["workflow_id"] == workflow)?.clone();
        (run["status"] == "completed").then_some(run)
    })
    .await
}

#[tokio::test]
async fn the_robot_sends_a_template_filled_from_its_deal_and_fails_naming_a_missing_field() {
    let app = spawn_app().await;
    app.settled().await;
    let admin = app.admin_token().await;
    let filled = add_template(&app, &admin, "Order", &ORDER.replace(" {CONTACT.EMAIL}", "")).await;
    let unfillable = add_template(&app, &admin, "Mail", ORDER).await;
    app.settled().await;

    let run = fire(&app, json!({ "from": "sales", "template": filled, "activity": "N" })).await;
    assert_eq!(run["return_values"]["status"], "sent", "{run}");
    let received: Vec<Value> = app.telegram_messages().await.into_iter().filter(|m| m["to_user_id"] == DMITRY).collect();
    assert_eq!(received.iter().map(|m| m["text"].as_str().unwrap()).collect::<Vec<_>>(), [ORDER_FILLED.replace(" {CONTACT.EMAIL}", "")]);

    let run = fire(&app, json!({ "from": "sales", "template": unfillable, "activity": "N" })).await;
    assert_eq!(run["return_values"]["status"], "failed", "{run}");
    assert_eq!(run["return_values"]["reason"], text(Lang::En, "automation_template_unfilled", &[("fields", "CONTACT.EMAIL")]));
    // A text given in the rule wins over the template.
    let run = fire(&app, json!({ "from": "sales", "template": unfillable, "text": "Plain {=Document:TITLE}", "activity": "N" })).await;
    assert_eq!(run["return_values"]["status"], "sent", "{run}");
    assert!(app.telegram_messages().await.iter().any(|m| m["text"] == "Plain Chairs for Acme Shop" && m["to_user_id"] == DMITRY));
    assert_eq!(app.telegram_messages().await.iter().filter(|m| m["text"].as_str().is_some_and(|t| t.contains('{'))).count(), 0);

    // A rule still naming a deleted template fails with the reason; "No template" is no template.
    let deleted = app.http.delete(app.url(&format!("/api/templates/admin/{filled}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let run = fire(&app, json!({ "from": "sales", "template": filled, "activity": "N" })).await;
    assert_eq!((run["return_values"]["status"].as_str(), run["return_values"]["reason"].as_str()), (Some("failed"), Some(text(Lang::En, "template_not_found", &[]).as_str())), "{run}");
    let run = fire(&app, json!({ "from": "sales", "template": "none", "activity": "N" })).await;
    assert_eq!(run["return_values"]["reason"], text(Lang::En, "empty_text", &[]), "{run}");
}

/// A template's upload slot, as the connectors page opens one.
const TEMPLATE_UPLOADS: &str = "/api/templates/admin/uploads";

#[tokio::test]
async fn a_templates_files_go_with_it_from_the_tab_and_the_robot_each_message_its_own_copy() {
    let app = spawn_app().await;
    app.settled().await;
    let admin = app.admin_token().await;
    let blobs = &app.app.services.blobs;
    let pdf = app.upload(&admin, TEMPLATE_UPLOADS, "price list.pdf", "application/pdf", b"%PDF-1.4 prices".to_vec()).await;
    let photo = app.upload(&admin, TEMPLATE_UPLOADS, "chair.jpg", "image/jpeg", [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[7; 3000]].concat()).await;

    // Only the administrator's own uploads become a template's; each one template's.
    let tab = app.open_card("deal", 1, "en").await.unwrap();
    assert_eq!(app.get(&tab, "/api/card").await.status, StatusCode::OK);
    let colleague = app.tab_on(seed::DEMO_MEMBER_ID, seed::DEMO_DOMAIN, 2, "CRM_DEAL_DETAIL_TAB", 1).await;
    let managers = app.upload(&colleague, "/api/uploads", "mine.pdf", "application/pdf", b"%PDF mine".to_vec()).await;
    let body = |files: Value| json!({ "name": "Prices", "text": "Prices for {DEAL.TITLE}", "files": files });
    let refused = post_json_as(&app, &admin, "/api/templates/admin", body(json!([{ "key": managers, "name": "mine.pdf" }]))).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_upload")));
    let files = json!([{ "key": pdf, "name": "Price list.pdf" }, { "key": photo, "name": "chair.jpg" }]);
    let created = post_json_as(&app, &admin, "/api/templates/admin", body(files.clone())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    // The template keeps its own copies, apart from the uploads, which expire.
    let stored: Vec<String> = created.body["files"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap().to_owned()).collect();
    assert!(stored.iter().all(|k| k.starts_with(&format!("templates/{}/{id}/", seed::DEMO_MEMBER_ID))), "{stored:?}");
    let (pdf_upload, pdf, photo) = (pdf, stored[0].clone(), stored[1].clone());
    let kept: Vec<(&str, u64, &str)> =
        created.body["files"].as_array().unwrap().iter().map(|f| (f["name"].as_str().unwrap(), f["size"].as_u64().unwrap(), f["content_type"].as_str().unwrap())).collect();
    assert_eq!(kept, [("Price list.pdf", 15, "application/pdf"), ("chair.jpg", 3004, "image/jpeg")]);
    let twice = post_json_as(&app, &admin, "/api/templates/admin", body(json!([{ "key": pdf_upload, "name": "again.pdf" }]))).await;
    assert_eq!((twice.status, twice.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("upload_used")));
    // A template's file is no upload of the manager's.
    let send = |request: Value| app.send(&tab, request);
    let base = || json!({ "connector_id": "sales", "recipient": DMITRY_PHONE, "text": "Prices for Chairs for Acme Shop", "idempotency_key": fresh_key() });
    let mut misused = base();
    misused["attachments"] = json!([{ "key": pdf, "name": "p.pdf" }]);
    assert_eq!(send(misused).await.body["error"], "unknown_upload");

    // The tab gets the files with the filled text; the send names those the manager kept.
    let filled = post_json_as(&app, &tab, &format!("/api/templates/{id}/fill"), json!({})).await.body;
    assert_eq!(filled["text"], "Prices for Chairs for Acme Shop");
    let keys: Vec<&str> = filled["files"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(keys, [pdf.as_str(), photo.as_str()]);
    for (template_id, template_files) in [(Value::Null, json!([pdf])), (json!(id), json!([format!("templates/{}/x/other.pdf", seed::DEMO_MEMBER_ID)]))] {
        let mut foreign = base();
        foreign["template_id"] = template_id;
        foreign["template_files"] = template_files;
        let answer = send(foreign).await;
        assert_eq!((answer.status, answer.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("template_file_gone")), "{}", answer.body);
    }
    let mut request = base();
    request["template_id"] = json!(id);
    request["template_files"] = json!([pdf, photo]);
    let accepted = send(request).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let message_id = accepted.body["message_id"].as_str().unwrap().to_owned();
    let view = app.wait_for_status(&tab, &message_id, "sent", WAIT).await;
    assert_eq!(view["files"], json!(["Price list.pdf", "chair.jpg"]));
    let to_dmitry = || async { app.telegram_messages().await.into_iter().filter(|m| m["to_user_id"] == DMITRY).collect::<Vec<Value>>() };
    let received = to_dmitry().await;
    let got: Vec<(&str, &str)> = received.iter().map(|m| (m["media"].as_str().unwrap(), m["file"]["file_name"].as_str().unwrap_or(""))).collect();
    assert_eq!(got, [("text", ""), ("document", "Price list.pdf"), ("photo", "chair.jpg")]);
    assert_eq!((received[1]["file"]["received_bytes"].as_u64(), received[1]["file"]["format"].as_str()), (Some(15), Some("pdf")));

    // The message sent its own copies: dropping a file from the template deletes it from
    // storage, and leaves the message's copy.
    let message = app.app.services.messages.get(&message_id).await.unwrap().expect("stored");
    let copies: Vec<String> = message.attachments().map(|a| a.key.clone()).collect();
    assert!(copies.iter().all(|k| k.starts_with(&format!("uploads/{}/{message_id}/", seed::DEMO_MEMBER_ID))), "{copies:?}");
    let edited = app.put_json(&admin, &format!("/api/templates/admin/{id}"), body(json!([{ "key": pdf, "name": "renamed.pdf" }]))).await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!(edited.body["files"][0]["name"], "Price list.pdf", "a kept file stays as stored");
    assert_eq!(edited.body["files"].as_array().unwrap().len(), 1);
    assert_eq!(blobs.size(&photo).await.unwrap(), None, "the dropped file is deleted");
    for copy in &copies {
        assert!(blobs.size(copy).await.unwrap().is_some(), "{copy} stays");
    }
    let mut stale = base();
    stale["template_id"] = json!(id);
    stale["template_files"] = json!([photo]);
    assert_eq!(send(stale).await.body["error"], "template_file_gone");

    // The robot sends the template's files after its text.
    app.settled().await;
    let run = fire(&app, json!({ "from": "sales", "template": id, "activity": "N" })).await;
    assert_eq!(run["return_values"]["status"], "sent", "{run}");
    let received = to_dmitry().await;
    let got: Vec<(&str, &str)> = received[3..].iter().map(|m| (m["media"].as_str().unwrap(), m["file"]["file_name"].as_str().unwrap_or(""))).collect();
    assert_eq!(got, [("text", ""), ("document", "Price list.pdf")]);
    assert_eq!(received[3]["text"], "Prices for Chairs for Acme Shop");

    // Deleted, the template takes its files with it.
    assert_eq!(delete(&app, &admin, &format!("/api/templates/admin/{id}")).await, StatusCode::NO_CONTENT);
    assert_eq!(blobs.size(&pdf).await.unwrap(), None);
}
