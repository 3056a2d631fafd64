//! The test harness: a whole local instance on a random port, driven over real HTTP the
//! way Bitrix24 and the tab drive it (zero2prod's `spawn_app`).

pub mod contracts;
pub mod deployed;
pub mod moto;
pub mod samples;

use std::time::Duration;

use anyhow::{Context, anyhow};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::embedded::{self, Embedded};
use shared::sandbox::seed;
use shared::settings::Settings;

pub struct TestApp {
    pub app: Embedded,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

/// The checkout's root. Cargo names the package's directory again when it runs a test or a
/// bin, so that directory wins over the one compiled in: a target directory shared by two
/// checkouts then serves each its own files.
pub fn workspace() -> std::path::PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from);
    package.parent().expect("the tests package is in the workspace").to_owned()
}

/// A fresh instance with its own storage and sandbox.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The same, with settings changed by `adjust`.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_instrumented(adjust, &embedded::Uninstrumented).await
}

/// The same, its backends seen through `instrument` (the cost benchmark's meters).
pub async fn spawn_instrumented(adjust: impl FnOnce(&mut Settings), instrument: &dyn embedded::Instrument) -> TestApp {
    shared::telemetry::init("warn");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::ephemeral(dir.path().to_owned());
    adjust(&mut settings);
    let app = embedded::start_instrumented(settings, instrument).await.expect("app starts");
    TestApp { app, http: reqwest::Client::new(), _dir: dir }
}

