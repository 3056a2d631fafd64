//! Configuration, read from the environment once at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::bitrix::pacer::{CHECK_RATE, PortalRate};
use crate::jobs::runner::Order;
use crate::repo::safety::SafetyLimits;
use crate::crypto::{MasterKey, Secret};
use crate::sandbox;

#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the embedded server listens (`OLCHAT_ADDR`, default 127.0.0.1:8080; port 0 picks one).
    pub addr: SocketAddr,
    /// The SQLite file and the blob directory live here (`OLCHAT_DATA_DIR`, default `./data`).
    pub data_dir: PathBuf,
    /// Base64 of 32 bytes (`OLCHAT_ENCRYPTION_KEY`), the master key; in the sandbox one is made
    /// and kept in the data dir. Real mode never starts without it.
    pub encryption_key: Option<Secret>,
    /// ISO country for phone numbers typed without a country code (`OLCHAT_PHONE_REGION`, default RU).
    pub phone_region: String,
    /// Lifetime of the tab's session token (`OLCHAT_SESSION_MINUTES`, default 60).
    pub session_minutes: i64,
    /// Receives before a job goes to the dead-letter queue (`OLCHAT_MAX_RECEIVES`, default 10).
    pub max_receives: u32,
    /// The app's public base URL, for the handlers it registers with portals
    /// (`OLCHAT_PUBLIC_URL`, default the local server's own URL).
    pub public_url: Option<String>,
    /// Our pace per portal (`OLCHAT_PORTAL_RATE` requests a second, default 2, and
    /// `OLCHAT_PORTAL_BURST`, default 50): the portal's plan's limits.
    pub portal_rate: PortalRate,
    /// The pace of token checks of unauthenticated requests per portal (placements, the
    /// connectors page, installs; `OLCHAT_PORTAL_CHECK_RATE`, default 1 a second, and
    /// `OLCHAT_PORTAL_CHECK_BURST`, default 10; beyond it such a request gets 503).
    pub check_rate: PortalRate,
    /// Whether portals and the OAuth server may be called on the loopback: the sandbox's
    /// own portal answers there. Off in real mode unless `OLCHAT_ALLOW_LOOPBACK_PORTALS=true`
    /// (a stand-in portal on this machine, for testing); private addresses never are.
    pub allow_loopback_portals: bool,
    /// Per connector and day: new chats (`OLCHAT_DAILY_NEW_CHATS`, default 40) and phone
    /// look-ups (`OLCHAT_DAILY_PHONE_LOOKUPS`, default 50); seconds between two phone look-ups
    /// (`OLCHAT_PHONE_PACE_SECS`, default 0 here: the sandbox Telegram needs no pacing).
    pub limits: SafetyLimits,
    /// How often every connected account is caught up with Telegram and due scheduled messages
    /// are queued (`OLCHAT_CATCH_UP_SECS`, default 5 with the sandbox Telegram, 60 with real
    /// Telegram; 0: catch-ups only after sends, no scheduled send). On AWS an EventBridge rule
    /// does this every minute.
    pub catch_up_every: Option<std::time::Duration>,
    /// Whether each connected account keeps one long-lived connection that receives the
    /// updates Telegram pushes, as official clients do (`OLCHAT_KEEP_CONNECTED`, default
    /// true): replies arrive within seconds and the catch-up only covers a dropped connection.
    /// `false`: every account is caught up on `catch_up_every`'s cadence, as on AWS.
    pub keep_connected: bool,
    /// How the embedded runner delivers the openline queue (`OLCHAT_OPENLINE_ORDER`):
    /// `grouped` (default), or `unordered` as SQS does on AWS. The telegram queue is always
    /// grouped: it is FIFO on AWS.
    pub openline_order: Order,
    /// Sandbox or real portals, from which credentials are configured.
    pub mode: Mode,
    /// The local server's guards against slow and greedy clients.
    pub server: ServerLimits,
}

