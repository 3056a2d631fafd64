//! The clients' side of the sandbox Telegram: a page where a person answers a connected
//! account as one of the demo clients (text, and a photo, document or voice note) and reads
//! its messages. Both produce the updates the real Telegram would: a new message, and
//! `updateReadHistoryOutbox` for the account; a client's edit or deletion (JSON hooks) gives
//! `updateEditMessage` / `updateDeleteMessages`.
//! (core.telegram.org/type/Update: `updateNewMessage`, `updateReadHistoryOutbox`,
//! `updateEditMessage`, `updateDeleteMessages`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use minijinja::HtmlEscape;
use serde::Deserialize;
use serde_json::json;

use super::telegram::{ClientFile, ReceivedMessage, SimUser};
use super::Sandbox;
use super::portal::form_or_json;
use crate::domain::voice::silent_ogg;
use crate::ports::IncomingKind;

const PAGE: &str = "/sandbox/telegram";

pub fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route(PAGE, get(page))
        .route("/sandbox/telegram/reply", post(reply))
        .route("/sandbox/telegram/read", post(read))
        .route("/sandbox/telegram/edit", post(edit))
        .route("/sandbox/telegram/delete", post(delete))
}

/// What a sandbox client can attach: small real files of each kind.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Attach {
    #[default]
    None,
    Photo,
    Document,
    Voice,
}

/// A 1×1 PNG.
const PHOTO: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63,
    0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60,
    0x82,
];
const DOCUMENT: &str = "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n\
3 0 obj<</Type/Page/MediaBox[0 0 200 100]/Parent 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n";
const VOICE_SECONDS: u32 = 2;

impl Attach {
    fn file(self) -> Option<ClientFile> {
        let file = |kind, name: &str, mime: &str, bytes: Vec<u8>, duration| ClientFile {
            kind,
            file_name: name.into(),
            mime_type: mime.into(),
            bytes,
            duration,
        };
        match self {
            Attach::None => None,
            Attach::Photo => Some(file(IncomingKind::Photo, "photo.png", "image/png", PHOTO.to_vec(), None)),
            Attach::Document => Some(file(IncomingKind::Document, "price-list.pdf", "application/pdf", DOCUMENT.as_bytes().to_vec(), None)),
            Attach::Voice => Some(file(IncomingKind::Voice, "voice.ogg", "audio/ogg", silent_ogg(VOICE_SECONDS), Some(VOICE_SECONDS))),
        }
    }
}

#[derive(Deserialize)]
struct ReplyRequest {
    from_user_id: i64,
    to_user_id: i64,
    #[serde(default)]
    text: String,
    #[serde(default)]
    attach: Attach,
}

/// A client writes to an account: a form from the page (back to it), or JSON.
async fn reply(State(sandbox): State<Arc<Sandbox>>, headers: HeaderMap, body: Bytes) -> Response {
    let (request, is_form) = form_or_json::<ReplyRequest>(&headers, &body);
    let sent = request.and_then(|r| sandbox.telegram.reply(r.from_user_id, r.to_user_id, &r.text, r.attach.file()));
    match (sent, is_form) {
        (Ok(_), true) => Redirect::to(PAGE).into_response(),
        (Ok(id), false) => Json(json!({ "message_id": id })).into_response(),
        (Err(e), _) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response(),
    }
}

#[derive(Deserialize)]
struct EditRequest {
    from_user_id: i64,
    message_id: i32,
    #[serde(default)]
    text: String,
}

/// A client edits a message they wrote (a form from the page, or JSON): `updateEditMessage` for both sides.
async fn edit(State(sandbox): State<Arc<Sandbox>>, headers: HeaderMap, body: Bytes) -> Response {
    let (request, is_form) = form_or_json::<EditRequest>(&headers, &body);
    changed(request.and_then(|r| sandbox.telegram.edit(r.from_user_id, r.message_id, &r.text)), is_form)
}

/// A client deletes a message of their chat for both sides (a form, or JSON): `updateDeleteMessages`.
async fn delete(State(sandbox): State<Arc<Sandbox>>, headers: HeaderMap, body: Bytes) -> Response {
    let (request, is_form) = form_or_json::<EditRequest>(&headers, &body);
    changed(request.and_then(|r| sandbox.telegram.delete(r.from_user_id, r.message_id)), is_form)
}

fn changed(done: Result<(), String>, is_form: bool) -> Response {
    match (done, is_form) {
        (Ok(()), true) => Redirect::to(PAGE).into_response(),
        (Ok(()), false) => StatusCode::NO_CONTENT.into_response(),
        (Err(e), _) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response(),
    }
}

#[derive(Deserialize)]
struct ReadRequest {
    user_id: i64,
}

/// A client opens their chats: everything sent to them is read.
async fn read(State(sandbox): State<Arc<Sandbox>>, headers: HeaderMap, body: Bytes) -> Response {
    match form_or_json::<ReadRequest>(&headers, &body) {
        (Ok(r), true) => {
            sandbox.telegram.read_all(r.user_id);
            Redirect::to(PAGE).into_response()
        }
        (Ok(r), false) => Json(json!({ "read": sandbox.telegram.read_all(r.user_id) })).into_response(),
        (Err(e), _) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response(),
    }
}

