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
use crate::i18n::{Lang, strings};

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
        Ok(tab) => render_tab(&tab.token, tab.lang).into_response(),
        Err(e) => error_page(e),
    }
}

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // A key missing from i18n.json fails loudly instead of rendering blank.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_template("tab.html", include_str!("../../assets/tab.html")).expect("tab.html parses");
        env
    })
}

/// The tab's page. Not framing-restricted: Bitrix24 shows it in an iframe.
pub fn render_tab(token: &str, lang: Lang) -> Html<String> {
    let t = strings(lang);
    // JSON inside <script>: escape `<` so no string can close the element.
    let i18n_json = serde_json::to_string(t).expect("strings serialize").replace('<', "\\u003c");
    let page = templates()
        .get_template("tab.html")
        .and_then(|tpl| tpl.render(context! { lang => lang.code(), token, t => minijinja::Value::from_pairs(t.iter().map(|(k, v)| (k.clone(), v.clone()))), i18n_json }))
        .expect("the tab template renders");
    Html(page)
}

/// Placement errors are shown inside the card, so they are a page, with the right status.
fn error_page(e: AppError) -> Response {
    let status = e.kind.status();
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>OLChat</title><p role=alert>{}</p>",
        html_escape(&e.message)
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn html_escape(s: &str) -> String {
    minijinja::HtmlEscape(s).to_string()
}
