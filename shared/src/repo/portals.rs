//! Installed portals and their OAuth tokens (the portal's own, from install, and each
//! user's, from the placement), sealed at rest.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Records, RepoError, portal_pk};
use crate::auth::Installed;
use crate::crypto::{KeyPurpose, MasterKey, Secret, Sealer};
use crate::i18n::Lang;

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
    /// The Open Line our connector is active on.
    #[serde(default)]
    pub line: Option<String>,
    /// Keep the operator's name Bitrix24 puts before a reply, or strip it, when it goes to Telegram.
    #[serde(default = "keep")]
    pub keep_operator_signature: bool,
    /// The portal's language at install, for what operators see from the app.
    #[serde(default = "english")]
    pub lang: Lang,
    /// Whether Open Lines' own messages (greetings, ratings, system notes) may reach clients
    /// through the connector (`NEED_SYSTEM_MESSAGES`): an administrator's choice, off unless set.
    #[serde(default)]
    pub system_messages: bool,
    /// The timeline icon and logo our activities show, chosen from the portal's own lists.
    #[serde(default)]
    pub timeline: Option<TimelineLook>,
    /// The portal's own country (ISO 3166 code, from its `LICENSE`), for phone numbers written
    /// without a country code; `None`: the deployment's.
    #[serde(default)]
    pub region: Option<String>,
    /// Made at each fresh install: tokens issued under another (before an uninstall) are refused.
    #[serde(default)]
    pub install_id: String,
    /// The connector our message provider sends through (the card's SMS form, campaigns);
    /// `None`: the portal's only connector, if it has one.
    #[serde(default)]
    pub provider_connector: Option<String>,
}

impl Portal {
    pub fn installed(&self) -> Installed<'_> {
        Installed { member_id: &self.member_id, install_id: &self.install_id }
    }
}

/// Codes from `crm.timeline.icon.list` and `crm.timeline.logo.list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineLook {
    pub icon: String,
    pub logo: String,
}

fn english() -> Lang {
    Lang::En
}

fn keep() -> bool {
    true
}

/// Whose OAuth tokens a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenOwner {
    /// A user's, from the placement they opened.
    User(u64),
    /// The portal's own, from the install (an administrator's, refreshed as the app's).
    App,
}

/// OAuth tokens, as stored (sealed).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SealedAuth {
    access_token: String,
    refresh_token: Option<String>,
    /// When the pair was obtained (unix seconds): a refresh token unused for 180 days dies.
    #[serde(default)]
    obtained_at: i64,
}

#[derive(Clone, Debug)]
pub struct UserAuth {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
}

const PORTAL_SK: &str = "portal";
/// Every installed portal, listed for the daily keep-alive of quiet portals' tokens.
const ALL_PK: &str = "portals";
const AUTH_PREFIX: &str = "auth#";
const APPLICATION_TOKEN_CONTEXT: &str = "application_token";

