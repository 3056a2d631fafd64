//! The embedded table and queue: one SQLite file in WAL mode, one connection shared by both.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use crate::clock::{now_millis, now_secs};
use crate::ports::{Condition, Delivery, Item, JobQueue, Queue, QueueError, Table, TableError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL, sk TEXT NOT NULL, data TEXT NOT NULL,
    version INTEGER NOT NULL, expires_at INTEGER,
    PRIMARY KEY (pk, sk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, queue TEXT NOT NULL, grp TEXT NOT NULL, body TEXT NOT NULL,
    visible_at INTEGER NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT);
CREATE INDEX IF NOT EXISTS jobs_visible ON jobs (queue, visible_at);
CREATE INDEX IF NOT EXISTS jobs_receipt ON jobs (receipt);
CREATE TABLE IF NOT EXISTS dead_jobs (
    id INTEGER PRIMARY KEY, queue TEXT NOT NULL, body TEXT NOT NULL, died_at INTEGER NOT NULL);
";

/// One SQLite database shared by the embedded adapters.
#[derive(Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteDb {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        // WAL with NORMAL sync: durable across process crashes, one fsync per checkpoint.
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (statements are atomic).
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Clone)]
pub struct SqliteTable {
    db: SqliteDb,
}

impl SqliteTable {
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }

    /// Deletes up to `batch` expired items, as DynamoDB's TTL does on its own (reads already
    /// skip them): how many. A few thousand at a time, so the lock is never held long.
    pub fn purge_expired(&self, batch: usize) -> Result<usize, TableError> {
        let conn = self.db.lock();
        conn.execute(
            "DELETE FROM items WHERE (pk, sk) IN (SELECT pk, sk FROM items WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
            params![now_secs(), batch as i64],
        )
        .map_err(backend)
    }

    /// Live items with `from <= sk < to`, in sort key order.
    fn select(&self, pk: &str, from: &str, to: &str, limit: usize, descending: bool) -> Result<Vec<Item>, TableError> {
        let conn = self.db.lock();
        let sql = if descending {
            "SELECT pk, sk, data, version, expires_at FROM items
             WHERE pk = ?1 AND sk >= ?2 AND sk < ?3 AND (expires_at IS NULL OR expires_at > ?4)
             ORDER BY sk DESC LIMIT ?5"
        } else {
            "SELECT pk, sk, data, version, expires_at FROM items
             WHERE pk = ?1 AND sk >= ?2 AND sk < ?3 AND (expires_at IS NULL OR expires_at > ?4)
             ORDER BY sk ASC LIMIT ?5"
        };
        let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
        let rows = stmt
            .query_map(params![pk, from, to, now_secs(), limit as i64], row_to_item)
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }
}

fn row_to_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    Ok(Item {
        pk: row.get(0)?,
        sk: row.get(1)?,
        data: row.get(2)?,
        version: row.get::<_, i64>(3)? as u64,
        expires_at: row.get(4)?,
    })
}

fn backend(e: rusqlite::Error) -> TableError {
    TableError::Backend(e.into())
}

#[async_trait]
impl Table for SqliteTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, TableError> {
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT pk, sk, data, version, expires_at FROM items
                 WHERE pk = ?1 AND sk = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
            )
            .map_err(backend)?;
        stmt.query_row(params![pk, sk, now_secs()], row_to_item).optional().map_err(backend)
    }

    async fn put(&self, item: Item, condition: Condition) -> Result<(), TableError> {
        let conn = self.db.lock();
        let version = item.version as i64;
        let changed = match condition {
            Condition::Always => conn
                .prepare_cached(
                    "INSERT INTO items (pk, sk, data, version, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (pk, sk) DO UPDATE SET data = excluded.data, version = excluded.version, expires_at = excluded.expires_at",
                )
                .and_then(|mut s| s.execute(params![item.pk, item.sk, item.data, version, item.expires_at])),
            Condition::Absent => conn
                .prepare_cached(
                    "INSERT INTO items (pk, sk, data, version, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (pk, sk) DO UPDATE SET data = excluded.data, version = excluded.version,
                         expires_at = excluded.expires_at
                     WHERE items.expires_at IS NOT NULL AND items.expires_at <= ?6",
                )
                .and_then(|mut s| s.execute(params![item.pk, item.sk, item.data, version, item.expires_at, now_secs()])),
            Condition::Version(expected) => conn
                .prepare_cached(
                    "UPDATE items SET data = ?3, version = ?4, expires_at = ?5
                     WHERE pk = ?1 AND sk = ?2 AND version = ?6 AND (expires_at IS NULL OR expires_at > ?7)",
                )
                .and_then(|mut s| {
                    s.execute(params![item.pk, item.sk, item.data, version, item.expires_at, expected as i64, now_secs()])
                }),
        }
        .map_err(backend)?;
        if changed == 0 { Err(TableError::ConditionFailed) } else { Ok(()) }
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<(), TableError> {
        let conn = self.db.lock();
        conn.prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2")
            .and_then(|mut s| s.execute(params![pk, sk]))
            .map_err(backend)?;
        Ok(())
    }

    async fn query(&self, pk: &str, sk_prefix: &str, limit: usize, descending: bool) -> Result<Vec<Item>, TableError> {
        self.select(pk, sk_prefix, &format!("{sk_prefix}\u{10FFFF}"), limit, descending)
    }

    async fn query_below(&self, pk: &str, sk_prefix: &str, below: &str, limit: usize) -> Result<Vec<Item>, TableError> {
        self.select(pk, sk_prefix, below, limit, true)
    }
}


