//! Nobody sees or does through the app what Bitrix24 would not let them: a tab only for a
//! record its user may read and only on that record, the connectors only for an
//! administrator of this app (asked again at every call), no token outliving its install.

use olchat_tests::{TestApp, page_token, spawn_app};
use reqwest::StatusCode;
use serde_json::json;
use shared::domain::EntityType;
use shared::sandbox::portal::OTHER_APP_CLIENT_ID;
use shared::sandbox::seed;

const IVAN: &str = "phone:+79161234567";

fn demo_query() -> String {
    format!("DOMAIN={}&PROTOCOL=0&LANG=en", seed::DEMO_DOMAIN)
}

#[tokio::test]
async fn a_placement_for_a_record_the_user_cannot_read_is_refused() {
    let app = spawn_app().await;
    // The CRM's access rights let Boris read the first lead only.
    app.app.sandbox().portal.limit_records(seed::DEMO_MEMBER_ID, seed::BORIS, vec![(EntityType::Lead, 1)]);
    // PLACEMENT_OPTIONS is the user's to edit: they name the second lead.
    let forged = app.placement_form(seed::BORIS, "CRM_LEAD_DETAIL_TAB", seed::MARIA_LEAD);
    let (status, page) = app.post_placement(&demo_query(), &forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("data-error=access_denied") && page_token(&page).is_none(), "{page}");
    let (status, page) = app.post_placement(&demo_query(), &app.placement_form(seed::BORIS, "CRM_LEAD_DETAIL_TAB", 1)).await;
    assert_eq!(status, StatusCode::OK, "the lead he may read opens: {page}");
}

#[tokio::test]
async fn a_tab_reads_no_message_of_another_card() {
    let app = spawn_app().await;
    let lead = app.lead_tab().await;
    let id = app.send_text(&lead, IVAN, "on the lead").await;
    assert_eq!(app.get(&lead, &format!("/api/messages/{id}")).await.status, StatusCode::OK);
    // The same user's tab on another record: the message's id alone does not open it.
    let deal = app.tab_on(seed::DEMO_MEMBER_ID, seed::DEMO_DOMAIN, seed::ANNA, "CRM_DEAL_DETAIL_TAB", 1).await;
    let other = app.get(&deal, &format!("/api/messages/{id}")).await;
    assert_eq!((other.status, other.body["error"].as_str()), (StatusCode::NOT_FOUND, Some("message_not_found")), "{}", other.body);
    let listed = app.get(&deal, "/api/messages").await;
    assert_eq!(listed.body["messages"], json!([]), "{}", listed.body);
}

/// The connectors page posted with `access` (Bitrix24's `AUTH_ID`) by an administrator.
async fn open_connectors_with(app: &TestApp, access: String) -> (StatusCode, String) {
    let form = [("AUTH_ID", access), ("member_id", seed::DEMO_MEMBER_ID.into()), ("PLACEMENT", "DEFAULT".into())];
    let response = app.http.post(app.url(&format!("/connectors?{}", demo_query()))).form(&form).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn another_apps_administrator_token_is_refused() {
    let app = spawn_app().await;
    // Anna administers the portal; another app installed there hands out tokens of its own.
    let (other, _) = app.app.sandbox().portal.issue_tokens_of(OTHER_APP_CLIENT_ID, seed::DEMO_MEMBER_ID, seed::ANNA);
    let (status, page) = open_connectors_with(&app, other.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("data-error=not_our_app") && page_token(&page).is_none(), "{page}");
    // Nor through the connector's settings placement in Open Lines.
    let options = json!({ "LINE": "2", "CONNECTOR": "olchat_telegram" }).to_string();
    let form = [("AUTH_ID", other), ("member_id", seed::DEMO_MEMBER_ID.into()), ("PLACEMENT", "SETTING_CONNECTOR".into()), ("PLACEMENT_OPTIONS", options)];
    let response = app.http.post(app.url(&format!("/bitrix/connector?{}", demo_query()))).form(&form).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.unwrap().contains("data-error=not_our_app"));
    let portal = app.app.services.portals.get(seed::DEMO_MEMBER_ID).await.unwrap().unwrap();
    assert_ne!(portal.line.as_deref(), Some("2"), "the line was not changed");
    // Our own token of the same administrator opens the page.
    let (ours, _) = app.app.sandbox().portal.issue_tokens(seed::DEMO_MEMBER_ID, seed::ANNA);
    assert_eq!(open_connectors_with(&app, ours).await.0, StatusCode::OK);
}

#[tokio::test]
async fn administrator_rights_are_asked_again_at_every_call() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    assert_eq!(app.get(&admin, "/api/connectors").await.status, StatusCode::OK);
    // Anna is no longer an administrator of the portal: the page she opened stops working.
    app.app.sandbox().portal.set_admin(seed::DEMO_MEMBER_ID, seed::ANNA, false);
    let refused = app.get(&admin, "/api/connectors").await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (StatusCode::FORBIDDEN, Some("not_admin")), "{}", refused.body);
    let budgets = app.put_json(&admin, "/api/connectors/sales/budgets", json!({ "budgets": null })).await;
    assert_eq!(budgets.status, StatusCode::FORBIDDEN, "{}", budgets.body);
    app.app.sandbox().portal.set_admin(seed::DEMO_MEMBER_ID, seed::ANNA, true);
    assert_eq!(app.get(&admin, "/api/connectors").await.status, StatusCode::OK, "rights back, the page works again");
}

#[tokio::test]
async fn tokens_die_with_the_install_they_were_issued_under() {
    let app = spawn_app().await;
    let tab = app.lead_tab().await;
    let admin = app.admin_token().await;
    let answer = app.post_json("/sandbox/portal/uninstall", json!({ "member_id": seed::DEMO_MEMBER_ID })).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    // Installed again at once: the tokens of the earlier install still do not work.
    assert_eq!(app.install(seed::DEMO_MEMBER_ID, "page").await.0, 200);
    for (token, path) in [(&tab, "/api/card"), (&tab, "/api/messages"), (&admin, "/api/connectors")] {
        let refused = app.get(token, path).await;
        assert_eq!((refused.status, refused.body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("app_reinstalled")), "{path}: {}", refused.body);
    }
    let fresh = app.open_card("lead", 1, "en").await.expect("a new tab opens");
    assert_eq!(app.get(&fresh, "/api/card").await.status, StatusCode::OK);
}

#[tokio::test]
async fn invitations_go_only_through_a_record_the_user_may_read() {
    let app = spawn_app().await;
    // Boris may read the demo lead only; the tracker binds Ivan's new chat to a lead of its own.
    app.app.sandbox().portal.limit_records(seed::DEMO_MEMBER_ID, seed::BORIS, vec![(EntityType::Lead, 1)]);
    let tab = app.lead_tab_of(seed::BORIS).await;
    assert_eq!(app.get(&tab, "/api/card").await.status, StatusCode::OK);
    let body = json!({ "connector_id": "sales", "recipient": IVAN, "user_ids": [seed::CLARA] }).to_string();
    let refused = app.post_raw(&tab, "/api/chats", body).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (StatusCode::FORBIDDEN, Some("access_denied")), "{}", refused.body);
    let chats = app.portal_state(seed::DEMO_MEMBER_ID).await["chats"].clone();
    let bound = &chats[0]["crm"];
    assert!(bound[0] == "lead" && bound[1] != 1, "bound to the tracker's lead: {chats}");
    assert_eq!(chats[0]["members"], json!([]), "nobody was invited: {chats}");
}
