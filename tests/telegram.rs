//! The grammers adapter against the sandbox's two MTProto data centres, call by call: logins
//! (code, cloud password, QR, each across data centres), look-ups, sends and their retries, how
//! Telegram's errors map, `303` migrations, `min` users, updates, history paging and downloads.
//! Every call goes through `services.telegram`, as the app's jobs make them; the sandbox world
//! only sets the scene (clients writing, faults) and tells what really arrived.

use std::time::{Duration, Instant};

use olchat_tests::{TestApp, fresh_key, spawn_app_with};
use shared::crypto::Secret;
use shared::domain::formatting::from_bbcode;
use shared::domain::{Formatted, PhoneE164, TelegramUsername};
use shared::ports::{
    Account, Difference, HISTORY_LIMIT, IncomingKind, IncomingMessage, LoginError, LoginStep, Media, MediaKind, Peer, RemoteFile, TelegramError,
    TelegramSession, Update, UpdatesState,
};
use shared::sandbox::seed;
use shared::sandbox::telegram::{
    ClientFile, DIFFERENCE_SLICE, EXPIRED_CODE, Fault, FaultTarget, LOGIN_CODE, ReceivedMessage, SandboxTelegram, TOO_LONG_GAP,
};

const IVAN: i64 = 1001;
const IVAN_PHONE: &str = "+79161234567";
const OLGA: i64 = 1002;
const SVETLANA_PHONE: &str = "+79265554433";
/// Telegram sends files of more than 10 MiB in big parts (core.telegram.org/api/files).
const BIG_FILE: usize = 10 * 1024 * 1024;

/// A fresh instance whose scheduled catch-ups stay off: nothing but the test calls Telegram, so
/// an injected fault hits the call the test makes.
async fn spawn() -> TestApp {
    spawn_app_with(|s| s.catch_up_every = None).await
}

fn world(app: &TestApp) -> &SandboxTelegram {
    &app.app.sandbox().telegram
}

fn sales() -> Account {
    Account { connector_id: "sales".into(), user_id: seed::SALES_ACCOUNT }
}

/// The user as every account addresses them.
fn peer(app: &TestApp, user_id: i64) -> Peer {
    let user = world(app).users().into_iter().find(|u| u.id == user_id).expect("a seeded user");
    Peer { user_id, access_hash: user.access_hash }
}

fn phone(raw: &str) -> PhoneE164 {
    PhoneE164::parse(raw, None).expect("a valid number")
}

fn username(raw: &str) -> TelegramUsername {
    TelegramUsername::parse(raw).expect("a valid username")
}

/// How many times the sandbox data centres were asked `method`.
fn calls(app: &TestApp, method: &str) -> u64 {
    world(app).stats().calls.get(method).copied().unwrap_or(0)
}

/// Connections accepted by data centre `dc`.
fn connections(app: &TestApp, dc: i32) -> u64 {
    world(app).stats().connections.get(&dc).copied().unwrap_or(0)
}

fn home_dc(app: &TestApp, user_id: i64) -> i32 {
    world(app).users().into_iter().find(|u| u.id == user_id).expect("a seeded user").dc
}

/// Every message sales and `user_id` wrote each other, oldest first.
fn chat_with(app: &TestApp, user_id: i64) -> Vec<ReceivedMessage> {
    let pair = |m: &ReceivedMessage| (m.from_user_id, m.to_user_id);
    world(app).received().into_iter().filter(|m| pair(m) == (seed::SALES_ACCOUNT, user_id) || pair(m) == (user_id, seed::SALES_ACCOUNT)).collect()
}

/// The message with `text`, as the sandbox received it.
fn received(app: &TestApp, text: &str) -> ReceivedMessage {
    world(app).received().into_iter().find(|m| m.text == text).unwrap_or_else(|| panic!("no message {text:?} arrived"))
}

/// How many times `text` went from sales to `to`.
fn delivered(app: &TestApp, to: i64, text: &str) -> usize {
    world(app).delivered(seed::SALES_ACCOUNT, to).get(text).copied().unwrap_or(0)
}

fn media(kind: MediaKind, file_name: &str, mime_type: &str, bytes: &[u8]) -> Media {
    Media { kind, file_name: file_name.into(), mime_type: mime_type.into(), size: bytes.len() as u64 }
}

fn body(bytes: Vec<u8>) -> shared::ports::blobs::BlobReader {
    Box::new(std::io::Cursor::new(bytes))
}