/// What the local server allows a client (Lambda has API Gateway's own limits).
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// A request's head (request line and headers) must have arrived this long after the
    /// server started waiting for it (`OLCHAT_HEADER_TIMEOUT_SECS`, default 10): a
    /// slow-header client is cut off, and an idle keep-alive connection closed.
    pub header_timeout: Duration,
    /// The longest pause in a request body (`OLCHAT_BODY_TIMEOUT_SECS`, default 30), uploads included.
    pub body_idle_timeout: Duration,
    /// A whole request, its body read and answered, except blob uploads, which may
    /// stream 2 GB (`OLCHAT_REQUEST_TIMEOUT_SECS`, default 60): a body that trickles is cut
    /// off with 408 even if it never pauses long.
    pub request_timeout: Duration,
    /// Connections served at once (`OLCHAT_MAX_CONNECTIONS`, default 512); more wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

impl ServerLimits {
    pub fn from_env() -> anyhow::Result<Self> {
        let defaults = Self::default();
        let secs = |name, default: Duration| -> anyhow::Result<Duration> {
            match parsed(name, default.as_secs())? {
                0 => anyhow::bail!("{name} must be at least 1 second"),
                secs => Ok(Duration::from_secs(secs)),
            }
        };
        let max_connections = parsed("OLCHAT_MAX_CONNECTIONS", defaults.max_connections)?;
        anyhow::ensure!(max_connections > 0, "OLCHAT_MAX_CONNECTIONS must be at least 1");
        Ok(Self {
            header_timeout: secs("OLCHAT_HEADER_TIMEOUT_SECS", defaults.header_timeout)?,
            body_idle_timeout: secs("OLCHAT_BODY_TIMEOUT_SECS", defaults.body_idle_timeout)?,
            request_timeout: secs("OLCHAT_REQUEST_TIMEOUT_SECS", defaults.request_timeout)?,
            max_connections,
        })
    }
}

/// An environment variable, unset when empty.
pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// An environment variable parsed, `default` when unset; an error when it does not parse.
pub(crate) fn parsed<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    var(name).map(|v| v.parse().with_context(|| format!("{name} is not valid"))).unwrap_or(Ok(default))
}

impl PortalRate {
    /// The pace of real work (`OLCHAT_PORTAL_RATE` / `OLCHAT_PORTAL_BURST`).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars("OLCHAT_PORTAL_RATE", "OLCHAT_PORTAL_BURST", Self::default())
    }

    /// The pace of token checks (`OLCHAT_PORTAL_CHECK_RATE` / `OLCHAT_PORTAL_CHECK_BURST`).
    pub fn checks_from_env() -> anyhow::Result<Self> {
        Self::from_vars("OLCHAT_PORTAL_CHECK_RATE", "OLCHAT_PORTAL_CHECK_BURST", CHECK_RATE)
    }

    fn from_vars(rate: &str, burst: &str, default: Self) -> anyhow::Result<Self> {
        Ok(Self { per_sec: parsed(rate, default.per_sec)?, burst: parsed(burst, default.burst)? })
    }
}

