//! The app exactly as deployed: the sandbox portal in its own process ("Bitrix24"), the app
//! in real mode in another, pointed at it over HTTP, both the `local` binary. Nothing leaves
//! the loopback: with no TELEGRAM_API_ID the app uses the sandbox Telegram in-process.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::crypto::MasterKey;
use shared::sandbox::{self, seed};

use crate::{Answer, eventually, launcher_form, page_token};

/// The `local` binary: `OLCHAT_BIN`, or the one built beside this executable
/// (`cargo build -p local`, `--release` for the benchmark).
pub fn local_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("OLCHAT_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().expect("in a directory");
    // Test binaries live in target/<profile>/deps, the others in target/<profile>.
    let dir = if dir.ends_with("deps") { dir.parent().expect("profile dir") } else { dir };
    let bin = dir.join("local");
    assert!(bin.exists(), "{} is missing: build it first (`cargo build -p local`, with --release for the benchmark) or set OLCHAT_BIN", bin.display());
    bin
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// A child process, killed when dropped; what it printed is kept.
pub struct Process {
    child: std::process::Child,
    output: Arc<Mutex<String>>,
}

impl Process {
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("the local binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        let (stdout, kept) = (child.stdout.take().expect("piped"), output.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap();
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        Self { child, output }
    }
}

impl Process {
    /// SIGKILL, as a crash or the OOM killer: no clean-up runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `process` printed, once it said `what` (it prints its start-up message just after
/// it starts answering).
async fn said(process: &Process, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let out = process.output.lock().unwrap().clone();
        if out.contains(what) {
            return out;
        }
        assert!(tokio::time::Instant::now() < deadline, "never said {what:?}: {out}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Deployed {
    pub portal_url: String,
    pub app_url: String,
    pub http: reqwest::Client,
    portal: Process,
    app: Process,
    _dir: tempfile::TempDir,
}

impl Deployed {
    /// Starts the portal, then the app in real mode pointed at it; returns once both answer.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// The same, with more settings for the app.
    pub async fn start_with(app_settings: &[(&str, &str)]) -> Self {
        let (dir, bin) = (tempfile::tempdir().expect("temp dir"), local_binary());
        let (portal_url, app_url) = (format!("http://127.0.0.1:{}", free_port()), format!("http://127.0.0.1:{}", free_port()));
        let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        let mut portal = Command::new(&bin);
        portal.arg("portal").env_clear().env("RUST_LOG", &log).env("OLCHAT_ADDR", &portal_url[7..]).env("OLCHAT_APP_URL", &app_url);
        let portal = Process::spawn(portal);
        let mut app = Command::new(&bin);
        app.env_clear()
            .env("RUST_LOG", &log)
            .env("OLCHAT_ADDR", &app_url[7..])
            .env("OLCHAT_DATA_DIR", dir.path())
            .env("OLCHAT_PUBLIC_URL", &app_url)
            .env("OLCHAT_ENCRYPTION_KEY", MasterKey::generate_key())
            .env("BITRIX_CLIENT_ID", sandbox::CLIENT_ID)
            .env("BITRIX_CLIENT_SECRET", sandbox::CLIENT_SECRET)
            .env("BITRIX_APP_CODE", sandbox::APP_CODE)
            .env("BITRIX_OAUTH_URL", format!("{portal_url}/sandbox/portal"))
            .env("OLCHAT_PORTAL_REST_URL", format!("{portal_url}/sandbox/portal/rest/"))
            .env("OLCHAT_PORTAL_DOMAINS", [seed::DEMO_DOMAIN, seed::OTHER_DOMAIN, seed::FRESH_DOMAIN].join(","))
            // The stand-in portal answers on the loopback, which real mode refuses unless told.
            .env("OLCHAT_ALLOW_LOOPBACK_PORTALS", "true")
            .envs(app_settings.iter().copied());
        let app = Process::spawn(app);
        let deployed = Self { portal_url, app_url, http: reqwest::Client::new(), portal, app, _dir: dir };
        for (url, what) in [(&deployed.portal_url, "the portal process"), (&deployed.app_url, "the app process")] {
            let http = &deployed.http;
            eventually(Duration::from_secs(30), what, || async move { http.get(format!("{url}/")).send().await.ok() }).await;
        }
        deployed
    }

    /// The app's output, once its start-up message says `what`.
    pub async fn app_says(&self, what: &str) -> String {
        said(&self.app, what).await
    }

    /// The portal's output, once its start-up message says `what`.
    pub async fn portal_says(&self, what: &str) -> String {
        said(&self.portal, what).await
    }

    /// The portal installs the app through its install hook; the app's answer.
    pub async fn install(&self, member_id: &str) -> (u16, String) {
        let answer = self.http.post(format!("{}/sandbox/portal/install", self.portal_url)).json(&json!({ "member_id": member_id })).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let body: Value = answer.json().await.unwrap();
        (body["status"].as_u64().unwrap() as u16, body["body"].as_str().unwrap_or_default().to_owned())
    }

    /// The form the portal's launcher page (`/sandbox/open?…`, `/sandbox/connectors?…`) POSTs to the app.
    pub async fn launcher(&self, path: &str) -> (String, Vec<(String, String)>) {
        let page = self.http.get(format!("{}{path}", self.portal_url)).send().await.unwrap().text().await.unwrap();
        launcher_form(&page).expect("a launcher form")
    }

    /// Opens the page a launcher leads to, as the browser would; the page's session token.
    pub async fn open(&self, path: &str) -> String {
        let (action, form) = self.launcher(path).await;
        assert!(action.starts_with(&self.app_url), "the portal posts to the app: {action}");
        let page = self.http.post(action).form(&form).send().await.unwrap();
        let status = page.status();
        let page = page.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{page}");
        page_token(&page).expect("token in page")
    }

    pub async fn get(&self, token: &str, path: &str) -> Answer {
        let response = self.http.get(format!("{}{path}", self.app_url)).bearer_auth(token).send().await.expect("answers");
        Answer { status: response.status(), body: response.json().await.unwrap_or(Value::Null) }
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Answer {
        let response = self.http.post(format!("{}{path}", self.app_url)).bearer_auth(token).json(&body).send().await.expect("answers");
        Answer { status: response.status(), body: response.json().await.unwrap_or(Value::Null) }
    }

    /// A JSON inspection endpoint of the portal process.
    pub async fn portal_json(&self, path: &str) -> Value {
        self.http.get(format!("{}{path}", self.portal_url)).send().await.unwrap().json().await.unwrap()
    }
}

/// The local runner in sandbox mode on `url`, keeping its data in `dir`: started again on
/// the same directory, it is the same instance after a restart.
pub fn local_runner(url: &str, dir: &std::path::Path) -> Process {
    let mut command = Command::new(local_binary());
    command.env_clear().env("RUST_LOG", "warn").env("OLCHAT_ADDR", &url[7..]).env("OLCHAT_DATA_DIR", dir);
    Process::spawn(command)
}

pub async fn answering(http: &reqwest::Client, url: &str) {
    eventually(Duration::from_secs(30), "the local runner", || async { http.get(format!("{url}/sandbox")).send().await.ok().filter(|r| r.status().is_success()) }).await;
}

/// The lead's tab, once the runner has installed the app on the sandbox portal (it answers
/// a little before that).
pub async fn lead_tab(http: &reqwest::Client, url: &str) -> String {
    eventually(Duration::from_secs(30), "the lead's tab", || async {
        let launcher = http.get(format!("{url}/sandbox/open?entity=lead&id=1&lang=en")).send().await.ok()?.text().await.ok()?;
        let (action, form) = launcher_form(&launcher).ok()?;
        let page = http.post(action).form(&form).send().await.ok()?.text().await.ok()?;
        page_token(&page)
    })
    .await
}
