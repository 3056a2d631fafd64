//! Calls to a portal with a user's tokens or the portal's own, refreshing once when
//! Bitrix24 says the access token expired, and keeping the rotated refresh token.

use std::collections::BTreeMap;
use serde::Serialize;
use serde_json::{Value, json};

use super::{AppError, ErrorKind, Services};
use crate::auth::AdminClaims;
use crate::bitrix::{BatchResult, BitrixError, Page, batch_params, parse_batch};
use crate::crypto::Secret;
use crate::i18n::{Lang, text};
use crate::repo::portals::{Portal, TokenOwner, UserAuth};

pub struct PortalClient<'a> {
    pub svc: &'a Services,
    pub portal: Portal,
    owner: TokenOwner,
    auth: UserAuth,
}

impl<'a> PortalClient<'a> {
    /// With the tokens of the user who opened the tab.
    pub async fn user(svc: &'a Services, member_id: &str, user: u64) -> Result<Self, AppError> {
        Self::open(svc, member_id, TokenOwner::User(user)).await
    }

    /// With the portal's own tokens, from the install: for jobs and events, where no user is at hand.
    pub async fn app(svc: &'a Services, member_id: &str) -> Result<Self, AppError> {
        Self::open(svc, member_id, TokenOwner::App).await
    }

    async fn open(svc: &'a Services, member_id: &str, owner: TokenOwner) -> Result<Self, AppError> {
        let portal = svc.portals.get(member_id).await?.ok_or_else(unknown_portal)?;
        let auth = svc.portals.auth(member_id, owner).await?.ok_or_else(session_gone)?;
        Ok(Self { svc, portal, owner, auth })
    }

    pub async fn call(&mut self, method: &str, params: &Value) -> Result<Value, AppError> {
        self.call_page(method, params).await.map(|p| p.result)
    }

    /// A call whose answer is a page of a list (`next` says where the next one starts).
    pub async fn call_page(&mut self, method: &str, params: &Value) -> Result<Page, AppError> {
        let endpoint = self.portal.client_endpoint.clone();
        match self.svc.bitrix.call_page(&endpoint, &self.auth.access_token, method, params).await {
            Err(e) if e.is_expired_token() => {
                self.refresh().await?;
                self.svc.bitrix.call_page(&endpoint, &self.auth.access_token, method, params).await.map_err(portal_error)
            }
            other => other.map_err(portal_error),
        }
    }

    /// Every row of a list method, page after page (`start` = the previous page's `next`).
    pub async fn call_all(&mut self, method: &str, params: &Value) -> Result<Vec<Value>, AppError> {
        let mut rows = Vec::new();
        let mut params = params.clone();
        loop {
            let page = self.call_page(method, &params).await?;
            rows.extend(page.result.as_array().cloned().unwrap_or_default());
            match page.next {
                Some(next) => params["start"] = next.into(),
                None => return Ok(rows),
            }
        }
    }

    pub async fn batch(&mut self, commands: &[(String, String)]) -> Result<BatchResult, AppError> {
        let answer = self.call("batch", &batch_params(commands)).await?;
        parse_batch(&answer).map_err(portal_error)
    }

    /// Several calls in one `batch` request (`settings/how-to-call-rest-api/batch.md`): one
    /// request of the portal's REST budget instead of one each, their parameters
    /// bracket-encoded. The first refusal fails them all; nothing to call, no request.
    pub async fn batch_calls(&mut self, calls: &[(String, &str, Value)]) -> Result<BTreeMap<String, Value>, AppError> {
        if calls.is_empty() {
            return Ok(BTreeMap::new());
        }
        let commands: Vec<(String, String)> = calls
            .iter()
            .map(|(key, method, params)| (key.clone(), format!("{method}?{}", serde_qs::to_string(params).expect("parameters encode"))))
            .collect();
        let batch = self.batch(&commands).await?;
        match batch.errors.into_values().next() {
            Some(e) => Err(portal_error(e)),
            None => Ok(batch.results),
        }
    }

    /// Trades the refresh token for a new pair now, and stores it.
    pub async fn refresh(&mut self) -> Result<(), AppError> {
        let refresh_token = self.auth.refresh_token.as_ref().ok_or_else(session_gone)?;
        let grant = match self.svc.bitrix.refresh(refresh_token).await {
            Ok(grant) => grant,
            Err(e) => {
                // Refresh tokens rotate: another job may have refreshed first and stored the new pair.
                let stored = self.svc.portals.auth(&self.portal.member_id, self.owner).await?;
                if let Some(stored) = stored.filter(|s| s.access_token.expose() != self.auth.access_token.expose()) {
                    self.auth = stored;
                    return Ok(());
                }
                tracing::warn!("token refresh refused: {e}");
                return Err(session_gone());
            }
        };
        self.auth = UserAuth { access_token: grant.access_token, refresh_token: Some(grant.refresh_token) };
        self.svc.portals.save_auth(&self.portal.member_id, self.owner, &self.auth).await?;
        Ok(())
    }
}