impl SafetyLimits {
    /// The limits from the environment; `pace_secs` when `OLCHAT_PHONE_PACE_SECS` is unset
    /// (automated messages go at most one per `OLCHAT_AUTOMATION_PACE_MS`, 5 s by default,
    /// and a tenth of that against the sandbox Telegram, which bans nobody).
    pub fn from_env(pace_secs: u64) -> anyhow::Result<Self> {
        let defaults = Self::default();
        Ok(Self {
            new_chats_per_day: parsed("OLCHAT_DAILY_NEW_CHATS", defaults.new_chats_per_day)?,
            phone_lookups_per_day: parsed("OLCHAT_DAILY_PHONE_LOOKUPS", defaults.phone_lookups_per_day)?,
            phone_pace: std::time::Duration::from_secs(parsed("OLCHAT_PHONE_PACE_SECS", pace_secs)?),
            automation_pace: std::time::Duration::from_millis(parsed(
                "OLCHAT_AUTOMATION_PACE_MS",
                if pace_secs == 0 { defaults.automation_pace.as_millis() as u64 / 10 } else { defaults.automation_pace.as_millis() as u64 },
            )?),
            retention: match parsed("OLCHAT_RETENTION_DAYS", crate::repo::safety::RETENTION_DAYS)? {
                0 => anyhow::bail!("OLCHAT_RETENTION_DAYS must be at least 1"),
                days => std::time::Duration::from_secs(days * 86_400),
            },
        })
    }
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        let mode = Mode::from_env()?;
        // Real Telegram accounts are paced and caught up as on Lambda (a look-up every 3 s, a
        // catch-up a minute); the sandbox Telegram needs neither.
        let real_telegram = matches!(&mode, Mode::Real(real) if real.telegram.is_some());
        let (phone_pace_secs, catch_up_secs) = if real_telegram { (3, 60) } else { (0, 5) };
        Ok(Self {
            addr: parsed("OLCHAT_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            data_dir: var("OLCHAT_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("data")),
            encryption_key: var("OLCHAT_ENCRYPTION_KEY").map(Secret::new),
            phone_region: var("OLCHAT_PHONE_REGION").unwrap_or_else(|| "RU".into()),
            session_minutes: parsed("OLCHAT_SESSION_MINUTES", 60)?,
            max_receives: parsed("OLCHAT_MAX_RECEIVES", 10)?,
            public_url: var("OLCHAT_PUBLIC_URL"),
            portal_rate: PortalRate::from_env()?,
            check_rate: PortalRate::checks_from_env()?,
            allow_loopback_portals: matches!(mode, Mode::Sandbox) || var("OLCHAT_ALLOW_LOOPBACK_PORTALS").is_some_and(|v| v == "true"),
            openline_order: match var("OLCHAT_OPENLINE_ORDER").as_deref() {
                None | Some("grouped") => Order::Grouped,
                Some("unordered") => Order::Unordered,
                Some(other) => anyhow::bail!("OLCHAT_OPENLINE_ORDER is {other:?}, not grouped or unordered"),
            },
            limits: SafetyLimits::from_env(phone_pace_secs)?,
            catch_up_every: Some(parsed("OLCHAT_CATCH_UP_SECS", catch_up_secs)?).filter(|&s| s > 0).map(std::time::Duration::from_secs),
            keep_connected: parsed("OLCHAT_KEEP_CONNECTED", true)?,
            mode,
            server: ServerLimits::from_env()?,
        })
    }

    /// Settings for a throwaway instance (tests, benchmarks): a random port, the given directory.
    pub fn ephemeral(data_dir: PathBuf) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            encryption_key: Some(Secret::new(MasterKey::generate_key())),
            phone_region: "RU".into(),
            session_minutes: 60,
            max_receives: 10,
            public_url: None,
            portal_rate: PortalRate::default(),
            check_rate: CHECK_RATE,
            allow_loopback_portals: true,
            // Automated messages keep a pace a test can see (spaced) and wait for (quick).
            limits: SafetyLimits { phone_pace: std::time::Duration::ZERO, automation_pace: std::time::Duration::from_millis(50), ..SafetyLimits::default() },
            // As often as a test can wait for; tests that drive catch-ups themselves turn it off.
            catch_up_every: Some(std::time::Duration::from_millis(250)),
            // The tests of the catch-up measure its schedule; those of the kept connections turn it on.
            keep_connected: false,
            // Out of order and in parallel, as on AWS: the tests see production's races.
            openline_order: Order::Unordered,
            mode: Mode::Sandbox,
            server: ServerLimits::default(),
        }
    }

    /// The configured master key, or the sandbox's own, made once and kept beside its data.
    /// Real portals' tokens are only ever sealed with a configured key.
    pub fn master_key(&self) -> anyhow::Result<MasterKey> {
        let key = match (&self.encryption_key, &self.mode) {
            (Some(key), _) => key.clone(),
            (None, Mode::Real(_)) => anyhow::bail!("OLCHAT_ENCRYPTION_KEY must be set to serve real portals"),
            (None, Mode::Sandbox) => sandbox_key(&self.data_dir.join("sandbox.key"))?,
        };
        MasterKey::from_base64(key.expose()).context("OLCHAT_ENCRYPTION_KEY")
    }
}

/// The sandbox's key file, made readable by its owner only. One made before that rule, with
/// wider permissions, is narrowed rather than refused: it only ever sealed sandbox data, and
/// refusing it would strand every existing sandbox data directory.
fn sandbox_key(path: &Path) -> anyhow::Result<Secret> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    // `create_new`: made once even by two processes starting together, never overwritten.
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut file) => file.write_all(MasterKey::generate_key().as_bytes()).with_context(|| format!("writing {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!("{} was readable by others (mode {:o}); now by its owner only", path.display(), mode & 0o777);
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).with_context(|| format!("narrowing {}", path.display()))?;
            }
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    Ok(Secret::new(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?))
}

