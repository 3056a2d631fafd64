//! Domain repositories, written once over the table port.

pub mod automation;
pub mod cards;
pub mod connectors;
pub mod conversations;
pub mod logins;
pub mod mailbox;
pub mod messages;
pub mod openlines;
pub mod portals;
pub mod resolutions;
pub mod safety;
pub mod schedule;
pub mod sessions;
pub mod templates;
pub mod uploads;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::{now_millis, now_secs};
use crate::domain::lease::{self, Claim, Leased};
use crate::ports::{Condition, Item, Table, TableError};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("stored record {key} is unreadable")]
    Corrupt { key: String, source: serde_json::Error },
}

/// A record and the version it was read at.
#[derive(Clone, Debug)]
pub struct Stored<T> {
    pub value: T,
    pub version: u64,
    pub expires_at: Option<i64>,
}

/// Typed access to the table: JSON records, optimistic concurrency, TTL.
#[derive(Clone)]
pub struct Records {
    table: Arc<dyn Table>,
}

fn expiry(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|t| now_secs() + t.as_secs() as i64)
}

fn decode<T: DeserializeOwned>(item: &Item) -> Result<T, RepoError> {
    serde_json::from_str(&item.data)
        .map_err(|source| RepoError::Corrupt { key: format!("{}/{}", item.pk, item.sk), source })
}

fn item<T: Serialize>(pk: &str, sk: &str, value: &T, version: u64, expires_at: Option<i64>) -> Item {
    let data = serde_json::to_string(value).expect("records serialize");
    Item { pk: pk.to_owned(), sk: sk.to_owned(), data, version, expires_at }
}

impl Records {
    pub fn new(table: Arc<dyn Table>) -> Self {
        Self { table }
    }

    pub async fn get<T: DeserializeOwned>(&self, pk: &str, sk: &str) -> Result<Option<Stored<T>>, RepoError> {
        let Some(found) = self.table.get(pk, sk).await? else { return Ok(None) };
        Ok(Some(Stored { value: decode(&found)?, version: found.version, expires_at: found.expires_at }))
    }

