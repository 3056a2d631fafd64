//! Secrets at rest: AES-256-GCM with a random nonce, bound to where the value is stored; and
//! the keys for each purpose, derived from the one configured master key with HKDF.

use std::fmt;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hkdf::Hkdf;
use sha2::Sha256;

const NONCE_LEN: usize = 12;

/// A string that must not be logged: `Debug` prints a placeholder.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the encryption key must be 32 bytes, base64-encoded")]
    BadKey,
    #[error("a sealed value could not be opened (wrong key, or the value was tampered with)")]
    Unsealable,
}

/// What a key derived from the master key is for. Each purpose has a key of its own, so a
/// value made for one purpose is worthless for another (a sealed session does not open as a
/// token, a blob URL's signature is no tab token's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPurpose {
    /// Sealing the portals' OAuth and application tokens.
    SealTokens,
    /// Sealing Telegram sessions and login state.
    SealSessions,
    /// Signing the tab's and the connectors page's session tokens.
    SignTabTokens,
    /// Signing the embedded blob store's upload and download URLs.
    SignBlobUrls,
}

impl KeyPurpose {
    /// HKDF's `info`: never change one, or what was sealed with its key no longer opens.
    fn info(self) -> &'static [u8] {
        match self {
            Self::SealTokens => b"olchat/v1/seal-tokens",
            Self::SealSessions => b"olchat/v1/seal-sessions",
            Self::SignTabTokens => b"olchat/v1/sign-tab-tokens",
            Self::SignBlobUrls => b"olchat/v1/sign-blob-urls",
        }
    }
}

/// The configured master key (`OLCHAT_ENCRYPTION_KEY`). Nothing is sealed or signed with it
/// itself: every purpose gets its own key, derived with HKDF-SHA256 (RFC 5869).
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn from_base64(key: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD.decode(key.trim()).map_err(|_| CryptoError::BadKey)?;
        bytes.try_into().map(Self).map_err(|_| CryptoError::BadKey)
    }

    /// A fresh random key, base64-encoded.
    pub fn generate_key() -> String {
        STANDARD.encode(Key::<Aes256Gcm>::generate())
    }

    /// The key for `purpose`. The master key is uniformly random, so HKDF needs no salt.
    pub fn derive_key(&self, purpose: KeyPurpose) -> [u8; 32] {
        let mut key = [0; 32];
        Hkdf::<Sha256>::new(None, &self.0).expand(purpose.info(), &mut key).expect("32 bytes is a valid HKDF-SHA256 length");
        key
    }

    /// Seals and opens with the key for `purpose` (one of the `Seal*`).
    pub fn sealer(&self, purpose: KeyPurpose) -> Sealer {
        let cipher = |key: [u8; 32]| Aes256Gcm::new(&Key::<Aes256Gcm>::from(key));
        Sealer { cipher: cipher(self.derive_key(purpose)), before_subkeys: cipher(self.0) }
    }
}

/// Seals secrets with one purpose's key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
    /// Values sealed before the per-purpose keys were sealed with the master key itself: they
    /// still open, so an upgrade logs no Telegram account out, and are sealed with the
    /// purpose's key when next written. Nothing is sealed with it any more.
    before_subkeys: Aes256Gcm,
}

