//! What Telegram's answers mean for the app: one pure mapping, tested without a network.

use grammers_client::InvocationError;
use grammers_client::sender::RpcError;
use grammers_client::tl;

use crate::ports::{SentMessage, TelegramError};

/// An RPC error (`FLOOD_WAIT_31` arrives as code 420, name `FLOOD_WAIT`, value 31) as the port's error.
fn classify_rpc(code: i32, name: &str, value: Option<u32>) -> TelegramError {
    match (code, name, value) {
        (420, _, Some(seconds)) | (_, "FLOOD_WAIT" | "FLOOD_PREMIUM_WAIT" | "SLOWMODE_WAIT", Some(seconds)) => TelegramError::FloodWait { seconds },
        // A 420 without a number (FROZEN_METHOD_INVALID: the account is frozen) is no wait
        // that ends: retrying it only digs deeper.
        (420, _, None) => TelegramError::Rejected(name.to_owned()),
        (_, "PEER_FLOOD", _) => TelegramError::PeerFlood,
        (_, "USER_PRIVACY_RESTRICTED" | "PRIVACY_PREMIUM_REQUIRED" | "USER_IS_BLOCKED", _) => TelegramError::PrivacyRestricted,
        // The whole 401 family (AUTH_KEY_UNREGISTERED, SESSION_REVOKED, USER_DEACTIVATED...),
        // and a key Telegram saw used twice at once: the account must log in again.
        (401, _, _) | (_, "AUTH_KEY_DUPLICATED", _) => TelegramError::Unauthorized(name.to_owned()),
        (500.., _, _) | (-503, _, _) => TelegramError::Transient(name.to_owned()),
        _ => TelegramError::Rejected(name.to_owned()),
    }
}

/// Any failed call as the port's error. Only error names and kinds are kept: never a payload.
pub fn classify(error: &InvocationError) -> TelegramError {
    match error {
        InvocationError::Rpc(RpcError { code, name, value, .. }) => classify_rpc(*code, name, *value),
        // The server does not know the session's auth key.
        InvocationError::Transport(grammers_mtproto::transport::Error::BadStatus { status: 404 }) => {
            TelegramError::Unauthorized("AUTH_KEY_INVALID".into())
        }
        other => TelegramError::Transient(other.to_string()),
    }
}

/// The outcome of `messages.sendMessage`/`sendMedia`: the new message's id, or `None` when
/// Telegram says the `random_id` was used already (an earlier try went out).
pub fn sent(result: Result<tl::enums::Updates, InvocationError>, random_id: i64) -> Result<SentMessage, TelegramError> {
    match result {
        Ok(updates) => Ok(SentMessage { id: sent_id(&updates, random_id) }),
        Err(InvocationError::Rpc(e)) if e.is("RANDOM_ID_DUPLICATE") => Ok(SentMessage { id: None }),
        Err(e) => Err(classify(&e)),
    }
}

/// The id Telegram gave the message sent with `random_id`.
fn sent_id(updates: &tl::enums::Updates, random_id: i64) -> Option<i32> {
    use tl::enums::{Update, Updates};
    let list = match updates {
        Updates::UpdateShortSentMessage(u) => return Some(u.id),
        Updates::Updates(u) => &u.updates,
        Updates::Combined(u) => &u.updates,
        _ => return None,
    };
    list.iter().find_map(|u| match u {
        Update::MessageId(m) if m.random_id == random_id => Some(m.id),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(code: i32, message: &str) -> InvocationError {
        InvocationError::Rpc(RpcError::from(tl::types::RpcError { error_code: code, error_message: message.into() }))
    }

    #[test]
    fn classifies_telegram_errors() {
        let cases = [
            (420, "FLOOD_WAIT_31", TelegramError::FloodWait { seconds: 31 }),
            (420, "FLOOD_PREMIUM_WAIT_7", TelegramError::FloodWait { seconds: 7 }),
            (420, "SLOWMODE_WAIT_120", TelegramError::FloodWait { seconds: 120 }),
            (400, "PEER_FLOOD", TelegramError::PeerFlood),
            (403, "USER_PRIVACY_RESTRICTED", TelegramError::PrivacyRestricted),
            (403, "PRIVACY_PREMIUM_REQUIRED", TelegramError::PrivacyRestricted),
            (401, "AUTH_KEY_UNREGISTERED", TelegramError::Unauthorized("AUTH_KEY_UNREGISTERED".into())),
            (401, "SESSION_REVOKED", TelegramError::Unauthorized("SESSION_REVOKED".into())),
            (406, "AUTH_KEY_DUPLICATED", TelegramError::Unauthorized("AUTH_KEY_DUPLICATED".into())),
            (500, "INTERDC_2_CALL_ERROR", TelegramError::Transient("INTERDC_CALL_ERROR".into())),
            (420, "FROZEN_METHOD_INVALID", TelegramError::Rejected("FROZEN_METHOD_INVALID".into())),
            (400, "PEER_ID_INVALID", TelegramError::Rejected("PEER_ID_INVALID".into())),
        ];
        for (code, message, expected) in cases {
            assert_eq!(classify(&rpc(code, message)), expected, "{message}");
        }
        assert!(matches!(classify(&InvocationError::Dropped("runner gone")), TelegramError::Transient(_)));
        let no_key = InvocationError::Transport(grammers_mtproto::transport::Error::BadStatus { status: 404 });
        assert!(matches!(classify(&no_key), TelegramError::Unauthorized(_)));
    }

    #[test]
    fn a_repeated_random_id_counts_as_sent() {
        assert_eq!(sent(Err(rpc(400, "RANDOM_ID_DUPLICATE")), 9), Ok(SentMessage { id: None }));
        assert_eq!(sent(Err(rpc(420, "FLOOD_WAIT_3")), 9), Err(TelegramError::FloodWait { seconds: 3 }));
    }

    #[test]
    fn finds_the_id_of_our_message() {
        let short = tl::enums::Updates::UpdateShortSentMessage(tl::types::UpdateShortSentMessage {
            out: true, id: 41, pts: 1, pts_count: 1, date: 0, media: None, entities: None, ttl_period: None,
        });
        assert_eq!(sent_id(&short, 1), Some(41));
        let ours = tl::types::UpdateMessageId { id: 42, random_id: 7 }.into();
        let other = tl::types::UpdateMessageId { id: 43, random_id: 8 }.into();
        let full = tl::enums::Updates::Updates(tl::types::Updates { updates: vec![other, ours], users: vec![], chats: vec![], date: 0, seq: 0 });
        assert_eq!(sent_id(&full, 7), Some(42));
        assert_eq!(sent_id(&full, 9), None);
    }
}