/// A refresh token lives 180 days and each use renews it (`settings/oauth/auto-renewal.md`);
/// a portal whose own pair is older than this is refreshed, so a quiet portal is not lost.
pub const KEEP_ALIVE_AFTER: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Refreshes the own tokens of every portal whose pair is older than `older_than`. A portal
/// that refuses is logged and skipped: the others still get theirs.
pub async fn keep_portals_alive(svc: &Services, older_than: std::time::Duration) -> Result<(), AppError> {
    let due_before = crate::clock::now_secs() - older_than.as_secs() as i64;
    for member_id in svc.portals.all().await? {
        // After a key rotation, the day's pass seals every portal's tokens again with the new key.
        match svc.portals.reseal(&member_id).await? {
            0 => {}
            n => tracing::info!(member_id, tokens = n, "tokens sealed again with the current key"),
        }
        let obtained = svc.portals.auth_obtained_at(&member_id, TokenOwner::App).await?;
        if obtained.is_none_or(|at| at > due_before) {
            continue;
        }
        let refreshed = async { PortalClient::app(svc, &member_id).await?.refresh().await };
        match refreshed.await {
            Ok(()) => tracing::info!(member_id, "a quiet portal's tokens refreshed"),
            Err(e) => tracing::warn!(member_id, code = e.code, "a quiet portal's tokens could not be refreshed: {e}"),
        }
    }
    Ok(())
}

/// The portal a token was issued for, while that install lasts: an uninstall ends every token
/// issued before it, even if the portal installs the app again.
pub async fn current_install(svc: &Services, (member_id, install): (&str, &str)) -> Result<Portal, AppError> {
    let portal = svc.portals.get(member_id).await?.filter(|p| p.install_id == install);
    portal.ok_or_else(|| AppError::new(ErrorKind::Unauthorized, "app_reinstalled", "The app was removed from this portal since this page opened; open it again."))
}

/// Asks the portal again, with the administrator's own token, whether they may still manage
/// the app: an administrator demoted since the page opened loses it at their next call.
pub async fn recheck_admin(svc: &Services, admin: &AdminClaims) -> Result<(), AppError> {
    let mut portal = PortalClient::user(svc, &admin.portal, admin.user).await?;
    if portal.call("user.admin", &json!({})).await? != Value::Bool(true) {
        tracing::warn!(member_id = %admin.portal, user = admin.user, "an administrator's rights were withdrawn");
        return Err(AppError::new(ErrorKind::Forbidden, "not_admin", text(admin.lang, "admins_only", &[])));
    }
    Ok(())
}

pub fn unknown_portal() -> AppError {
    AppError::new(ErrorKind::Forbidden, "unknown_portal", "This Bitrix24 portal has not installed the app.")
}

fn session_gone() -> AppError {
    AppError::new(ErrorKind::Unauthorized, "session_expired", "Your Bitrix24 session has expired; reopen the tab from the CRM card.")
}

/// Maps what the portal answered to what the user is told (`_includes/system-errors.md`).
pub fn portal_error(e: BitrixError) -> AppError {
    let description = match &e {
        BitrixError::Api { description, .. } => description.as_str(),
        _ => "",
    };
    match e.code() {
        Some("NOT_FOUND") => AppError::new(ErrorKind::NotFound, "not_found", "This CRM record does not exist on this portal."),
        // `crm.*.get` answer a missing or hidden record with an empty code and these words.
        Some("") if description == "Not found" => AppError::new(ErrorKind::NotFound, "not_found", "This CRM record does not exist on this portal."),
        Some("") if description == "Access denied" => record_denied(),
        Some("ACCESS_DENIED" | "insufficient_scope" | "INVALID_CREDENTIALS") => record_denied(),
        Some("user_access_error") => AppError::new(
            ErrorKind::Forbidden,
            "no_app_access",
            "The portal's administrator has not given you access to this app; ask them to add you in the app's settings.",
        ),
        // `messageservice-message-status-update.md`, `bizproc-robot-delete.md`: what automation
        // reports to is gone; trying again finds it no more.
        Some("ERROR_MESSAGE_NOT_FOUND" | "ERROR_ACTIVITY_NOT_FOUND") => AppError::new(ErrorKind::NotFound, "automation_gone", description.to_owned()),
        Some("PORTAL_DELETED") => AppError::new(ErrorKind::Forbidden, "portal_deleted", "This Bitrix24 portal was deleted or closed."),
        // A method that takes only an app's token was called with another: never fixed by retrying.
        Some("WRONG_AUTH_TYPE") => AppError::new(ErrorKind::Invalid, "wrong_auth_type", format!("Bitrix24 refused the kind of authorization: {description}")),
        Some("expired_token" | "invalid_token" | "NO_AUTH_FOUND") => session_gone(),
        // `imopenlines-crm-chat-user-add.md`: the user is in the chat already, or may not join.
        Some("WRONG_REQUEST") => AppError::new(ErrorKind::Invalid, "wrong_request", description.to_owned()),
        _ if e.is_rate_limit() => AppError {
            retry_after: e.retry_after(),
            ..AppError::new(ErrorKind::Busy, "portal_busy", "Bitrix24 asks to slow down; try again in a few seconds.")
        },
        _ => {
            tracing::warn!("portal call failed: {e}");
            AppError::new(ErrorKind::Upstream, "portal_error", format!("Bitrix24 did not answer as expected: {e}"))
        }
    }
}

