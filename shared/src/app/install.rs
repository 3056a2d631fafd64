//! Installing the app on a portal: trust the portal's tokens only once the portal confirms
//! them, store them sealed, then register what the app needs there (card tabs, the Open
//! Lines connector on a line, event handlers). Every step may run again: reinstalls and
//! updates change nothing that is already in place.

use serde_json::{Value, json};

use super::portal::{PortalClient, confirm_admin, unknown_portal};
use super::{AppError, ErrorKind, Services};
use super::uploads::{templates_folder, uploads_folder};
use crate::crypto::Secret;
use crate::domain::EntityType;
use crate::domain::phone::region_from_license;
use crate::i18n::{Lang, text};
use crate::work::Job;
use crate::repo::portals::{Portal, TimelineLook, TokenOwner, UserAuth};

/// Our connector's id in Open Lines.
pub const CONNECTOR_ID: &str = "olchat_telegram";
pub const CONNECTOR_NAME: &str = "OLChat for Telegram";
/// The Telegram plane, as the connector's icon (`ICON[DATA_IMAGE]`).
const CONNECTOR_ICON: &str = "data:image/svg+xml;charset=US-ASCII,%3Csvg%20xmlns%3D%22http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg%22%20viewBox%3D%220%200%2024%2024%22%3E%3Cpath%20fill%3D%22%23fff%22%20d%3D%22M9.8%2015.2l-.4%205.3c.6%200%20.8-.2%201.1-.5l2.7-2.6%205.6%204.1c1%20.6%201.8.3%202-.9l3.7-17.2c.3-1.5-.6-2.1-1.6-1.7L1.3%209.9c-1.4.6-1.4%201.4-.2%201.8l5.5%201.7L19.3%205.4c.6-.4%201.2-.2.7.2%22%2F%3E%3C%2Fsvg%3E";
/// The events the app reacts to; Bitrix24 drops bindings on update, so they are bound again each time.
const EVENTS: [&str; 7] = [
    "OnImConnectorMessageAdd", "OnImConnectorStatusDelete", "OnImConnectorLineDelete", "OnAppUninstall", "OnAppUpdate",
    "OnImConnectorMessageUpdate", "OnImConnectorMessageDelete",
];
/// The timeline looks we prefer, best first; the first the portal offers is taken.
const ICONS: [&str; 3] = ["telegram", "comment", "info"];
const LOGOS: [&str; 3] = ["channel-telegram", "notification", "info"];

/// Where a portal's REST API answers, derived from the `DOMAIN` Bitrix24 names, never from a
/// URL a request carries (which could point anywhere).
#[derive(Clone, Debug)]
pub enum RestEndpoints {
    /// `https://{domain}/rest/` for a public host name.
    Public,
    /// The sandbox portal answers for its own domains at one local URL.
    Sandbox { domains: Vec<String>, rest_url: String },
}

impl RestEndpoints {
    pub fn for_domain(&self, domain: &str) -> Option<String> {
        let domain = domain.trim().to_ascii_lowercase();
        match self {
            Self::Public => is_public_host(&domain).then(|| format!("https://{domain}/rest/")),
            Self::Sandbox { domains, rest_url } => domains.contains(&domain).then(|| rest_url.clone()),
        }
    }
}

/// A DNS name on the internet: no IP address, no port, no local-only name.
fn is_public_host(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let top = labels.last().copied().unwrap_or("");
    labels.len() >= 2
        && labels.iter().all(label_ok)
        && top.bytes().all(|b| b.is_ascii_lowercase())
        && !["localhost", "local", "internal", "lan", "home", "test", "invalid"].contains(&top)
}

/// The tokens and ids an install (page or `ONAPPINSTALL`) or an update hands the app.
pub struct InstallGrant {
    pub member_id: String,
    pub domain: String,
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub application_token: Option<Secret>,
    pub lang: Lang,
}

