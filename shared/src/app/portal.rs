//! Calls to a portal with a user's tokens or the portal's own, refreshing once when
//! Bitrix24 says the access token expired, and keeping the rotated refresh token.

use serde_json::Value;

use super::{AppError, ErrorKind, Services};
use crate::bitrix::{BatchResult, BitrixError, batch_params, parse_batch};
use crate::repo::portals::{Portal, TokenOwner, UserAuth};

pub struct PortalClient<'a> {
    svc: &'a Services,
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
        let endpoint = self.portal.client_endpoint.clone();
        match self.svc.bitrix.call(&endpoint, &self.auth.access_token, method, params).await {
            Err(e) if e.is_expired_token() => {
                self.refresh().await?;
                self.svc.bitrix.call(&endpoint, &self.auth.access_token, method, params).await.map_err(portal_error)
            }
            other => other.map_err(portal_error),
        }
    }

    pub async fn batch(&mut self, commands: &[(String, String)]) -> Result<BatchResult, AppError> {
        let answer = self.call("batch", &batch_params(commands)).await?;
        parse_batch(&answer).map_err(portal_error)
    }

    async fn refresh(&mut self) -> Result<(), AppError> {
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

pub fn unknown_portal() -> AppError {
    AppError::new(ErrorKind::Forbidden, "unknown_portal", "This Bitrix24 portal has not installed the app.")
}

fn session_gone() -> AppError {
    AppError::new(ErrorKind::Unauthorized, "session_expired", "Your Bitrix24 session has expired; reopen the tab from the CRM card.")
}

/// Maps what the portal answered to what the user is told.
pub fn portal_error(e: BitrixError) -> AppError {
    match e.code() {
        Some("NOT_FOUND") => AppError::new(ErrorKind::NotFound, "not_found", "This CRM record does not exist on this portal."),
        Some("ACCESS_DENIED" | "insufficient_scope") => {
            AppError::new(ErrorKind::Forbidden, "access_denied", "Bitrix24 denied access to this CRM record.")
        }
        Some("expired_token" | "invalid_token" | "NO_AUTH_FOUND") => session_gone(),
        _ if e.is_rate_limit() => AppError::new(ErrorKind::Busy, "portal_busy", "Bitrix24 asks to slow down; try again in a few seconds."),
        _ => {
            tracing::warn!("portal call failed: {e}");
            AppError::new(ErrorKind::Upstream, "portal_error", format!("Bitrix24 did not answer as expected: {e}"))
        }
    }
}

/// The record a batch command read, or the error the portal gave for it.
pub fn batch_record(batch: &BatchResult, key: &str) -> Result<Value, AppError> {
    if let Some(err) = batch.errors.get(key) {
        return Err(portal_error(err.clone()));
    }
    batch.results.get(key).cloned().ok_or_else(|| portal_error(BitrixError::Protocol(format!("no result for {key}"))))
}