/// The embedded queue: jobs survive a restart; a message received more than
/// `max_receives` times goes to the dead-letter table instead.
#[derive(Clone)]
pub struct SqliteQueue {
    db: SqliteDb,
    max_receives: u32,
    /// Wakes the in-process runner as soon as a job is queued.
    arrived: Arc<Notify>,
}

impl SqliteQueue {
    pub fn new(db: SqliteDb, max_receives: u32) -> Self {
        Self { db, max_receives, arrived: Arc::new(Notify::new()) }
    }

    /// Waits until a job may have arrived, or `at_most` passed.
    pub async fn wait_for_jobs(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.arrived.notified()).await;
    }

    /// Jobs queued, being run, or due again within `horizon` (dead ones not counted). None,
    /// with a horizon beyond the runner's visibility, means every job queued so far has run to
    /// its end: the tests' ordering barrier.
    pub fn jobs_due_within(&self, horizon: Duration) -> Result<usize, QueueError> {
        let conn = self.db.lock();
        let due = now_millis() + horizon.as_millis() as i64;
        let count: i64 = conn.query_row("SELECT count(*) FROM jobs WHERE visible_at <= ?1", params![due], |r| r.get(0)).map_err(queue_error)?;
        Ok(count as usize)
    }
}

fn queue_error(e: rusqlite::Error) -> QueueError {
    QueueError(e.into())
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, queue: JobQueue, body: &str, group: &str, delay: Duration) -> Result<(), QueueError> {
        {
            let conn = self.db.lock();
            conn.prepare_cached("INSERT INTO jobs (queue, grp, body, visible_at) VALUES (?1, ?2, ?3, ?4)")
                .and_then(|mut s| s.execute(params![queue.name(), group, body, now_millis() + delay.as_millis() as i64]))
                .map_err(queue_error)?;
        }
        if delay.is_zero() {
            self.arrived.notify_waiters();
        }
        Ok(())
    }

    async fn receive(&self, queue: JobQueue, max: usize, visibility: Duration) -> Result<Vec<Delivery>, QueueError> {
        let mut conn = self.db.lock();
        let tx = conn.transaction().map_err(queue_error)?;
        let now = now_millis();
        let due: Vec<(i64, String, u32)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, body, receive_count FROM jobs WHERE queue = ?1 AND visible_at <= ?2
                     ORDER BY visible_at, id LIMIT ?3",
                )
                .map_err(queue_error)?;
            let rows = stmt
                .query_map(params![queue.name(), now, max as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(queue_error)?;
            rows.collect::<Result<_, _>>().map_err(queue_error)?
        };
        let mut deliveries = Vec::with_capacity(due.len());
        for (id, body, count) in due {
            let receive_count = count + 1;
            if receive_count > self.max_receives {
                tx.execute("INSERT INTO dead_jobs (queue, body, died_at) VALUES (?1, ?2, ?3)", params![queue.name(), body, now])
                    .map_err(queue_error)?;
                tx.execute("DELETE FROM jobs WHERE id = ?1", params![id]).map_err(queue_error)?;
                tracing::error!(queue = queue.name(), body, "job moved to the dead-letter queue after {count} receives");
                continue;
            }
            let receipt = format!("{id}:{}", uuid::Uuid::new_v4().simple());
            tx.prepare_cached("UPDATE jobs SET receive_count = ?2, visible_at = ?3, receipt = ?4 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, receive_count, now + visibility.as_millis() as i64, receipt]))
                .map_err(queue_error)?;
            deliveries.push(Delivery { receipt, body, receive_count });
        }
        tx.commit().map_err(queue_error)?;
        Ok(deliveries)
    }

    async fn delete(&self, _queue: JobQueue, receipt: &str) -> Result<(), QueueError> {
        let conn = self.db.lock();
        conn.prepare_cached("DELETE FROM jobs WHERE receipt = ?1")
            .and_then(|mut s| s.execute(params![receipt]))
            .map_err(queue_error)?;
        Ok(())
    }

    async fn retry_after(&self, _queue: JobQueue, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let conn = self.db.lock();
        conn.prepare_cached("UPDATE jobs SET visible_at = ?2 WHERE receipt = ?1")
            .and_then(|mut s| s.execute(params![receipt, now_millis() + delay.as_millis() as i64]))
            .map_err(queue_error)?;
        Ok(())
    }

    async fn dead_letters(&self, queue: JobQueue) -> Result<Vec<String>, QueueError> {
        let conn = self.db.lock();
        let mut stmt = conn.prepare_cached("SELECT body FROM dead_jobs WHERE queue = ?1 ORDER BY id").map_err(queue_error)?;
        let rows = stmt.query_map(params![queue.name()], |r| r.get(0)).map_err(queue_error)?;
        rows.collect::<Result<_, _>>().map_err(queue_error)
    }
}