    /// Writes only if nothing live is stored there; `false` when something is.
    pub async fn create<T: Serialize>(&self, pk: &str, sk: &str, value: &T, ttl: Option<Duration>) -> Result<bool, RepoError> {
        match self.table.put(item(pk, sk, value, 1, expiry(ttl)), Condition::Absent).await {
            Ok(()) => Ok(true),
            Err(TableError::ConditionFailed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn put<T: Serialize>(&self, pk: &str, sk: &str, value: &T, ttl: Option<Duration>) -> Result<(), RepoError> {
        Ok(self.table.put(item(pk, sk, value, 1, expiry(ttl)), Condition::Always).await?)
    }

    /// Writes `stored.value` back if nobody changed it since it was read; `false` otherwise.
    pub async fn replace<T: Serialize>(&self, pk: &str, sk: &str, stored: &Stored<T>) -> Result<bool, RepoError> {
        let next = item(pk, sk, &stored.value, stored.version + 1, stored.expires_at);
        match self.table.put(next, Condition::Version(stored.version)).await {
            Ok(()) => Ok(true),
            Err(TableError::ConditionFailed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Read-modify-write until it lands. `change` returns `false` to leave the record as is.
    /// Returns the record as stored afterwards, or `None` when there is none.
    pub async fn update<T, F>(&self, pk: &str, sk: &str, mut change: F) -> Result<Option<T>, RepoError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&mut T) -> bool,
    {
        loop {
            let Some(mut stored) = self.get::<T>(pk, sk).await? else { return Ok(None) };
            if !change(&mut stored.value) || self.replace(pk, sk, &stored).await? {
                return Ok(Some(stored.value));
            }
        }
    }

    /// Counts one more on the counter `counter` picks in the record (made as `T::default()`,
    /// living `ttl`, when missing) unless it reached `limit`: whether it counted.
    pub async fn count_up<T>(&self, pk: &str, sk: &str, ttl: Duration, limit: u32, counter: impl Fn(&mut T) -> &mut u32) -> Result<bool, RepoError>
    where
        T: Serialize + DeserializeOwned + Default,
    {
        self.create(pk, sk, &T::default(), Some(ttl)).await?;
        let mut counted = false;
        self.update::<T, _>(pk, sk, |record| {
            let count = counter(record);
            counted = *count < limit;
            *count += u32::from(counted);
            counted
        })
        .await?;
        Ok(counted)
    }

    /// Claims a record's work for `holder` for `term`: one conditional write, so of jobs
    /// claiming at once one takes it. `Done` when missing or when `due` says nothing is left.
    pub async fn claim<T>(&self, pk: &str, sk: &str, holder: &str, term: Duration, due: impl Fn(&T) -> bool) -> Result<Claim<T>, RepoError>
    where
        T: Leased + Serialize + DeserializeOwned,
    {
        let now = now_millis();
        let mut taken = None;
        let stored = self
            .update::<T, _>(pk, sk, |record| {
                taken = due(record).then(|| lease::take(record.lease(), holder, term, now));
                taken == Some(Ok(()))
            })
            .await?;
        Ok(match (stored, taken) {
            (Some(record), Some(Ok(()))) => Claim::Taken(record),
            (Some(_), Some(Err(held))) => Claim::Held(held),
            _ => Claim::Done,
        })
    }

    /// Ends `holder`'s claim on a record, unless it lost it meanwhile.
    pub async fn release<T>(&self, pk: &str, sk: &str, holder: &str) -> Result<(), RepoError>
    where
        T: Leased + Serialize + DeserializeOwned,
    {
        self.update::<T, _>(pk, sk, |record| lease::release(record.lease(), holder)).await.map(drop)
    }

    pub async fn delete(&self, pk: &str, sk: &str) -> Result<(), RepoError> {
        Ok(self.table.delete(pk, sk).await?)
    }

    /// Deletes every item of `pk` whose sort key starts with `sk_prefix` (all of them for "").
    pub async fn delete_prefix(&self, pk: &str, sk_prefix: &str) -> Result<(), RepoError> {
        loop {
            let items = self.table.query(pk, sk_prefix, 100, false).await?;
            if items.is_empty() {
                return Ok(());
            }
            for item in items {
                self.table.delete(pk, &item.sk).await?;
            }
        }
    }

    /// Like [`Self::query`], with each record's sort key.
    pub async fn entries<T: DeserializeOwned>(&self, pk: &str, sk_prefix: &str, limit: usize) -> Result<Vec<(String, T)>, RepoError> {
        let items = self.table.query(pk, sk_prefix, limit, false).await?;
        items.iter().map(|item| Ok((item.sk.clone(), decode(item)?))).collect()
    }

    /// Records whose sort key starts with `sk_prefix`, greatest first, from just below `below`
    /// (or from the greatest), each with its sort key.
    pub async fn entries_below<T: DeserializeOwned>(&self, pk: &str, sk_prefix: &str, below: Option<&str>, limit: usize) -> Result<Vec<(String, T)>, RepoError> {
        let items = match below {
            Some(below) => self.table.query_below(pk, sk_prefix, below, limit).await?,
            None => self.table.query(pk, sk_prefix, limit, true).await?,
        };
        items.iter().map(|item| Ok((item.sk.clone(), decode(item)?))).collect()
    }

    pub async fn query<T: DeserializeOwned>(&self, pk: &str, sk_prefix: &str, limit: usize, newest_first: bool) -> Result<Vec<T>, RepoError> {
        let items = self.table.query(pk, sk_prefix, limit, newest_first).await?;
        items.iter().map(decode).collect()
    }
}

/// The partition holding what one connector keeps: its session and lease, its look-ups, its
/// counters and contacts.
pub fn connector_pk(connector_id: &str) -> String {
    format!("connector#{connector_id}")
}

/// The partition holding everything of one portal.
pub fn portal_pk(member_id: &str) -> String {
    format!("portal#{member_id}")
}
