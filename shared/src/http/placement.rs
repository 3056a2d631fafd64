//! `POST /placement`: Bitrix24 opens the card tab.

use std::sync::OnceLock;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::post;
use minijinja::{Environment, UndefinedBehavior, context};

use super::AppState;
use crate::app::placement::{PlacementForm, PlacementQuery, open_tab};
use crate::app::AppError;
use crate::app::uploads::{MAX_FILES, MAX_UPLOAD};
use crate::i18n::{Lang, strings, text};

pub fn routes() -> Router<AppState> {
    Router::new().route("/placement", post(placement))
}

async fn placement(State(svc): State<AppState>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let query: PlacementQuery = match serde_urlencoded::from_str(query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return error_page(AppError::bad_request("bad_query", format!("The placement query is incomplete: {e}."))),
    };
    let form: PlacementForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => return error_page(AppError::bad_request("bad_form", format!("The placement form is incomplete: {e}."))),
    };
    match open_tab(&svc, &query, &form).await {
        Ok(tab) => {
            let timing = format!("portal;dur={:.3}", tab.portal_time.as_secs_f64() * 1000.0);
            ([(header::HeaderName::from_static("server-timing"), timing)], render_tab(&tab.token, tab.lang)).into_response()
        }
        Err(e) => error_page(e),
    }
}

/// Stands for the session token in the pre-rendered pages; no token contains it.
const TOKEN_SLOT: &str = "{{OLCHAT-TOKEN}}";

/// The tab's page per language, rendered once: a request only puts its token in.
fn page_template(lang: Lang) -> &'static str {
    static PAGES: OnceLock<[String; 2]> = OnceLock::new();
    let source = include_str!("../../assets/tab.html");
    let pages = PAGES.get_or_init(|| [render_page("tab.html", source, Lang::En), render_page("tab.html", source, Lang::Ru)]);
    &pages[lang as usize]
}

/// A page template in one language, with the token left as a slot.
pub(super) fn render_page(name: &'static str, source: &'static str, lang: Lang) -> String {
    let mut env = Environment::new();
    // A key missing from i18n.json fails loudly instead of rendering blank.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_template(name, source).expect("the page template parses");
    let t = strings(lang);
    // JSON inside <script>: escape `<` so no string can close the element.
    let i18n_json = serde_json::to_string(t).expect("strings serialize").replace('<', "\\u003c");
    let t = minijinja::Value::from_pairs(t.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.get_template(name)
        .and_then(|tpl| {
            tpl.render(context! {
                lang => lang.code(), token => TOKEN_SLOT, t, i18n_json,
                files_limit => text(lang, "files_limit", &[("count", &MAX_FILES.to_string())]),
                max_files => MAX_FILES, max_upload => MAX_UPLOAD,
            })
        })
        .expect("the page template renders")
}

/// The tab's page. Not framing-restricted: Bitrix24 shows it in an iframe. The token is
/// base64url and a dot, so it needs no escaping.
pub fn render_tab(token: &str, lang: Lang) -> Html<String> {
    with_token(page_template(lang), token)
}

pub(super) fn with_token(page: &str, token: &str) -> Html<String> {
    Html(page.replacen(TOKEN_SLOT, token, 1))
}

/// Placement errors are shown inside the card, so they are a page, with the right status.
pub(super) fn error_page(e: AppError) -> Response {
    let status = e.kind.status();
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>OLChat</title><p role=alert data-error={}>{}</p>",
        e.code,
        html_escape(&e.message)
    );
    (status, super::retry_after(&e), [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn html_escape(s: &str) -> String {
    minijinja::HtmlEscape(s).to_string()
}
