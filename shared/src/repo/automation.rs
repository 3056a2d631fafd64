//! What Bitrix24's automation asked for, from the call until its message exists, and the
//! pace at which each account takes automated messages.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::templates::TemplateFile;
use super::{Records, RepoError, connector_pk, portal_pk};
use crate::clock::now_millis;
use crate::domain::automation::{Origin, ProviderStatus};
use crate::domain::{EntityRef, Failure, PublicationMode, RecipientKey};
use crate::i18n::Lang;

/// A request outlives its message's sending by far; the message keeps what lasts.
const REQUEST_TTL: Duration = Duration::from_secs(30 * 86_400);
const PACE_SK: &str = "pace#automation";
const LAST_SENT_SK: &str = "pace#automation-sent";

/// Which account a request goes out from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum ConnectorChoice {
    /// The one the robot's settings name.
    Chosen(String),
    /// The one the record's responsible employee used last.
    ResponsibleLast,
    /// The one the administrator put in charge of the message provider.
    Provider,
}

/// How far a request got. Its message, once made, has the request's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Stored; its record not read yet.
    Received,
    /// Waits for its turn on the account (`due`, unix ms); then its recipient is looked up.
    Scheduled { connector_id: String, recipients: Vec<RecipientKey>, author: u64, due: i64 },
    /// The account's budget for the day was used up: a new turn is taken once `until` has come.
    Deferred { connector_id: String, recipients: Vec<RecipientKey>, author: u64, until: i64 },
    /// Its message is made and goes as any other.
    Handed,
    /// Never became a message.
    Failed { failure: Failure },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutomationRequest {
    pub id: String,
    pub member_id: String,
    pub origin: Origin,
    /// The record it is about (a workflow's document, a provider message's binding).
    pub entity: Option<EntityRef>,
    pub from: ConnectorChoice,
    /// The recipient as written (a phone, @username or t.me link); `None`: the record's.
    pub to: Option<String>,
    pub text: String,
    /// The template the text is filled from when the call gave none (its record's fields).
    #[serde(default)]
    pub template_id: Option<String>,
    /// The template's files, as it had them when its text was filled: sent with it.
    #[serde(default)]
    pub files: Vec<TemplateFile>,
    pub publication: PublicationMode,
    pub create_activity: bool,
    /// The employee Bitrix24 named in the call's `auth` (who sent an SMS, or the rule's user).
    pub user_id: u64,
    pub lang: Lang,
    pub created_at: i64,
    pub stage: Stage,
    /// The robot's result was returned (`bizproc.event.send`), so it is returned once.
    #[serde(default)]
    pub result_reported: bool,
    /// The provider's status last reported, so none is reported twice or out of order.
    #[serde(default)]
    pub status_reported: Option<ProviderStatus>,
}

fn sk(id: &str) -> String {
    format!("automation#{id}")
}

#[derive(Clone)]
pub struct AutomationRequests {
    records: Records,
}

impl AutomationRequests {
    pub fn new(records: Records) -> Self {
        Self { records }
    }

    /// Stores a new request; `false` if one with its id is stored already.
    pub async fn create(&self, request: &AutomationRequest) -> Result<bool, RepoError> {
        self.records.create(&portal_pk(&request.member_id), &sk(&request.id), request, Some(REQUEST_TTL)).await
    }

    pub async fn get(&self, member_id: &str, id: &str) -> Result<Option<AutomationRequest>, RepoError> {
        Ok(self.records.get(&portal_pk(member_id), &sk(id)).await?.map(|s| s.value))
    }

    /// Applies `change` atomically; the request as stored after.
    pub async fn update(&self, member_id: &str, id: &str, change: impl FnMut(&mut AutomationRequest) -> bool) -> Result<Option<AutomationRequest>, RepoError> {
        self.records.update(&portal_pk(member_id), &sk(id), change).await
    }

    /// The next turn of `connector_id` for an automated message, at least `pace` after the
    /// one before (unix ms). Turns are handed out in order, so a campaign of thousands is
    /// spread over time instead of going out in a burst.
    pub async fn next_turn(&self, connector_id: &str, pace: Duration) -> Result<i64, RepoError> {
        let pk = connector_pk(connector_id);
        self.records.create(&pk, PACE_SK, &0i64, None).await?;
        let mut turn = 0;
        self.records
            .update::<i64, _>(&pk, PACE_SK, |next_free| {
                turn = (*next_free).max(now_millis());
                *next_free = turn + pace.as_millis() as i64;
                true
            })
            .await?;
        Ok(turn)
    }

    /// Takes the moment of an automated message going out on `connector_id` if the last one
    /// went at least `pace` ago; `false` when it did not. Turns spread the messages out, this
    /// keeps them apart even when a stalled account catches up on turns gone by.
    pub async fn take_send_slot(&self, connector_id: &str, pace: Duration) -> Result<bool, RepoError> {
        let pk = connector_pk(connector_id);
        self.records.create(&pk, LAST_SENT_SK, &0i64, None).await?;
        let mut taken = false;
        self.records
            .update::<i64, _>(&pk, LAST_SENT_SK, |last| {
                let now = now_millis();
                taken = now >= *last + pace.as_millis() as i64;
                taken && { *last = now; true }
            })
            .await?;
        Ok(taken)
    }
}
