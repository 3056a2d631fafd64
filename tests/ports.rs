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
    blobs_contract(Arc::new(DirBlobs::new(dir.path().join("blobs"), shared::links::SignedLinks::new("http://127.0.0.1:1", [3; 32])).unwrap())).await;
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

#[tokio::test]
async fn a_session_lease_is_one_holders_until_released_or_expired_and_sessions_are_sealed() {
    use shared::crypto::MasterKey;
    use shared::ports::Table;
    use shared::repo::Records;
    use shared::repo::sessions::TelegramSessions;

    let dir = tempfile::tempdir().unwrap();
    let table = Arc::new(SqliteTable::new(SqliteDb::open(&dir.path().join("t.db")).unwrap()));
    let sessions = TelegramSessions::new(Records::new(table.clone()), &MasterKey::from_base64(&MasterKey::generate_key()).unwrap());
    let minute = Duration::from_secs(60);
    assert!(sessions.try_lease("c1", "a", minute).await.unwrap());
    assert!(!sessions.try_lease("c1", "b", minute).await.unwrap(), "one connection per session");
    assert!(sessions.try_lease("c2", "b", minute).await.unwrap(), "another account's session is its own");
    sessions.release("c1", "b").await.unwrap();
    assert!(!sessions.try_lease("c1", "b", minute).await.unwrap(), "only the holder gives it back");
    sessions.release("c1", "a").await.unwrap();
    assert!(sessions.try_lease("c1", "b", Duration::from_secs(1)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(sessions.try_lease("c1", "c", minute).await.unwrap(), "a holder that died lets go when its lease expires");

    sessions.save("c1", b"auth-key-bytes").await.unwrap();
    assert_eq!(sessions.load("c1").await.unwrap().as_deref(), Some(&b"auth-key-bytes"[..]));
    let stored = table.query("connector#c1", "session", 10, false).await.unwrap();
    assert!(!stored.is_empty() && stored.iter().all(|item| !item.data.contains("auth-key-bytes")), "sealed at rest");
}
