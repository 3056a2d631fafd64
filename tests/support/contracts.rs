//! The ports' contract: one suite that every backend (embedded, AWS on moto) must pass,
//! so the backends cannot drift.

use std::sync::Arc;
use std::time::Duration;

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
    // An unconditional put replaces the whole item: data, version and expiry alike.
    let expires_at = Some(now() + 60);
    table.put(item("p", "a", "5", 7, expires_at), Condition::Always).await.unwrap();
    let stored = table.get("p", "a").await.unwrap().unwrap();
    assert_eq!((stored.data.as_str(), stored.version, stored.expires_at), ("5", 7, expires_at));
    table.put(item("p", "a", "3", 2, None), Condition::Always).await.unwrap();
    assert_eq!(table.get("p", "a").await.unwrap().unwrap().expires_at, None);
    // TTL: the attribute is kept; an expired item reads as absent and may be created again.
    let in_an_hour = Some(now() + 3600);
    table.put(item("p", "ttl", "live", 1, in_an_hour), Condition::Always).await.unwrap();
    assert_eq!(table.get("p", "ttl").await.unwrap().unwrap().expires_at, in_an_hour);
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
    assert_eq!(sks(table.query("q", "", 10, false).await.unwrap()), ["m#1", "m#3", "n#1"], "no prefix: the whole partition");
    // Paging back: below a key, greatest first, within the prefix.
    for sk in ["m#2", "m#4", "m#5", "l#9"] {
        table.put(item("q", sk, sk, 1, None), Condition::Always).await.unwrap();
    }
    assert_eq!(sks(table.query_below("q", "m#", "m#4", 2).await.unwrap()), ["m#3", "m#2"], "the key itself and above stay out");
    assert_eq!(sks(table.query_below("q", "m#", "m#2", 10).await.unwrap()), ["m#1"], "nothing of another prefix below it");
    assert_eq!(sks(table.query_below("q", "m#", "m#0", 10).await.unwrap()), Vec::<String>::new());
}

/// `unit` is the backend's time granularity (SQS counts whole seconds).
pub async fn queue_contract(queue: Arc<dyn Queue>, max_receives: u32, unit: Duration) {
    let q = JobQueue::Telegram;
    let visibility = unit * 3;
    // Delay: not visible before it is due.
    queue.send(q, "later", "g", unit * 4).await.unwrap();
    queue.send(q, "now", "g", Duration::ZERO).await.unwrap();
    let first = queue.receive(q, 10, visibility).await.unwrap();
    assert_eq!(first.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(), ["now"]);
    assert_eq!(first[0].receive_count, 1);
    // Hidden while in flight; back with a higher count after the visibility timeout.
    assert!(queue.receive(q, 10, visibility).await.unwrap().is_empty());
    tokio::time::sleep(unit * 5).await;
    let second = queue.receive(q, 10, visibility).await.unwrap();
    let mut bodies: Vec<_> = second.iter().map(|d| (d.body.as_str(), d.receive_count)).collect();
    bodies.sort();
    assert_eq!(bodies, [("later", 1), ("now", 2)]);
    // Retry after: hidden for the given delay, then delivered again.
    let now = second.iter().find(|d| d.body == "now").unwrap();
    queue.retry_after(q, &now.receipt, unit).await.unwrap();
    let later = second.iter().find(|d| d.body == "later").unwrap();
    queue.delete(q, &later.receipt).await.unwrap();
    tokio::time::sleep(unit * 2).await;
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
    assert_eq!(blobs.size("uploads/a/file.bin").await.unwrap(), Some(data.len() as u64));
    assert_eq!(blobs.size("uploads/a/missing.bin").await.unwrap(), None);
    let (stored_size, mut reader) = blobs.get("uploads/a/file.bin").await.unwrap().expect("stored");
    let mut back = Vec::new();
    reader.read_to_end(&mut back).await.unwrap();
    assert_eq!((stored_size, back == data), (data.len() as u64, true));
    assert!(blobs.get("uploads/a/missing.bin").await.unwrap().is_none());
    // A copy is whole and its own: deleting the original leaves it.
    assert!(blobs.copy("uploads/a/file.bin", "uploads/b/copy.bin").await.unwrap());
    assert!(!blobs.copy("uploads/a/missing.bin", "uploads/b/none.bin").await.unwrap());
    assert_eq!(blobs.size("uploads/b/none.bin").await.unwrap(), None);
    blobs.delete("uploads/a/file.bin").await.unwrap();
    assert!(blobs.get("uploads/a/file.bin").await.unwrap().is_none());
    let (_, mut reader) = blobs.get("uploads/b/copy.bin").await.unwrap().expect("the copy stays");
    let mut copied = Vec::new();
    reader.read_to_end(&mut copied).await.unwrap();
    assert!(copied == data, "the copy has the original's bytes");
    assert!(blobs.copy("uploads/b/copy.bin", "../escape").await.is_err());
    // A folder goes whole, and only that folder (not a sibling sharing its name's start).
    for key in ["uploads/p1/x/1.bin", "uploads/p1/2.bin", "uploads/p10/3.bin"] {
        blobs.put(key, &mut &b"x"[..]).await.unwrap();
    }
    blobs.delete_prefix("uploads/p1").await.unwrap();
    assert_eq!(blobs.size("uploads/p1/x/1.bin").await.unwrap(), None);
    assert_eq!(blobs.size("uploads/p1/2.bin").await.unwrap(), None);
    assert_eq!(blobs.size("uploads/p10/3.bin").await.unwrap(), Some(1));
    blobs.delete_prefix("uploads/none").await.unwrap();
    for bad in ["../escape", "/abs", "a//b", ".hidden", ""] {
        assert!(blobs.put(bad, &mut &b"x"[..]).await.is_err(), "{bad}");
    }
}

/// A job that runs longer than its visibility is not handed to another worker while it beats,
/// and is handed out again soon after its worker stops (dies): on SQLite and on moto's SQS.
pub async fn heartbeat_contract(queue: Arc<dyn Queue>, name: JobQueue) {
    use shared::jobs::{Heartbeat, keep_hidden};
    let beat = Heartbeat { visibility: Duration::from_secs(2), every: Duration::from_millis(500) };
    queue.send(name, "long job", "g1", Duration::ZERO).await.unwrap();
    let first = queue.receive(name, 1, beat.visibility).await.unwrap().pop().expect("delivered");
    // Another worker keeps asking; the job works for three times its visibility, then its
    // worker dies without settling it.
    let watcher = {
        let queue = queue.clone();
        tokio::spawn(async move {
            loop {
                if let Some(again) = queue.receive(name, 1, Duration::from_secs(30)).await.unwrap().pop() {
                    return (tokio::time::Instant::now(), again.receive_count);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let work = tokio::time::sleep(3 * beat.visibility);
    keep_hidden(queue.as_ref(), name, &first.receipt, beat, true, work).await;
    let died = tokio::time::Instant::now();
    let (seen, receive_count) = watcher.await.unwrap();
    assert!(seen >= died, "not handed out while it was beating ({:?} before its worker stopped)", died - seen);
    assert!(seen - died < beat.visibility + Duration::from_secs(2), "handed out again within its visibility: {:?}", seen - died);
    assert_eq!(receive_count, 2);
}
