//! The sandbox: a simulated Bitrix24 portal and a simulated Telegram, seeded with demo
//! data, over the same protocols as the real ones (REST over HTTP, MTProto over TCP). `cargo run` starts in it.
//! Each behaviour cites its documentation: the portal its b24restdocs page, the Telegram side
//! its core.telegram.org method.

pub mod automation;
pub mod automation_runs;
pub mod bbcode;
pub mod cards_page;
pub mod clients;
pub mod crm;
pub mod openlines;
pub mod portal;
pub mod seed;
pub mod state;
pub mod telegram;
pub mod tracker;

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use minijinja::HtmlEscape;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::adapters::grammers::KeyRegistry;
use crate::adapters::grammers::session::TableSession;
use crate::app::Services;
use crate::repo::sessions::TelegramSessions;
use crate::domain::{EntityType, PhoneE164};
use crate::repo::connectors::Connector;
use crate::repo::openlines::{ChatLink, external_chat_id};
use portal::{SandboxApps, SandboxPortal};
use telegram::{Fault, FaultTarget, SandboxTelegram};

pub const CLIENT_ID: &str = "app.sandbox.olchat";
pub const CLIENT_SECRET: &str = "sandbox-client-secret";
/// What `app.info` names as the app's `CODE`: as for a Marketplace app, not its `client_id`.
pub const APP_CODE: &str = "olchat.telegram";

pub struct Sandbox {
    pub portal: Arc<SandboxPortal>,
    pub telegram: Arc<SandboxTelegram>,
    /// Where the app answers: the sandbox portal installs it and sends it events here.
    app_url: String,
}

/// How Bitrix24 tells the app it was installed.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallVia {
    /// The install page (`PLACEMENT=DEFAULT`), opened by the administrator.
    Page,
    /// The `ONAPPINSTALL` event.
    Event,
}

impl Sandbox {
    /// `base_url` is where this process answers (`http://127.0.0.1:8080`), `app_url` where the
    /// app does: the same in the sandbox, another process when the portal runs alone. The
    /// sandbox Telegram keeps its world in `data_dir` and starts its data centres.
    pub async fn start(base_url: &str, app_url: &str, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let rest_url = format!("{base_url}/sandbox/portal/rest/");
        let telegram = Arc::new(SandboxTelegram::open(seed::telegram_users(), data_dir)?);
        telegram::dc::start(telegram.clone()).await?;
        Ok(Self {
            portal: Arc::new(SandboxPortal::new(
                seed::portals(),
                SandboxApps { client_id: CLIENT_ID.into(), client_secret: CLIENT_SECRET.into(), code: APP_CODE.into() },
                rest_url,
                app_url.to_owned(),
            )),
            telegram,
            app_url: app_url.to_owned(),
        })
    }

