//! The port contracts on the embedded adapters (SQLite, a directory).

use std::sync::Arc;
use std::time::Duration;

use olchat_tests::contracts::{blobs_contract, queue_contract, table_contract};
use shared::adapters::{DirBlobs, SqliteDb, SqliteQueue, SqliteTable};
use shared::ports::{JobQueue, Queue};

#[tokio::test]
async fn embedded_backends_keep_the_port_contracts() {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDb::open(&dir.path().join("t.db")).unwrap();
    table_contract(Arc::new(SqliteTable::new(db.clone()))).await;
    queue_contract(Arc::new(SqliteQueue::new(db, 5)), 5, Duration::from_millis(100)).await;
    blobs_contract(Arc::new(DirBlobs::new(dir.path().join("blobs"), "http://127.0.0.1:1", [3; 32]).unwrap())).await;
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
