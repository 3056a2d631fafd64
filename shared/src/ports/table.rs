//! A key-value table with a partition key, a sort key, conditional writes and TTL:
//! the subset of DynamoDB the app needs, so SQLite and DynamoDB both fit.

use async_trait::async_trait;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    /// The record, as JSON.
    pub data: String,
    /// Bumped on every conditional replace; the basis of optimistic concurrency.
    pub version: u64,
    /// Unix seconds after which the item counts as absent.
    pub expires_at: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Write whatever is there.
    Always,
    /// Write only if no live (unexpired) item has this key.
    Absent,
    /// Write only if the stored item has this version.
    Version(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("the write's condition did not hold")]
    ConditionFailed,
    #[error("table backend failed")]
    Backend(#[from] anyhow::Error),
}

#[async_trait]
pub trait Table: Send + Sync {
    /// The live item with this key.
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, TableError>;
    async fn put(&self, item: Item, condition: Condition) -> Result<(), TableError>;
    async fn delete(&self, pk: &str, sk: &str) -> Result<(), TableError>;
    /// Live items of one partition whose sort key starts with `sk_prefix`, in sort key order.
    async fn query(&self, pk: &str, sk_prefix: &str, limit: usize, descending: bool) -> Result<Vec<Item>, TableError>;
    /// Live items of one partition whose sort key starts with `sk_prefix` and sorts below
    /// `below` (a key with that prefix), greatest first: the page further back from `below`.
    async fn query_below(&self, pk: &str, sk_prefix: &str, below: &str, limit: usize) -> Result<Vec<Item>, TableError>;
}