fn record_denied() -> AppError {
    AppError::new(ErrorKind::Forbidden, "access_denied", "Bitrix24 denied access to this CRM record.")
}

/// Confirms with the portal that `auth_id` is a token of our app (`app.info` names our code:
/// another app's token on the same portal answers too) held by someone who may manage it
/// (`user.admin`, `api-reference/common/users/user-admin.md`; `user.current` has no `ADMIN`).
/// The user's id.
pub async fn confirm_admin(svc: &Services, portal: &Portal, auth_id: &Secret, lang: Lang) -> Result<u64, AppError> {
    refuse_unlikely_token(auth_id)?;
    let commands = [("user", "user.current"), ("admin", "user.admin"), ("app", "app.info")].map(|(k, m)| (k.to_owned(), m.to_owned()));
    // The token came with a request nobody has authenticated yet: paced apart from real work.
    let batch = svc.bitrix.check_batch(&portal.client_endpoint, auth_id, &commands).await.map_err(portal_error)?;
    let app = batch_record(&batch, "app")?;
    if app.get("CODE").and_then(Value::as_str) != Some(svc.bitrix.app_code()) {
        tracing::warn!(member_id = %portal.member_id, "a token of another app was offered as ours");
        return Err(AppError::new(ErrorKind::Forbidden, "not_our_app", "This authorization is not for this app."));
    }
    if batch_record(&batch, "admin")? != Value::Bool(true) {
        return Err(AppError::new(ErrorKind::Forbidden, "not_admin", text(lang, "admins_only", &[])));
    }
    user_id(&batch_record(&batch, "user")?).ok_or_else(|| portal_error(BitrixError::Protocol("user.current gave no ID".into())))
}

/// Refuses, before any call, a token no portal issues: Bitrix24's access tokens are
/// letters and digits (32 in `settings/oauth/index.md`, 70 hex digits in
/// `settings/how-to-call-rest-api/authorization.md`); the docs give no format, so the bounds
/// are loose, only tight enough that garbage never costs the portal a request.
pub fn refuse_unlikely_token(token: &Secret) -> Result<(), AppError> {
    let token = token.expose();
    if (16..=256).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Ok(());
    }
    Err(AppError::new(ErrorKind::Unauthorized, "auth_not_confirmed", "This is not a Bitrix24 authorization."))
}

#[derive(Serialize)]
pub struct EmployeeView {
    pub id: u64,
    pub name: String,
}

/// The portal's active employees: every page of `user.get` (50 a page, `api-reference/user/user-get.md`).
pub async fn active_employees(portal: &mut PortalClient<'_>) -> Result<Vec<EmployeeView>, AppError> {
    let users = portal.call_all("user.get", &json!({ "FILTER": { "ACTIVE": true, "USER_TYPE": "employee" } })).await?;
    let field = |u: &Value, name: &str| u.get(name).and_then(Value::as_str).unwrap_or("").trim().to_owned();
    Ok(users
        .iter()
        .filter_map(|u| {
            let id = u.get("ID")?.as_str()?.parse().ok()?;
            Some(EmployeeView { id, name: format!("{} {}", field(u, "NAME"), field(u, "LAST_NAME")).trim().to_owned() })
        })
        .collect())
}

/// A user's id from a `user.current` answer.
pub fn user_id(user: &Value) -> Option<u64> {
    user.get("ID").and_then(|v| v.as_str()?.parse().ok().or_else(|| v.as_u64()))
}

/// A user's departments from a `user.current` answer (`UF_DEPARTMENT`, `api-reference/user/user-current.md`).
pub fn user_departments(user: &Value) -> Vec<u64> {
    let ids = user.get("UF_DEPARTMENT").and_then(Value::as_array).into_iter().flatten();
    ids.filter_map(|d| d.as_u64().or_else(|| d.as_str()?.parse().ok())).collect()
}

/// A user's time zone from a `user.current` answer (`TIME_ZONE`, empty when the user keeps
/// the portal's, `api-reference/user/user-current.md`).
pub fn user_time_zone(user: &Value) -> Option<String> {
    user.get("TIME_ZONE").and_then(Value::as_str).map(str::trim).filter(|z| !z.is_empty() && z.len() <= 64).map(str::to_owned)
}

/// The record a batch command read, or the error the portal gave for it.
pub fn batch_record(batch: &BatchResult, key: &str) -> Result<Value, AppError> {
    if let Some(err) = batch.errors.get(key) {
        return Err(portal_error(err.clone()));
    }
    batch.results.get(key).cloned().ok_or_else(|| portal_error(BitrixError::Protocol(format!("no result for {key}"))))
}
