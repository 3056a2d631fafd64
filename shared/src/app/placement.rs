//! Opening the tab: trust a placement POST only once the portal it names confirms it.

use serde::Deserialize;

use super::portal::{batch_record, portal_error, refuse_unlikely_token, unknown_portal, user_departments, user_id, user_time_zone};
use super::{AppError, ErrorKind, Services};
use crate::crypto::Secret;
use crate::domain::{EntityRef, EntityType};
use crate::i18n::Lang;
use crate::repo::portals::{TokenOwner, UserAuth};

/// The form fields Bitrix24 POSTs to a placement handler.
#[derive(Debug, Deserialize)]
pub struct PlacementForm {
    #[serde(rename = "AUTH_ID")]
    pub auth_id: Secret,
    #[serde(rename = "REFRESH_ID", default)]
    pub refresh_id: Option<Secret>,
    pub member_id: String,
    #[serde(rename = "PLACEMENT")]
    pub placement: String,
    #[serde(rename = "PLACEMENT_OPTIONS", default)]
    pub placement_options: String,
}

/// The query string Bitrix24 adds to it.
#[derive(Debug, Deserialize)]
pub struct PlacementQuery {
    #[serde(rename = "DOMAIN")]
    pub domain: String,
    #[serde(rename = "LANG", default)]
    pub lang: String,
}

#[derive(Deserialize)]
struct PlacementOptions {
    #[serde(rename = "ID")]
    id: serde_json::Value,
}

pub struct OpenedTab {
    pub token: String,
    pub lang: Lang,
    /// Time spent waiting for the portal, reported to the browser as `Server-Timing`.
    pub portal_time: std::time::Duration,
}

/// The CRM record a placement is about, from `PLACEMENT` and `PLACEMENT_OPTIONS`.
pub fn placement_entity(form: &PlacementForm) -> Result<EntityRef, AppError> {
    let kind = EntityType::from_placement(&form.placement).ok_or_else(|| {
        AppError::bad_request("unsupported_placement", format!("The placement {:?} is not one this app serves.", form.placement))
    })?;
    let bad_options = || AppError::bad_request("bad_placement_options", "PLACEMENT_OPTIONS must be JSON with the record's numeric ID.");
    let options: PlacementOptions = serde_json::from_str(&form.placement_options).map_err(|_| bad_options())?;
    let id = match options.id {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    };
    Ok(EntityRef { kind, id: id.filter(|&i| i > 0).ok_or_else(bad_options)? })
}

pub async fn open_tab(svc: &Services, query: &PlacementQuery, form: &PlacementForm) -> Result<OpenedTab, AppError> {
    let entity = placement_entity(form)?;
    refuse_unlikely_token(&form.auth_id)?;
    let portal = svc.portals.get(&form.member_id).await?.ok_or_else(unknown_portal)?;
    // Only the domain stored at install is ever called; a mismatch is refused before any request.
    if !portal.domain.eq_ignore_ascii_case(query.domain.trim()) {
        return Err(AppError::new(
            ErrorKind::Forbidden,
            "domain_mismatch",
            "The DOMAIN of this request is not the domain this portal installed the app from.",
        ));
    }
    // The record is read with the user's own token: a placement is only for a card they may see.
    let record = format!("{}?id={}", entity.kind.get_method(), entity.id);
    let commands = [("user", "user.current".to_owned()), ("app", "app.info".to_owned()), ("record", record)].map(|(k, c)| (k.to_owned(), c));
    let not_confirmed =
        || AppError::new(ErrorKind::Unauthorized, "auth_not_confirmed", "Bitrix24 did not confirm this user's authorization.");
    let asked = std::time::Instant::now();
    // Nobody is authenticated yet: the check is paced apart from real work (`check_batch`).
    let batch = svc.bitrix.check_batch(&portal.client_endpoint, &form.auth_id, &commands).await.map_err(|e| {
        if e.is_rate_limit() {
            return portal_error(e);
        }
        tracing::warn!(member_id = %form.member_id, "placement auth check failed: {e}");
        not_confirmed()
    })?;
    let portal_time = asked.elapsed();
    let user = batch_record(&batch, "user").map_err(|_| not_confirmed())?;
    let user_id = user_id(&user).ok_or_else(not_confirmed)?;
    // The token must be ours: another app's on the same portal answers `app.info` too.
    let app = batch_record(&batch, "app").map_err(|_| not_confirmed())?;
    if app.get("CODE").and_then(|c| c.as_str()) != Some(svc.bitrix.app_code()) {
        return Err(not_confirmed());
    }
    let installed = app.get("INSTALLED").and_then(|i| i.as_bool()).unwrap_or(false);
    if !installed {
        return Err(AppError::new(ErrorKind::Forbidden, "app_not_installed", "The app is not installed on this portal."));
    }
    batch_record(&batch, "record")?;
    let auth = UserAuth { access_token: form.auth_id.clone(), refresh_token: form.refresh_id.clone() };
    svc.portals.save_auth(&portal.member_id, TokenOwner::User(user_id), &auth).await?;
    let lang = Lang::from_portal(&query.lang);
    // The departments and the time zone ride in the tab's signed token: `user.current` is in this batch anyway,
    // so no call and no cache is added, and a change of department counts from the next
    // opening of the tab, as a token's lifetime already bounds everything else it carries.
    let token = svc.sessions.issue(&portal.installed(), user_id, user_departments(&user), user_time_zone(&user), entity, lang);
    Ok(OpenedTab { token, lang, portal_time })
}
