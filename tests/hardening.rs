//! The server as the internet would try it: slow and greedy clients, other host names, and
//! the headers every page must carry; real mode's refusals at start.

use std::time::Duration;

use olchat_tests::deployed::{Deployed, local_binary};
use olchat_tests::{TestApp, spawn_app_with};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, HeaderMap, X_CONTENT_TYPE_OPTIONS};
use shared::sandbox::{self, seed};
use shared::settings::ServerLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far longer than any limit under test: only a server that never cuts off reaches it.
const PATIENCE: Duration = Duration::from_secs(30);

async fn app_with(limits: ServerLimits) -> TestApp {
    spawn_app_with(|s| s.server = limits).await
}

async fn connect(app: &TestApp, first_bytes: &str) -> TcpStream {
    let mut stream = TcpStream::connect(app.app.addr).await.expect("the server accepts");
    stream.write_all(first_bytes.as_bytes()).await.unwrap();
    stream
}

/// Everything the server sends until it closes the connection; fails if it never does.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open: {}", String::from_utf8_lossy(&got));
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_slow_header_client_is_cut_off() {
    let app = app_with(ServerLimits { header_timeout: Duration::from_secs(1), ..ServerLimits::default() }).await;
    let mut slow = connect(&app, &format!("GET /assets/tab.css HTTP/1.1\r\nHost: {}\r\nX-Slow: ", app.app.addr)).await;
    let answer = until_closed(&mut slow).await;
    assert!(!answer.contains("200 OK"), "a request whose head never ended was not served: {answer}");
}

#[tokio::test]
async fn a_body_that_stops_is_cut_off() {
    let app = app_with(ServerLimits { body_idle_timeout: Duration::from_secs(1), ..ServerLimits::default() }).await;
    let head = format!("POST /placement?DOMAIN={} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nAUTH_ID=", seed::DEMO_DOMAIN, app.app.addr);
    let mut stalled = connect(&app, &head).await;
    let answer = until_closed(&mut stalled).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");
}