fn auth_sk(owner: TokenOwner) -> String {
    match owner {
        TokenOwner::User(user) => format!("{AUTH_PREFIX}{user}"),
        TokenOwner::App => format!("{AUTH_PREFIX}app"),
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

#[derive(Clone)]
pub struct Portals {
    records: Records,
    sealer: Sealer,
}

impl Portals {
    pub fn new(records: Records, master: &MasterKey) -> Self {
        Self { records, sealer: master.sealer(KeyPurpose::SealTokens) }
    }

    pub async fn get(&self, member_id: &str) -> Result<Option<Portal>, RepoError> {
        Ok(self.records.get(&portal_pk(member_id), PORTAL_SK).await?.map(|s| s.value))
    }

    pub async fn save(&self, portal: &Portal) -> Result<(), RepoError> {
        self.records.put(ALL_PK, &portal.member_id, &portal.member_id, None).await?;
        self.records.put(&portal_pk(&portal.member_id), PORTAL_SK, portal, None).await
    }

    /// `true` for the first caller of the day (UTC): the daily keep-alive is this one's to queue.
    pub async fn claim_daily_keep_alive(&self) -> Result<bool, RepoError> {
        let day = crate::clock::now_secs() / 86_400;
        let two_days = std::time::Duration::from_secs(2 * 86_400);
        self.records.create("schedule", &format!("keepalive#{day}"), &true, Some(two_days)).await
    }

    /// The `member_id` of every installed portal.
    pub async fn all(&self) -> Result<Vec<String>, RepoError> {
        self.records.query(ALL_PK, "", usize::MAX >> 1, false).await
    }

    /// Applies `change` to the stored portal; the portal as stored after.
    pub async fn update(&self, member_id: &str, change: impl FnMut(&mut Portal) -> bool) -> Result<Option<Portal>, RepoError> {
        self.records.update(&portal_pk(member_id), PORTAL_SK, change).await
    }

    /// Seals `token` into `portal`, bound to that portal.
    pub fn set_application_token(&self, portal: &mut Portal, token: &Secret) {
        let context = format!("{}/{APPLICATION_TOKEN_CONTEXT}", portal_pk(&portal.member_id));
        portal.application_token = Some(self.sealer.seal_str(token.expose(), &context));
    }

    /// Whether `candidate` is the portal's stored `application_token` (compared as digests,
    /// so the time taken says nothing about the token).
    pub fn application_token_matches(&self, portal: &Portal, candidate: &str) -> bool {
        let context = format!("{}/{APPLICATION_TOKEN_CONTEXT}", portal_pk(&portal.member_id));
        let stored = portal.application_token.as_ref().and_then(|t| self.sealer.open_secret(t, &context).ok());
        stored.is_some_and(|s| digest(s.expose()) == digest(candidate))
    }

    pub async fn save_auth(&self, member_id: &str, owner: TokenOwner, auth: &UserAuth) -> Result<(), RepoError> {
        let (pk, sk) = (portal_pk(member_id), auth_sk(owner));
        let context = format!("{pk}/{sk}");
        let sealed = SealedAuth {
            access_token: self.sealer.seal_str(auth.access_token.expose(), &context),
            refresh_token: auth.refresh_token.as_ref().map(|t| self.sealer.seal_str(t.expose(), &context)),
            obtained_at: crate::clock::now_secs(),
        };
        self.records.put(&pk, &sk, &sealed, None).await
    }

    /// When the stored pair was obtained (unix seconds; 0 for pairs stored before this was kept).
    pub async fn auth_obtained_at(&self, member_id: &str, owner: TokenOwner) -> Result<Option<i64>, RepoError> {
        let stored = self.records.get::<SealedAuth>(&portal_pk(member_id), &auth_sk(owner)).await?;
        Ok(stored.map(|s| s.value.obtained_at))
    }

    /// `None` when absent or when it no longer opens (key rotated): the user reopens the tab.
    pub async fn auth(&self, member_id: &str, owner: TokenOwner) -> Result<Option<UserAuth>, RepoError> {
        let (pk, sk) = (portal_pk(member_id), auth_sk(owner));
        let Some(stored) = self.records.get::<SealedAuth>(&pk, &sk).await? else { return Ok(None) };
        let context = format!("{pk}/{sk}");
        let access = self.sealer.open_secret(&stored.value.access_token, &context);
        let refresh = stored.value.refresh_token.map(|t| self.sealer.open_secret(&t, &context)).transpose();
        Ok(match (access, refresh) {
            (Ok(access_token), Ok(refresh_token)) => Some(UserAuth { access_token, refresh_token }),
            _ => None,
        })
    }

    /// Seals the portal's tokens again with the current key where a previous one sealed them
    /// (key rotation); what changed meanwhile (a refresh) is left as it is. How many were.
    pub async fn reseal(&self, member_id: &str) -> Result<usize, RepoError> {
        let pk = portal_pk(member_id);
        let mut resealed = 0;
        let context = format!("{pk}/{APPLICATION_TOKEN_CONTEXT}");
        let mut changed = false;
        self.update(member_id, |p| {
            let stale = p.application_token.as_ref().filter(|t| !self.sealer.is_current(t));
            let resealed = stale.and_then(|sealed| self.sealer.open(sealed, &context).ok()).map(|token| self.sealer.seal(&token, &context));
            changed = resealed.is_some();
            if resealed.is_some() {
                p.application_token = resealed;
            }
            changed
        })
        .await?;
        resealed += usize::from(changed);
        for (sk, _) in self.records.entries::<SealedAuth>(&pk, AUTH_PREFIX, usize::MAX >> 1).await? {
            let context = format!("{pk}/{sk}");
            let mut changed = false;
            self.records
                .update::<SealedAuth, _>(&pk, &sk, |s| {
                    let stale = !self.sealer.is_current(&s.access_token) || s.refresh_token.as_ref().is_some_and(|t| !self.sealer.is_current(t));
                    let reseal = |t: &str| self.sealer.open(t, &context).map(|plain| self.sealer.seal(&plain, &context));
                    changed = match (stale, reseal(&s.access_token), s.refresh_token.as_deref().map(reseal).transpose()) {
                        (true, Ok(access), Ok(refresh)) => {
                            s.access_token = access;
                            s.refresh_token = refresh;
                            true
                        }
                        _ => false,
                    };
                    changed
                })
                .await?;
            resealed += usize::from(changed);
        }
        Ok(resealed)
    }

    /// Deletes everything kept under the portal: its chats' links, operator replies,
    /// idempotency keys, pending logins, connector records (uninstall, once signed out).
    pub async fn delete_everything(&self, member_id: &str) -> Result<(), RepoError> {
        // An install made meanwhile (its record, its tokens) is not the uninstalled one's to
        // delete: a reinstall racing this keeps working.
        let pk = portal_pk(member_id);
        let of_an_install = |sk: &str| sk == PORTAL_SK || sk.starts_with(AUTH_PREFIX);
        loop {
            let listed = self.records.entries::<serde_json::Value>(&pk, "", 1000).await?;
            let left: Vec<String> = listed.into_iter().map(|(sk, _)| sk).filter(|sk| !of_an_install(sk)).collect();
            if left.is_empty() {
                return Ok(());
            }
            for sk in left {
                self.records.delete(&pk, &sk).await?;
            }
        }
    }

    /// Forgets the portal and every token of it (uninstall).
    pub async fn delete(&self, member_id: &str) -> Result<(), RepoError> {
        let pk = portal_pk(member_id);
        self.records.delete_prefix(&pk, AUTH_PREFIX).await?;
        self.records.delete(&pk, PORTAL_SK).await?;
        self.records.delete(ALL_PK, member_id).await
    }
}