/// `len` bytes that start as a PNG does, and vary, so that a shifted part would show.
fn png(len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    bytes[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    bytes
}

fn pdf(len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
    bytes[..5].copy_from_slice(b"%PDF-");
    bytes
}

/// The messages of a difference.
fn messages(updates: &[Update]) -> Vec<&IncomingMessage> {
    updates.iter().filter_map(|u| if let Update::Message(m) = u { Some(m) } else { None }).collect()
}

/// Catches up from `from` to the end: every slice's messages, and how many slices it took.
async fn catch_up(session: &(dyn TelegramSession + '_), from: UpdatesState) -> (Vec<IncomingMessage>, usize, UpdatesState) {
    let (mut all, mut slices, mut state) = (Vec::new(), 0, from);
    loop {
        let Difference::Updates { updates, state: next, more } = session.difference(state).await.expect("a difference") else {
            panic!("differenceTooLong after {slices} slices");
        };
        slices += 1;
        assert!(updates.len() <= DIFFERENCE_SLICE, "slice {slices} had {} updates", updates.len());
        all.extend(messages(&updates).into_iter().cloned());
        state = next;
        if !more {
            return (all, slices, state);
        }
        assert!(slices < 50, "the difference never ends");
    }
}

/// Downloads `file` whole: the bytes, and the count `download` reported.
async fn download(session: &(dyn TelegramSession + '_), file: &RemoteFile) -> (Vec<u8>, u64) {
    let mut sink = Vec::new();
    let written = session.download(file, &mut sink).await.expect("the download completes");
    (sink, written)
}

/// SHA-256 as hex, to compare with the hashes the sandbox keeps.
fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Logins

#[tokio::test]
async fn a_login_by_code_follows_phone_migrate_to_the_accounts_data_centre_and_its_session_works_there() {
    let app = spawn().await;
    let telegram = &app.app.services.telegram;
    let login = fresh_key();
    let number = phone(seed::SPARE_PHONE);
    assert_eq!(home_dc(&app, seed::SPARE_ACCOUNT), 1, "the spare account lives on DC 1; a new session starts on DC 2");

    let step = telegram.send_code(&login, &number).await.expect("a code is sent");
    let LoginStep::CodeSent { phone_code_hash } = step else { panic!("expected CodeSent, got {step:?}") };
    assert_eq!(calls(&app, "auth.sendCode"), 2, "asked at DC 2, which answered PHONE_MIGRATE_1, then at DC 1");
    assert!(connections(&app, 1) >= 1, "DC 1 was reached");

    // Wrong and expired codes leave the login open; the right code then signs in.
    let wrong = telegram.sign_in(&login, &number, &phone_code_hash, "11111").await;
    assert_eq!(wrong, Err(LoginError::InvalidCode));
    let expired = telegram.sign_in(&login, &number, &phone_code_hash, EXPIRED_CODE).await;
    assert_eq!(expired, Err(LoginError::CodeExpired));
    let step = telegram.sign_in(&login, &number, &phone_code_hash, LOGIN_CODE).await.expect("the right code signs in");
    let LoginStep::Done(done) = step else { panic!("expected Done, got {step:?}") };
    assert_eq!(done.user.peer.user_id, seed::SPARE_ACCOUNT);
    assert_eq!(done.user.username.as_deref(), Some("olchat_marketing"));
    assert_eq!(done.phone, seed::SPARE_PHONE.trim_start_matches('+'));
    assert!(world(&app).users().iter().any(|u| u.id == seed::SPARE_ACCOUNT && u.logged_in), "the sandbox knows the key as logged in");

    // The login's session is the connector's: it works, straight at DC 1 (one getState, no 303).
    let (dc1, get_states) = (connections(&app, 1), calls(&app, "updates.getState"));
    let session = telegram.connect(&Account { connector_id: login.clone(), user_id: seed::SPARE_ACCOUNT }).await.expect("the new session connects");
    let state = session.updates_state().await;
    session.close().await;
    assert!(state.is_ok(), "{state:?}");
    assert_eq!(calls(&app, "updates.getState"), get_states + 1, "asked once, at the account's own DC");
    assert!(connections(&app, 1) > dc1, "the session connected to DC 1");
}

#[tokio::test]
async fn a_login_with_a_cloud_password_asks_for_it_checks_it_and_refuses_parameters_it_cannot_check() {
    let app = spawn().await;
    let telegram = &app.app.services.telegram;
    let login = fresh_key();
    let number = phone(seed::GUARDED_PHONE);
    let LoginStep::CodeSent { phone_code_hash } = telegram.send_code(&login, &number).await.unwrap() else { panic!("a code step") };
    let step = telegram.sign_in(&login, &number, &phone_code_hash, LOGIN_CODE).await;
    assert_eq!(step, Ok(LoginStep::PasswordNeeded { hint: Some("sandbox".into()) }));

    let wrong = telegram.check_password(&login, &Secret::new("not-the-password")).await;
    assert_eq!(wrong, Err(LoginError::InvalidPassword));

    // SRP parameters grammers would panic on (g = 8): the step fails plainly, nothing is sent.
    world(&app).inject(Fault::BadSrp, FaultTarget::Method("account.getPassword".into()), 1);
    let checks = calls(&app, "auth.checkPassword");
    let refused = telegram.check_password(&login, &Secret::new(seed::CLOUD_PASSWORD)).await;
    assert!(matches!(refused, Err(LoginError::Telegram(TelegramError::Rejected(_)))), "{refused:?}");
    assert_eq!(calls(&app, "auth.checkPassword"), checks, "no proof computed over parameters it cannot check");

    // The login is still there: the right password completes it.
    let step = telegram.check_password(&login, &Secret::new(seed::CLOUD_PASSWORD)).await.expect("the right password signs in");
    let LoginStep::Done(done) = step else { panic!("expected Done, got {step:?}") };
    assert_eq!(done.user.peer.user_id, seed::GUARDED_ACCOUNT);
    let session = telegram.connect(&Account { connector_id: login, user_id: seed::GUARDED_ACCOUNT }).await.unwrap();
    let state = session.updates_state().await;
    session.close().await;
    assert!(state.is_ok(), "{state:?}");
}

#[tokio::test]
async fn a_qr_login_follows_the_token_to_the_accounts_data_centre() {
    let app = spawn().await;
    let telegram = &app.app.services.telegram;
    let login = fresh_key();
    let step = telegram.qr_login(&login).await.expect("a QR code");
    let LoginStep::Qr { url, expires } = step else { panic!("expected Qr, got {step:?}") };
    assert!(url.starts_with("tg://login?token="), "{url}");
    assert!(expires > shared::clock::now_secs(), "it expires in the future");
    let LoginStep::Qr { url: again, .. } = telegram.qr_login(&login).await.unwrap() else { panic!("not scanned yet: a fresh code") };
    assert_ne!(again, url, "each ask is a fresh token");

    // Scanned by the spare account, which lives on DC 1: DC 2 answers loginTokenMigrateTo.
    assert!(world(&app).scan_qr(seed::SPARE_ACCOUNT), "a code was shown");
    let imports = calls(&app, "auth.importLoginToken");
    let step = telegram.qr_login(&login).await.expect("the scanned code logs in");
    let LoginStep::Done(done) = step else { panic!("expected Done, got {step:?}") };
    assert_eq!(done.user.peer.user_id, seed::SPARE_ACCOUNT);
    assert_eq!(done.phone, seed::SPARE_PHONE.trim_start_matches('+'));
    assert_eq!(calls(&app, "auth.importLoginToken"), imports + 1, "the token was imported at DC 1");

    let session = telegram.connect(&Account { connector_id: login, user_id: seed::SPARE_ACCOUNT }).await.unwrap();
    let state = session.updates_state().await;
    session.close().await;
    assert!(state.is_ok(), "{state:?}");
}

#[tokio::test]
async fn a_qr_login_of_an_account_with_a_cloud_password_asks_for_it_at_the_accounts_data_centre() {
    let app = spawn().await;
    let telegram = &app.app.services.telegram;
    let login = fresh_key();
    assert!(matches!(telegram.qr_login(&login).await, Ok(LoginStep::Qr { .. })));
    assert!(world(&app).scan_qr(seed::GUARDED_ACCOUNT));
    let step = telegram.qr_login(&login).await;
    assert_eq!(step, Ok(LoginStep::PasswordNeeded { hint: Some("sandbox".into()) }), "imported at DC 1, which asks for the password");
    let step = telegram.check_password(&login, &Secret::new(seed::CLOUD_PASSWORD)).await.expect("the password completes the QR login");
    let LoginStep::Done(done) = step else { panic!("expected Done, got {step:?}") };
    assert_eq!(done.user.peer.user_id, seed::GUARDED_ACCOUNT);
}

#[tokio::test]
async fn unknown_numbers_gone_logins_and_flood_waits_at_login_are_said_by_name() {
    let app = spawn().await;
    let telegram = &app.app.services.telegram;
    // Telegram sends a code to a number it does not know; signing in says there is no account.
    let login = fresh_key();
    let nobody = phone("+74951002030");
    let LoginStep::CodeSent { phone_code_hash } = telegram.send_code(&login, &nobody).await.unwrap() else { panic!("a code step") };
    assert_eq!(telegram.sign_in(&login, &nobody, &phone_code_hash, LOGIN_CODE).await, Err(LoginError::NoAccount));
    // A login whose session is gone (never started, or finished) has to start again.
    let never = telegram.sign_in(&fresh_key(), &phone(seed::SPARE_PHONE), &phone_code_hash, LOGIN_CODE).await;
    assert_eq!(never, Err(LoginError::CodeExpired));
    assert_eq!(telegram.check_password(&fresh_key(), &Secret::new("x")).await, Err(LoginError::CodeExpired));

    world(&app).inject(Fault::FloodWait { seconds: 42 }, FaultTarget::Resolve, 1);
    let flood = telegram.send_code(&fresh_key(), &phone(seed::SPARE_PHONE)).await;
    assert_eq!(flood, Err(LoginError::Telegram(TelegramError::FloodWait { seconds: 42 })));
}

#[tokio::test]
async fn logging_out_signs_the_key_out_and_forgets_the_session() {
    let app = spawn().await;
    let telegram = &app.app.services.telegram;
    let login = fresh_key();
    let number = phone(seed::SPARE_PHONE);
    let LoginStep::CodeSent { phone_code_hash } = telegram.send_code(&login, &number).await.unwrap() else { panic!("a code step") };
    assert!(matches!(telegram.sign_in(&login, &number, &phone_code_hash, LOGIN_CODE).await, Ok(LoginStep::Done(_))));
    let account = Account { connector_id: login, user_id: seed::SPARE_ACCOUNT };

    telegram.log_out(&account).await.expect("signed out");
    assert_eq!(calls(&app, "auth.logOut"), 1);
    assert!(world(&app).users().iter().any(|u| u.id == seed::SPARE_ACCOUNT && !u.logged_in), "no key is logged in as it any more");
    let gone = telegram.connect(&account).await.err();
    assert!(matches!(gone, Some(TelegramError::Unauthorized(_))), "the session is gone: {gone:?}");
    assert_eq!(telegram.log_out(&account).await, Ok(()), "signing out again is no error");
}

// ---------------------------------------------------------------------------------------------
// Look-ups

#[tokio::test]
async fn a_public_number_and_a_username_resolve_while_unknown_names_and_hidden_numbers_do_not() {
    let app = spawn().await;
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let ivan = session.resolve_phone(&phone(IVAN_PHONE), false).await;
    let olga = session.resolve_username(&username("olga_smirnova")).await;
    let unknown = session.resolve_username(&username("nobody_has_this_name")).await;
    let contacts_before = session.contacts().await.unwrap().len();
    let imports = calls(&app, "contacts.importContacts");
    let svetlana = session.resolve_phone(&phone(SVETLANA_PHONE), false).await;
    let contacts_after = session.contacts().await.unwrap().len();
    session.close().await;

    let ivan = ivan.unwrap().expect("Ivan lets everybody find him by number");
    assert_eq!((ivan.peer, ivan.first_name.as_str(), ivan.username.as_deref()), (peer(&app, IVAN), "Ivan", Some("ivan_petrov")));
    let olga = olga.unwrap().expect("a public username");
    assert_eq!(olga.peer, peer(&app, OLGA));
    assert_eq!(unknown, Ok(None));
    assert_eq!(svetlana, Ok(None), "her number is for her contacts only");
    assert_eq!(calls(&app, "contacts.importContacts"), imports + 1, "resolvePhone missed, so the number was tried as a contact");
    assert_eq!(contacts_after, contacts_before, "a number nobody was found behind adds no contact");
}

/// No seeded user is found by `contacts.importContacts` and not by `contacts.resolvePhone` (the
/// sandbox applies one privacy rule to both), so `resolvePhone` is made to miss.
#[tokio::test]
async fn a_number_found_only_by_import_leaves_the_contacts_again_unless_it_is_kept() {
    let app = spawn().await;
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let before = session.contacts().await.unwrap();
    assert!(before.iter().all(|c| c.user.peer.user_id != IVAN), "Ivan is no contact of sales yet");
    let miss = || Fault::Rpc { code: 400, message: "PHONE_NOT_OCCUPIED".into() };

    world(&app).inject(miss(), FaultTarget::Method("contacts.resolvePhone".into()), 1);
    let found = session.resolve_phone(&phone(IVAN_PHONE), false).await;
    let after_lookup = session.contacts().await.unwrap();
    world(&app).inject(miss(), FaultTarget::Method("contacts.resolvePhone".into()), 1);
    let kept = session.resolve_phone(&phone(IVAN_PHONE), true).await;
    let after_keep = session.contacts().await.unwrap();
    session.close().await;

    assert_eq!(found.unwrap().map(|u| u.peer), Some(peer(&app, IVAN)), "found by import");
    assert_eq!(calls(&app, "contacts.deleteContacts"), 1, "the number imported only to find him was deleted again");
    assert_eq!(after_lookup.len(), before.len(), "the contacts did not grow");
    assert_eq!(kept.unwrap().map(|u| u.peer), Some(peer(&app, IVAN)));
    assert_eq!(after_keep.len(), before.len() + 1, "kept: the contacts grew by him");
    let ivan = after_keep.iter().find(|c| c.user.peer.user_id == IVAN).expect("Ivan is a contact now");
    assert_eq!(ivan.phone.as_deref(), Some(IVAN_PHONE.trim_start_matches('+')));
}

/// A finding: the number is imported to find its owner, who already was one of the account's
/// contacts (kept by an earlier look-up while the connector kept imports, or saved by the
/// salesperson); "deleting what was imported" deletes that contact.
#[tokio::test]
async fn a_look_up_never_deletes_a_contact_the_account_already_had() {
    let app = spawn().await;
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let miss = || Fault::Rpc { code: 400, message: "PHONE_NOT_OCCUPIED".into() };
    world(&app).inject(miss(), FaultTarget::Method("contacts.resolvePhone".into()), 1);
    session.resolve_phone(&phone(IVAN_PHONE), true).await.unwrap().expect("found by import, and kept");
    let kept = session.contacts().await.unwrap();
    world(&app).inject(miss(), FaultTarget::Method("contacts.resolvePhone".into()), 1);
    let again = session.resolve_phone(&phone(IVAN_PHONE), false).await;
    let after = session.contacts().await.unwrap();
    session.close().await;
    assert!(kept.iter().any(|c| c.user.peer.user_id == IVAN));
    assert_eq!(again.unwrap().map(|u| u.peer), Some(peer(&app, IVAN)));
    assert!(after.iter().any(|c| c.user.peer.user_id == IVAN), "Ivan was a contact before this look-up and stays one");
    assert_eq!(after.len(), kept.len());
}

#[tokio::test]
async fn an_import_past_the_accounts_limit_is_a_rate_limit_not_a_miss() {
    let app = spawn().await;
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    world(&app).inject(Fault::ImportLimited, FaultTarget::Method("contacts.importContacts".into()), 1);
    let limited = session.resolve_phone(&phone(SVETLANA_PHONE), false).await;
    session.close().await;
    assert!(matches!(limited, Err(TelegramError::FloodWait { seconds }) if seconds > 0), "retry_contacts is a wait: {limited:?}");
}

#[tokio::test]
async fn a_min_user_is_never_an_addressable_recipient() {
    let app = spawn().await;
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    world(&app).inject(Fault::MinUsers, FaultTarget::Method("contacts.resolveUsername".into()), 1);
    let min = session.resolve_username(&username("olga_smirnova")).await;
    let full = session.resolve_username(&username("olga_smirnova")).await;
    session.close().await;
    assert_eq!(min, Ok(None), "a min constructor's access_hash addresses no one");
    assert_eq!(full.unwrap().map(|u| u.peer), Some(peer(&app, OLGA)), "the same name, answered in full, resolves");
}

// ---------------------------------------------------------------------------------------------
// Sends

#[tokio::test]
async fn formatted_text_arrives_with_its_entities() {
    let app = spawn().await;
    let text = from_bbcode("[b]Привет[/b], here is [i]the[/i] [url=https://example.com/offer]offer[/url] and [s]old[/s] 🎉 [u]price[/u]");
    assert!(text.entities.len() >= 4, "{text:?}");
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let sent = session.send_text(peer(&app, IVAN), &text, 1).await;
    session.close().await;
    let id = sent.unwrap().id.expect("the new message's id");
    let arrived = received(&app, &text.text);
    assert_eq!((arrived.id, arrived.from_user_id, arrived.to_user_id), (id, seed::SALES_ACCOUNT, IVAN));
    assert_eq!(arrived.entities, text.entities, "every entity, at its UTF-16 offsets");
}

#[tokio::test]
async fn photos_documents_and_voice_notes_arrive_as_sent_over_one_connection() {
    let app = spawn().await;
    let ivan = peer(&app, IVAN);
    let (photo, document, voice) = (png(200_000), pdf(700_001), [&b"OggS"[..], &[3u8; 30_000]].concat());
    let waveform: Vec<u8> = (0..63).collect();
    let connections_before: u64 = world(&app).stats().connections.values().sum();

    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let caption = from_bbcode("[b]The photo[/b]");
    let sent_photo = session.send_media(ivan, &media(MediaKind::Photo, "shot.png", "image/png", &photo), body(photo.clone()), &caption, 11).await;
    let sent_document = session
        .send_media(ivan, &media(MediaKind::Document, "offer.pdf", "application/pdf", &document), body(document.clone()), &Formatted::plain("The offer"), 12)
        .await;
    let kind = MediaKind::Voice { duration_secs: 7, waveform: waveform.clone() };
    let sent_voice = session.send_media(ivan, &media(kind, "note.ogg", "audio/ogg", &voice), body(voice.clone()), &Formatted::plain("Listen"), 13).await;
    session.close().await;

    let photo_id = sent_photo.unwrap().id;
    let arrived = received(&app, "The photo");
    assert_eq!((Some(arrived.id), arrived.media.as_str(), &arrived.entities), (photo_id, "photo", &caption.entities), "a captioned photo");
    let file = arrived.file.expect("the photo's file");
    assert_eq!((file.format.as_str(), file.size, file.received_bytes), ("png", photo.len() as u64, photo.len() as u64));
    assert_eq!(file.sha256, sha256(&photo));

    let arrived = received(&app, "The offer");
    assert_eq!((Some(arrived.id), arrived.media.as_str()), (sent_document.unwrap().id, "document"));
    let file = arrived.file.expect("the document's file");
    assert_eq!((file.file_name.as_str(), file.mime_type.as_str(), file.format.as_str()), ("offer.pdf", "application/pdf", "pdf"));
    assert_eq!((file.size, file.sha256), (document.len() as u64, sha256(&document)));

    let arrived = received(&app, "Listen");
    assert_eq!((Some(arrived.id), arrived.media.as_str()), (sent_voice.unwrap().id, "voice"));
    let file = arrived.file.expect("the voice note's file");
    assert_eq!((file.mime_type.as_str(), file.duration, file.waveform.as_deref()), ("audio/ogg", Some(7), Some(&waveform[..])));
    assert_eq!(file.sha256, sha256(&voice));

    let connections_after: u64 = world(&app).stats().connections.values().sum();
    assert_eq!(connections_after, connections_before + 1, "every send went over the job's one connection");
}

#[tokio::test]
async fn a_file_over_10_mib_goes_up_in_big_parts_and_arrives_whole() {
    let app = spawn().await;
    let bytes = pdf(BIG_FILE + 1);
    let (big_parts, small_parts) = (calls(&app, "upload.saveBigFilePart"), calls(&app, "upload.saveFilePart"));
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let big = media(MediaKind::Document, "catalogue.pdf", "application/pdf", &bytes);
    let sent = session.send_media(peer(&app, IVAN), &big, body(bytes.clone()), &Formatted::plain("The catalogue"), 21).await;
    session.close().await;

    let id = sent.expect("the big file is sent").id;
    assert!(calls(&app, "upload.saveBigFilePart") > big_parts, "upload.saveBigFilePart was used");
    assert_eq!(calls(&app, "upload.saveFilePart"), small_parts, "and no small parts");
    let arrived = received(&app, "The catalogue");
    assert_eq!(Some(arrived.id), id);
    let file = arrived.file.expect("the file");
    assert_eq!((file.size, file.received_bytes), (bytes.len() as u64, bytes.len() as u64));
    assert_eq!(file.sha256, sha256(&bytes), "every byte, in order");
}

#[tokio::test]
async fn an_empty_file_is_refused_before_anything_is_uploaded() {
    let app = spawn().await;
    let (parts, sends) = (calls(&app, "upload.saveFilePart"), calls(&app, "messages.sendMedia"));
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let empty = media(MediaKind::Document, "empty.txt", "text/plain", &[]);
    let refused = session.send_media(peer(&app, IVAN), &empty, body(Vec::new()), &Formatted::plain("nothing"), 31).await;
    session.close().await;
    assert!(matches!(refused, Err(TelegramError::Rejected(_))), "{refused:?}");
    assert_eq!((calls(&app, "upload.saveFilePart"), calls(&app, "messages.sendMedia")), (parts, sends), "nothing went up");
    assert_eq!(delivered(&app, IVAN, "nothing"), 0);
}

#[tokio::test]
async fn a_retried_send_is_delivered_once_and_learns_the_original_id_from_the_chat() {
    let app = spawn().await;
    let ivan = peer(&app, IVAN);
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let first = session.send_text(ivan, &Formatted::plain("Your order has shipped"), 41).await.unwrap();
    // The chat goes on before the retry: a reply, and another message of ours.
    world(&app).reply(IVAN, seed::SALES_ACCOUNT, "Your order has shipped", None).unwrap();
    session.send_text(ivan, &Formatted::plain("Tracking follows"), 42).await.unwrap();
    let looked_up = calls(&app, "messages.getHistory");
    let retried = session.send_text(ivan, &Formatted::plain("Your order has shipped"), 41).await;
    session.close().await;

    assert!(first.id.is_some());
    assert_eq!(retried, Ok(first), "RANDOM_ID_DUPLICATE, and the id is ours with that text, not his nor our later one");
    assert_eq!(calls(&app, "messages.getHistory"), looked_up + 1, "learned from the chat's newest messages");
    assert_eq!(delivered(&app, IVAN, "Your order has shipped"), 1, "delivered once");
}

#[tokio::test]
async fn a_retried_send_answered_with_the_original_message_is_delivered_once() {
    let app = spawn().await;
    let ivan = peer(&app, IVAN);
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let first = session.send_text(ivan, &Formatted::plain("See you on Monday"), 51).await.unwrap();
    world(&app).inject(Fault::DuplicateAsOriginal, FaultTarget::Method("messages.sendMessage".into()), 1);
    let looked_up = calls(&app, "messages.getHistory");
    let retried = session.send_text(ivan, &Formatted::plain("See you on Monday"), 51).await;
    session.close().await;

    assert!(first.id.is_some());
    assert_eq!(retried, Ok(first), "the answer names the original message");
    assert_eq!(calls(&app, "messages.getHistory"), looked_up, "no look-up needed");
    assert_eq!(delivered(&app, IVAN, "See you on Monday"), 1);
}

// ---------------------------------------------------------------------------------------------
// Errors

#[tokio::test]
async fn send_faults_map_to_the_ports_errors_and_deliver_nothing() {
    let app = spawn().await;
    let ivan = peer(&app, IVAN);
    let cases = [
        (Fault::FloodWait { seconds: 30 }, TelegramError::FloodWait { seconds: 30 }),
        (Fault::PeerFlood, TelegramError::PeerFlood),
        (Fault::PrivacyRestricted, TelegramError::PrivacyRestricted),
        (Fault::Unauthorized, TelegramError::Unauthorized("AUTH_KEY_UNREGISTERED".into())),
    ];
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let mut outcomes = Vec::new();
    for (i, (fault, _)) in cases.iter().enumerate() {
        world(&app).inject(fault.clone(), FaultTarget::Send, 1);
        let started = Instant::now();
        outcomes.push((session.send_text(ivan, &Formatted::plain(format!("fault {i}")), 60 + i as i64).await, started.elapsed()));
    }
    session.close().await;
    for (i, ((fault, expected), (outcome, took))) in cases.iter().zip(outcomes).enumerate() {
        assert_eq!(outcome.as_ref(), Err(expected), "{fault:?}");
        assert!(took < Duration::from_secs(3), "{fault:?} went straight back ({took:?}): no sleeping through a 30 s wait");
        assert_eq!(delivered(&app, IVAN, &format!("fault {i}")), 0, "{fault:?}");
    }
}

#[tokio::test]
async fn a_short_flood_wait_is_slept_through_inside_the_call() {
    let app = spawn().await;
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    world(&app).inject(Fault::FloodWait { seconds: 1 }, FaultTarget::Send, 1);
    let started = Instant::now();
    let sent = session.send_text(peer(&app, IVAN), &Formatted::plain("after a short wait"), 71).await;
    let took = started.elapsed();
    session.close().await;
    assert!(sent.unwrap().id.is_some());
    assert!(took >= Duration::from_secs(1), "it waited the second out ({took:?})");
    assert_eq!(delivered(&app, IVAN, "after a short wait"), 1);
}

#[tokio::test]
async fn a_420_without_a_number_is_a_refusal_not_a_flood_wait() {
    let app = spawn().await;
    app.inject_telegram_fault(serde_json::json!({ "kind": "rpc", "code": 420, "message": "FROZEN_METHOD_INVALID" }), "send", 1).await;
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let frozen = session.send_text(peer(&app, IVAN), &Formatted::plain("frozen"), 81).await;
    session.close().await;
    assert_eq!(frozen, Err(TelegramError::Rejected("FROZEN_METHOD_INVALID".into())));
    assert_eq!(delivered(&app, IVAN, "frozen"), 0);
}

#[tokio::test]
async fn an_upload_part_telegram_refuses_fails_the_media_send() {
    let app = spawn().await;
    let fault = serde_json::json!({ "kind": "rpc", "code": 400, "message": "FILE_PARTS_INVALID" });
    app.inject_telegram_fault(fault, "upload.saveFilePart", 1).await;
    let sends = calls(&app, "messages.sendMedia");
    let photo = png(50_000);
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let kind = media(MediaKind::Photo, "p.png", "image/png", &photo);
    let refused = session.send_media(peer(&app, IVAN), &kind, body(photo), &Formatted::plain("refused photo"), 91).await;
    session.close().await;
    assert_eq!(refused, Err(TelegramError::Rejected("FILE_PARTS_INVALID".into())));
    assert_eq!(calls(&app, "messages.sendMedia"), sends, "no send of a file that did not go up");
    assert_eq!(delivered(&app, IVAN, "refused photo"), 0);
}

#[tokio::test]
async fn a_send_whose_answer_is_lost_is_transient_and_its_retry_is_not_delivered_again() {
    let app = spawn().await;
    let ivan = peer(&app, IVAN);
    world(&app).inject(Fault::DropAfterDelivery, FaultTarget::Send, 1);
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let lost = session.send_text(ivan, &Formatted::plain("Did this arrive?"), 101).await;
    session.close().await;
    assert!(matches!(lost, Err(TelegramError::Transient(_))), "the outcome is unknown: {lost:?}");
    assert_eq!(delivered(&app, IVAN, "Did this arrive?"), 1, "it was delivered before the connection dropped");

    // The job comes back and sends again with the same random_id, on a connection of its own.
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let retried = session.send_text(ivan, &Formatted::plain("Did this arrive?"), 101).await;
    session.close().await;
    assert_eq!(retried.unwrap().id, Some(received(&app, "Did this arrive?").id), "the retry names the delivered message");
    assert_eq!(delivered(&app, IVAN, "Did this arrive?"), 1, "and is not delivered twice");
}

#[tokio::test]
async fn a_303_on_an_ordinary_call_moves_the_accounts_home_and_its_authorization_with_it() {
    let app = spawn().await;
    world(&app).inject(Fault::UserMigrate { dc: 1 }, FaultTarget::Method("updates.getState".into()), 1);
    let (exports, imports) = (calls(&app, "auth.exportAuthorization"), calls(&app, "auth.importAuthorization"));
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let state = session.updates_state().await;
    let sent = session.send_text(peer(&app, IVAN), &Formatted::plain("From the new home"), 111).await;
    session.close().await;

    let state = state.expect("getState is answered at DC 1 after USER_MIGRATE_1");
    assert_eq!(home_dc(&app, seed::SALES_ACCOUNT), 1);
    assert_eq!(calls(&app, "auth.exportAuthorization"), exports + 1, "exported at the old home");
    assert_eq!(calls(&app, "auth.importAuthorization"), imports + 1, "imported at the new one");
    assert!(sent.expect("later calls keep working").id.is_some());
    assert_eq!(delivered(&app, IVAN, "From the new home"), 1);

    // The session remembers where it lives: the next job goes straight to DC 1.
    let get_states = calls(&app, "updates.getState");
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let later = session.updates_state().await;
    session.close().await;
    assert_eq!(later.map(|s| s.pts), Ok(state.pts + 1), "the send is the one update since");
    assert_eq!(calls(&app, "updates.getState"), get_states + 1, "no 303 on the way");
}

// ---------------------------------------------------------------------------------------------
// Updates and history

#[tokio::test]
async fn a_long_difference_comes_in_slices_until_it_ends() {
    let app = spawn().await;
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let from = session.updates_state().await.unwrap();
    let count = 2 * DIFFERENCE_SLICE + 50;
    for i in 0..count {
        world(&app).reply(IVAN, seed::SALES_ACCOUNT, &format!("reply {i}"), None).unwrap();
    }
    let (messages, slices, end) = catch_up(session.as_ref(), from).await;
    let nothing_new = session.difference(end).await;
    session.close().await;

    let texts: Vec<String> = messages.iter().map(|m| m.text.text.clone()).collect();
    assert_eq!(texts, (0..count).map(|i| format!("reply {i}")).collect::<Vec<_>>(), "every reply once, in order");
    assert!(messages.iter().all(|m| m.from.peer == peer(&app, IVAN)), "from Ivan, addressable");
    assert_eq!(slices, count.div_ceil(DIFFERENCE_SLICE), "slices of at most {DIFFERENCE_SLICE}, then the end");
    assert_eq!(end.pts, from.pts + count as i32);
    let Ok(Difference::Updates { updates, more: false, .. }) = nothing_new else { panic!("an empty difference: {nothing_new:?}") };
    assert!(updates.is_empty());
}

#[tokio::test]
async fn a_gap_beyond_too_long_gap_is_too_long_and_so_is_the_fault() {
    let app = spawn().await;
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let from = session.updates_state().await.unwrap();
    for i in 0..TOO_LONG_GAP {
        world(&app).reply(IVAN, seed::SALES_ACCOUNT, &format!("busy {i}"), None).unwrap();
    }
    let at_the_limit = session.difference(from).await;
    world(&app).reply(IVAN, seed::SALES_ACCOUNT, "one too many", None).unwrap();
    let beyond = session.difference(from).await;

    let now = session.updates_state().await.unwrap();
    world(&app).inject(Fault::DifferenceTooLong, FaultTarget::Updates, 1);
    let faulted = session.difference(now).await;
    let after_fault = session.difference(now).await;
    session.close().await;

    assert!(matches!(at_the_limit, Ok(Difference::Updates { more: true, .. })), "{TOO_LONG_GAP} behind is still a difference");
    assert_eq!(beyond, Ok(Difference::TooLong));
    assert_eq!(faulted, Ok(Difference::TooLong));
    assert!(matches!(after_fault, Ok(Difference::Updates { more: false, .. })), "{after_fault:?}");
}

#[tokio::test]
async fn history_pages_forward_from_the_oldest_through_full_pages_of_mixed_messages() {
    let app = spawn().await;
    let ivan = peer(&app, IVAN);
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    // Exactly two full pages, ours and his in turn.
    for i in 0..2 * HISTORY_LIMIT {
        if i % 2 == 0 {
            session.send_text(ivan, &Formatted::plain(format!("ours {i}")), 1_000 + i as i64).await.unwrap();
        } else {
            world(&app).reply(IVAN, seed::SALES_ACCOUNT, &format!("his {i}"), None).unwrap();
        }
    }
    let chat = chat_with(&app, IVAN);
    assert_eq!(chat.len(), 2 * HISTORY_LIMIT);
    let his = |messages: &[ReceivedMessage]| messages.iter().filter(|m| m.from_user_id == IVAN).map(|m| m.id).collect::<Vec<_>>();

    let first = session.history(ivan, 0).await.unwrap();
    let mut pages = vec![first.clone()];
    let mut after = first.next_after;
    while let Some(from) = after {
        assert!(pages.len() < 10, "the paging never ends");
        let page = session.history(ivan, from).await.unwrap();
        after = page.next_after;
        pages.push(page);
    }
    let last_offset = pages.iter().filter_map(|p| p.next_after).next_back();

    // Later messages: paging resumes from the offset kept.
    for i in 0..11 {
        if i % 2 == 0 {
            world(&app).reply(IVAN, seed::SALES_ACCOUNT, &format!("later {i}"), None).unwrap();
        } else {
            session.send_text(ivan, &Formatted::plain(format!("later ours {i}")), 5_000 + i).await.unwrap();
        }
    }
    let resumed = session.history(ivan, last_offset.unwrap_or(0)).await.unwrap();
    session.close().await;

    let ids = |p: &shared::ports::HistoryPage| p.messages.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(&first), his(&chat[..HISTORY_LIMIT]), "no offset: the chat's oldest messages");
    assert_eq!(first.next_after, Some(chat[HISTORY_LIMIT - 1].id), "a full page goes on from its newest message, ours included");
    assert!(first.messages.iter().all(|m| m.from.peer == ivan && m.text.text.starts_with("his ")));
    let walked: Vec<i32> = pages.iter().flat_map(ids).collect();
    assert_eq!(walked, his(&chat), "every message of his, once, in order");
    assert_eq!(pages.len(), 3, "two full pages, then an empty last one");
    assert_eq!(last_offset, Some(chat[2 * HISTORY_LIMIT - 1].id));
    let later = chat_with(&app, IVAN);
    assert_eq!(ids(&resumed), his(&later[2 * HISTORY_LIMIT..]), "only what came after the offset");
    assert_eq!(resumed.next_after, None, "a page that is not full is the last");
}

#[tokio::test]
async fn read_receipts_say_how_far_the_user_read() {
    let app = spawn().await;
    let ivan = peer(&app, IVAN);
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let none = session.read_outbox_max_id(ivan).await;
    session.send_text(ivan, &Formatted::plain("first"), 121).await.unwrap();
    let second = session.send_text(ivan, &Formatted::plain("second"), 122).await.unwrap();
    let unread = session.read_outbox_max_id(ivan).await;
    assert_eq!(world(&app).read_all(IVAN), 2);
    let read = session.read_outbox_max_id(ivan).await;
    session.close().await;
    assert_eq!(none, Ok(0), "no chat yet");
    assert_eq!(unread, Ok(0), "nothing read yet");
    assert_eq!(read.ok(), second.id, "read up to our newest");
}

// ---------------------------------------------------------------------------------------------
// Downloads

fn client_file(kind: IncomingKind, file_name: &str, mime_type: &str, bytes: &[u8]) -> ClientFile {
    ClientFile { kind, file_name: file_name.into(), mime_type: mime_type.into(), bytes: bytes.to_vec(), duration: None }
}

/// The files in the messages a difference from `from` brings, by the message's text.
async fn files_since(session: &(dyn TelegramSession + '_), from: UpdatesState) -> Vec<(String, RemoteFile)> {
    let (messages, _, _) = catch_up(session, from).await;
    messages.into_iter().filter_map(|m| Some((m.text.text, m.file?))).collect()
}

#[tokio::test]
async fn files_a_client_sends_from_the_other_data_centre_download_byte_for_byte() {
    let app = spawn().await;
    let (photo, document) = (png(300_000), pdf(1_300_000));
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let from = session.updates_state().await.unwrap();
    world(&app).reply(IVAN, seed::SALES_ACCOUNT, "my photo", Some(client_file(IncomingKind::Photo, "me.png", "image/png", &photo))).unwrap();
    world(&app).reply(IVAN, seed::SALES_ACCOUNT, "the contract", Some(client_file(IncomingKind::Document, "contract.pdf", "application/pdf", &document))).unwrap();
    let files = files_since(session.as_ref(), from).await;
    let imports = calls(&app, "auth.importAuthorization");
    let mut downloads = Vec::new();
    for (_, file) in &files {
        downloads.push(download(session.as_ref(), file).await);
    }
    session.close().await;

    let [(photo_text, photo_file), (document_text, document_file)] = files.as_slice() else { panic!("two files: {files:?}") };
    assert_eq!((photo_text.as_str(), photo_file.kind, photo_file.size), ("my photo", IncomingKind::Photo, photo.len() as u64));
    assert_eq!((document_text.as_str(), document_file.kind), ("the contract", IncomingKind::Document));
    assert_eq!((document_file.file_name.as_str(), document_file.mime_type.as_str()), ("contract.pdf", "application/pdf"));
    for ((text, _), (bytes, written)) in files.iter().zip(&downloads) {
        let kept = received(&app, text).file.expect("a file");
        assert_eq!(kept.dc, 1, "Ivan's files live on his data centre");
        assert_eq!((bytes.len() as u64, *written), (kept.size, kept.size), "{text}: every byte, counted");
        assert_eq!(sha256(bytes), kept.sha256, "{text}: the bytes Ivan sent");
    }
    assert_eq!(calls(&app, "auth.importAuthorization"), imports + 1, "the authorization went to DC 1 once, for both files");
}

#[tokio::test]
async fn a_download_follows_file_migrate_to_where_the_file_went() {
    let app = spawn().await;
    let (his, hers) = (pdf(900_000), pdf(600_000));
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let from = session.updates_state().await.unwrap();
    world(&app).reply(IVAN, seed::SALES_ACCOUNT, "his file", Some(client_file(IncomingKind::Document, "his.pdf", "application/pdf", &his))).unwrap();
    world(&app).reply(OLGA, seed::SALES_ACCOUNT, "her file", Some(client_file(IncomingKind::Document, "hers.pdf", "application/pdf", &hers))).unwrap();
    let files = files_since(session.as_ref(), from).await;
    let [(_, his_file), (_, her_file)] = files.as_slice() else { panic!("two files: {files:?}") };

    // Olga's file is on DC 2, the account's home; it moves to DC 1 as the download starts.
    world(&app).inject(Fault::FileMigrate { dc: 1 }, FaultTarget::Download, 1);
    let (her_bytes, _) = download(session.as_ref(), her_file).await;
    // Ivan's is on DC 1: downloaded once there, then it moves to DC 2.
    let (first, _) = download(session.as_ref(), his_file).await;
    world(&app).inject(Fault::FileMigrate { dc: 2 }, FaultTarget::Download, 1);
    let (moved, _) = download(session.as_ref(), his_file).await;
    session.close().await;

    assert_eq!(received(&app, "her file").file.unwrap().dc, 1, "the fault moved her file");
    assert_eq!(sha256(&her_bytes), sha256(&hers), "FILE_MIGRATE_1 followed");
    assert_eq!(sha256(&first), sha256(&his));
    assert_eq!(received(&app, "his file").file.unwrap().dc, 2, "the fault moved his file");
    assert_eq!(sha256(&moved), sha256(&his), "FILE_MIGRATE_2 followed");
}

/// core.telegram.org/method/messages.editMessage: our message's new text and entities, for
/// both sides; the same again is `MESSAGE_NOT_MODIFIED` (the adapter's `Ok`); the client's
/// message is `MESSAGE_AUTHOR_REQUIRED`, an id of no chat of ours `MESSAGE_ID_INVALID`. The
/// client sees `updateEditMessage`; our own edit is not the client's in our difference.
#[tokio::test]
async fn an_edit_changes_our_message_for_both_sides_and_refuses_what_is_not_ours() {
    let app = spawn().await;
    let ivan = peer(&app, IVAN);
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let start = session.updates_state().await.unwrap();
    let id = session.send_text(ivan, &Formatted::plain("Meet at 10"), 51).await.unwrap().id.unwrap();
    let theirs = world(&app).reply(IVAN, seed::SALES_ACCOUNT, "Fine", None).unwrap();
    session.edit_text(ivan, id, &from_bbcode("Meet at [b]11[/b]")).await.unwrap();
    let edited = received(&app, "Meet at 11");
    assert_eq!((edited.id, edited.entities.len()), (id, 1));
    assert!(edited.edit_date.is_some());
    let edits = calls(&app, "messages.editMessage");
    assert_eq!(session.edit_text(ivan, id, &from_bbcode("Meet at [b]11[/b]")).await, Ok(()), "MESSAGE_NOT_MODIFIED");
    assert_eq!(calls(&app, "messages.editMessage"), edits + 1);
    assert_eq!(session.edit_text(ivan, theirs, &Formatted::plain("Not fine")).await, Err(TelegramError::Rejected("MESSAGE_AUTHOR_REQUIRED".into())));
    assert_eq!(session.edit_text(ivan, id + 1_000_000, &Formatted::plain("x")).await, Err(TelegramError::Rejected("MESSAGE_ID_INVALID".into())));
    assert_eq!(session.edit_text(ivan, id, &Formatted::plain(" ")).await, Err(TelegramError::Rejected("MESSAGE_EMPTY".into())));
    let Difference::Updates { updates, .. } = session.difference(start).await.unwrap() else { panic!() };
    session.close().await;
    assert!(!updates.iter().any(|u| matches!(u, Update::Edited(_))), "our own edit: {updates:?}");
    assert_eq!(received(&app, "Fine").edit_date, None);
}

/// core.telegram.org/method/messages.deleteMessages with `revoke`: gone for both sides, ours
/// and the client's alike; an id we do not have is skipped. The account's difference then
/// names the ids only (core.telegram.org/constructor/updateDeleteMessages), and a client's
/// edit comes as `updateEditMessage`.
#[tokio::test]
async fn deletions_go_for_both_sides_and_the_difference_names_only_their_ids() {
    let app = spawn().await;
    let ivan = peer(&app, IVAN);
    let session = app.app.services.telegram.connect(&sales()).await.unwrap();
    let ours = session.send_text(ivan, &Formatted::plain("Wrong price"), 61).await.unwrap().id.unwrap();
    let start = session.updates_state().await.unwrap();
    let edited = world(&app).reply(IVAN, seed::SALES_ACCOUNT, "Two please", None).unwrap();
    let theirs = world(&app).reply(IVAN, seed::SALES_ACCOUNT, "Oops", None).unwrap();
    world(&app).edit(IVAN, edited, "Three please").unwrap();
    world(&app).delete(IVAN, theirs).unwrap();
    session.delete_messages(&[ours, ours + 1_000_000]).await.unwrap();
    assert!(chat_with(&app, IVAN).iter().all(|m| m.id != ours && m.id != theirs), "gone for both sides");

    let Difference::Updates { updates, .. } = session.difference(start).await.unwrap() else { panic!() };
    session.close().await;
    let changes: Vec<&Update> = updates.iter().filter(|u| !matches!(u, Update::Message(_))).collect();
    let [Update::Edited(now), Update::Deleted { ids: theirs_gone }, Update::Deleted { ids: ours_gone }] = changes.as_slice() else { panic!("{updates:?}") };
    assert_eq!((now.id, now.text.text.as_str()), (edited, "Three please"));
    assert_eq!((theirs_gone.as_slice(), ours_gone.as_slice()), ([theirs].as_slice(), [ours].as_slice()));
    assert_eq!(messages(&updates).iter().map(|m| m.text.text.as_str()).collect::<Vec<_>>(), ["Three please"], "a deleted message is not new");
}