#[tokio::test]
async fn a_body_that_trickles_is_cut_off_with_408() {
    let app = app_with(ServerLimits { request_timeout: Duration::from_secs(1), ..ServerLimits::default() }).await;
    let head = format!("POST /placement?DOMAIN={} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n", seed::DEMO_DOMAIN, app.app.addr);
    let stream = connect(&app, &head).await;
    let (mut reader, mut writer) = stream.into_split();
    // A byte every 50 ms: never a pause the body's idle limit would notice.
    let trickle = tokio::spawn(async move {
        for _ in 0..100_000 {
            if writer.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut answer = vec![0; 64];
    let n = tokio::time::timeout(PATIENCE, reader.read(&mut answer)).await.expect("the server answers before the body ends").unwrap();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn connections_past_the_limit_wait_for_one_to_close() {
    // Enough slots for the sandbox's install at start (the app calls the in-process portal,
    // which answers on the same server, while the portal's install call waits).
    const SLOTS: usize = 4;
    let limits = ServerLimits { max_connections: SLOTS, header_timeout: Duration::from_secs(1), ..ServerLimits::default() };
    let app = app_with(limits).await;
    // These hold every slot with heads that never end, until the server cuts them off.
    let holding_since = std::time::Instant::now();
    let mut holders = Vec::new();
    for _ in 0..SLOTS {
        holders.push(connect(&app, &format!("GET / HTTP/1.1\r\nHost: {}\r\n", app.app.addr)).await);
    }
    let mut next = connect(&app, &format!("GET /assets/tab.css HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", app.app.addr)).await;
    let answer = until_closed(&mut next).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The holders took every slot before it queued, so it was served only once the first of
    // them was cut off, its head timeout after it came (a free slot would have served it at
    // once). Whether the holder's socket already reads as closed then is a race of the
    // kernel's, so the bound is checked instead.
    assert!(holding_since.elapsed() >= limits.header_timeout, "a connection past the limit was served while the others held every slot");
    drop(holders);
}

/// The server runs on a thread of its own: dropping the app stops it and closes its port.
#[tokio::test]
async fn a_dropped_app_stops_serving() {
    let app = app_with(ServerLimits::default()).await;
    let addr = app.app.addr;
    TcpStream::connect(addr).await.expect("the server accepts");
    drop(app);
    olchat_tests::eventually(PATIENCE, "the port closed", || async { TcpStream::connect(addr).await.is_err().then_some(()) }).await;
}

fn assert_guarded(headers: &HeaderMap, framed_by: &str, what: &str) {
    assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
    let policy = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.starts_with(&format!("frame-ancestors {framed_by};")), "{what}: {policy}");
}

#[tokio::test]
async fn every_page_carries_the_security_headers_and_token_pages_are_not_stored() {
    let app = spawn_app_with(|_| {}).await;
    let portal = format!("'self' http://{}", seed::DEMO_DOMAIN);

    let form = app.placement_form(1, "CRM_LEAD_DETAIL_TAB", 1);
    let tab = app.http.post(app.url(&format!("/placement?DOMAIN={}&PROTOCOL=0&LANG=en", seed::DEMO_DOMAIN))).form(&form).send().await.unwrap();
    assert_eq!(tab.status(), StatusCode::OK);
    assert_guarded(tab.headers(), &portal, "the tab");
    assert_eq!(tab.headers()[CACHE_CONTROL], "no-store");
    let token = olchat_tests::page_token(&tab.text().await.unwrap()).expect("a token");

    let (access, _) = app.app.sandbox().portal.issue_tokens(seed::DEMO_MEMBER_ID, 1);
    let form = [("AUTH_ID", access), ("member_id", seed::DEMO_MEMBER_ID.into()), ("PLACEMENT", "DEFAULT".into())];
    let page = app.http.post(app.url(&format!("/connectors?DOMAIN={}&PROTOCOL=0&LANG=en", seed::DEMO_DOMAIN))).form(&form).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_guarded(page.headers(), &portal, "the connectors page");
    assert_eq!(page.headers()[CACHE_CONTROL], "no-store");

    let card = app.http.get(app.url("/api/card")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(card.status(), StatusCode::OK);
    assert_guarded(card.headers(), "'self'", "the card's JSON");
    assert_eq!(card.headers()[CACHE_CONTROL], "no-store");

    let refused = app.http.get(app.url("/api/card")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_guarded(refused.headers(), "'self'", "a refusal");

    // Static assets keep their own caching, and are still not sniffed.
    let asset = app.http.get(app.url("/assets/tab.js")).send().await.unwrap();
    assert_guarded(asset.headers(), "'self'", "an asset");
    assert!(asset.headers()[CACHE_CONTROL].to_str().unwrap().starts_with("public"));
}

#[tokio::test]
async fn a_forged_domain_adds_nothing_to_the_frame_policy() {
    let app = spawn_app_with(|_| {}).await;
    let form = app.placement_form(1, "CRM_LEAD_DETAIL_TAB", 1);
    let page = app.http.post(app.url("/placement?DOMAIN=evil.example%3B%20script-src%20*&PROTOCOL=1")).form(&form).send().await.unwrap();
    assert!(page.status().is_client_error());
    assert_guarded(page.headers(), "'self'", "a placement for a forged domain");
}

#[tokio::test]
async fn another_host_name_is_refused() {
    let app = spawn_app_with(|_| {}).await;
    let mut stream = connect(&app, "GET /assets/tab.css HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n").await;
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    assert!(answer.contains("wrong_host"), "{answer}");
    // Its own address is answered.
    let ok = app.http.get(app.url("/assets/tab.css")).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn real_mode_serves_no_sandbox_route_and_checks_the_host() {
    let deployed = Deployed::start().await;
    for path in ["/sandbox", "/sandbox/portal/stats", "/sandbox/telegram", "/sandbox/open?entity=lead&id=1"] {
        let answer = deployed.http.get(format!("{}{path}", deployed.app_url)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let foreign = deployed.http.get(format!("{}/assets/tab.css", deployed.app_url)).header("host", "evil.example").send().await.unwrap();
    assert_eq!(foreign.status(), StatusCode::MISDIRECTED_REQUEST);
}

/// The `local` binary in real mode for public portals, with `changes`; what it said as it refused.
fn refused_at_start(changes: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(local_binary());
    command
        .env_clear()
        .env("OLCHAT_ADDR", "127.0.0.1:0")
        .env("OLCHAT_DATA_DIR", dir.path())
        .env("OLCHAT_PUBLIC_URL", "https://olchat.example.com")
        .env("OLCHAT_ENCRYPTION_KEY", shared::crypto::MasterKey::generate_key())
        .env("TELEGRAM_API_ID", "1234567")
        .env("TELEGRAM_API_HASH", "hash")
        .envs(changes.iter().copied());
    let mut child = command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // A server that started would never exit: it is killed, and the test fails.
    let deadline = std::time::Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("it started");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success(), "it must not start");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing made in the data directory");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn real_mode_with_the_sandbox_credentials_refuses_to_start() {
    let said = refused_at_start(&[("BITRIX_CLIENT_ID", sandbox::CLIENT_ID), ("BITRIX_CLIENT_SECRET", sandbox::CLIENT_SECRET)]);
    assert!(said.contains("is the sandbox's"), "{said}");
}

#[tokio::test]
async fn real_mode_without_a_valid_key_refuses_to_start() {
    let real = [("BITRIX_CLIENT_ID", "local.6620d1c4a1b2c3.12345678"), ("BITRIX_CLIENT_SECRET", "a-real-secret")];
    let said = refused_at_start(&[&real[..], &[("OLCHAT_ENCRYPTION_KEY", "")]].concat());
    assert!(said.contains("OLCHAT_ENCRYPTION_KEY: base64 of 32 random bytes"), "{said}");
    let said = refused_at_start(&[&real[..], &[("OLCHAT_ENCRYPTION_KEY", "c2hvcnQ=")]].concat());
    assert!(said.contains("exactly 32 bytes"), "{said}");
}
