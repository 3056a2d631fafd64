//! Telegram inside Bitrix24's automation, end to end over real HTTP and MTProto: the sandbox
//! portal fires our robot and workflow action and sends through our message provider as
//! Bitrix24 does (`bizproc-robot-add.md`, `messageservice-sender-add.md`), the app sends over
//! the sandbox data centres, and what it tells back lands in the portal.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use olchat_tests::{TestApp, eventually, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::app::automation::{ACTION_CODE, PROVIDER_CODE, ROBOT_CODE};
use shared::i18n::{Lang, text};
use shared::sandbox::seed;

const WAIT: Duration = Duration::from_secs(30);
/// Dmitry Sokolov, the first client of deal 1 (found by his phone).
const DMITRY: i64 = 1005;
const SVETLANA_CONTACT: u64 = 2;

async fn rest(app: &TestApp, method: &str, params: Value) -> Value {
    let (token, _) = app.app.sandbox().portal.issue_tokens(seed::DEMO_MEMBER_ID, 1);
    let mut params = params;
    params["auth"] = json!(token);
    let answer = app.post_json(&format!("/sandbox/portal/rest/{method}"), params).await;
    assert_eq!(answer.status, StatusCode::OK, "{method}: {}", answer.body);
    answer.body["result"].clone()
}

