//! Connected Telegram accounts of a portal.

use serde::{Deserialize, Serialize};

use super::{Records, RepoError, connector_pk, portal_pk};
use crate::clock::now_millis;
use crate::domain::cadence;
use crate::ports::Account;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorStatus {
    Connected,
    NeedsLogin,
    /// Telegram limited the account (PEER_FLOOD): no messages to new chats.
    Limited,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connector {
    pub id: String,
    pub member_id: String,
    pub name: String,
    pub phone: String,
    pub username: Option<String>,
    /// The account's own Telegram user id.
    pub telegram_user_id: i64,
    pub status: ConnectorStatus,
    /// The Open Line its chats go to; `None`: the portal's line.
    #[serde(default)]
    pub line: Option<String>,
    /// This account's own daily budgets; `None`: the deployment's defaults.
    #[serde(default)]
    pub budgets: Option<Budgets>,
    /// Forward messages from anyone who writes to the account, not only from people the
    /// portal wrote to.
    #[serde(default)]
    pub accept_all: bool,
    /// A number imported as a Telegram contact only to find its owner stays in the account's
    /// contacts (by default it is deleted again: the salesperson's own list stays theirs).
    #[serde(default)]
    pub keep_imported_contacts: bool,
    /// Who may send from the account: it is a person's own, so its owner's administrator decides.
    #[serde(default)]
    pub access: Access,
    /// What automated messages do once the account's daily budget is used up.
    #[serde(default)]
    pub over_budget: OverBudget,
}

/// An administrator's choice per account, for automation beyond the day's budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverBudget {
    /// Wait for the next UTC day's budget: nothing is lost, it only goes later.
    #[default]
    Wait,
    /// Fail at once with the reason, so the rule or campaign hears of it now.
    Fail,
}

/// Who of the portal's employees may use a connector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Access {
    #[default]
    Everyone,
    /// These employees, and everyone directly in these departments (`UF_DEPARTMENT` lists an
    /// employee's own departments, not the ones above them, so sub-departments are not included).
    Chosen { users: Vec<u64>, departments: Vec<u64> },
}

impl Access {
    pub fn allows(&self, user: u64, departments: &[u64]) -> bool {
        match self {
            Self::Everyone => true,
            Self::Chosen { users, departments: chosen } => users.contains(&user) || departments.iter().any(|d| chosen.contains(d)),
        }
    }
}

/// How much one account may do per UTC day before a send or look-up is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budgets {
    pub new_chats_per_day: u32,
    pub phone_lookups_per_day: u32,
}

impl Connector {
    /// A newly connected account, set up as an administrator finds one: no Open Line yet,
    /// the default budgets and access, only its own chats forwarded.
    pub fn connected(member_id: &str, id: &str, name: &str, phone: String, username: Option<String>, telegram_user_id: i64) -> Self {
        Self {
            id: id.to_owned(),
            member_id: member_id.to_owned(),
            name: name.to_owned(),
            phone,
            username,
            telegram_user_id,
            status: ConnectorStatus::Connected,
            line: None,
            budgets: None,
            accept_all: false,
            keep_imported_contacts: false,
            access: Access::default(),
            over_budget: OverBudget::default(),
        }
    }

    pub fn account(&self) -> Account {
        Account { connector_id: self.id.clone(), user_id: self.telegram_user_id }
    }
}

const PREFIX: &str = "connector#";

fn sk(id: &str) -> String {
    format!("{PREFIX}{id}")
}

/// Every connector of every portal, for the scheduled catch-up.
const ALL_PK: &str = "connectors";

fn all_sk(member_id: &str, id: &str) -> String {
    format!("{PREFIX}{member_id}#{id}")
}

/// A connector as the index of all connectors names it, with what the schedule's fan-out
/// needs to know of it without reading the connector itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorRef {
    pub member_id: String,
    pub id: String,
    /// Until when (unix ms) it is caught up at every tick (`domain::cadence`).
    #[serde(default)]
    pub active_until: i64,
}

fn last_used_sk(user: u64) -> String {
    format!("lastconnector#{user}")
}

#[derive(Clone)]
pub struct Connectors {
    records: Records,
}

impl Connectors {
    pub fn new(records: Records) -> Self {
        Self { records }
    }

