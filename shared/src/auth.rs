//! The tab's session token: issued once the placement is verified with the portal,
//! carried by every `/api/*` call. HMAC-SHA256 over JSON claims, with an expiry.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::clock::now_secs;
use crate::domain::EntityRef;
use crate::i18n::Lang;

/// Who may do what through the tab: one user of one portal, on one CRM record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The portal's `member_id`.
    pub portal: String,
    /// The installation it was issued under ([`crate::repo::portals::Portal::install_id`]):
    /// once the portal uninstalls, its tokens stop working, even after a reinstall.
    #[serde(default)]
    pub install: String,
    pub user: u64,
    pub entity: EntityRef,
    pub lang: Lang,
    /// The user's departments (`UF_DEPARTMENT` of `user.current`), read when the tab opened:
    /// which connectors they may use depends on them.
    #[serde(default)]
    pub departments: Vec<u64>,
    /// The user's IANA time zone (`TIME_ZONE` of `user.current`), for picking a time to send
    /// later; `None` when the user keeps the portal's.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Unix seconds.
    pub exp: i64,
}

/// Who may manage the portal's connectors: an administrator, on the app's own page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminClaims {
    pub portal: String,
    #[serde(default)]
    pub install: String,
    pub user: u64,
    pub lang: Lang,
    pub exp: i64,
    /// Always `true`: a tab's token has no such field, so it never passes as this one.
    pub admin: bool,
}

/// The installation a token is issued under: a portal and the id of its current install.
pub struct Installed<'a> {
    pub member_id: &'a str,
    pub install_id: &'a str,
}

/// Signed claims that expire.
pub trait Expiring: Serialize + serde::de::DeserializeOwned {
    fn exp(&self) -> i64;
    /// The portal's `member_id` and the install the claims were issued under.
    fn installation(&self) -> (&str, &str);
}

impl Expiring for Claims {
    fn exp(&self) -> i64 {
        self.exp
    }

    fn installation(&self) -> (&str, &str) {
        (&self.portal, &self.install)
    }
}

impl Expiring for AdminClaims {
    fn exp(&self) -> i64 {
        if self.admin { self.exp } else { 0 }
    }

    fn installation(&self) -> (&str, &str) {
        (&self.portal, &self.install)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the session token is missing; open the tab from the CRM card again")]
    Missing,
    #[error("the session token is malformed")]
    Malformed,
    #[error("the session token's signature is invalid")]
    BadSignature,
    #[error("the session has expired; reopen the tab from the CRM card")]
    Expired,
}

#[derive(Clone)]
pub struct SessionSigner {
    key: [u8; 32],
    pub lifetime_secs: i64,
}

impl SessionSigner {
    pub fn new(key: [u8; 32], lifetime_secs: i64) -> Self {
        Self { key, lifetime_secs }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac
    }

    pub fn issue(&self, portal: &Installed, user: u64, departments: Vec<u64>, time_zone: Option<String>, entity: EntityRef, lang: Lang) -> String {
        let (portal, install) = (portal.member_id.to_owned(), portal.install_id.to_owned());
        let claims = Claims { portal, install, user, entity, lang, departments, time_zone, exp: now_secs() + self.lifetime_secs };
        self.sign(&claims)
    }

    pub fn issue_admin(&self, portal: &Installed, user: u64, lang: Lang) -> String {
        let (portal, install) = (portal.member_id.to_owned(), portal.install_id.to_owned());
        self.sign(&AdminClaims { portal, install, user, lang, exp: now_secs() + self.lifetime_secs, admin: true })
    }

    pub fn sign<C: Expiring>(&self, claims: &C) -> String {
        let payload = serde_json::to_vec(claims).expect("claims serialize");
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(tag))
    }

    pub fn verify<C: Expiring>(&self, token: &str) -> Result<C, TokenError> {
        let (payload, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?;
        self.mac(&payload).verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
        let claims: C = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.exp() <= now_secs() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EntityType;

    fn signer() -> SessionSigner {
        SessionSigner::new([7; 32], 60)
    }

    const M1: Installed<'static> = Installed { member_id: "m1", install_id: "i1" };

    fn entity() -> EntityRef {
        EntityRef { kind: EntityType::Lead, id: 1 }
    }

    #[test]
    fn round_trips() {
        let token = signer().issue(&M1, 5, vec![3], Some("Asia/Tokyo".into()), entity(), Lang::Ru);
        let claims: Claims = signer().verify(&token).unwrap();
        assert_eq!((claims.portal.as_str(), claims.user, claims.entity, claims.lang), ("m1", 5, entity(), Lang::Ru));
        assert_eq!((claims.departments, claims.time_zone.as_deref()), (vec![3], Some("Asia/Tokyo")));
    }

    #[test]
    fn refuses_forged_tampered_and_expired_tokens() {
        let token = signer().issue(&M1, 5, Vec::new(), None, entity(), Lang::En);
        assert_eq!(SessionSigner::new([8; 32], 60).verify::<Claims>(&token), Err(TokenError::BadSignature));
        let (_, tag) = token.split_once('.').unwrap();
        let forged = Claims { portal: "m2".into(), install: "i1".into(), user: 5, entity: entity(), lang: Lang::En, departments: Vec::new(), time_zone: None, exp: now_secs() + 60 };
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(signer().verify::<Claims>(&format!("{forged_payload}.{tag}")), Err(TokenError::BadSignature));
        let expired = Claims { exp: now_secs() - 1, ..forged };
        assert_eq!(signer().verify::<Claims>(&signer().sign(&expired)), Err(TokenError::Expired));
        for garbage in ["", "abc", "a.b", "..."] {
            assert!(signer().verify::<Claims>(garbage).is_err());
        }
    }

    #[test]
    fn tab_and_admin_tokens_do_not_stand_for_each_other() {
        let tab = signer().issue(&M1, 5, Vec::new(), None, entity(), Lang::En);
        assert_eq!(signer().verify::<AdminClaims>(&tab), Err(TokenError::Malformed));
        let admin = signer().issue_admin(&M1, 5, Lang::En);
        assert_eq!(signer().verify::<Claims>(&admin), Err(TokenError::Malformed));
        assert_eq!(signer().verify::<AdminClaims>(&admin).unwrap().user, 5);
    }
}
