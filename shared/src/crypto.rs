//! Secrets at rest: AES-256-GCM with a random nonce, bound to where the value is stored; and
//! the keys for each purpose, derived from the configured master key with HKDF.
//!
//! Rotation: the configuration names the new master key first and the old ones after it
//! (`new,old`). Values are sealed with the new one, named by its key id (`<id>.<sealed>`);
//! the old ones still open what they sealed, which is sealed again with the new key when it
//! is read (sessions, tokens: `Sealer::is_current`), until nothing needs them.

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
    #[error("each encryption key must be 32 bytes, base64-encoded (the current one first, then any previous ones, comma-separated)")]
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

/// The configured master key (`OLCHAT_ENCRYPTION_KEY`), and the previous ones still accepted
/// for opening. Nothing is sealed or signed with it itself: every purpose gets its own key,
/// derived with HKDF-SHA256 (RFC 5869).
#[derive(Clone)]
pub struct MasterKey {
    current: [u8; 32],
    previous: Vec<[u8; 32]>,
}

/// HKDF's `info` for a key's id: names the key a value was sealed with, without revealing it.
const KEY_ID_INFO: &[u8] = b"olchat/v1/key-id";

impl MasterKey {
    /// `current[,previous…]`, each 32 bytes in base64.
    pub fn from_base64(keys: &str) -> Result<Self, CryptoError> {
        let decode = |key: &str| -> Result<[u8; 32], CryptoError> {
            let bytes = STANDARD.decode(key.trim()).map_err(|_| CryptoError::BadKey)?;
            bytes.try_into().map_err(|_| CryptoError::BadKey)
        };
        let mut all = keys.split(',').map(decode);
        let current = all.next().ok_or(CryptoError::BadKey)??;
        Ok(Self { current, previous: all.collect::<Result<_, _>>()? })
    }

    /// A fresh random key, base64-encoded.
    pub fn generate_key() -> String {
        STANDARD.encode(Key::<Aes256Gcm>::generate())
    }

    /// The current key for `purpose`. The master key is uniformly random, so HKDF needs no salt.
    pub fn derive_key(&self, purpose: KeyPurpose) -> [u8; 32] {
        derive(&self.current, purpose.info())
    }

    /// Seals with the current key for `purpose` (one of the `Seal*`); opens with it or a
    /// previous one.
    pub fn sealer(&self, purpose: KeyPurpose) -> Sealer {
        let keyed = |master: &[u8; 32]| Keyed { id: key_id(master), cipher: cipher(derive(master, purpose.info())) };
        Sealer {
            current: keyed(&self.current),
            previous: self.previous.iter().map(keyed).collect(),
            before_subkeys: std::iter::once(&self.current).chain(&self.previous).map(|m| cipher(*m)).collect(),
        }
    }
}

fn derive(master: &[u8; 32], info: &[u8]) -> [u8; 32] {
    let mut key = [0; 32];
    Hkdf::<Sha256>::new(None, master).expand(info, &mut key).expect("32 bytes is a valid HKDF-SHA256 length");
    key
}

fn cipher(key: [u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(key))
}