async fn fire(app: &TestApp, code: &str, entity: &str, id: u64, properties: Value) -> String {
    let body = json!({ "member_id": seed::DEMO_MEMBER_ID, "code": code, "entity": entity, "id": id, "properties": properties });
    let answer = app.post_json("/sandbox/portal/automation/fire", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["workflow_id"].as_str().expect("a workflow id").to_owned()
}

/// The run once Bitrix24 has its result.
async fn completed_run(app: &TestApp, workflow_id: &str) -> Value {
    eventually(WAIT, "the robot's result", || async {
        let runs = app.get_json("/sandbox/portal/automation/runs").await;
        let run = runs["runs"].as_array()?.iter().find(|r| r["workflow_id"] == workflow_id)?.clone();
        (run["status"] == "completed").then_some(run)
    })
    .await
}

fn sent_to(messages: &[Value], user: i64) -> Vec<Value> {
    messages.iter().filter(|m| m["to_user_id"] == user).cloned().collect()
}

async fn sms(app: &TestApp) -> Vec<Value> {
    app.get_json("/sandbox/portal/messageservice/messages").await["messages"].as_array().cloned().unwrap_or_default()
}

async fn sms_history(app: &TestApp, message_id: &str, last: &str) -> Vec<String> {
    eventually(WAIT, &format!("SMS {message_id} to be {last}"), || async {
        let found = sms(app).await.into_iter().find(|m| m["message_id"] == message_id)?;
        let history: Vec<String> = found["history"].as_array()?.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect();
        (history.last().map(String::as_str) == Some(last)).then_some(history)
    })
    .await
}

async fn send_sms(app: &TestApp, entity: &str, id: u64, text: &str) -> String {
    let body = json!({ "member_id": seed::DEMO_MEMBER_ID, "code": PROVIDER_CODE, "entity": entity, "id": id, "text": text, "user_id": 1 });
    let answer = app.post_json("/sandbox/portal/messageservice/send", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["message_id"].as_str().expect("a message id").to_owned()
}

async fn serve_sms_from(app: &TestApp, connector: &str) -> String {
    let admin = app.admin_token().await;
    let answer = app.put_json(&admin, "/api/connectors/provider", json!({ "connector_id": connector })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["provider_connector"], connector);
    admin
}

#[tokio::test]
async fn the_install_registers_the_robot_the_workflow_action_and_the_provider() {
    let app = spawn_app().await;
    app.settled().await;
    let codes = |v: Value| v.as_array().unwrap().iter().filter_map(|c| c.as_str().map(str::to_owned)).collect::<Vec<_>>();
    assert!(codes(rest(&app, "bizproc.robot.list", json!({})).await).contains(&ROBOT_CODE.to_owned()));
    assert!(codes(rest(&app, "bizproc.activity.list", json!({})).await).contains(&ACTION_CODE.to_owned()));
    assert!(codes(rest(&app, "messageservice.sender.list", json!({})).await).contains(&PROVIDER_CODE.to_owned()));
    // An update registers the same again, changing it in place (bizproc.robot.update), not twice.
    app.install(seed::DEMO_MEMBER_ID, "page").await;
    app.settled().await;
    let robots = codes(rest(&app, "bizproc.robot.list", json!({})).await);
    assert_eq!(robots.iter().filter(|c| *c == ROBOT_CODE).count(), 1, "{robots:?}");
}

#[tokio::test]
async fn a_rule_fires_for_a_deal_and_the_client_receives_the_filled_text_once() {
    let app = spawn_app().await;
    app.settled().await;
    let workflow = fire(&app, ROBOT_CODE, "deal", 1, json!({ "from": "sales", "text": "Your order: {=Document:TITLE}, {=Document:OPPORTUNITY} RUB" })).await;
    let run = completed_run(&app, &workflow).await;
    assert_eq!(run["return_values"]["status"], "sent", "{run}");
    assert_eq!(run["return_values"]["reason"], "");
    assert!(run["return_values"]["message_id"].as_str().is_some_and(|id| !id.is_empty()), "{run}");
    let received = sent_to(&app.telegram_messages().await, DMITRY);
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["text"], "Your order: Chairs for Acme Shop, 96000.00 RUB");
    assert_eq!(received[0]["from_username"], "olchat_sales");
    // The robot's "create activity" is on by default: the deal's timeline shows the send.
    let activity = eventually(WAIT, "the deal's activity", || async {
        app.activities().await.into_iter().find(|a| a["owner"]["type_id"] == 2 && a["owner"]["id"] == 1)
    })
    .await;
    assert!(activity["history"].as_array().is_some_and(|h| !h.is_empty()), "{activity}");

    // The workflow designer's action does the same.
    let workflow = fire(&app, ACTION_CODE, "contact", 1, json!({ "from": "sales", "text": "Hello {=Document:NAME}", "activity": "N" })).await;
    assert_eq!(completed_run(&app, &workflow).await["return_values"]["status"], "sent");
    let received = sent_to(&app.telegram_messages().await, DMITRY);
    assert_eq!(received.iter().map(|m| m["text"].as_str().unwrap()).collect::<Vec<_>>(), ["Your order: Chairs for Acme Shop, 96000.00 RUB", "Hello Dmitry"]);
}

#[tokio::test]
async fn a_recipient_telegram_cannot_find_fails_with_the_privacy_explanation() {
    let app = spawn_app().await;
    app.settled().await;
    let workflow = fire(&app, ROBOT_CODE, "contact", SVETLANA_CONTACT, json!({ "from": "sales", "text": "Hello" })).await;
    let run = completed_run(&app, &workflow).await;
    assert_eq!(run["return_values"]["status"], "failed", "{run}");
    assert_eq!(run["return_values"]["reason"], text(Lang::En, "privacy_explanation", &[]));
    assert!(run["log"].to_string().contains("Who can find me by my number"), "{run}");
    assert!(sent_to(&app.telegram_messages().await, 1003).is_empty());

    // No account chosen, and the deal's responsible never sent from one of the two: said so.
    let workflow = fire(&app, ROBOT_CODE, "deal", 1, json!({ "text": "Hello" })).await;
    let run = completed_run(&app, &workflow).await;
    assert_eq!(run["return_values"]["reason"], text(Lang::En, "automation_no_connector", &[]), "{run}");
}

/// The body our handler gets for a run, as Bitrix24 would post it again.
fn robot_call(app: &TestApp, event_token: &str, text: &str) -> String {
    let portal = app.app.sandbox().portal.portal(seed::DEMO_MEMBER_ID).unwrap();
    let call = json!({
        "workflow_id": "wf-repeat", "code": ROBOT_CODE, "document_id": ["crm", "CCrmDocumentContact", "CONTACT_1"],
        "document_type": ["crm", "CCrmDocumentContact", "CONTACT"], "event_token": event_token,
        "properties": { "from": "sales", "text": text, "activity": "N" }, "use_subscription": "Y", "ts": "1",
        "auth": { "member_id": seed::DEMO_MEMBER_ID, "domain": seed::DEMO_DOMAIN, "user_id": "1",
                  "application_token": portal.installation.application_token.clone().unwrap() },
    });
    serde_qs::Config::new().use_form_encoding(true).serialize_string(&call).unwrap()
}

async fn post_form(app: &TestApp, path: &str, body: String) -> StatusCode {
    let request = app.http.post(app.url(path)).header("content-type", "application/x-www-form-urlencoded").body(body);
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn a_call_bitrix24_repeats_sends_once() {
    let app = spawn_app().await;
    app.settled().await;
    let body = robot_call(&app, "token-repeated|A1|x", "Sent once");
    let (a, b) = tokio::join!(post_form(&app, "/bitrix/robot", body.clone()), post_form(&app, "/bitrix/robot", body.clone()));
    assert_eq!((a, b), (StatusCode::OK, StatusCode::OK));
    app.settled().await;
    assert_eq!(post_form(&app, "/bitrix/robot", body).await, StatusCode::OK, "and once more after it went");
    app.settled().await;
    let texts: Vec<Value> = sent_to(&app.telegram_messages().await, DMITRY).into_iter().filter(|m| m["text"] == "Sent once").collect();
    assert_eq!(texts.len(), 1, "{texts:?}");

    // The provider's message_id, likewise.
    serve_sms_from(&app, "sales").await;
    let portal = app.app.sandbox().portal.portal(seed::DEMO_MEMBER_ID).unwrap();
    let call = json!({
        "module_id": "crm", "bindings": [{ "OWNER_TYPE_ID": 3, "OWNER_ID": 1 }], "type": "SMS", "code": PROVIDER_CODE,
        "message_id": "65575980fa531ac284c2ee68f81ebebd", "message_to": "+79857776655", "message_body": "SMS once",
        "properties": { "phone_number": "+79857776655", "message_text": "SMS once" }, "ts": 1,
        "auth": { "member_id": seed::DEMO_MEMBER_ID, "user_id": "1", "application_token": portal.installation.application_token.clone().unwrap() },
    });
    // The tutorial prints the call as JSON (`tutorials/messageservice/index.md`): taken too.
    let json_call = |body: String| app.http.post(app.url("/bitrix/provider")).header("content-type", "application/json").body(body).send();
    let (a, b) = tokio::join!(json_call(call.to_string()), json_call(call.to_string()));
    assert_eq!((a.unwrap().status(), b.unwrap().status()), (StatusCode::OK, StatusCode::OK));
    app.settled().await;
    let texts: Vec<Value> = sent_to(&app.telegram_messages().await, DMITRY).into_iter().filter(|m| m["text"] == "SMS once").collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
}

#[tokio::test]
async fn a_call_without_the_portals_application_token_is_refused() {
    let app = spawn_app().await;
    app.settled().await;
    let forged = robot_call(&app, "token-forged|A1|x", "Forged").replace("application_token%5D=", "application_token%5D=forged");
    assert_eq!(post_form(&app, "/bitrix/robot", forged).await, StatusCode::UNAUTHORIZED);
    assert_eq!(post_form(&app, "/bitrix/robot", "garbage".into()).await, StatusCode::BAD_REQUEST);
    app.settled().await;
    assert!(app.telegram_messages().await.iter().all(|m| m["text"] != "Forged"));
}

#[tokio::test]
async fn an_sms_from_the_card_goes_over_telegram_and_its_statuses_come_back() {
    let app = spawn_app().await;
    app.settled().await;
    serve_sms_from(&app, "sales").await;
    let id = send_sms(&app, "contact", 1, "Your code: 1234").await;
    assert_eq!(sms_history(&app, &id, "sent").await, ["queued", "sent"]);
    assert_eq!(sent_to(&app.telegram_messages().await, DMITRY).iter().filter(|m| m["text"] == "Your code: 1234").count(), 1);
    // He reads it: the method has no "read", so it becomes `delivered`.
    app.app.sandbox().telegram.read_all(DMITRY);
    assert_eq!(sms_history(&app, &id, "delivered").await, ["queued", "sent", "delivered"]);

    // A hidden number: undelivered, and the employee who sent it is told why.
    let hidden = send_sms(&app, "contact", SVETLANA_CONTACT, "Your code: 5678").await;
    assert_eq!(sms_history(&app, &hidden, "undelivered").await, ["queued", "undelivered"]);
    let number = sms(&app).await.into_iter().find(|m| m["message_id"] == hidden).unwrap()["to"].as_str().unwrap().to_owned();
    let notified = eventually(WAIT, "the sender's notification", || async {
        let all = app.get_json("/sandbox/portal/notifications").await["notifications"].as_array().cloned().unwrap_or_default();
        all.into_iter().find(|n| n["user_id"] == 1 && n["message"].as_str().is_some_and(|m| m.contains(&number)))
    })
    .await;
    assert!(notified["message"].as_str().unwrap().contains("Who can find me by my number"), "{notified}");

    // The standard "Send SMS" robot of a rule, through the provider (`module_id` = bizproc).
    let body = json!({ "member_id": seed::DEMO_MEMBER_ID, "code": PROVIDER_CODE, "entity": "deal", "id": 1, "phone": "+79857776655",
                       "text": "Deal {=Document:TITLE}", "module": "bizproc" });
    let answer = app.post_json("/sandbox/portal/messageservice/send", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let robot_sms = answer.body["message_id"].as_str().unwrap().to_owned();
    assert_eq!(sms_history(&app, &robot_sms, "sent").await, ["queued", "sent"]);
    assert!(app.telegram_messages().await.iter().any(|m| m["text"] == "Deal Chairs for Acme Shop" && m["to_user_id"] == DMITRY));
}

#[tokio::test]
async fn a_campaign_of_fifty_goes_out_paced_and_within_the_accounts_daily_budget() {
    let pace = Duration::from_millis(200);
    let app = spawn_app_with(|s| s.limits.automation_pace = pace).await;
    app.settled().await;
    let admin = serve_sms_from(&app, "sales").await;
    // The sales account may start 45 new chats today; 50 clients are on the list.
    let budgets = json!({ "budgets": { "new_chats_per_day": 45, "phone_lookups_per_day": 50 } });
    assert_eq!(app.put_json(&admin, "/api/connectors/sales/budgets", budgets).await.status, StatusCode::OK);
    let records: Vec<Value> = seed::CAMPAIGN_CONTACTS.map(|id| json!({ "entity": "contact", "id": id })).collect();
    let body = json!({ "member_id": seed::DEMO_MEMBER_ID, "code": PROVIDER_CODE, "records": records, "text": "Spring sale, {=Document:NAME}!", "user_id": 1 });
    let answer = app.post_json("/sandbox/portal/messageservice/campaign", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["message_ids"].as_array().map(Vec::len), Some(50));

    let statuses = eventually(Duration::from_secs(120), "45 sent and 5 waiting for tomorrow", || async {
        let mut count = BTreeMap::new();
        for m in sms(&app).await {
            *count.entry(m["status"].as_str().unwrap_or("").to_owned()).or_insert(0) += 1;
        }
        (count.get("sent") == Some(&45) && count.get("queued") == Some(&5)).then_some(count)
    })
    .await;
    assert_eq!(statuses.values().sum::<usize>(), 50, "{statuses:?}");
    app.settled().await;
    let received: Vec<Value> = app.telegram_messages().await.into_iter().filter(|m| m["text"] == "Spring sale, Campaign!").collect();
    let recipients: HashSet<i64> = received.iter().map(|m| m["to_user_id"].as_i64().unwrap()).collect();
    assert_eq!((received.len(), recipients.len()), (45, 45), "each once, none beyond the budget");
    // Paced: one per 200 ms at most, so no second holds more than six (a burst would put all in one or two).
    let mut per_second = BTreeMap::new();
    for m in &received {
        *per_second.entry(m["date"].as_i64().unwrap()).or_insert(0) += 1;
    }
    assert!(per_second.values().all(|&n| n <= 6), "{per_second:?}");
    let span = per_second.keys().last().unwrap() - per_second.keys().next().unwrap();
    assert!(span >= 8, "45 messages at 200 ms span at least 8.8 s: {per_second:?}");
    // The connectors page shows what automation did today.
    let listed = app.get(&admin, "/api/connectors").await.body;
    let sales = listed["connectors"].as_array().unwrap().iter().find(|c| c["id"] == "sales").unwrap().clone();
    assert_eq!((sales["usage"]["automation_queued"].as_u64(), sales["usage"]["automation_sent"].as_u64()), (Some(50), Some(45)), "{sales}");
}

#[tokio::test]
async fn beyond_the_budget_an_account_set_to_fail_fails_with_the_reason() {
    let app = spawn_app().await;
    app.settled().await;
    let admin = serve_sms_from(&app, "sales").await;
    let budgets = json!({ "budgets": { "new_chats_per_day": 1, "phone_lookups_per_day": 50 } });
    assert_eq!(app.put_json(&admin, "/api/connectors/sales/budgets", budgets).await.status, StatusCode::OK);
    let set = app.put_json(&admin, "/api/connectors/sales/over-budget", json!({ "over_budget": "fail" })).await;
    assert_eq!((set.status, set.body["over_budget"].as_str()), (StatusCode::OK, Some("fail")), "{}", set.body);
    assert_eq!(app.put_json(&admin, "/api/connectors/sales/over-budget", json!({ "over_budget": "later" })).await.status, StatusCode::BAD_REQUEST);

    let first = send_sms(&app, "contact", 1, "First").await;
    assert_eq!(sms_history(&app, &first, "sent").await, ["queued", "sent"]);
    let workflow = fire(&app, ROBOT_CODE, "company", 1, json!({ "from": "sales", "text": "Second" })).await;
    let run = completed_run(&app, &workflow).await;
    assert_eq!(run["return_values"]["status"], "failed");
    assert_eq!(run["return_values"]["reason"], text(Lang::En, "budget_new_chats", &[("limit", "1")]));
}
