//! Secrets at rest: AES-256-GCM with a random nonce, bound to where the value is stored.

use std::fmt;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
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

/// The application's master key: seals secrets and derives the other keys.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
    master: [u8; 32],
}

impl Sealer {
    pub fn from_base64(key: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD.decode(key.trim()).map_err(|_| CryptoError::BadKey)?;
        let master: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(Self { cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(master)), master })
    }

    /// A fresh random key, base64-encoded.
    pub fn generate_key() -> String {
        STANDARD.encode(Key::<Aes256Gcm>::generate())
    }

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
        self.cipher
            .decrypt(&nonce, Payload { msg: body, aad: context.as_bytes() })
            .map_err(|_| CryptoError::Unsealable)
    }

    pub fn seal_str(&self, plain: &str, context: &str) -> String {
        self.seal(plain.as_bytes(), context)
    }

    pub fn open_secret(&self, sealed: &str, context: &str) -> Result<Secret, CryptoError> {
        let bytes = self.open(sealed, context)?;
        String::from_utf8(bytes).map(Secret).map_err(|_| CryptoError::Unsealable)
    }

    /// A key for another purpose (signing session tokens...), derived so that one
    /// configured secret serves all.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.master).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_in_context_only() {
        let sealer = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        let sealed = sealer.seal_str("refresh-token", "portal#a");
        assert!(!sealed.contains("refresh-token"));
        assert_eq!(sealer.open_secret(&sealed, "portal#a").unwrap().expose(), "refresh-token");
        assert!(sealer.open(&sealed, "portal#b").is_err());
        assert_ne!(sealed, sealer.seal_str("refresh-token", "portal#a"), "nonces are random");
        let other = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        assert!(other.open(&sealed, "portal#a").is_err());
        assert!(sealer.open("garbage", "portal#a").is_err());
    }

    #[test]
    fn rejects_short_keys_and_hides_secrets_from_debug() {
        assert!(Sealer::from_base64("c2hvcnQ=").is_err());
        assert_eq!(format!("{:?}", Secret::new("x")), "Secret(***)");
    }
}