/// The form a sandbox launcher page auto-POSTs, as a browser would send it: its action and fields.
pub fn launcher_form(launcher: &str) -> anyhow::Result<(String, Vec<(String, String)>)> {
    let unescape = |v: &str| v.replace("&quot;", "\"").replace("&#x2f;", "/").replace("&amp;", "&");
    let action = launcher.split("action=\"").nth(1).and_then(|s| s.split('"').next()).context("form action")?;
    let fields = launcher
        .split("<input type=hidden name=\"")
        .skip(1)
        .map(|input| {
            let (name, rest) = input.split_once("\" value=\"").context("input value")?;
            Ok((name.to_owned(), unescape(rest.split('"').next().unwrap_or_default())))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((unescape(action), fields))
}

/// The portal round trips a response reports in `Server-Timing` (ms).
pub fn portal_wait_ms(response: &reqwest::Response) -> Option<f64> {
    response.headers().get("server-timing").and_then(|v| v.to_str().ok()?.strip_prefix("portal;dur=")?.parse().ok())
}

/// The session token a page carries.
pub fn page_token(page: &str) -> Option<String> {
    Some(page.split("name=\"olchat-token\" content=\"").nth(1)?.split('"').next()?.to_owned())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.url)
    }

    /// The placement form Bitrix24 would POST for a user opening a card tab.
    pub fn placement_form(&self, user: u64, placement: &str, id: u64) -> Vec<(String, String)> {
        self.placement_form_on(seed::DEMO_MEMBER_ID, user, placement, id)
    }

    /// The same, on another sandbox portal.
    pub fn placement_form_on(&self, member_id: &str, user: u64, placement: &str, id: u64) -> Vec<(String, String)> {
        let (access, refresh) = self.app.sandbox().portal.issue_tokens(member_id, user);
        vec![
            ("AUTH_ID".into(), access),
            ("AUTH_EXPIRES".into(), "3600".into()),
            ("REFRESH_ID".into(), refresh),
            ("member_id".into(), member_id.into()),
            ("status".into(), "L".into()),
            ("PLACEMENT".into(), placement.into()),
            ("PLACEMENT_OPTIONS".into(), json!({ "ID": id.to_string() }).to_string()),
        ]
    }

    pub async fn post_placement(&self, query: &str, form: &[(String, String)]) -> (StatusCode, String) {
        let (status, _, page) = self.post_placement_timed(query, form).await;
        (status, page)
    }

    /// Also the portal wait the server reported in `Server-Timing` (ms).
    pub async fn post_placement_timed(&self, query: &str, form: &[(String, String)]) -> (StatusCode, Option<f64>, String) {
        let response = self.http.post(self.url(&format!("/placement?{query}"))).form(form).send().await.expect("placement answers");
        let portal_ms = portal_wait_ms(&response);
        (response.status(), portal_ms, response.text().await.unwrap_or_default())
    }

    /// Portal user `user` opens the tab of `placement` record `id` on a sandbox portal; its token.
    pub async fn tab_on(&self, member_id: &str, domain: &str, user: u64, placement: &str, id: u64) -> String {
        let form = self.placement_form_on(member_id, user, placement, id);
        let (status, page) = self.post_placement(&format!("DOMAIN={domain}&PROTOCOL=0&LANG=en"), &form).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page_token(&page).expect("token in page")
    }

    /// Demo portal user `user` opens the demo lead's tab; its token.
    pub async fn lead_tab_of(&self, user: u64) -> String {
        self.tab_on(seed::DEMO_MEMBER_ID, seed::DEMO_DOMAIN, user, "CRM_LEAD_DETAIL_TAB", 1).await
    }

    /// Opens a card through the sandbox's own launcher page, as a browser would; the session token.
    pub async fn open_card(&self, entity: &str, id: u64, lang: &str) -> anyhow::Result<String> {
        let launcher = self.http.get(self.url(&format!("/sandbox/open?entity={entity}&id={id}&lang={lang}"))).send().await?.text().await?;
        // The launcher posts to the app's absolute URL, as Bitrix24 does.
        let (action, form) = launcher_form(&launcher)?;
        let page = self.http.post(action).form(&form).send().await?;
        let status = page.status();
        let page = page.text().await?;
        if status != StatusCode::OK {
            return Err(anyhow!("placement answered {status}: {page}"));
        }
        page_token(&page).context("token in page")
    }

    /// Opens the app's own page (the connectors) as portal user `user`: the status and the page.
    pub async fn open_connectors(&self, user: u64, lang: &str) -> (StatusCode, String) {
        let (access, refresh) = self.app.sandbox().portal.issue_tokens(seed::DEMO_MEMBER_ID, user);
        let form = [("AUTH_ID", access), ("REFRESH_ID", refresh), ("member_id", seed::DEMO_MEMBER_ID.into()), ("PLACEMENT", "DEFAULT".into())];
        let url = self.url(&format!("/connectors?DOMAIN={}&LANG={lang}", seed::DEMO_DOMAIN));
        let response = self.http.post(url).form(&form).send().await.expect("the page answers");
        (response.status(), response.text().await.unwrap_or_default())
    }

    /// The lead's tab, opened and its card read (which resolves its recipients); its token.
    pub async fn lead_tab(&self) -> String {
        let token = self.open_card("lead", 1, "en").await.unwrap();
        assert_eq!(self.get(&token, "/api/card").await.status, StatusCode::OK);
        token
    }

    /// Runs a job as its worker would on its `receive_count`th delivery (a redelivery, at once).
    pub async fn run_job(&self, body: &str, receive_count: u32) -> shared::jobs::Outcome {
        let delivery = shared::ports::Delivery { receipt: format!("test-{receive_count}"), body: body.to_owned(), receive_count };
        shared::jobs::handle(&self.app.services, &delivery).await
    }

    /// An ordering barrier: returns once every job queued so far, and every job those queued in
    /// turn, has run to its end (no job queued, running, or due again within the runner's
    /// visibility). An absence checked after it is an absence, not a race with a sleep.
    pub async fn settled(&self) {
        let horizon = shared::jobs::runner::VISIBILITY + Duration::from_secs(1);
        eventually(Duration::from_secs(30), "every queued job to run to its end", || async {
            (self.app.queue.jobs_due_within(horizon).expect("the queue answers") == 0).then_some(())
        })
        .await
    }

    /// An administrator's token for the connectors API.
    pub async fn admin_token(&self) -> String {
        let (status, page) = self.open_connectors(1, "en").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page_token(&page).expect("token in page")
    }

    pub async fn put_json(&self, token: &str, path: &str, body: Value) -> Answer {
        let response = self.http.put(self.url(path)).bearer_auth(token).json(&body).send().await.expect("answers");
        Answer { status: response.status(), body: response.json().await.unwrap_or(Value::Null) }
    }

    pub async fn get(&self, token: &str, path: &str) -> Answer {
        let response = self.http.get(self.url(path)).bearer_auth(token).send().await.expect("answers");
        Answer { status: response.status(), body: response.json().await.unwrap_or(Value::Null) }
    }

    /// Uploads `bytes` through the slot `slot_path` opens (`/api/uploads`, a template's) and
    /// its signed URL; the key.
    pub async fn upload(&self, token: &str, slot_path: &str, name: &str, content_type: &str, bytes: Vec<u8>) -> String {
        let slot = self.post_raw(token, slot_path, json!({ "name": name, "size": bytes.len(), "content_type": content_type }).to_string()).await;
        assert_eq!(slot.status, StatusCode::OK, "{}", slot.body);
        let put = self.http.put(slot.body["url"].as_str().unwrap()).header("content-type", content_type).body(bytes).send().await.unwrap();
        assert_eq!(put.status(), StatusCode::OK);
        slot.body["key"].as_str().unwrap().to_owned()
    }

    pub async fn post_raw(&self, token: &str, path: &str, body: String) -> Answer {
        let request = self.http.post(self.url(path)).bearer_auth(token).header("content-type", "application/json").body(body);
        let response = request.send().await.expect("answers");
        Answer { status: response.status(), body: response.json().await.unwrap_or(Value::Null) }
    }

    pub async fn send(&self, token: &str, body: Value) -> Answer {
        self.post_raw(token, "/api/send", body.to_string()).await
    }

    /// Sends `text` to `recipient` from the sales connector with a fresh idempotency key; its id.
    pub async fn send_text(&self, token: &str, recipient: &str, text: &str) -> String {
        let key = fresh_key();
        let answer = self.send(token, json!({ "connector_id": "sales", "recipient": recipient, "text": text, "idempotency_key": key })).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        answer.body["message_id"].as_str().expect("message id").to_owned()
    }

    /// Polls the message until its status is `status`; its last view.
    pub async fn wait_for_status(&self, token: &str, id: &str, status: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let view = self.get(token, &format!("/api/messages/{id}")).await.body;
            if view["status"] == status || tokio::time::Instant::now() > deadline {
                assert_eq!(view["status"], status, "message {id}: {view}");
                return view;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the sandbox Telegram received, over its HTTP inspection endpoint.
    pub async fn telegram_messages(&self) -> Vec<Value> {
        let body: Value = self.http.get(self.url("/sandbox/telegram/messages")).send().await.unwrap().json().await.unwrap();
        body["messages"].as_array().cloned().unwrap_or_default()
    }

    /// The next `count` calls `on` (`send`, `resolve` or `updates`) fail with `fault`.
    pub async fn inject_telegram_fault(&self, fault: Value, on: &str, count: usize) {
        let body = json!({ "fault": fault, "on": on, "count": count });
        let status = self.http.post(self.url("/sandbox/telegram/faults")).json(&body).send().await.unwrap().status();
        assert_eq!(status, StatusCode::NO_CONTENT);
    }

    pub async fn portal_fault(&self, body: Value) {
        let status = self.http.post(self.url("/sandbox/portal/faults")).json(&body).send().await.unwrap().status();
        assert_eq!(status, StatusCode::NO_CONTENT);
    }

    /// Sends `text` to `recipient` with a publication mode and, maybe, an activity; its id.
    pub async fn send_published(&self, token: &str, recipient: &str, text: &str, publication: &str, create_activity: bool) -> String {
        let key = fresh_key();
        let body = json!({ "connector_id": "sales", "recipient": recipient, "text": text, "idempotency_key": key,
                           "publication": publication, "create_activity": create_activity });
        let answer = self.send(token, body).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        answer.body["message_id"].as_str().expect("message id").to_owned()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        self.http.get(self.url(path)).send().await.unwrap().json().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Answer {
        let response = self.http.post(self.url(path)).json(&body).send().await.expect("answers");
        Answer { status: response.status(), body: response.json().await.unwrap_or(Value::Null) }
    }

    /// Open Line messages of the sandbox portal.
    pub async fn ol_messages(&self) -> Vec<Value> {
        self.get_json("/sandbox/portal/openlines/messages").await["messages"].as_array().cloned().unwrap_or_default()
    }

    /// CRM activities of the sandbox portal.
    pub async fn activities(&self) -> Vec<Value> {
        self.get_json("/sandbox/portal/activities").await["activities"].as_array().cloned().unwrap_or_default()
    }

    /// What the app registered on a sandbox portal.
    pub async fn portal_state(&self, member_id: &str) -> Value {
        self.get_json(&format!("/sandbox/portal/state?member_id={member_id}")).await
    }

    /// The sandbox portal installs the app (`via`: `page` or `event`); the app's answer.
    pub async fn install(&self, member_id: &str, via: &str) -> (u16, String) {
        let answer = self.post_json("/sandbox/portal/install", json!({ "member_id": member_id, "via": via })).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        (answer.body["status"].as_u64().unwrap() as u16, answer.body["body"].as_str().unwrap_or("").to_owned())
    }

    /// An employee writes into a sandbox Open Line chat.
    pub async fn operator_writes(&self, chat_id: u64, user_id: u64, text: &str) -> u64 {
        let answer = self.post_json("/sandbox/portal/openlines/operator", json!({ "chat_id": chat_id, "user_id": user_id, "text": text })).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.body["message_id"].as_u64().unwrap()
    }

    /// POSTs a raw event to the app, as Bitrix24 would.
    pub async fn post_event(&self, body: &str) -> StatusCode {
        let request = self.http.post(self.url("/bitrix/events")).header("content-type", "application/x-www-form-urlencoded");
        request.body(body.to_owned()).send().await.expect("answers").status()
    }

    pub async fn portal_requests(&self) -> u64 {
        let body: Value = self.http.get(self.url("/sandbox/portal/stats")).send().await.unwrap().json().await.unwrap();
        body["rest_requests"].as_u64().unwrap()
    }
}

/// An idempotency key no earlier submit used.
pub fn fresh_key() -> String {
    format!("k{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

/// The jobs waiting on `queue`, taken off it.
pub async fn drain(svc: &shared::app::Services, queue: shared::ports::JobQueue) -> Vec<shared::work::Job> {
    let mut jobs = Vec::new();
    loop {
        let got = svc.queue.receive(queue, 10, Duration::from_secs(30)).await.expect("the queue answers");
        if got.is_empty() {
            return jobs;
        }
        for delivery in got {
            svc.queue.delete(queue, &delivery.receipt).await.expect("the queue answers");
            jobs.push(serde_json::from_str(&delivery.body).expect("a job"));
        }
    }
}

/// Polls `probe` until it gives `Some`, or fails after `within` with `what`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