    /// The sandbox portal installs the app as Bitrix24 does: it POSTs to `/bitrix/install`.
    /// The install finishes when the install page calls `BX24.installFinish()`, or at once for
    /// the `ONAPPINSTALL` of an app without UI (`settings/app-installation/installation-finish.md`).
    /// The app's answer (status and body).
    pub async fn install_app(&self, member_id: &str, via: InstallVia) -> anyhow::Result<(u16, String)> {
        let grant = self.portal.install(member_id).ok_or_else(|| anyhow::anyhow!("no sandbox portal {member_id}"))?;
        let url = format!("{}/bitrix/install", self.app_url);
        let request = match via {
            InstallVia::Page => {
                let query = [("DOMAIN", grant.domain.as_str()), ("PROTOCOL", "0"), ("LANG", "en"), ("APP_SID", "sandbox")];
                let form = [
                    ("AUTH_ID", grant.access_token.as_str()), ("AUTH_EXPIRES", "3600"), ("REFRESH_ID", &grant.refresh_token),
                    ("SERVER_ENDPOINT", "https://oauth.bitrix.info/rest/"), ("APPLICATION_TOKEN", &grant.application_token),
                    ("member_id", member_id), ("status", "L"), ("PLACEMENT", "DEFAULT"), ("PLACEMENT_OPTIONS", "{}"),
                ];
                self.portal.http.post(url).query(&query).form(&form)
            }
            InstallVia::Event => {
                let event = json!({
                    "event": "ONAPPINSTALL", "data": { "VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en" },
                    "ts": crate::clock::now_secs().to_string(),
                    "auth": {
                        "domain": grant.domain, "scope": state::APP_SCOPE,
                        "access_token": grant.access_token, "refresh_token": grant.refresh_token, "expires_in": "3600",
                        "server_endpoint": "https://oauth.bitrix.info/rest/", "status": "L", "client_endpoint": self.portal.rest_url,
                        "member_id": member_id, "application_token": grant.application_token,
                    },
                });
                let body = serde_qs::Config::new().use_form_encoding(true).serialize_string(&event)?;
                self.portal.http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body)
            }
        };
        let answer = request.send().await.map_err(|e| anyhow::anyhow!("install request: {}", e.without_url()))?;
        let (status, body) = (answer.status().as_u16(), answer.text().await.unwrap_or_default());
        let finished = match via {
            InstallVia::Page => status == 200 && body.contains("BX24.installFinish()"),
            InstallVia::Event => status == 200,
        };
        if finished {
            self.portal.finish_install(member_id);
        }
        Ok((status, body))
    }

    pub fn oauth_url(base_url: &str) -> String {
        format!("{base_url}/sandbox/portal")
    }

    /// Installs the app on the demo portals through the real install flow, and records their
    /// Telegram accounts as connected, as the connector login would: each gets a session whose
    /// auth keys the sandbox data centres know, logged in (kept across restarts).
    pub async fn install_demo(&self, svc: &Services, sessions: &TelegramSessions) -> anyhow::Result<()> {
        let users = self.telegram.users();
        for demo in seed::DEMO_CONNECTORS {
            let account = users.iter().find(|u| u.id == demo.telegram_user_id).expect("seeded account");
            if sessions.load(demo.id).await?.is_none() {
                let session = TableSession::registered(&self.telegram.register_keys(Some(account.id)), Some((account.id, account.access_hash)));
                sessions.save(demo.id, &session.to_bytes()).await?;
            }
            let phone = PhoneE164::parse(&account.phone, None).map(|p| p.to_string()).unwrap_or_default();
            let connector = Connector::connected(seed::DEMO_MEMBER_ID, demo.id, demo.name, phone, account.username.clone(), account.id);
            svc.connectors.save(&connector).await?;
        }
        // Installed once the accounts are there, so the robot's "From" lists them at once.
        for member_id in [seed::DEMO_MEMBER_ID, seed::OTHER_MEMBER_ID] {
            let (status, page) = self.install_app(member_id, InstallVia::Page).await?;
            anyhow::ensure!(status == 200, "installing on {member_id} answered {status}: {page}");
        }
        // Maria wrote first: the chat link the app stored when it forwarded her message, and
        // the chat known both ways, as the catch-up left them.
        let peer = seed::maria_peer();
        let link = ChatLink {
            external_chat_id: external_chat_id(seed::MARIA_CONNECTOR, peer),
            connector_id: seed::MARIA_CONNECTOR.to_owned(),
            peer,
            client_name: seed::MARIA_NAME.to_owned(),
            ol_chat_id: None,
        };
        svc.openlines.link(seed::DEMO_MEMBER_ID, link).await?;
        svc.safety.remember_chat(seed::MARIA_CONNECTOR, peer).await?;
        Ok(())
    }

    /// Everything: the portal, the sandbox Telegram and the demo pages.
    pub fn routes(self: &Arc<Self>) -> Router {
        let pages = Router::new()
            .route("/sandbox", get(index))
            .route("/sandbox/telegram/messages", get(telegram_messages))
            .route("/sandbox/telegram/stats", get(telegram_stats))
            .route("/sandbox/telegram/faults", post(telegram_faults))
            .route("/sandbox/telegram/qr", post(telegram_scan_qr))
            .route("/sandbox/openlines", get(openlines_page))
            .merge(clients::routes())
            .with_state(self.clone());
        pages.merge(self.portal_routes())
    }

    /// What Bitrix24 itself answers, for the portal in its own process: REST and OAuth, the
    /// inspection and install hooks, and the launchers that open the app as a user would.
    pub fn portal_routes(self: &Arc<Self>) -> Router {
        let hooks = Router::new()
            .route("/sandbox/open", get(open_card))
            .route("/sandbox/connectors", get(open_connectors))
            .route("/sandbox/portal/install", post(install_hook))
            .route("/sandbox/portal/uninstall", post(uninstall_hook))
            .with_state(self.clone());
        hooks.merge(portal::routes().merge(cards_page::routes()).with_state(self.portal.clone()))
    }
}