    pub async fn list(&self, member_id: &str) -> Result<Vec<Connector>, RepoError> {
        self.records.query(&portal_pk(member_id), PREFIX, 100, false).await
    }

    pub async fn get(&self, member_id: &str, id: &str) -> Result<Option<Connector>, RepoError> {
        Ok(self.records.get(&portal_pk(member_id), &sk(id)).await?.map(|s| s.value))
    }

    /// Stores the connector; saved (signed in, set up), it counts as active.
    pub async fn save(&self, connector: &Connector) -> Result<(), RepoError> {
        let (member_id, id) = (connector.member_id.clone(), connector.id.clone());
        let active_until = now_millis() + cadence::AFTER_LOOK_MS;
        self.records.put(ALL_PK, &all_sk(&member_id, &id), &ConnectorRef { member_id, id, active_until }, None).await?;
        self.records.put(&portal_pk(&connector.member_id), &sk(&connector.id), connector, None).await
    }

    /// Every connector of every portal.
    pub async fn all(&self) -> Result<Vec<ConnectorRef>, RepoError> {
        self.records.query(ALL_PK, PREFIX, usize::MAX >> 1, false).await
    }

    /// Keeps the connector caught up at every tick until `until` (unix ms), unless it already
    /// is until nearly then (no write). Whether it had been idle at `now`: then what happened
    /// meanwhile is worth a catch-up at once.
    pub async fn mark_active(&self, member_id: &str, id: &str, until: i64, now: i64) -> Result<bool, RepoError> {
        let mut was_idle = false;
        self.records
            .update::<ConnectorRef, _>(ALL_PK, &all_sk(member_id, id), |r| {
                if r.active_until >= until - cadence::MARK_SLACK_MS {
                    return false;
                }
                was_idle = r.active_until <= now;
                r.active_until = until;
                true
            })
            .await?;
        Ok(was_idle)
    }

    /// Forgets one connector with everything kept under it: session, look-ups, counters.
    pub async fn delete(&self, member_id: &str, id: &str) -> Result<(), RepoError> {
        self.forget(member_id, id).await?;
        self.records.delete(&portal_pk(member_id), &sk(id)).await
    }

    async fn forget(&self, member_id: &str, id: &str) -> Result<(), RepoError> {
        self.records.delete(ALL_PK, &all_sk(member_id, id)).await?;
        self.records.delete_prefix(&connector_pk(id), "").await
    }

    /// Read-modify-write of one connector; `change` returns `false` to leave it as is.
    pub async fn update(&self, member_id: &str, id: &str, change: impl FnMut(&mut Connector) -> bool) -> Result<Option<Connector>, RepoError> {
        self.records.update(&portal_pk(member_id), &sk(id), change).await
    }

    pub async fn set_status(&self, member_id: &str, id: &str, status: ConnectorStatus) -> Result<(), RepoError> {
        self.records
            .update::<Connector, _>(&portal_pk(member_id), &sk(id), |c| std::mem::replace(&mut c.status, status) != status)
            .await
            .map(drop)
    }

    pub async fn last_used(&self, member_id: &str, user: u64) -> Result<Option<String>, RepoError> {
        Ok(self.records.get(&portal_pk(member_id), &last_used_sk(user)).await?.map(|s| s.value))
    }

    pub async fn set_last_used(&self, member_id: &str, user: u64, id: &str) -> Result<(), RepoError> {
        self.records.put(&portal_pk(member_id), &last_used_sk(user), &id, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lets_in_everyone_or_the_chosen_people_and_departments() {
        assert!(Access::default().allows(7, &[]));
        let chosen = Access::Chosen { users: vec![2], departments: vec![3] };
        assert!(chosen.allows(2, &[1]));
        assert!(chosen.allows(9, &[1, 3]));
        assert!(!chosen.allows(9, &[1]));
        let stored: Connector = serde_json::from_value(serde_json::json!({
            "id": "s", "member_id": "m", "name": "n", "phone": "+1", "username": null, "telegram_user_id": 1, "status": "connected",
        }))
        .unwrap();
        assert_eq!(stored.access, Access::Everyone, "connectors stored before access existed stay open to everyone");
    }
}
