//! The port contracts on the embedded adapters (SQLite, a directory).

use std::sync::Arc;
use std::time::Duration;

use olchat_tests::contracts::{blobs_contract, heartbeat_contract, queue_contract, table_contract};
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

#[tokio::test]
async fn a_rotated_key_keeps_every_session_and_token_and_seals_them_again_until_the_old_key_can_go() {
    use shared::crypto::{MasterKey, Secret};
    use shared::ports::Table;
    use shared::repo::Records;
    use shared::repo::portals::{Portals, TokenOwner, UserAuth};
    use shared::repo::sessions::TelegramSessions;

    let dir = tempfile::tempdir().unwrap();
    let table = Arc::new(SqliteTable::new(SqliteDb::open(&dir.path().join("t.db")).unwrap()));
    let (old, new) = (MasterKey::generate_key(), MasterKey::generate_key());
    let key = |keys: &str| MasterKey::from_base64(keys).unwrap();
    let records = || Records::new(table.clone());
    let auth = UserAuth { access_token: Secret::new("access"), refresh_token: Some(Secret::new("refresh")) };
    TelegramSessions::new(records(), &key(&old)).save("c1", b"auth-key").await.unwrap();
    let before = Portals::new(records(), &key(&old));
    before.save_auth("m1", TokenOwner::App, &auth).await.unwrap();
    let mut portal: shared::repo::portals::Portal =
        serde_json::from_value(serde_json::json!({ "member_id": "m1", "domain": "m1.bitrix24.com", "client_endpoint": "https://m1.bitrix24.com/rest/", "application_token": null })).unwrap();
    before.set_application_token(&mut portal, &Secret::new("app-token"));
    before.save(&portal).await.unwrap();
    let obtained = Portals::new(records(), &key(&old)).auth_obtained_at("m1", TokenOwner::App).await.unwrap();

    // Rotated: the new key first, the old one still accepted.
    let rotated = key(&format!("{new},{old}"));
    let sessions = TelegramSessions::new(records(), &rotated);
    assert_eq!(sessions.load("c1").await.unwrap().as_deref(), Some(&b"auth-key"[..]), "the session still opens, and is sealed again");
    let portals = Portals::new(records(), &rotated);
    assert_eq!(portals.auth("m1", TokenOwner::App).await.unwrap().unwrap().refresh_token.unwrap().expose(), "refresh");
    assert_eq!(portals.reseal("m1").await.unwrap(), 2, "the application token and the portal's token pair");
    assert_eq!(portals.reseal("m1").await.unwrap(), 0, "once");
    assert_eq!(portals.auth_obtained_at("m1", TokenOwner::App).await.unwrap(), obtained, "when it was obtained stays as it was");

    // The old key gone: all of it opens with the new one alone.
    let only_new = key(&new);
    assert_eq!(TelegramSessions::new(records(), &only_new).load("c1").await.unwrap().as_deref(), Some(&b"auth-key"[..]));
    let after = Portals::new(records(), &only_new);
    assert!(after.application_token_matches(&after.get("m1").await.unwrap().unwrap(), "app-token"), "events still check out");
    let opened = after.auth("m1", TokenOwner::App).await.unwrap().expect("opens");
    assert_eq!((opened.access_token.expose(), opened.refresh_token.unwrap().expose()), ("access", "refresh"));
    let stored = table.query("connector#c1", "session", 10, false).await.unwrap();
    assert!(stored.iter().all(|item| !item.data.contains("auth-key")), "sealed at rest");
}

#[tokio::test]
async fn a_working_job_stays_hidden_while_it_beats_and_comes_back_soon_after_its_worker_dies() {
    let dir = tempfile::tempdir().unwrap();
    heartbeat_contract(Arc::new(SqliteQueue::new(SqliteDb::open(&dir.path().join("q.db")).unwrap(), 5)), JobQueue::Telegram).await;
}

#[tokio::test]
async fn the_embedded_table_deletes_expired_items_as_dynamodb_does() {
    use shared::ports::{Condition, Item, Table};
    let dir = tempfile::tempdir().unwrap();
    let table = SqliteTable::new(SqliteDb::open(&dir.path().join("t.db")).unwrap());
    let now = shared::clock::now_secs();
    for (sk, expires_at) in [("past-1", Some(now - 10)), ("past-2", Some(now - 1)), ("future", Some(now + 3600)), ("forever", None)] {
        table.put(Item { pk: "p".into(), sk: sk.into(), data: "{}".into(), version: 1, expires_at }, Condition::Always).await.unwrap();
    }
    assert_eq!(table.purge_expired(1).unwrap(), 1, "a batch at a time");
    assert_eq!(table.purge_expired(100).unwrap(), 1);
    assert_eq!(table.purge_expired(100).unwrap(), 0);
    let left: Vec<String> = table.query("p", "", 10, false).await.unwrap().into_iter().map(|i| i.sk).collect();
    assert_eq!(left, ["forever", "future"]);
}