type SandboxState = State<Arc<Sandbox>>;

const CARDS: [(EntityType, u64, &str); 6] = [
    (EntityType::Lead, 1, "Request: 20 office chairs — phone, Telegram IM, linked contact and company"),
    (EntityType::Lead, seed::MARIA_LEAD, "Maria Volkova — wrote first on Telegram: the lead Bitrix24's tracker made, found through her Open Line chat"),
    (EntityType::Deal, 1, "Chairs for Acme Shop — two contacts and a company with a t.me link"),
    (EntityType::Contact, 2, "Svetlana Kuznetsova — hides her number from strangers"),
    (EntityType::Company, 1, "Acme Shop LLC — a t.me link in Website"),
    (EntityType::Contact, 3, "Mallory — HTML in her names: shown as text, never run"),
];

async fn index() -> Html<String> {
    let mut rows = String::new();
    for (kind, id, what) in CARDS {
        rows.push_str(&format!(
            "<tr><td><a href=\"/sandbox/card?entity={kind}&amp;id={id}&amp;lang=en\">{kind} #{id}</a></td><td>{what}</td><td>{links}</td></tr>",
            kind = kind.as_str(),
            what = HtmlEscape(what),
            links = ["en", "ru"]
                .iter()
                .map(|lang| format!("<a href=\"/sandbox/open?entity={}&amp;id={id}&amp;lang={lang}\">open ({lang})</a>", kind.as_str()))
                .collect::<Vec<_>>()
                .join(" · "),
        ));
    }
    Html(format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>OLChat sandbox</title>
<link rel=stylesheet href=/assets/tab.css>
<main class=olc><h1 class=olc-heading>OLChat for Telegram — sandbox</h1>
<p>A simulated Bitrix24 portal (<code>{domain}</code>) and a simulated Telegram: two MTProto data centres on
loopback, which the app reaches with the same client (grammers) it uses for Telegram. Open the app in a CRM card,
as Bitrix24 would: it POSTs the placement with a fresh user token. What the data centres saw:
<a href=/sandbox/telegram/stats>/sandbox/telegram/stats</a>.</p>
<table class=olc-table><thead><tr><th>Card</th><th>What it shows</th><th>Open the app</th></tr></thead><tbody>{rows}</tbody></table>
<p>Each card's page (the first column) runs the robots our app registered and sends an SMS through its
message provider, as an automation rule and the card's SMS form would; a CRM campaign to a segment of 50
contacts: <a href=/sandbox/campaign>/sandbox/campaign</a>.</p>
<p>Answer as a client, or read the accounts' messages, in Telegram: <a href=/sandbox/telegram>/sandbox/telegram</a>;
every message as JSON: <a href=/sandbox/telegram/messages>/sandbox/telegram/messages</a>.
The Open Line chats, where you can answer as an operator: <a href=/sandbox/openlines>/sandbox/openlines</a>;
their messages and the CRM activities as JSON: <a href=/sandbox/portal/openlines/messages>/sandbox/portal/openlines/messages</a>,
<a href=/sandbox/portal/activities>/sandbox/portal/activities</a>.</p>
<p>Connect Telegram accounts as the portal's administrator: <a href=\"/sandbox/connectors?lang=en\">connectors (en)</a> ·
<a href=\"/sandbox/connectors?lang=ru\">(ru)</a>. Sandbox accounts to connect: +7 999 000-55-66 (code 12345), and +7 999 000-77-88
(code 12345, cloud password <code>sandbox-password</code>); the code 00000 acts expired. For a QR login,
<code>POST /sandbox/telegram/qr {{\"user_id\":9003}}</code> scans the code shown.</p>
<p>Demo Telegram users: Ivan Petrov and Dmitry Sokolov can be found by phone; Olga Smirnova only by her username;
Svetlana Kuznetsova hides her number; +7 495 100-20-30 has no Telegram account.</p></main></html>",
        domain = seed::DEMO_DOMAIN
    ))
}

#[derive(Deserialize)]
struct OpenQuery {
    entity: String,
    id: u64,
    #[serde(default = "default_lang")]
    lang: String,
    #[serde(default = "default_user")]
    user: u64,
}

fn default_lang() -> String {
    "en".into()
}

fn default_user() -> u64 {
    1
}

/// Does what Bitrix24 does when a user opens the tab: a form POST with a fresh token.
async fn open_card(State(sandbox): SandboxState, Query(q): Query<OpenQuery>) -> Result<Html<String>, (StatusCode, String)> {
    let kind: EntityType = q.entity.parse().map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let (access, refresh) = sandbox.portal.issue_tokens(seed::DEMO_MEMBER_ID, q.user);
    let options = json!({ "ID": q.id.to_string(), "URI": format!("/crm/{}/details/{}/?IFRAME=Y&IFRAME_TYPE=SIDE_SLIDER", kind.as_str(), q.id) });
    let fields = [
        ("AUTH_ID", access),
        ("AUTH_EXPIRES", "3600".to_owned()),
        ("REFRESH_ID", refresh),
        ("SERVER_ENDPOINT", "https://oauth.bitrix.info/rest/".to_owned()),
        ("member_id", seed::DEMO_MEMBER_ID.to_owned()),
        ("status", "L".to_owned()),
        ("PLACEMENT", kind.placement().to_owned()),
        ("PLACEMENT_OPTIONS", options.to_string()),
    ];
    let action = format!(
        "{}/placement?DOMAIN={}&amp;PROTOCOL=0&amp;LANG={}&amp;APP_SID={}",
        HtmlEscape(&sandbox.app_url),
        seed::DEMO_DOMAIN,
        HtmlEscape(&q.lang),
        uuid::Uuid::new_v4().simple()
    );
    Ok(auto_post(&action, &fields))
}

/// A page that POSTs `fields` to `action` (HTML-escaped already) at once, as Bitrix24 opens an app's page.
fn auto_post(action: &str, fields: &[(&str, String)]) -> Html<String> {
    let inputs: String = fields
        .iter()
        .map(|(name, value)| format!("<input type=hidden name=\"{name}\" value=\"{}\">", HtmlEscape(value)))
        .collect();
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Opening…</title><body>
<form id=placement method=post action=\"{action}\">{inputs}<noscript><button>Open</button></noscript></form>
<script>document.getElementById('placement').submit()</script></body>"
    ))
}