impl Sealer {
    /// Encrypts `plain`; `context` (e.g. the record's key) must be given again to open it,
    /// so a sealed value copied to another record does not open.
    pub fn seal(&self, plain: &[u8], context: &str) -> String {
        let nonce = Nonce::generate();
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad: context.as_bytes() })
            .expect("AES-GCM encrypts any message of this size");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, CryptoError> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| CryptoError::Unsealable)?;
        if bytes.len() < NONCE_LEN {
            return Err(CryptoError::Unsealable);
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| CryptoError::Unsealable)?;
        let payload = || Payload { msg: body, aad: context.as_bytes() };
        self.cipher
            .decrypt(&nonce, payload())
            .or_else(|_| self.before_subkeys.decrypt(&nonce, payload()))
            .map_err(|_| CryptoError::Unsealable)
    }

    pub fn seal_str(&self, plain: &str, context: &str) -> String {
        self.seal(plain.as_bytes(), context)
    }

    pub fn open_secret(&self, sealed: &str, context: &str) -> Result<Secret, CryptoError> {
        let bytes = self.open(sealed, context)?;
        String::from_utf8(bytes).map(Secret).map_err(|_| CryptoError::Unsealable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_base64(&MasterKey::generate_key()).unwrap()
    }

    #[test]
    fn seals_and_opens_in_context_only() {
        let sealer = master().sealer(KeyPurpose::SealTokens);
        let sealed = sealer.seal_str("refresh-token", "portal#a");
        assert!(!sealed.contains("refresh-token"));
        assert_eq!(sealer.open_secret(&sealed, "portal#a").unwrap().expose(), "refresh-token");
        assert!(sealer.open(&sealed, "portal#b").is_err());
        assert_ne!(sealed, sealer.seal_str("refresh-token", "portal#a"), "nonces are random");
        let other = master().sealer(KeyPurpose::SealTokens);
        assert!(other.open(&sealed, "portal#a").is_err());
        assert!(sealer.open("garbage", "portal#a").is_err());
    }

    #[test]
    fn every_purpose_has_its_own_key() {
        let master = master();
        let purposes = [KeyPurpose::SealTokens, KeyPurpose::SealSessions, KeyPurpose::SignTabTokens, KeyPurpose::SignBlobUrls];
        let keys: Vec<[u8; 32]> = purposes.iter().map(|&p| master.derive_key(p)).collect();
        for (i, key) in keys.iter().enumerate() {
            assert_ne!(key, &master.0, "{:?} is not the master key itself", purposes[i]);
            for other in &keys[i + 1..] {
                assert_ne!(key, other);
            }
        }
        // A value sealed for one purpose does not open with another's key, even in the same context.
        let sealed = master.sealer(KeyPurpose::SealTokens).seal_str("secret", "ctx");
        assert!(master.sealer(KeyPurpose::SealSessions).open(&sealed, "ctx").is_err());
        assert!(master.sealer(KeyPurpose::SealTokens).open(&sealed, "ctx").is_ok());
    }

    #[test]
    fn values_sealed_with_the_master_key_itself_still_open_and_new_ones_are_not() {
        let master = master();
        let earlier = || Aes256Gcm::new(&Key::<Aes256Gcm>::from(master.0));
        let as_before = Sealer { cipher: earlier(), before_subkeys: earlier() };
        let old = as_before.seal_str("telegram-session", "session#1");
        let sealer = master.sealer(KeyPurpose::SealSessions);
        assert_eq!(sealer.open_secret(&old, "session#1").unwrap().expose(), "telegram-session");
        assert!(sealer.open(&old, "session#2").is_err(), "in its own context only");
        let new = sealer.seal_str("telegram-session", "session#1");
        let master_only = Sealer { cipher: earlier(), before_subkeys: earlier() };
        assert!(master_only.open(&new, "session#1").is_err(), "sealed with the purpose's key, not the master key");
    }

    #[test]
    fn derived_keys_are_stable() {
        // HKDF-SHA256 (RFC 5869, no salt) of the bytes 0..32 with the tab tokens' info, computed
        // independently (Python's hmac): a change of derivation would break every stored value.
        let master = MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let hex: String = master.derive_key(KeyPurpose::SignTabTokens).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "b0e3d7ef7ad79835ed434771eedbedcb0f2529bb4f59bf04d1216523fd3aa791");
        assert_eq!(master.derive_key(KeyPurpose::SealTokens), master.clone().derive_key(KeyPurpose::SealTokens));
    }

    #[test]
    fn rejects_short_keys_and_hides_secrets_from_debug() {
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert_eq!(format!("{:?}", Secret::new("x")), "Secret(***)");
    }
}