/// Stores the portal and its own tokens once they are confirmed. A known portal confirms the
/// access token at its stored endpoint: `app.info` names our app and `user.admin` says it is one of
/// its administrators (any employee's token names our app, and must not replace the portal's
/// tokens or its `application_token`). An unknown one is confirmed
/// by Bitrix24's OAuth server: its refresh token must belong to our app and to this
/// `member_id`, at the endpoint of the claimed domain; so no request-named host is ever
/// called before it is known to be the portal.
pub async fn register_portal(svc: &Services, mut grant: InstallGrant) -> Result<Portal, AppError> {
    let known = svc.portals.get(&grant.member_id).await?;
    let not_confirmed = || AppError::new(ErrorKind::Unauthorized, "install_not_confirmed", "Bitrix24 did not confirm this install.");
    let endpoint = match &known {
        Some(p) if p.domain.eq_ignore_ascii_case(grant.domain.trim()) => {
            confirm_admin(svc, p, &grant.access_token, grant.lang).await.map_err(|e| {
                tracing::warn!(member_id = %grant.member_id, code = e.code, "install refused: {e}");
                not_confirmed()
            })?;
            p.client_endpoint.clone()
        }
        Some(_) => return Err(AppError::new(ErrorKind::Forbidden, "domain_mismatch", "This portal installed the app from another domain.")),
        None => {
            let endpoint = svc.site.endpoints.for_domain(&grant.domain).ok_or_else(|| {
                AppError::bad_request("bad_domain", "DOMAIN must be the Bitrix24 portal's host name.")
            })?;
            let refresh_token = grant.refresh_token.as_ref().ok_or_else(|| {
                AppError::bad_request("missing_token", "A first install must carry the refresh token to be verified.")
            })?;
            let confirmed = svc.bitrix.refresh(refresh_token).await.map_err(|e| {
                tracing::warn!(member_id = %grant.member_id, "install check failed: {e}");
                not_confirmed()
            })?;
            if confirmed.member_id != grant.member_id || confirmed.client_endpoint.trim_end_matches('/') != endpoint.trim_end_matches('/') {
                tracing::warn!(member_id = %grant.member_id, "install refused: the OAuth server names another portal");
                return Err(not_confirmed());
            }
            // The refresh token rotated: keep the new pair.
            grant.access_token = confirmed.access_token;
            grant.refresh_token = Some(confirmed.refresh_token);
            endpoint
        }
    };
    let registered = |portal: &mut Portal| {
        portal.lang = grant.lang;
        if let Some(token) = &grant.application_token {
            svc.portals.set_application_token(portal, token);
        }
        true
    };
    // A known portal is changed in place, so a setting saved meanwhile (its line) stays.
    let portal = match known {
        Some(_) => svc.portals.update(&grant.member_id, registered).await?.ok_or_else(unknown_portal)?,
        None => {
            let mut portal = Portal {
                member_id: grant.member_id.clone(),
                domain: grant.domain.trim().to_ascii_lowercase(),
                client_endpoint: endpoint,
                application_token: None,
                line: None,
                keep_operator_signature: true,
                lang: grant.lang,
                system_messages: false,
                timeline: None,
                region: None,
                install_id: uuid::Uuid::new_v4().simple().to_string(),
                provider_connector: None,
            };
            registered(&mut portal);
            svc.portals.save(&portal).await?;
            portal
        }
    };
    // Online events carry no refresh token: keep the one stored.
    let refresh_token = match grant.refresh_token {
        Some(token) => Some(token),
        None => svc.portals.auth(&portal.member_id, TokenOwner::App).await?.and_then(|a| a.refresh_token),
    };
    let auth = UserAuth { access_token: grant.access_token, refresh_token };
    svc.portals.save_auth(&portal.member_id, TokenOwner::App, &auth).await?;
    tracing::info!(member_id = %portal.member_id, "portal registered");
    Ok(portal)
}