#[derive(Deserialize)]
struct ConnectorsQuery {
    #[serde(default = "default_lang")]
    lang: String,
}

/// Opens the app's own page, the connectors, as the portal's administrator (user 1).
async fn open_connectors(State(sandbox): SandboxState, Query(q): Query<ConnectorsQuery>) -> Html<String> {
    let (access, _) = sandbox.portal.issue_tokens(seed::DEMO_MEMBER_ID, 1);
    let fields = [("AUTH_ID", access), ("member_id", seed::DEMO_MEMBER_ID.to_owned()), ("PLACEMENT", "DEFAULT".to_owned())];
    let lang = if q.lang == "ru" { "ru" } else { "en" };
    let action = format!("{}/connectors?DOMAIN={}&amp;PROTOCOL=0&amp;LANG={lang}", HtmlEscape(&sandbox.app_url), seed::DEMO_DOMAIN);
    auto_post(&action, &fields)
}

#[derive(Deserialize)]
struct ScanRequest {
    user_id: i64,
}

/// Test hook: the Telegram user `user_id` scans the QR code shown last.
async fn telegram_scan_qr(State(sandbox): SandboxState, Json(r): Json<ScanRequest>) -> StatusCode {
    if sandbox.telegram.scan_qr(r.user_id) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

/// Connections opened per data centre and RPC calls per method, as the sandbox DCs saw them.
async fn telegram_stats(State(sandbox): SandboxState) -> Json<telegram::Stats> {
    Json(sandbox.telegram.stats())
}

async fn telegram_messages(State(sandbox): SandboxState) -> Json<Value> {
    Json(json!({ "messages": sandbox.telegram.received() }))
}

#[derive(Deserialize)]
struct FaultRequest {
    fault: Fault,
    #[serde(default)]
    on: FaultTarget,
    #[serde(default = "one")]
    count: usize,
}

fn one() -> usize {
    1
}

/// Test hook: the next calls fail as asked.
async fn telegram_faults(State(sandbox): SandboxState, Json(f): Json<FaultRequest>) -> StatusCode {
    sandbox.telegram.inject(f.fault, f.on, f.count);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct InstallRequest {
    member_id: String,
    #[serde(default = "page")]
    via: InstallVia,
}

fn page() -> InstallVia {
    InstallVia::Page
}

/// Test and demo hook: the portal's administrator installs the app (again).
async fn install_hook(State(sandbox): SandboxState, Json(r): Json<InstallRequest>) -> (StatusCode, Json<Value>) {
    match sandbox.install_app(&r.member_id, r.via).await {
        Ok((status, body)) => (StatusCode::OK, Json(json!({ "status": status, "body": body }))),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e.to_string() }))),
    }
}

