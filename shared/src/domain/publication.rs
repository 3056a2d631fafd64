//! How a message sent from a card is mirrored into the client's Open Line chat.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublicationMode {
    /// As written by the sending employee.
    Outgoing,
    /// As if from the client, marked "OLChat".
    Incoming,
    /// Not published.
    #[default]
    None,
}

/// Where a publication ended up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Publication {
    /// In the chat `ol_chat_id`, when Bitrix24 said which.
    Published {
        #[serde(default)]
        ol_chat_id: Option<u64>,
    },
    Failed { reason: String },
}
