//! Calls to a portal on behalf of one of its users, refreshing the token once when
//! Bitrix24 says it expired.

use serde_json::Value;

use super::{AppError, ErrorKind, Services};
use crate::bitrix::{BatchResult, BitrixError};
use crate::repo::portals::{Portal, UserAuth};

pub struct UserPortal<'a> {
    svc: &'a Services,
    portal: Portal,
    user: u64,
    auth: UserAuth,
}

impl<'a> UserPortal<'a> {
    pub async fn open(svc: &'a Services, member_id: &str, user: u64) -> Result<Self, AppError> {
        let portal = svc.portals.get(member_id).await?.ok_or_else(unknown_portal)?;
        let auth = svc.portals.user_auth(member_id, user).await?.ok_or_else(session_gone)?;
        Ok(Self { svc, portal, user, auth })
    }

    pub async fn batch(&mut self, commands: &[(String, String)]) -> Result<BatchResult, AppError> {
        let endpoint = self.portal.client_endpoint.clone();
        match self.svc.bitrix.batch(&endpoint, &self.auth.access_token, commands).await {
            Err(e) if e.is_expired_token() => {
                self.refresh().await?;
                self.svc.bitrix.batch(&endpoint, &self.auth.access_token, commands).await.map_err(portal_error)
            }
            other => other.map_err(portal_error),
        }
    }

    async fn refresh(&mut self) -> Result<(), AppError> {
        let refresh_token = self.auth.refresh_token.as_ref().ok_or_else(session_gone)?;
        let grant = self.svc.bitrix.refresh(refresh_token).await.map_err(|e| {
            tracing::warn!("token refresh refused: {e}");
            session_gone()
        })?;
        self.auth = UserAuth { access_token: grant.access_token, refresh_token: Some(grant.refresh_token) };
        self.svc.portals.save_user_auth(&self.portal.member_id, self.user, &self.auth).await?;
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
        Some("QUERY_LIMIT_EXCEEDED" | "OPERATION_TIME_LIMIT" | "OVERLOAD_LIMIT") => {
            AppError::new(ErrorKind::Busy, "portal_busy", "Bitrix24 asks to slow down; try again in a few seconds.")
        }
        _ => {
            tracing::warn!("portal call failed: {e}");
            AppError::new(ErrorKind::Upstream, "portal_error", "Bitrix24 did not answer as expected; try again.")
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