/// 8 hex digits naming a master key.
fn key_id(master: &[u8; 32]) -> String {
    derive(master, KEY_ID_INFO)[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// One master key's cipher for a purpose, and its id.
#[derive(Clone)]
struct Keyed {
    id: String,
    cipher: Aes256Gcm,
}

/// Seals secrets with one purpose's key.
#[derive(Clone)]
pub struct Sealer {
    current: Keyed,
    previous: Vec<Keyed>,
    /// Values sealed before the per-purpose keys were sealed with the master key itself (and
    /// before key ids): they still open, so an upgrade logs no Telegram account out, and are
    /// sealed again when read. Nothing is sealed with these any more.
    before_subkeys: Vec<Aes256Gcm>,
}

impl Sealer {
    /// Encrypts `plain` as `<key id>.<nonce and ciphertext>`; `context` (e.g. the record's
    /// key) must be given again to open it, so a sealed value copied to another record does
    /// not open.
    pub fn seal(&self, plain: &[u8], context: &str) -> String {
        let nonce = Nonce::generate();
        let sealed = self
            .current
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad: context.as_bytes() })
            .expect("AES-GCM encrypts any message of this size");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{}.{}", self.current.id, URL_SAFE_NO_PAD.encode(out))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, CryptoError> {
        // Base64url has no '.': a value without one was sealed before key ids.
        let (ciphers, encoded): (Vec<&Aes256Gcm>, &str) = match sealed.split_once('.') {
            Some((id, encoded)) => {
                let keyed = std::iter::once(&self.current).chain(&self.previous).find(|k| k.id == id).ok_or(CryptoError::Unsealable)?;
                (vec![&keyed.cipher], encoded)
            }
            None => {
                let all = std::iter::once(&self.current).chain(&self.previous).map(|k| &k.cipher).chain(&self.before_subkeys);
                (all.collect(), sealed)
            }
        };
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| CryptoError::Unsealable)?;
        if bytes.len() < NONCE_LEN {
            return Err(CryptoError::Unsealable);
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| CryptoError::Unsealable)?;
        ciphers.into_iter().find_map(|c| c.decrypt(&nonce, Payload { msg: body, aad: context.as_bytes() }).ok()).ok_or(CryptoError::Unsealable)
    }

    /// Whether `sealed` is sealed with the current key: if not, it is sealed again when read.
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed.split_once('.').is_some_and(|(id, _)| id == self.current.id)
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
            assert_ne!(key, &master.current, "{:?} is not the master key itself", purposes[i]);
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
        // As values were sealed at first: the master key itself, no key id.
        let nonce = Nonce::generate();
        let body = cipher(master.current).encrypt(&nonce, Payload { msg: b"telegram-session", aad: b"session#1" }).unwrap();
        let old = URL_SAFE_NO_PAD.encode([nonce.to_vec(), body].concat());
        let sealer = master.sealer(KeyPurpose::SealSessions);
        assert_eq!(sealer.open_secret(&old, "session#1").unwrap().expose(), "telegram-session");
        assert!(!sealer.is_current(&old), "sealed again when read");
        assert!(sealer.open(&old, "session#2").is_err(), "in its own context only");
        let new = sealer.seal_str("telegram-session", "session#1");
        assert!(sealer.is_current(&new));
        let (_, encoded) = new.split_once('.').unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(encoded).unwrap();
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let by_master = cipher(master.current).decrypt(&Nonce::try_from(nonce).unwrap(), Payload { msg: body, aad: b"session#1" });
        assert!(by_master.is_err(), "sealed with the purpose's key, not the master key");
    }

    #[test]
    fn a_rotated_key_still_opens_what_it_sealed_until_it_is_sealed_again() {
        let (old_key, new_key) = (MasterKey::generate_key(), MasterKey::generate_key());
        let before = MasterKey::from_base64(&old_key).unwrap().sealer(KeyPurpose::SealTokens);
        let sealed = before.seal_str("refresh-token", "portal#a");
        let rotated = MasterKey::from_base64(&format!("{new_key}, {old_key}")).unwrap().sealer(KeyPurpose::SealTokens);
        assert_eq!(rotated.open_secret(&sealed, "portal#a").unwrap().expose(), "refresh-token", "the previous key still opens");
        assert!(!rotated.is_current(&sealed));
        let resealed = rotated.seal_str("refresh-token", "portal#a");
        assert!(rotated.is_current(&resealed));
        assert!(before.open(&resealed, "portal#a").is_err(), "sealed with the new key");
        let only_new = MasterKey::from_base64(&new_key).unwrap().sealer(KeyPurpose::SealTokens);
        assert_eq!(only_new.open_secret(&resealed, "portal#a").unwrap().expose(), "refresh-token", "the old key can go");
        assert!(only_new.open(&sealed, "portal#a").is_err(), "what was not sealed again needs the old key");
        assert!(MasterKey::from_base64(&format!("{new_key},short")).is_err());
        assert!(MasterKey::from_base64("").is_err());
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
