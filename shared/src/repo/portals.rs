//! Installed portals and the OAuth tokens of their users, sealed at rest.

use serde::{Deserialize, Serialize};

use super::{Records, RepoError, portal_pk};
use crate::crypto::{Secret, Sealer};

/// A Bitrix24 portal that installed the app. Only these are ever called.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Portal {
    pub member_id: String,
    /// The host Bitrix24 names in `DOMAIN` (`example.bitrix24.com`).
    pub domain: String,
    /// Where its REST API answers (`https://example.bitrix24.com/rest/`).
    pub client_endpoint: String,
    /// Sealed `application_token`, which genuine events carry.
    pub application_token: Option<String>,
}

/// A user's OAuth tokens, as stored (sealed).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SealedAuth {
    access_token: String,
    refresh_token: Option<String>,
}

#[derive(Clone, Debug)]
pub struct UserAuth {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
}

const PORTAL_SK: &str = "portal";

fn auth_sk(user: u64) -> String {
    format!("auth#{user}")
}

#[derive(Clone)]
pub struct Portals {
    records: Records,
    sealer: Sealer,
}

impl Portals {
    pub fn new(records: Records, sealer: Sealer) -> Self {
        Self { records, sealer }
    }

    pub async fn get(&self, member_id: &str) -> Result<Option<Portal>, RepoError> {
        Ok(self.records.get(&portal_pk(member_id), PORTAL_SK).await?.map(|s| s.value))
    }

    pub async fn save(&self, portal: &Portal) -> Result<(), RepoError> {
        self.records.put(&portal_pk(&portal.member_id), PORTAL_SK, portal, None).await
    }

    pub async fn save_user_auth(&self, member_id: &str, user: u64, auth: &UserAuth) -> Result<(), RepoError> {
        let (pk, sk) = (portal_pk(member_id), auth_sk(user));
        let context = format!("{pk}/{sk}");
        let sealed = SealedAuth {
            access_token: self.sealer.seal_str(auth.access_token.expose(), &context),
            refresh_token: auth.refresh_token.as_ref().map(|t| self.sealer.seal_str(t.expose(), &context)),
        };
        self.records.put(&pk, &sk, &sealed, None).await
    }

    /// `None` when absent or when it no longer opens (key rotated): the user reopens the tab.
    pub async fn user_auth(&self, member_id: &str, user: u64) -> Result<Option<UserAuth>, RepoError> {
        let (pk, sk) = (portal_pk(member_id), auth_sk(user));
        let Some(stored) = self.records.get::<SealedAuth>(&pk, &sk).await? else { return Ok(None) };
        let context = format!("{pk}/{sk}");
        let access = self.sealer.open_secret(&stored.value.access_token, &context);
        let refresh = stored.value.refresh_token.map(|t| self.sealer.open_secret(&t, &context)).transpose();
        Ok(match (access, refresh) {
            (Ok(access_token), Ok(refresh_token)) => Some(UserAuth { access_token, refresh_token }),
            _ => None,
        })
    }
}
