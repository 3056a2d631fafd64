//! The ports' contract, checked against the embedded adapters. The AWS adapters run the
//! same suite against the moto server, so the backends cannot drift.

use std::sync::Arc;
use std::time::Duration;

use shared::adapters::{DirBlobs, SqliteDb, SqliteQueue, SqliteTable};
use shared::ports::{Blobs, Condition, Item, JobQueue, Queue, Table, TableError};
use tokio::io::AsyncReadExt;

fn item(pk: &str, sk: &str, data: &str, version: u64, expires_at: Option<i64>) -> Item {
    Item { pk: pk.into(), sk: sk.into(), data: data.into(), version, expires_at }
}

fn now() -> i64 {
    shared::clock::now_secs()
}

pub async fn table_contract(table: Arc<dyn Table>) {
    // Conditional create: the second writer loses.
    table.put(item("p", "a", "1", 1, None), Condition::Absent).await.unwrap();
    let lost = table.put(item("p", "a", "2", 1, None), Condition::Absent).await;
    assert!(matches!(lost, Err(TableError::ConditionFailed)));
    assert_eq!(table.get("p", "a").await.unwrap().unwrap().data, "1");
    // Optimistic replace: only from the version read.
    table.put(item("p", "a", "3", 2, None), Condition::Version(1)).await.unwrap();
    let stale = table.put(item("p", "a", "4", 2, None), Condition::Version(1)).await;
    assert!(matches!(stale, Err(TableError::ConditionFailed)));
    let stored = table.get("p", "a").await.unwrap().unwrap();
    assert_eq!((stored.data.as_str(), stored.version), ("3", 2));
    // TTL: the attribute is kept; an expired item reads as absent and may be created again.
    table.put(item("p", "ttl", "live", 1, Some(now() + 3600)), Condition::Always).await.unwrap();
    assert_eq!(table.get("p", "ttl").await.unwrap().unwrap().expires_at, Some(now() + 3600));
    table.put(item("p", "gone", "old", 1, Some(now() - 1)), Condition::Always).await.unwrap();
    assert!(table.get("p", "gone").await.unwrap().is_none());
    table.put(item("p", "gone", "new", 1, None), Condition::Absent).await.unwrap();
    assert_eq!(table.get("p", "gone").await.unwrap().unwrap().data, "new");
    // Query: prefix, order, limit; other partitions and prefixes stay out.
    for sk in ["m#1", "m#3", "m#2", "n#1"] {
        table.put(item("q", sk, sk, 1, None), Condition::Always).await.unwrap();
    }
    table.put(item("other", "m#9", "x", 1, None), Condition::Always).await.unwrap();
    let sks = |items: Vec<Item>| items.into_iter().map(|i| i.sk).collect::<Vec<_>>();
    assert_eq!(sks(table.query("q", "m#", 10, false).await.unwrap()), ["m#1", "m#2", "m#3"]);
    assert_eq!(sks(table.query("q", "m#", 2, true).await.unwrap()), ["m#3", "m#2"]);
    table.delete("q", "m#2").await.unwrap();
    assert_eq!(sks(table.query("q", "m#", 10, false).await.unwrap()), ["m#1", "m#3"]);
}

pub async fn queue_contract(queue: Arc<dyn Queue>, max_receives: u32) {
    let q = JobQueue::Telegram;
    let visibility = Duration::from_millis(300);
    // Delay: not visible before it is due.
    queue.send(q, "later", "g", Duration::from_millis(400)).await.unwrap();
    queue.send(q, "now", "g", Duration::ZERO).await.unwrap();
    let first = queue.receive(q, 10, visibility).await.unwrap();
    assert_eq!(first.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(), ["now"]);
    assert_eq!(first[0].receive_count, 1);
    // Hidden while in flight; back with a higher count after the visibility timeout.
    assert!(queue.receive(q, 10, visibility).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(450)).await;
    let second = queue.receive(q, 10, visibility).await.unwrap();
    let mut bodies: Vec<_> = second.iter().map(|d| (d.body.as_str(), d.receive_count)).collect();
    bodies.sort();
    assert_eq!(bodies, [("later", 1), ("now", 2)]);
    // Retry after: hidden for the given delay, then delivered again.
    let now = second.iter().find(|d| d.body == "now").unwrap();
    queue.retry_after(q, &now.receipt, Duration::from_millis(100)).await.unwrap();
    let later = second.iter().find(|d| d.body == "later").unwrap();
    queue.delete(q, &later.receipt).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let third = queue.receive(q, 10, visibility).await.unwrap();
    assert_eq!(third.iter().map(|d| (d.body.as_str(), d.receive_count)).collect::<Vec<_>>(), [("now", 3)]);
    // Dead-lettered after too many receives, never delivered again.
    let mut receipt = third[0].receipt.clone();
    for _ in 3..max_receives {
        queue.retry_after(q, &receipt, Duration::ZERO).await.unwrap();
        receipt = queue.receive(q, 10, visibility).await.unwrap().pop().expect("still delivered").receipt;
    }
    queue.retry_after(q, &receipt, Duration::ZERO).await.unwrap();
    assert!(queue.receive(q, 10, visibility).await.unwrap().is_empty());
    assert_eq!(queue.dead_letters(q).await.unwrap(), ["now"]);
    assert!(queue.receive(JobQueue::Openline, 10, visibility).await.unwrap().is_empty());
}

pub async fn blobs_contract(blobs: Arc<dyn Blobs>) {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let size = blobs.put("uploads/a/file.bin", &mut data.as_slice()).await.unwrap();
    assert_eq!(size, data.len() as u64);
    let (stored_size, mut reader) = blobs.get("uploads/a/file.bin").await.unwrap().expect("stored");
    let mut back = Vec::new();
    reader.read_to_end(&mut back).await.unwrap();
    assert_eq!((stored_size, back == data), (data.len() as u64, true));
    assert!(blobs.get("uploads/a/missing.bin").await.unwrap().is_none());
    blobs.delete("uploads/a/file.bin").await.unwrap();
    assert!(blobs.get("uploads/a/file.bin").await.unwrap().is_none());
    for bad in ["../escape", "/abs", "a//b", ".hidden", ""] {
        assert!(blobs.put(bad, &mut &b"x"[..]).await.is_err(), "{bad}");
    }
}

#[tokio::test]
async fn embedded_backends_keep_the_port_contracts() {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDb::open(&dir.path().join("t.db")).unwrap();
    table_contract(Arc::new(SqliteTable::new(db.clone()))).await;
    queue_contract(Arc::new(SqliteQueue::new(db, 5)), 5).await;
    blobs_contract(Arc::new(DirBlobs::new(dir.path().join("blobs")).unwrap())).await;
}

#[tokio::test]
async fn queued_jobs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    {
        let queue = SqliteQueue::new(SqliteDb::open(&path).unwrap(), 5);
        queue.send(JobQueue::Telegram, "job", "g", Duration::ZERO).await.unwrap();
        // Received, then the process dies before acknowledging.
        assert_eq!(queue.receive(JobQueue::Telegram, 1, Duration::from_millis(100)).await.unwrap().len(), 1);
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let queue = SqliteQueue::new(SqliteDb::open(&path).unwrap(), 5);
    let again = queue.receive(JobQueue::Telegram, 1, Duration::from_secs(5)).await.unwrap();
    assert_eq!((again[0].body.as_str(), again[0].receive_count), ("job", 2));
}