/// The install page (`PLACEMENT=DEFAULT`): an administrator is waiting, so the set-up runs now.
pub async fn install_from_page(svc: &Services, grant: InstallGrant, placement: &str) -> Result<(), AppError> {
    if placement != "DEFAULT" {
        return Err(AppError::bad_request("unsupported_placement", "The install page is opened with PLACEMENT=DEFAULT."));
    }
    let portal = register_portal(svc, grant).await?;
    set_up(svc, &portal.member_id).await
}

/// Binds the card tabs, registers the connector and activates it on a line, binds the
/// events: whatever is missing, nothing twice.
pub async fn set_up(svc: &Services, member_id: &str) -> Result<(), AppError> {
    let mut portal = PortalClient::app(svc, member_id).await?;
    let base = svc.site.public_url.trim_end_matches('/');

    // What is missing goes in one `batch` per kind: an install spends few of the portal's
    // REST requests, and the install page waits on few.
    let placement_handler = format!("{base}/placement");
    let bound = portal.call("placement.get", &json!({})).await?;
    let title = |lang| text(lang, "placement_title", &[]);
    let binds: Vec<_> = EntityType::ALL
        .into_iter()
        .filter(|kind| !bound_to(&bound, "placement", kind.placement(), &placement_handler))
        .enumerate()
        .map(|(i, kind)| {
            let params = json!({
                "PLACEMENT": kind.placement(), "HANDLER": placement_handler, "TITLE": title(Lang::En),
                "LANG_ALL": { "en": { "TITLE": title(Lang::En) }, "ru": { "TITLE": title(Lang::Ru) } },
            });
            // Keyed in the cards' order: the batch's commands go sorted by key.
            (format!("tab{i}"), "placement.bind", params)
        })
        .collect();
    portal.batch_calls(&binds).await?;

    register_connector(&mut portal, base).await?;
    let line = match portal.portal.line.clone() {
        Some(line) => Some(line),
        None => first_line(&portal.call("imopenlines.config.list.get", &json!({})).await?),
    };
    if let Some(line) = line {
        activate(svc, &mut portal, &line).await?;
    }
    choose_timeline_look(svc, &mut portal).await?;
    remember_region(svc, &mut portal).await?;
    super::automation::register(&mut portal, base).await?;

    let event_handler = format!("{base}/bitrix/events");
    let bound = portal.call("event.get", &json!({})).await?;
    let binds: Vec<_> = EVENTS
        .into_iter()
        .filter(|event| !bound_to(&bound, "event", &event.to_ascii_uppercase(), &event_handler))
        .map(|event| (event.to_owned(), "event.bind", json!({ "event": event, "handler": event_handler, "event_type": "online" })))
        .collect();
    portal.batch_calls(&binds).await?;
    tracing::info!(member_id, "portal set up");
    Ok(())
}

/// Registers (or updates) our connector (`imconnector-register.md`: a refusal comes back as
/// HTTP 200 with `result: false`). Open Lines' own messages reach clients only if the
/// portal's administrator allowed them.
pub async fn register_connector(portal: &mut PortalClient<'_>, base: &str) -> Result<(), AppError> {
    let connector = json!({
        "ID": CONNECTOR_ID, "NAME": CONNECTOR_NAME,
        "ICON": { "DATA_IMAGE": CONNECTOR_ICON, "COLOR": "#2AABEE", "SIZE": "90%", "POSITION": "center" },
        "PLACEMENT_HANDLER": format!("{base}/bitrix/connector"),
        // Bitrix24 puts the operator's name before each reply; the portal's setting keeps or strips it.
        "NEED_SIGNATURE": true, "CHAT_GROUP": false,
        "NEED_SYSTEM_MESSAGES": portal.portal.system_messages,
    });
    let answer = portal.call("imconnector.register", &connector).await?;
    if answer.get("result") != Some(&Value::Bool(true)) {
        let why = answer.get("error_description").or_else(|| answer.get("error")).map(Value::to_string).unwrap_or_else(|| answer.to_string());
        return Err(AppError::new(ErrorKind::Upstream, "connector_not_registered", format!("Bitrix24 did not register the connector: {why}")));
    }
    Ok(())
}

