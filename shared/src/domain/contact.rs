//! Where recipients come from: the PHONE, IM and WEB multi-fields of CRM records, and the
//! Open Line chats Bitrix24's CRM tracker records among them.

use std::fmt;
use std::str::FromStr;

use phonenumber::country;
use serde::{Deserialize, Serialize};

use super::entity::EntityType;
use super::phone::PhoneE164;
use super::username::{TelegramRef, TelegramUsername, parse_im_value, parse_link};

/// How we address a Telegram account before it is resolved: stable, used as an id by the tab.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecipientKey {
    Phone(PhoneE164),
    Username(TelegramUsername),
    /// The client of one of our connector's Open Line chats: known without a look-up.
    OpenLine(OpenLineChat),
}

/// A chat of an Open Line connector, as Bitrix24's CRM tracker records it in the Messenger
/// field of the lead or contact it creates or links when a client writes first:
/// `imol|<connector>|<line>|<external chat id>|<external user id>` (b24restdocs:
/// tutorials/openlines/find-crm-object-by-dialog.md; api-reference/crm/leads/crm-lead-get.md
/// shows it as an `IM` entry of `VALUE_TYPE` `OPENLINE`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpenLineChat {
    pub line: String,
    /// The chat id the connector gave Bitrix24.
    pub external_chat_id: String,
    /// The client, as our connector names them to Bitrix24 (`tg<user id>`).
    pub telegram_user_id: i64,
}

impl OpenLineChat {
    /// The chat of a Messenger value, if it is an entry of the connector `ours`; other
    /// connectors' chats (live chat, other messengers) and malformed entries are `None`.
    pub fn from_imol(value: &str, ours: &str) -> Option<Self> {
        let (connector, rest) = value.trim().strip_prefix("imol|")?.split_once('|')?;
        if connector != ours {
            return None;
        }
        Self::parse_rest(rest)
    }

    /// `<line>|<external chat id>|tg<user id>`.
    fn parse_rest(rest: &str) -> Option<Self> {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let mut parts = rest.split('|');
        let (line, chat, user) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !digits(line) || chat.trim().is_empty() {
            return None;
        }
        let user = user.strip_prefix("tg").filter(|id| digits(id))?;
        let telegram_user_id = user.parse().ok().filter(|&id: &i64| id > 0)?;
        Some(Self { line: line.to_owned(), external_chat_id: chat.to_owned(), telegram_user_id })
    }
}

impl From<TelegramRef> for RecipientKey {
    fn from(value: TelegramRef) -> Self {
        match value {
            TelegramRef::Phone(p) => Self::Phone(p),
            TelegramRef::Username(u) => Self::Username(u),
        }
    }
}

impl fmt::Display for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Phone(p) => write!(f, "phone:{p}"),
            Self::Username(u) => write!(f, "username:{}", u.as_str()),
            Self::OpenLine(c) => write!(f, "openline:{}|{}|tg{}", c.line, c.external_chat_id, c.telegram_user_id),
        }
    }
}