fn name(u: &SimUser) -> String {
    format!("{} {}", u.first_name, u.last_name).trim().to_owned()
}

fn options(users: &[&SimUser]) -> String {
    users.iter().map(|u| format!("<option value={}>{}</option>", u.id, HtmlEscape(&name(u)))).collect()
}

const ATTACH_OPTIONS: &str = "<option value=none>no file</option><option value=photo>a photo</option>\
<option value=document>a document (PDF)</option><option value=voice>a voice note</option>";

/// Every chat between a connected account and a client, with a form to answer as the client.
async fn page(State(sandbox): State<Arc<Sandbox>>) -> Html<String> {
    let users = sandbox.telegram.users();
    let messages = sandbox.telegram.received();
    let accounts: Vec<&SimUser> = users.iter().filter(|u| u.logged_in).collect();
    let mut clients: Vec<&SimUser> = users.iter().filter(|u| !u.logged_in).collect();
    clients.sort_by_key(|u| u.id);
    let mut chats = String::new();
    for account in &accounts {
        for client in &clients {
            let between = |m: &&ReceivedMessage| {
                (m.from_user_id, m.to_user_id) == (account.id, client.id) || (m.from_user_id, m.to_user_id) == (client.id, account.id)
            };
            let lines: Vec<String> = messages.iter().filter(between).map(|m| message_line(m, client.id)).collect();
            if lines.is_empty() {
                continue;
            }
            chats.push_str(&format!(
                "<section><h2 class=olc-heading>{client} ↔ {account}</h2><ul>{lines}</ul>
<form method=post action=/sandbox/telegram/reply><input type=hidden name=from_user_id value={client_id}>
<input type=hidden name=to_user_id value={account_id}>
<label>Reply as {client} <input name=text></label> <label>Attach <select name=attach aria-label=Attach>{ATTACH_OPTIONS}</select></label>
<button class=olc-btn>Send</button></form>
<form method=post action=/sandbox/telegram/read><input type=hidden name=user_id value={client_id}>
<button class=olc-btn>Read as {client}</button></form></section>",
                client = HtmlEscape(&name(client)),
                account = HtmlEscape(&name(account)),
                lines = lines.concat(),
                client_id = client.id,
                account_id = account.id,
            ));
        }
    }
    if chats.is_empty() {
        chats = "<p>No chat yet: send a message from a card, or write to an account below.</p>".into();
    }
    Html(format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>OLChat sandbox — Telegram clients</title>
<link rel=stylesheet href=/assets/tab.css><main class=olc><h1 class=olc-heading>Telegram, as the clients see it</h1>
<p>Answer the connected accounts as a client, or read their messages. The app picks both up at its next catch-up
(a few seconds): replies appear in the Open Line chat, reading turns the message's activity to “read”.</p>{chats}
<section><h2 class=olc-heading>Write to an account</h2>
<form method=post action=/sandbox/telegram/reply><label>As <select name=from_user_id>{clients}</select></label>
<label>to <select name=to_user_id>{accounts}</select></label> <label>Text <input name=text></label>
<label>Attach <select name=attach aria-label=Attach>{ATTACH_OPTIONS}</select></label> <button class=olc-btn>Send</button></form>
<p>Only people the portal wrote to reach the Open Line, unless the connector accepts messages from anyone.</p></section>
<p><a href=/sandbox/openlines>Open Line chats</a> · <a href=/sandbox>Back</a></p></main></html>",
        clients = options(&clients),
        accounts = options(&accounts),
    ))
}

fn message_line(m: &ReceivedMessage, client_id: i64) -> String {
    let from_client = m.from_user_id == client_id;
    let who = if from_client { "client" } else { "account" };
    let status = match (from_client, m.read) {
        (true, _) => "",
        (false, true) => " ✓✓ read",
        (false, false) => " ✓ unread",
    };
    let file = m.file.as_ref().map(|f| format!(" [{}: {}]", m.media, HtmlEscape(&f.file_name))).unwrap_or_default();
    let edited = if m.edit_date.is_some() { " (edited)" } else { "" };
    // The client may edit what they wrote and delete it (for both sides).
    let controls = if from_client {
        format!(
            " <form method=post action=/sandbox/telegram/edit style=display:inline><input type=hidden name=from_user_id value={client_id}>
<input type=hidden name=message_id value={id}><input name=text required aria-label=\"New text\" value=\"{text}\"> <button class=olc-btn>Edit</button></form>
<form method=post action=/sandbox/telegram/delete style=display:inline><input type=hidden name=from_user_id value={client_id}>
<input type=hidden name=message_id value={id}><button class=olc-btn>Delete</button></form>",
            id = m.id,
            text = HtmlEscape(&m.text),
        )
    } else {
        String::new()
    };
    format!("<li><b>{who}</b>{file}: {}<small>{edited}{status}</small>{controls}</li>", HtmlEscape(&m.text))
}