/// Turns our connector on for `line`, tells the Contact Center it is connected there
/// (`imconnector-connector-data-set.md`), and remembers the line.
pub async fn activate(svc: &Services, portal: &mut PortalClient<'_>, line: &str) -> Result<(), AppError> {
    portal.call("imconnector.activate", &json!({ "CONNECTOR": CONNECTOR_ID, "LINE": line, "ACTIVE": 1 })).await?;
    let base = svc.site.public_url.trim_end_matches('/');
    let data = json!({ "ID": format!("{CONNECTOR_ID}_line{line}"), "URL": base, "URL_IM": base, "NAME": CONNECTOR_NAME });
    portal.call("imconnector.connector.data.set", &json!({ "CONNECTOR": CONNECTOR_ID, "LINE": line, "DATA": data })).await?;
    let member_id = portal.portal.member_id.clone();
    svc.portals.update(&member_id, |p| p.line.replace(line.to_owned()).as_deref() != Some(line)).await?;
    Ok(())
}

/// The activity's icon and logo must be codes the portal lists (`crm.timeline.icon.list`,
/// `crm.timeline.logo.list`): the first of ours it offers, else its first.
async fn choose_timeline_look(svc: &Services, portal: &mut PortalClient<'_>) -> Result<(), AppError> {
    let pick = |answer: &Value, key: &str, preferred: &[&str]| -> Option<String> {
        let codes: Vec<&str> = answer.get(key)?.as_array()?.iter().filter_map(|c| c.get("code")?.as_str()).collect();
        preferred.iter().find(|p| codes.contains(p)).map(|p| (*p).to_owned()).or_else(|| codes.first().map(|c| (*c).to_owned()))
    };
    let icons = portal.call("crm.timeline.icon.list", &json!({})).await?;
    let logos = portal.call("crm.timeline.logo.list", &json!({})).await?;
    let (Some(icon), Some(logo)) = (pick(&icons, "icons", &ICONS), pick(&logos, "logos", &LOGOS)) else {
        return Err(AppError::new(ErrorKind::Upstream, "no_timeline_look", "Bitrix24 lists no timeline icons or logos."));
    };
    let look = Some(TimelineLook { icon, logo });
    let member_id = portal.portal.member_id.clone();
    svc.portals.update(&member_id, |p| std::mem::replace(&mut p.timeline, look.clone()) != look).await?;
    Ok(())
}

/// The portal's own country, from the prefix of its plan (`LICENSE` of `app.info`,
/// `api-reference/common/system/app-info.md`), for phone numbers written without a country code.
async fn remember_region(svc: &Services, portal: &mut PortalClient<'_>) -> Result<(), AppError> {
    let app = portal.call("app.info", &json!({})).await?;
    let region = app.get("LICENSE").and_then(Value::as_str).and_then(region_from_license).map(|c| c.as_ref().to_owned());
    let member_id = portal.portal.member_id.clone();
    svc.portals.update(&member_id, |p| std::mem::replace(&mut p.region, region.clone()) != region).await?;
    Ok(())
}

/// Our connector was turned off on `line`, or the line deleted: nothing is published there
/// any more, and the tab says why, until an administrator connects a line again.
pub async fn line_gone(svc: &Services, member_id: &str, line: &str) -> Result<(), AppError> {
    svc.portals.update(member_id, |p| p.line.take_if(|l| l == line).is_some()).await?;
    for connector in svc.connectors.list(member_id).await? {
        if connector.line.as_deref() == Some(line) {
            svc.connectors.update(member_id, &connector.id, |c| c.line.take().is_some()).await?;
        }
    }
    tracing::info!(member_id, line, "our connector left an Open Line");
    Ok(())
}