/// What the local process serves.
#[derive(Clone, Debug)]
pub enum Mode {
    /// No Bitrix24 or Telegram credential configured: the sandbox portal and Telegram, in-process.
    Sandbox,
    /// Real portals (or a stand-in portal, for testing) on the embedded backends; no sandbox.
    Real(RealSettings),
}

/// A single-server deployment's credentials, complete (checked by [`Mode::from_env`]).
#[derive(Clone, Debug)]
pub struct RealSettings {
    /// The local application's `client_id` (`BITRIX_CLIENT_ID`).
    pub client_id: String,
    /// What `app.info` names as our `CODE` (`BITRIX_APP_CODE`; a local app's is its client id).
    pub app_code: String,
    /// Its client secret (`BITRIX_CLIENT_SECRET`).
    pub client_secret: Secret,
    /// The app's public base URL (`OLCHAT_PUBLIC_URL`, https), where portals reach it.
    pub public_url: String,
    /// Bitrix24's OAuth server (`BITRIX_OAUTH_URL`, default `https://oauth.bitrix.info`).
    pub oauth_url: String,
    /// Which portals are served: any public Bitrix24 host, or a stand-in portal.
    pub portals: Portals,
    /// `TELEGRAM_API_ID` and `TELEGRAM_API_HASH`; `None` only with a stand-in portal, which
    /// then gets the sandbox Telegram in-process.
    pub telegram: Option<TelegramApi>,
}

#[derive(Clone, Debug)]
pub enum Portals {
    /// Any portal on a public host name, its REST API at `https://{domain}/rest/`.
    Public,
    /// For testing against a stand-in portal (the sandbox portal in its own process): its
    /// domains (`OLCHAT_PORTAL_DOMAINS`, comma-separated) all answer at one REST URL
    /// (`OLCHAT_PORTAL_REST_URL`).
    StandIn { domains: Vec<String>, rest_url: String },
}

#[derive(Clone, Debug)]
pub struct TelegramApi {
    pub api_id: i32,
    pub api_hash: Secret,
}

/// The variables that name real credentials: any one of them set means real mode.
const REAL_VARS: [&str; 8] = [
    "BITRIX_CLIENT_ID", "BITRIX_CLIENT_SECRET", "BITRIX_APP_CODE", "BITRIX_OAUTH_URL",
    "TELEGRAM_API_ID", "TELEGRAM_API_HASH", "OLCHAT_PORTAL_REST_URL", "OLCHAT_PORTAL_DOMAINS",
];

