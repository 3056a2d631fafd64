//! Messages Bitrix24's own automation asks for: a robot or workflow action of ours
//! (`api-reference/bizproc/bizproc-robot/`, `…/bizproc-activity/`), or our message provider
//! (`api-reference/messageservice/`), and what each is told back.

use serde::{Deserialize, Serialize};

use super::{EntityRef, EntityType, Failure, MessageStatus};

/// Who asked for a message that no one wrote in the tab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Our robot or workflow action; `waits`: the rule waits for `bizproc.event.send`.
    Robot { code: String, event_token: String, waits: bool },
    /// Our message provider (the card's SMS form, campaigns, the standard "Send SMS" robot).
    Provider { code: String, message_id: String },
}

/// The record a workflow runs on, from its `document_id`: `["crm", "CCrmDocumentDeal",
/// "DEAL_123"]` (`tutorials/bizproc/activity.md`, "Parse Handler Data"). The docs' own parser
/// looks for the `DEAL_`/`LEAD_` value anywhere in the array; so does this one.
pub fn document_entity(document_id: &[String]) -> Option<EntityRef> {
    document_id.iter().find_map(|value| {
        let (prefix, id) = value.rsplit_once('_')?;
        let kind = EntityType::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(prefix))?;
        let id = id.parse().ok().filter(|&id: &u64| id > 0)?;
        Some(EntityRef { kind, id })
    })
}

/// The record a provider's message is bound to: the first CRM binding of ours
/// (`messageservice-sender-add.md`: `bindings`, `OWNER_TYPE_ID` / `OWNER_ID`).
pub fn binding_entity(owner_type_id: u64, owner_id: u64) -> Option<EntityRef> {
    let kind = EntityType::ALL.into_iter().find(|t| t.type_id() == owner_type_id)?;
    (owner_id > 0).then_some(EntityRef { kind, id: owner_id })
}

/// The statuses `messageservice.message.status.update` takes
/// (`api-reference/messageservice/messageservice-message-status-update.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderStatus {
    Queued,
    Sent,
    /// The method has no "read": a read message was certainly delivered, so a read is
    /// reported as `delivered` (Telegram tells a user account of no delivery short of a read).
    Delivered,
    /// Telegram could not reach the person: no account, a hidden number, a closed inbox.
    Undelivered,
    /// Our side or the account failed (disconnected, limited, over its budget, refused).
    Failed,
}

impl ProviderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
        }
    }

    /// A message's state as the provider reports it; `None` while it is on its way.
    pub fn of(status: MessageStatus, failure: Option<&Failure>) -> Option<Self> {
        match status {
            MessageStatus::Scheduled | MessageStatus::Queued | MessageStatus::Sending => None,
            MessageStatus::Sent => Some(Self::Sent),
            MessageStatus::Read => Some(Self::Delivered),
            MessageStatus::Failed => Some(failure.map_or(Self::Failed, Self::of_failure)),
            MessageStatus::Cancelled => Some(Self::Failed),
        }
    }

    pub fn of_failure(failure: &Failure) -> Self {
        match failure {
            Failure::Privacy | Failure::UsernameNotFound | Failure::PrivacyRestricted => Self::Undelivered,
            _ => Self::Failed,
        }
    }
}

/// What a robot returns (its `RETURN_PROPERTIES`): `sent` or `failed`.
pub fn robot_status(status: MessageStatus) -> Option<&'static str> {
    match status {
        MessageStatus::Sent | MessageStatus::Read => Some("sent"),
        MessageStatus::Failed | MessageStatus::Cancelled => Some("failed"),
        MessageStatus::Scheduled | MessageStatus::Queued | MessageStatus::Sending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_name_their_records() {
        let doc = |v: &[&str]| document_entity(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(doc(&["crm", "CCrmDocumentDeal", "DEAL_123"]), Some(EntityRef { kind: EntityType::Deal, id: 123 }));
        assert_eq!(doc(&["crm", "CCrmDocumentLead", "LEAD_7"]), Some(EntityRef { kind: EntityType::Lead, id: 7 }));
        assert_eq!(doc(&["crm", "CCrmDocumentContact", "CONTACT_2"]), Some(EntityRef { kind: EntityType::Contact, id: 2 }));
        assert_eq!(doc(&["crm", "CCrmDocumentCompany", "COMPANY_1"]), Some(EntityRef { kind: EntityType::Company, id: 1 }));
        for bad in [&["lists", "BizprocDocument", "iblock_164"][..], &["crm", "CCrmDocumentDeal", "DEAL_0"], &["crm", "x", "DEAL_x"], &[]] {
            assert_eq!(doc(bad), None, "{bad:?}");
        }
        assert_eq!(binding_entity(3, 123), Some(EntityRef { kind: EntityType::Contact, id: 123 }));
        assert_eq!(binding_entity(31, 1), None, "a smart invoice is no card of ours");
    }

    #[test]
    fn provider_statuses_follow_the_message() {
        assert_eq!(ProviderStatus::of(MessageStatus::Sending, None), None);
        assert_eq!(ProviderStatus::of(MessageStatus::Sent, None), Some(ProviderStatus::Sent));
        assert_eq!(ProviderStatus::of(MessageStatus::Read, None), Some(ProviderStatus::Delivered));
        assert_eq!(ProviderStatus::of(MessageStatus::Failed, Some(&Failure::Privacy)), Some(ProviderStatus::Undelivered));
        assert_eq!(ProviderStatus::of(MessageStatus::Failed, Some(&Failure::ConnectorLimited)), Some(ProviderStatus::Failed));
        assert_eq!(robot_status(MessageStatus::Read), Some("sent"));
    }
}