#[derive(Deserialize)]
struct UninstallRequest {
    member_id: String,
}

/// Test and demo hook: the portal's administrator removes the app.
async fn uninstall_hook(State(sandbox): SandboxState, Json(r): Json<UninstallRequest>) -> StatusCode {
    sandbox.portal.uninstall(&r.member_id);
    StatusCode::NO_CONTENT
}

/// Edit and Delete for an operator's own message (what raises `OnImConnectorMessageUpdate`/`Delete`).
fn operator_controls(m: &state::OlMessage) -> String {
    if m.deleted || m.external_id.is_some() || m.author_id.is_none() || m.direction != "outgoing" {
        return String::new();
    }
    format!(
        " <form method=post action=/sandbox/portal/openlines/operator/edit style=display:inline><input type=hidden name=message_id value={id}>
<input name=text required aria-label=\"New text\" value=\"{text}\"> <button class=olc-btn>Edit</button></form>
<form method=post action=/sandbox/portal/openlines/operator/delete style=display:inline><input type=hidden name=message_id value={id}>
<button class=olc-btn>Delete</button></form>",
        id = m.id,
        text = HtmlEscape(&m.text),
    )
}

/// The Open Line chats of the demo portal; a form on each lets a person answer as an operator.
async fn openlines_page(State(sandbox): SandboxState) -> Html<String> {
    let messages = sandbox.portal.ol_messages();
    let employees = sandbox.portal.employees(seed::DEMO_MEMBER_ID);
    let options: String = employees
        .iter()
        .map(|u| format!("<option value=\"{}\">{} {}</option>", HtmlEscape(u["ID"].as_str().unwrap_or("")),
            HtmlEscape(u["NAME"].as_str().unwrap_or("")), HtmlEscape(u["LAST_NAME"].as_str().unwrap_or(""))))
        .collect();
    let mut chats = String::new();
    for chat in sandbox.portal.chats().iter().filter(|c| c.portal == seed::DEMO_MEMBER_ID) {
        let lines: String = messages
            .iter()
            .filter(|m| m.chat_id == chat.id)
            .map(|m| format!("<li><b>{}</b> ({}{}{}{}): {}{}{}</li>", HtmlEscape(&m.author), m.direction,
                if m.delivered { ", delivered" } else { "" }, if m.read { ", read" } else { "" },
                if m.deleted { ", deleted" } else if m.edited { ", edited" } else { "" }, HtmlEscape(&m.text),
                m.files.iter().map(|f| format!(" <a href=\"{}\">{}</a>", HtmlEscape(f["url"].as_str().unwrap_or("")),
                    HtmlEscape(f["name"].as_str().unwrap_or("file")))).collect::<String>(), operator_controls(m)))
            .collect();
        chats.push_str(&format!(
            "<section><h2 class=olc-heading>Chat {id} — {name}</h2><ul>{lines}</ul>
<form method=post action=/sandbox/portal/openlines/operator><input type=hidden name=chat_id value={id}>
<label>Operator <select name=user_id>{options}</select></label>
<label>Reply <input name=text required></label> <button class=olc-btn>Send as operator</button></form></section>",
            id = chat.id,
            name = HtmlEscape(&chat.user_name),
        ));
    }
    if chats.is_empty() {
        chats = "<p>No Open Line chat yet: send a message from a card with publication on, or create a chat.</p>".into();
    }
    Html(format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>OLChat sandbox — Open Lines</title>
<link rel=stylesheet href=/assets/tab.css><main class=olc><h1 class=olc-heading>Open Line chats</h1>{chats}
<p><a href=/sandbox>Back</a></p></main></html>"
    ))
}
