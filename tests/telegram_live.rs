//! Opt-in: the grammers adapter against Telegram's test servers. Runs when TG_TEST_API_ID and
//! TG_TEST_API_HASH are set (an app from my.telegram.org); otherwise says why it skipped.
//! TG_TEST_PHONE picks the test account (default 9996621234: DC 2, code 22222); the account
//! must exist on the test servers (sign-up is not the app's to do).

use std::sync::Arc;

use shared::adapters::grammers::{ApiCredentials, GrammersTelegram, Servers};
use shared::adapters::{SqliteDb, SqliteTable};
use shared::crypto::{MasterKey, Secret};
use shared::domain::{Formatted, PhoneE164};
use shared::ports::{Account, LoginError, LoginStep, Telegram};
use shared::repo::Records;
use shared::repo::sessions::TelegramSessions;

#[tokio::test]
async fn logs_in_sends_and_logs_out_on_the_test_servers() {
    let (Ok(api_id), Ok(api_hash)) = (std::env::var("TG_TEST_API_ID"), std::env::var("TG_TEST_API_HASH")) else {
        println!("skipped: set TG_TEST_API_ID and TG_TEST_API_HASH to run against Telegram's test servers");
        return;
    };
    let phone = std::env::var("TG_TEST_PHONE").unwrap_or_else(|_| "9996621234".into());
    let dc = phone.chars().nth(5).expect("a test number is 99966XYYYY");
    let code: String = std::iter::repeat_n(dc, 5).collect();

    let dir = tempfile::tempdir().unwrap();
    let table = Arc::new(SqliteTable::new(SqliteDb::open(&dir.path().join("t.db")).unwrap()));
    let master = MasterKey::from_base64(&MasterKey::generate_key()).unwrap();
    let sessions = TelegramSessions::new(Records::new(table), &master);
    let credentials = ApiCredentials { api_id: api_id.parse().expect("TG_TEST_API_ID is a number"), api_hash: Secret::new(api_hash) };
    let telegram = GrammersTelegram::new(credentials, sessions.clone(), Servers::Test);

    let phone = PhoneE164::parse(&format!("+{phone}"), None).unwrap();
    let login = "live-test";
    let LoginStep::CodeSent { phone_code_hash } = telegram.send_code(login, &phone).await.expect("auth.sendCode") else {
        panic!("expected a code to be sent");
    };
    let done = match telegram.sign_in(login, &phone, &phone_code_hash, &code).await {
        Ok(LoginStep::Done(done)) => done,
        Err(LoginError::NoAccount) => {
            println!("skipped: {phone} has no account on the test servers");
            return;
        }
        other => panic!("sign in: {other:?}"),
    };
    assert!(sessions.load(login).await.unwrap().is_some(), "the session is stored, sealed");
    let me = Account { connector_id: login.into(), user_id: done.user.peer.user_id };
    let random_id = shared::domain::message::random_id("live-test", 0);
    let connection = telegram.connect(&me).await.expect("connect");
    let first = connection.send_text(done.user.peer, &Formatted::plain("OLChat live test"), random_id).await.expect("send");
    assert!(first.id.is_some());
    let again = connection.send_text(done.user.peer, &Formatted::plain("OLChat live test"), random_id).await.expect("resend");
    assert_eq!(again.id, first.id, "a repeated random_id is not delivered again, and names the first message");
    connection.close().await;
    telegram.log_out(&me).await.expect("log out");
    assert!(sessions.load(login).await.unwrap().is_none(), "the session is forgotten");
}
