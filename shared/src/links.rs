//! Links to stored files, usable by whoever holds them until they expire: the app's own
//! HMAC-SHA256 over the method, the key, the expiry and, for an upload, the size and type
//! announced. Their lifetime is what they say: an S3 presigned URL dies with the credentials
//! that signed it, which on Lambda last hours, not the days Bitrix24 may take to fetch a file.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::clock::now_secs;
use crate::crypto::{KeyPurpose, MasterKey};

#[derive(Clone)]
pub struct SignedLinks {
    /// Where the app answers (`https://app.example.com`): links point at its `/blobs/` route.
    base_url: String,
    key: [u8; 32],
}

/// What one link allows: `method` on `key` until `expires`, and for a `PUT` only the body
/// announced (`size` bytes of `content_type`).
pub struct Grant<'a> {
    pub method: &'a str,
    pub key: &'a str,
    pub expires: i64,
    pub size: Option<u64>,
    pub content_type: &'a str,
}

impl SignedLinks {
    pub fn new(base_url: &str, key: [u8; 32]) -> Self {
        Self { base_url: base_url.trim_end_matches('/').to_owned(), key }
    }

    /// The deployment's links: at its public address, with its blob-URL subkey.
    pub fn of_site(master: &MasterKey, public_url: &str) -> Self {
        Self::new(public_url, master.derive_key(KeyPurpose::SignBlobUrls))
    }

    fn mac(&self, grant: &Grant) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        let size = grant.size.map(|s| s.to_string()).unwrap_or_default();
        mac.update(format!("{}\n{}\n{}\n{size}\n{}", grant.method, grant.key, grant.expires, grant.content_type).as_bytes());
        mac
    }

    fn url(&self, grant: &Grant) -> String {
        let signature = URL_SAFE_NO_PAD.encode(self.mac(grant).finalize().into_bytes());
        let size = grant.size.map(|s| format!("&size={s}")).unwrap_or_default();
        format!("{}/blobs/{}?expires={}{size}&signature={signature}", self.base_url, grant.key, grant.expires)
    }

    /// A URL anyone may GET `key` from for `valid_for`.
    pub fn download_url(&self, key: &str, valid_for: Duration) -> String {
        self.url(&Grant { method: "GET", key, expires: expiry(valid_for), size: None, content_type: "" })
    }

    /// A URL a browser PUTs exactly `size` bytes of `content_type` to, once, for `valid_for`.
    pub fn upload_url(&self, key: &str, size: u64, content_type: &str, valid_for: Duration) -> String {
        self.url(&Grant { method: "PUT", key, expires: expiry(valid_for), size: Some(size), content_type })
    }

    /// Whether `signature` grants this, unexpired.
    pub fn verify(&self, grant: &Grant, signature: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(signature) else { return false };
        grant.expires > now_secs() && self.mac(grant).verify_slice(&tag).is_ok()
    }
}

fn expiry(valid_for: Duration) -> i64 {
    now_secs() + valid_for.as_secs() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(url: &str, name: &str) -> String {
        url.split(['?', '&']).find_map(|p| p.strip_prefix(&format!("{name}="))).unwrap_or_default().to_owned()
    }

    #[test]
    fn a_link_grants_only_what_it_was_made_for() {
        let links = SignedLinks::new("http://app/", [3; 32]);
        let url = links.upload_url("uploads/p/a.bin", 10, "image/png", Duration::from_secs(60));
        assert!(url.starts_with("http://app/blobs/uploads/p/a.bin?"), "{url}");
        let (expires, signature) = (query(&url, "expires").parse().unwrap(), query(&url, "signature"));
        let grant = |key, size, content_type| Grant { method: "PUT", key, expires, size, content_type };
        assert!(links.verify(&grant("uploads/p/a.bin", Some(10), "image/png"), &signature));
        assert!(!links.verify(&grant("uploads/p/a.bin", Some(11), "image/png"), &signature), "another size");
        assert!(!links.verify(&grant("uploads/p/a.bin", Some(10), "text/html"), &signature), "another type");
        assert!(!links.verify(&grant("uploads/p/b.bin", Some(10), "image/png"), &signature), "another key");
        let get = Grant { method: "GET", key: "uploads/p/a.bin", expires, size: Some(10), content_type: "image/png" };
        assert!(!links.verify(&get, &signature), "another method");
        assert!(!SignedLinks::new("http://app", [4; 32]).verify(&grant("uploads/p/a.bin", Some(10), "image/png"), &signature));
        let expired = Grant { method: "GET", key: "k", expires: now_secs() - 1, size: None, content_type: "" };
        let signature = URL_SAFE_NO_PAD.encode(links.mac(&expired).finalize().into_bytes());
        assert!(!links.verify(&expired, &signature), "expired");
    }

    #[test]
    fn a_download_link_lives_as_long_as_it_says() {
        let links = SignedLinks::new("http://app", [3; 32]);
        let week = 7 * 24 * 3600;
        let url = links.download_url("k", Duration::from_secs(week));
        let expires: i64 = query(&url, "expires").parse().unwrap();
        assert!((expires - now_secs() - week as i64).abs() <= 1, "{url}");
    }
}