impl FromStr for RecipientKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("not a recipient: {s:?}");
        match s.split_once(':').ok_or_else(bad)? {
            ("phone", p) => PhoneE164::parse(p, None).map(Self::Phone).map_err(|_| bad()),
            ("username", u) => TelegramUsername::parse(u).map(Self::Username).map_err(|_| bad()),
            ("openline", chat) => OpenLineChat::parse_rest(chat).map(Self::OpenLine).ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

impl Serialize for RecipientKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RecipientKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The CRM field a recipient was found in, shown next to it in the tab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSource {
    pub entity_type: EntityType,
    pub entity_id: u64,
    pub entity_title: String,
    /// `PHONE`, `IM` or `WEB`.
    pub field: String,
    /// Bitrix24's `VALUE_TYPE`: `MOBILE`, `TELEGRAM`, `OTHER`...
    pub value_type: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactPoint {
    pub key: RecipientKey,
    pub source: FieldSource,
}

/// One multi-field entry as Bitrix24 returns it: `{"TYPE_ID":"PHONE","VALUE_TYPE":"MOBILE","VALUE":"..."}`.
#[derive(Clone, Debug, Deserialize)]
pub struct MultiField {
    #[serde(rename = "VALUE", default)]
    pub value: String,
    #[serde(rename = "VALUE_TYPE", default)]
    pub value_type: String,
}

/// The Telegram account a multi-field entry points at, if any. IM entries other than
/// TELEGRAM count only when they hold an unmistakable Telegram link; WEB entries likewise.
/// An Open Line chat counts only when it is of `our_connector`, whatever its `VALUE_TYPE`
/// (the docs list both `OPENLINE` and `IMOL`).
pub fn contact_key(field: &str, entry: &MultiField, region: Option<country::Id>, our_connector: &str) -> Option<RecipientKey> {
    match field {
        "PHONE" => PhoneE164::parse(&entry.value, region).ok().map(RecipientKey::Phone),
        "IM" if entry.value.trim_start().starts_with("imol|") => OpenLineChat::from_imol(&entry.value, our_connector).map(RecipientKey::OpenLine),
        "IM" if entry.value_type.eq_ignore_ascii_case("TELEGRAM") => parse_im_value(&entry.value, region).map(Into::into),
        "IM" | "WEB" => parse_link(&entry.value).map(Into::into),
        _ => None,
    }
}

/// The multi-field names of a CRM record that can hold Telegram accounts.
pub const RECIPIENT_FIELDS: [&str; 3] = ["PHONE", "IM", "WEB"];

/// All Telegram contact points of one CRM record, first occurrence of each key kept.
pub fn contact_points(
    entity_type: EntityType,
    entity_id: u64,
    entity_title: &str,
    record: &serde_json::Value,
    region: Option<country::Id>,
    our_connector: &str,
    out: &mut Vec<ContactPoint>,
) {
    for field in RECIPIENT_FIELDS {
        let Some(entries) = record.get(field).and_then(|v| v.as_array()) else { continue };
        for entry in entries.iter().filter_map(|e| serde_json::from_value::<MultiField>(e.clone()).ok()) {
            let Some(key) = contact_key(field, &entry, region, our_connector) else { continue };
            if out.iter().any(|p| p.key == key) {
                continue;
            }
            let source = FieldSource {
                entity_type,
                entity_id,
                entity_title: entity_title.to_owned(),
                field: field.to_owned(),
                value_type: entry.value_type,
                value: entry.value,
            };
            out.push(ContactPoint { key, source });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_round_trip_as_strings() {
        for raw in ["phone:+79161234567", "username:ivan_petrov", "openline:1|sales-1008|tg1008"] {
            assert_eq!(raw.parse::<RecipientKey>().unwrap().to_string(), raw);
        }
        for raw in ["", "phone:", "phone:12", "email:a@b.c", "username:@", "openline:1|sales-1008", "openline:x|c|tg1"] {
            assert!(raw.parse::<RecipientKey>().is_err(), "{raw}");
        }
    }

    #[test]
    fn reads_phone_im_and_web_fields() {
        let record = json!({
            "PHONE": [{"VALUE": "8 (916) 123-45-67", "VALUE_TYPE": "MOBILE"}, {"VALUE": "+7 916 123 45 67", "VALUE_TYPE": "WORK"}],
            "IM": [{"VALUE": "@ivan_p", "VALUE_TYPE": "TELEGRAM"}, {"VALUE": "ivan.skype", "VALUE_TYPE": "SKYPE"}],
            "WEB": [{"VALUE": "https://example.com", "VALUE_TYPE": "WORK"}, {"VALUE": "https://t.me/acme_shop", "VALUE_TYPE": "OTHER"}],
            "EMAIL": [{"VALUE": "ivan@example.com", "VALUE_TYPE": "WORK"}]
        });
        let mut out = Vec::new();
        contact_points(EntityType::Lead, 7, "Lead", &record, crate::domain::phone::region_from_code("RU"), "olchat_telegram", &mut out);
        let keys: Vec<String> = out.iter().map(|p| p.key.to_string()).collect();
        assert_eq!(keys, ["phone:+79161234567", "username:ivan_p", "username:acme_shop"]);
        assert_eq!(out[0].source.value_type, "MOBILE");
        assert_eq!(out[2].source.field, "WEB");
    }

    #[test]
    fn reads_our_connectors_open_line_chats_and_ignores_other_connectors() {
        let record = json!({
            "IM": [
                {"VALUE": "imol|livechat|1|67|21", "VALUE_TYPE": "OPENLINE"},
                // Another connector whose ids look like ours is still not ours.
                {"VALUE": "imol|other_telegram|1|sales-1008|tg1008", "VALUE_TYPE": "OPENLINE"},
                {"VALUE": "imol|olchat_telegram|1|sales-1008|tg1008", "VALUE_TYPE": "OPENLINE"},
                {"VALUE": "imol|olchat_telegram|2|support-1009|tg1009", "VALUE_TYPE": "IMOL"}
            ]
        });
        let mut out = Vec::new();
        contact_points(EntityType::Lead, 2, "Lead", &record, None, "olchat_telegram", &mut out);
        let keys: Vec<String> = out.iter().map(|p| p.key.to_string()).collect();
        assert_eq!(keys, ["openline:1|sales-1008|tg1008", "openline:2|support-1009|tg1009"]);
        let chat = OpenLineChat { line: "1".into(), external_chat_id: "sales-1008".into(), telegram_user_id: 1008 };
        assert_eq!(out[0].key, RecipientKey::OpenLine(chat));
        assert_eq!((out[0].source.field.as_str(), out[0].source.value_type.as_str()), ("IM", "OPENLINE"));
    }

    #[test]
    fn malformed_open_line_entries_are_no_recipients() {
        for value in [
            "imol|olchat_telegram", "imol|olchat_telegram|1|sales-1008", "imol|olchat_telegram|1|sales-1008|tg1008|extra",
            "imol|olchat_telegram||sales-1008|tg1008", "imol|olchat_telegram|line|sales-1008|tg1008", "imol|olchat_telegram|1||tg1008",
            "imol|olchat_telegram|1|sales-1008|1008", "imol|olchat_telegram|1|sales-1008|tg", "imol|olchat_telegram|1|sales-1008|tg-5",
            "imol|olchat_telegram|1|sales-1008|tg+5", "imol|olchat_telegram|1|sales-0|tg0", "IMOL|olchat_telegram|1|sales-1008|tg1008",
            "olchat_telegram|1|sales-1008|tg1008",
        ] {
            assert_eq!(OpenLineChat::from_imol(value, "olchat_telegram"), None, "{value}");
            let entry = MultiField { value: value.into(), value_type: "OPENLINE".into() };
            assert_eq!(contact_key("IM", &entry, None, "olchat_telegram"), None, "{value}");
        }
    }
}