impl Mode {
    /// Sandbox when no credential is configured; real when all are; otherwise an error that
    /// lists, plainly, what is missing (never the sandbox with some real credentials around).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(&var)
    }

    /// The same, with the variables read through `var` (unset when it gives `None`).
    fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let set: Vec<&str> = REAL_VARS.iter().copied().filter(|name| var(name).is_some()).collect();
        if set.is_empty() {
            return Ok(Self::Sandbox);
        }
        let mut missing = Vec::new();
        let mut need = |name: &'static str, what: &'static str| {
            let value = var(name);
            if value.is_none() {
                missing.push(format!("{name}: {what}"));
            }
            value.unwrap_or_default()
        };
        let client_id = need("BITRIX_CLIENT_ID", "the application's client_id (application ID) from the portal's local application");
        let client_secret = need("BITRIX_CLIENT_SECRET", "its client_secret (application key)");
        let public_url = need("OLCHAT_PUBLIC_URL", "the https:// address where Bitrix24 and the users' browsers reach this server");
        let key = need("OLCHAT_ENCRYPTION_KEY", "base64 of 32 random bytes (head -c 32 /dev/urandom | base64); it seals the portals' tokens and Telegram sessions; keep it safe, backups need it");
        let stand_in = var("OLCHAT_PORTAL_REST_URL").is_some() || var("OLCHAT_PORTAL_DOMAINS").is_some();
        let portals = if stand_in {
            let rest_url = need("OLCHAT_PORTAL_REST_URL", "the stand-in portal's REST URL (http://127.0.0.1:8090/sandbox/portal/rest/)");
            let domains = need("OLCHAT_PORTAL_DOMAINS", "the stand-in portal's domains, comma-separated");
            need("BITRIX_OAUTH_URL", "the stand-in portal's OAuth server (http://127.0.0.1:8090/sandbox/portal)");
            let domains = domains.split(',').map(|d| d.trim().to_ascii_lowercase()).filter(|d| !d.is_empty()).collect();
            Portals::StandIn { domains, rest_url }
        } else {
            Portals::Public
        };
        let wants_telegram = !stand_in || var("TELEGRAM_API_ID").is_some() || var("TELEGRAM_API_HASH").is_some();
        let telegram = wants_telegram.then(|| {
            let api_id = need("TELEGRAM_API_ID", "the api_id of your Telegram application (my.telegram.org → API development tools)");
            let api_hash = need("TELEGRAM_API_HASH", "its api_hash");
            (api_id, api_hash)
        });
        let mut problems = missing;
        if !key.is_empty() && MasterKey::from_base64(&key).is_err() {
            problems.push("OLCHAT_ENCRYPTION_KEY must be base64 of exactly 32 bytes (head -c 32 /dev/urandom | base64)".into());
        }
        // The stand-in is the sandbox portal, which knows only the sandbox's app: real
        // credentials would hand a real client secret to it. And the sandbox's credentials are
        // published in this source, so real portals are never served with them.
        let sandbox_app = client_id == sandbox::CLIENT_ID || client_secret == sandbox::CLIENT_SECRET;
        let sandbox_only_app = client_id == sandbox::CLIENT_ID && client_secret == sandbox::CLIENT_SECRET;
        if stand_in && !client_id.is_empty() && !client_secret.is_empty() && !sandbox_only_app {
            problems.push("BITRIX_CLIENT_ID and BITRIX_CLIENT_SECRET must be the sandbox's with a stand-in portal (OLCHAT_PORTAL_REST_URL, OLCHAT_PORTAL_DOMAINS): unset those two to serve real portals with real credentials".into());
        }
        if !stand_in && sandbox_app {
            problems.push("BITRIX_CLIENT_ID or BITRIX_CLIENT_SECRET is the sandbox's (published in the source): real portals need your own application's".into());
        }
        let public_url = public_url.trim_end_matches('/').to_owned();
        // A stand-in portal is tested on the loopback, without TLS; real portals only call https.
        if !public_url.is_empty() && !stand_in && !public_url.starts_with("https://") {
            problems.push(format!("OLCHAT_PUBLIC_URL must start with https:// (Bitrix24 calls handlers over TLS), not {public_url}"));
        }
        let telegram = match telegram {
            Some((id, hash)) if !id.is_empty() && !hash.is_empty() => match id.parse() {
                Ok(api_id) => Some(TelegramApi { api_id, api_hash: Secret::new(hash) }),
                Err(_) => {
                    problems.push(format!("TELEGRAM_API_ID must be a number, not {id:?}"));
                    None
                }
            },
            _ => None,
        };
        if !problems.is_empty() {
            anyhow::bail!(
                "Not starting: real credentials are configured ({}), but not all of them, or not together.\n  - {}\n\
                 Set them all to serve real Bitrix24 portals, or none of them to run the sandbox.",
                set.join(", "),
                problems.join("\n  - ")
            );
        }
        Ok(Self::Real(RealSettings {
            app_code: var("BITRIX_APP_CODE").unwrap_or_else(|| client_id.clone()),
            client_id,
            client_secret: Secret::new(client_secret),
            public_url,
            oauth_url: var("BITRIX_OAUTH_URL").unwrap_or_else(|| "https://oauth.bitrix.info".into()).trim_end_matches('/').to_owned(),
            portals,
            telegram,
        }))
    }
}

/// The sandbox portal alone, as its own process (`local portal`): a stand-in Bitrix24 for
/// testing the app exactly as deployed.
#[derive(Clone, Debug)]
pub struct PortalSettings {
    /// Where the portal listens (`OLCHAT_ADDR`, default 127.0.0.1:8090).
    pub addr: SocketAddr,
    /// Where the app answers (`OLCHAT_APP_URL`): the portal installs it and posts events
    /// there, and accepts only handlers under it.
    pub app_url: String,
}

