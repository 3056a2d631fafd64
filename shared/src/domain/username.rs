use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use super::phone::PhoneE164;

/// A public Telegram username, stored lowercase (Telegram matches them case-insensitively).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TelegramUsername(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a Telegram username: {0:?}")]
pub struct InvalidUsername(pub String);

impl TelegramUsername {
    /// Telegram's rules: 4–32 of `a-z 0-9 _` (4 only for auctioned names), starting with a
    /// letter, no trailing or doubled underscore.
    pub fn parse(raw: &str) -> Result<Self, InvalidUsername> {
        let name = raw.trim().trim_start_matches('@');
        let valid = (4..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.ends_with('_')
            && !name.contains("__");
        if valid { Ok(Self(name.to_ascii_lowercase())) } else { Err(InvalidUsername(raw.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TelegramUsername {
    type Error = InvalidUsername;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TelegramUsername> for String {
    fn from(value: TelegramUsername) -> Self {
        value.0
    }
}

impl fmt::Display for TelegramUsername {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

/// What a CRM field can point at on Telegram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TelegramRef {
    Username(TelegramUsername),
    Phone(PhoneE164),
}

const TELEGRAM_HOSTS: [&str; 3] = ["t.me", "telegram.me", "telegram.dog"];
/// First path segments of t.me links that are not usernames.
const SERVICE_PATHS: [&str; 8] = ["joinchat", "addstickers", "addemoji", "share", "proxy", "socks", "c", "iv"];

/// Parses a link to a Telegram user: `t.me/name`, `https://t.me/name`, `t.me/s/name`,
/// `t.me/+79161234567`, `tg://resolve?domain=name`, `tg://resolve?phone=79161234567`.
pub fn parse_link(raw: &str) -> Option<TelegramRef> {
    let raw = raw.trim();
    let lower = raw.to_ascii_lowercase();
    let with_scheme = if lower.starts_with("tg:") || lower.starts_with("http://") || lower.starts_with("https://") {
        raw.to_owned()
    } else {
        format!("https://{raw}")
    };
    let url = Url::parse(&with_scheme).ok()?;
    if url.scheme() == "tg" {
        if url.host_str() != Some("resolve") {
            return None;
        }
        let param = |key: &str| url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned());
        if let Some(domain) = param("domain") {
            return TelegramUsername::parse(&domain).ok().map(TelegramRef::Username);
        }
        return param("phone").and_then(|p| PhoneE164::parse(&format!("+{p}"), None).ok()).map(TelegramRef::Phone);
    }
    let host = url.host_str()?.trim_start_matches("www.");
    if !TELEGRAM_HOSTS.contains(&host) {
        return None;
    }
    let mut segments = url.path_segments()?.filter(|s| !s.is_empty());
    let first = match segments.next()? {
        "s" => segments.next()?,
        other => other,
    };
    if let Some(phone) = first.strip_prefix('+') {
        // `t.me/+<digits>` is a phone link; `t.me/+<hash>` an invite link.
        return PhoneE164::parse(&format!("+{phone}"), None).ok().map(TelegramRef::Phone);
    }
    if SERVICE_PATHS.contains(&first.to_ascii_lowercase().as_str()) {
        return None;
    }
    TelegramUsername::parse(first).ok().map(TelegramRef::Username)
}

/// Parses a Messenger (IM) field value: a link, `@name`, a bare username, or a phone number.
pub fn parse_im_value(raw: &str, region: Option<phonenumber::country::Id>) -> Option<TelegramRef> {
    let raw = raw.trim();
    if let Some(found) = parse_link(raw) {
        return Some(found);
    }
    if let Ok(name) = TelegramUsername::parse(raw) {
        return Some(TelegramRef::Username(name));
    }
    PhoneE164::parse(raw, region).ok().map(TelegramRef::Phone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(name: &str) -> Option<TelegramRef> {
        Some(TelegramRef::Username(TelegramUsername::parse(name).unwrap()))
    }

    #[test]
    fn usernames() {
        assert_eq!(TelegramUsername::parse("@Ivan_Petrov").unwrap().as_str(), "ivan_petrov");
        for bad in ["", "@", "ab", "1ivan", "ivan_", "iv__an", "ivan-petrov", "иван", &"a".repeat(33)] {
            assert!(TelegramUsername::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links() {
        for raw in [
            "t.me/ivan_petrov",
            "https://t.me/ivan_petrov",
            "http://www.t.me/Ivan_Petrov/",
            "https://telegram.me/ivan_petrov?start=1",
            "t.me/s/ivan_petrov",
            "tg://resolve?domain=ivan_petrov",
        ] {
            assert_eq!(parse_link(raw), user("ivan_petrov"), "{raw}");
        }
        let phone = Some(TelegramRef::Phone(PhoneE164::parse("+79161234567", None).unwrap()));
        assert_eq!(parse_link("https://t.me/+79161234567"), phone);
        assert_eq!(parse_link("tg://resolve?phone=79161234567"), phone);
        for raw in ["https://t.me/joinchat/AbCdEf", "t.me/+AbCdEfGh", "https://example.com/ivan_petrov", "tg://msg?to=1"] {
            assert_eq!(parse_link(raw), None, "{raw}");
        }
    }

    #[test]
    fn im_values() {
        assert_eq!(parse_im_value("@ivan_petrov", None), user("ivan_petrov"));
        assert_eq!(parse_im_value("ivan_petrov", None), user("ivan_petrov"));
        assert_eq!(
            parse_im_value("8 916 123 45 67", crate::domain::phone::region_from_code("RU")),
            Some(TelegramRef::Phone(PhoneE164::parse("+79161234567", None).unwrap()))
        );
        assert_eq!(parse_im_value("not a name!", None), None);
    }

    proptest! {
        #[test]
        fn every_spelling_of_a_valid_name_parses_to_it(name in "[a-z][a-z0-9]{3,30}", upper in any::<bool>()) {
            let shown = if upper { name.to_ascii_uppercase() } else { name.clone() };
            let expected = user(&name);
            for raw in [format!("@{shown}"), format!("t.me/{shown}"), format!("https://t.me/{shown}"),
                        format!("tg://resolve?domain={shown}"), shown.clone()] {
                prop_assert_eq!(parse_im_value(&raw, None), expected.clone(), "{}", raw);
            }
        }

        #[test]
        fn parsers_never_panic(raw in "\\PC{0,60}") {
            let _ = parse_link(&raw);
            let _ = parse_im_value(&raw, None);
        }
    }
}
