//! The tab's and the connectors page's scripts and style, compiled into the binary: no
//! front-end build step; the emoji picker's data from the `emojis` crate (Unicode CLDR),
//! built once per process.

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

const CACHE: &str = "public, max-age=300";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/assets/common.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("../../assets/common.js")) }))
        .route("/assets/tab.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("../../assets/tab.js")) }))
        .route("/assets/connectors.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("../../assets/connectors.js")) }))
        .route("/assets/tab.css", get(|| async { asset("text/css; charset=utf-8", include_str!("../../assets/tab.css")) }))
        .route("/assets/emoji.json", get(|| async { asset("application/json", emoji_json()) }))
}

/// The picker's groups, ids matching the `emoji_group_*` strings of `i18n.json`.
fn group_id(group: emojis::Group) -> &'static str {
    use emojis::Group::*;
    match group {
        SmileysAndEmotion => "smileys",
        PeopleAndBody => "people",
        AnimalsAndNature => "nature",
        FoodAndDrink => "food",
        TravelAndPlaces => "travel",
        Activities => "activities",
        Objects => "objects",
        Symbols => "symbols",
        Flags => "flags",
    }
}

/// `{"groups":[{"id":"smileys","emojis":[["😀","grinning face"],…]},…]}`: every emoji
/// without skin-tone variants, with its CLDR name for search.
pub fn emoji_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let groups: Vec<serde_json::Value> = emojis::Group::iter()
            .map(|g| {
                let list: Vec<[&str; 2]> = g.emojis().map(|e| [e.as_str(), e.name()]).collect();
                serde_json::json!({ "id": group_id(g), "emojis": list })
            })
            .collect();
        serde_json::json!({ "groups": groups }).to_string()
    })
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, CACHE)], body)
}
