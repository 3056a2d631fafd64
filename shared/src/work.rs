//! What queued work is: the jobs the use cases queue and the workers run, their queue and
//! their group. It sits below both (`app` queues jobs, `jobs` runs them), so neither imports
//! the other's layer for it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::Peer;
use crate::ports::{JobQueue, Queue, QueueError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Send a stored message through Telegram.
    Send { message_id: String, connector_id: String },
    /// Mirror a message into its Open Line chat and its CRM activity.
    Publish { message_id: String, member_id: String },
    /// Read what happened on a connected account since the last look.
    CatchUp { member_id: String, connector_id: String },
    /// The schedule's tick, every `every_ms` (EventBridge's rule: a minute): scheduled messages
    /// that are due queued, a catch-up for every account due one (`domain::cadence`), and,
    /// once a day, the keep-alive of quiet portals' tokens.
    CatchUpAll {
        #[serde(default = "aws_tick")]
        every_ms: i64,
    },
    /// Refresh the own tokens of portals that went quiet, before their refresh tokens die.
    KeepPortalsAlive,
    /// Clients' messages, stored by the catch-up, into the connector's Open Line.
    ForwardReceived { member_id: String, connector_id: String, telegram_ids: Vec<i32> },
    /// The client read an operator's reply: tell Open Lines.
    Reading { member_id: String, line: String, external_chat_id: String, ol_chat_id: u64, im_message_id: u64 },
    /// A message written into one of our Open Line chats: an operator's reply for the
    /// client, or our own publication come back.
    Reply(OperatorMessage),
    /// An operator edited their reply in the Open Line: edit it on Telegram.
    EditReply(OperatorMessage),
    /// An operator deleted their reply in the Open Line: delete it on Telegram, both sides.
    DeleteReply(OperatorMessage),
    /// Clients edited or deleted these stored messages on Telegram: the Open Line follows.
    ReviseReceived { member_id: String, connector_id: String, telegram_ids: Vec<i32> },
    /// Register the card tabs, the connector and the events (after `ONAPPINSTALL` or an update).
    SetUp { member_id: String },
    /// A manager opened a client's conversation the first time: read its earlier history back
    /// from Telegram.
    Backfill { member_id: String, connector_id: String, peer: Peer },
    /// Copy a connector's Telegram contacts into its resolutions (first use).
    SyncContacts { member_id: String, connector_id: String },
    /// The portal uninstalled the app: sign a connector's account out and forget it.
    SignOut { member_id: String, connector_id: String, telegram_user_id: i64 },
    /// The portal uninstalled the app: delete what it left.
    ForgetPortal { member_id: String },
    /// Bitrix24's automation asked for a message: read its record, wait for its turn on the
    /// account, tell Bitrix24 how it went.
    Automate { member_id: String, request_id: String },
    /// An automated message's turn came: find its recipient within the account's budgets and
    /// make the message.
    SendAutomated { member_id: String, request_id: String, connector_id: String },
}

fn aws_tick() -> i64 {
    crate::domain::cadence::AWS_TICK_MS
}

/// One message of an `OnImConnectorMessageAdd` event (or `…Update`, `…Delete`: the same
/// ids, the new text or none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorMessage {
    pub member_id: String,
    pub connector_id: String,
    pub line: String,
    pub external_chat_id: String,
    pub ol_chat_id: u64,
    pub im_message_id: u64,
    /// Who wrote it: told when it cannot reach the client (0 for Open Lines' own messages).
    #[serde(default)]
    pub user_id: u64,
    pub text: String,
}

impl Job {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("jobs serialize")
    }

    /// Jobs of one group run one at a time: one Telegram session, one connection (the FIFO
    /// telegram queue on AWS, the embedded runner locally). The openline queue is a standard
    /// one on AWS: its groups keep order only in the embedded runner's grouped mode (tests run
    /// it unordered), so its jobs must not depend on it: each claims its work and records it.
    pub fn group(&self) -> &str {
        match self {
            Self::Send { connector_id, .. }
            | Self::CatchUp { connector_id, .. }
            | Self::SyncContacts { connector_id, .. }
            | Self::Backfill { connector_id, .. }
            | Self::SignOut { connector_id, .. }
            | Self::SendAutomated { connector_id, .. } => connector_id,
            Self::Reply(m) | Self::EditReply(m) | Self::DeleteReply(m) => &m.connector_id,
            Self::Publish { member_id, .. }
            | Self::SetUp { member_id }
            | Self::ForwardReceived { member_id, .. }
            | Self::ReviseReceived { member_id, .. }
            | Self::Reading { member_id, .. }
            | Self::ForgetPortal { member_id }
            | Self::Automate { member_id, .. } => member_id,
            Self::CatchUpAll { .. } | Self::KeepPortalsAlive => "schedule",
        }
    }

    /// Telegram work goes to the telegram-worker, portal work to the openline-worker.
    pub fn queue(&self) -> JobQueue {
        match self {
            Self::Send { .. }
            | Self::CatchUp { .. }
            | Self::Reply(_)
            | Self::EditReply(_)
            | Self::DeleteReply(_)
            | Self::SyncContacts { .. }
            | Self::Backfill { .. }
            | Self::SignOut { .. }
            | Self::SendAutomated { .. } => JobQueue::Telegram,
            Self::Publish { .. }
            | Self::SetUp { .. }
            | Self::CatchUpAll { .. }
            | Self::KeepPortalsAlive
            | Self::ForwardReceived { .. }
            | Self::ReviseReceived { .. }
            | Self::Reading { .. }
            | Self::ForgetPortal { .. }
            | Self::Automate { .. } => JobQueue::Openline,
        }
    }

    pub async fn enqueue(&self, queue: &dyn Queue, delay: Duration) -> Result<(), QueueError> {
        queue.send(self.queue(), &self.to_body(), self.group(), delay).await
    }
}