impl PortalSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            addr: parsed("OLCHAT_ADDR", SocketAddr::from(([127, 0, 0, 1], 8090)))?,
            app_url: var("OLCHAT_APP_URL")
                .context("OLCHAT_APP_URL must be set: the app's base URL, e.g. http://127.0.0.1:8080")?
                .trim_end_matches('/')
                .to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// Real mode against public portals, complete, with `changes` (an empty value unsets).
    fn real_mode(changes: &[(&str, &str)]) -> anyhow::Result<Mode> {
        let key = MasterKey::generate_key();
        let mut vars: HashMap<&str, String> = [
            ("BITRIX_CLIENT_ID", "local.6620d1c4a1b2c3.12345678"),
            ("BITRIX_CLIENT_SECRET", "a-real-secret"),
            ("OLCHAT_PUBLIC_URL", "https://olchat.example.com"),
            ("OLCHAT_ENCRYPTION_KEY", key.as_str()),
            ("TELEGRAM_API_ID", "1234567"),
            ("TELEGRAM_API_HASH", "hash"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
        vars.extend(changes.iter().map(|&(k, v)| (k, v.to_owned())));
        Mode::from_vars(&|name| vars.get(name).filter(|v| !v.is_empty()).cloned())
    }

    fn refusal(changes: &[(&str, &str)]) -> String {
        format!("{:#}", real_mode(changes).expect_err("refused"))
    }

    #[test]
    fn real_mode_starts_with_its_credentials_only() {
        assert!(matches!(real_mode(&[]), Ok(Mode::Real(_))));
    }

    #[test]
    fn real_mode_needs_a_valid_encryption_key() {
        assert!(refusal(&[("OLCHAT_ENCRYPTION_KEY", "")]).contains("OLCHAT_ENCRYPTION_KEY: base64 of 32 random bytes"));
        assert!(refusal(&[("OLCHAT_ENCRYPTION_KEY", "c2hvcnQ=")]).contains("exactly 32 bytes"));
    }

    #[test]
    fn real_portals_are_refused_with_the_sandbox_credentials() {
        assert!(refusal(&[("BITRIX_CLIENT_ID", sandbox::CLIENT_ID)]).contains("is the sandbox's"));
        assert!(refusal(&[("BITRIX_CLIENT_SECRET", sandbox::CLIENT_SECRET)]).contains("is the sandbox's"));
    }

    #[test]
    fn a_stand_in_portal_is_refused_with_real_credentials() {
        let stand_in = [
            ("OLCHAT_PORTAL_REST_URL", "http://127.0.0.1:8090/sandbox/portal/rest/"),
            ("OLCHAT_PORTAL_DOMAINS", "demo.bitrix24.sandbox"),
            ("BITRIX_OAUTH_URL", "http://127.0.0.1:8090/sandbox/portal"),
            ("OLCHAT_PUBLIC_URL", "http://127.0.0.1:8080"),
        ];
        assert!(refusal(&stand_in).contains("must be the sandbox's with a stand-in portal"));
        let sandbox_app = [("BITRIX_CLIENT_ID", sandbox::CLIENT_ID), ("BITRIX_CLIENT_SECRET", sandbox::CLIENT_SECRET)];
        assert!(matches!(real_mode(&[&stand_in[..], &sandbox_app[..]].concat()), Ok(Mode::Real(_))));
    }

    #[test]
    fn real_mode_never_seals_with_a_made_up_key() {
        let dir = tempfile::tempdir().unwrap();
        let real = match real_mode(&[]) {
            Ok(Mode::Real(real)) => real,
            other => panic!("{other:?}"),
        };
        let settings = Settings { encryption_key: None, mode: Mode::Real(real), ..Settings::ephemeral(dir.path().to_owned()) };
        assert!(format!("{:#}", settings.master_key().err().expect("refused")).contains("OLCHAT_ENCRYPTION_KEY must be set"));
        assert!(!dir.path().join("sandbox.key").exists());
    }

    #[test]
    fn the_sandbox_key_file_is_its_owners_only() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings { encryption_key: None, ..Settings::ephemeral(dir.path().to_owned()) };
        let path = dir.path().join("sandbox.key");
        let first = settings.master_key().unwrap().derive_key(crate::crypto::KeyPurpose::SealTokens);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // One made world-readable (as before this rule) is narrowed, and still the same key.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(settings.master_key().unwrap().derive_key(crate::crypto::KeyPurpose::SealTokens), first);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