fn first_line(lines: &Value) -> Option<String> {
    let id = lines.as_array()?.first()?.get("ID")?;
    id.as_str().map(str::to_owned).or_else(|| id.as_u64().map(|n| n.to_string()))
}

/// Whether a `placement.get` / `event.get` row binds `name` to `handler` already.
fn bound_to(rows: &Value, field: &str, name: &str, handler: &str) -> bool {
    rows.as_array().into_iter().flatten().any(|row| {
        row.get(field).and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(name))
            && row.get("handler").and_then(Value::as_str) == Some(handler)
    })
}

/// `OnAppUninstall`: the portal's tokens go at once, so nothing acts for it any more; each
/// connector's Telegram account is signed out in its own queue group (a send of it may be
/// under way), and everything else the portal left is deleted by a job of its own.
pub async fn uninstall(svc: &Services, member_id: &str) -> Result<(), AppError> {
    let queue = |job: Job| async move { job.enqueue(svc.queue.as_ref(), std::time::Duration::ZERO).await.map_err(|e| AppError::internal(format!("queue: {e:#}"))) };
    for connector in svc.connectors.list(member_id).await? {
        queue(Job::SignOut { member_id: member_id.to_owned(), connector_id: connector.id.clone(), telegram_user_id: connector.telegram_user_id }).await?;
    }
    svc.portals.delete(member_id).await?;
    queue(Job::ForgetPortal { member_id: member_id.to_owned() }).await?;
    tracing::info!(member_id, "portal uninstalled: tokens deleted, accounts being signed out");
    Ok(())
}

/// Deletes what an uninstalled portal left: messages, uploads, chat links, idempotency keys,
/// pending logins. Nothing, if the portal installed the app again meanwhile.
pub async fn forget_portal(svc: &Services, member_id: &str) -> Result<(), AppError> {
    if svc.portals.get(member_id).await?.is_some() {
        tracing::info!(member_id, "installed again before its data was deleted: kept");
        return Ok(());
    }
    svc.messages.delete_all(member_id).await?;
    for folder in [uploads_folder(member_id), templates_folder(member_id)] {
        svc.blobs.delete_prefix(&folder).await.map_err(|e| AppError::internal(format!("blobs: {e:#}")))?;
    }
    svc.portals.delete_everything(member_id).await?;
    tracing::info!(member_id, "an uninstalled portal's data deleted");
    Ok(())
}

/// The connector's settings page inside Open Lines (`SETTING_CONNECTOR`): the
/// administrator picked a line for it. Called once the page confirmed the administrator
/// ([`super::connectors::open_page`]), so the portal is asked about them once.
pub async fn connect_line(svc: &Services, member_id: &str, line: &str) -> Result<(), AppError> {
    if line.is_empty() || !line.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::bad_request("bad_line", "PLACEMENT_OPTIONS must name the Open Line (LINE)."));
    }
    let mut client = PortalClient::app(svc, member_id).await?;
    activate(svc, &mut client, line).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_host_names_become_endpoints() {
        let public = RestEndpoints::Public;
        assert_eq!(public.for_domain("Example.Bitrix24.com").as_deref(), Some("https://example.bitrix24.com/rest/"));
        for bad in ["127.0.0.1", "localhost", "intranet", "a.local", "evil.com:8080", "evil.com/x", "x..com", "-a.com", "169.254.169.254", ""] {
            assert_eq!(public.for_domain(bad), None, "{bad}");
        }
        let sandbox = RestEndpoints::Sandbox { domains: vec!["demo.sandbox".into()], rest_url: "http://127.0.0.1:1/rest/".into() };
        assert_eq!(sandbox.for_domain("demo.sandbox").as_deref(), Some("http://127.0.0.1:1/rest/"));
        assert_eq!(sandbox.for_domain("example.bitrix24.com"), None);
    }
}
