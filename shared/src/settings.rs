//! Configuration, read from the environment once at start.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::bitrix::pacer::PortalRate;
use crate::jobs::runner::Order;
use crate::repo::safety::SafetyLimits;
use crate::crypto::{Sealer, Secret};

#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the embedded server listens (`OLCHAT_ADDR`, default 127.0.0.1:8080; port 0 picks one).
    pub addr: SocketAddr,
    /// The SQLite file and the blob directory live here (`OLCHAT_DATA_DIR`, default `./data`).
    pub data_dir: PathBuf,
    /// Base64 of 32 bytes (`OLCHAT_ENCRYPTION_KEY`); in the sandbox one is made and kept in the data dir.
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
    /// Whether portals and the OAuth server may be called on the loopback: the sandbox's
    /// own portal answers there. Off in real mode unless `OLCHAT_ALLOW_LOOPBACK_PORTALS=true`
    /// (a stand-in portal on this machine, for testing); private addresses never are.
    pub allow_loopback_portals: bool,
    /// Per connector and day: new chats (`OLCHAT_DAILY_NEW_CHATS`, default 40) and phone
    /// look-ups (`OLCHAT_DAILY_PHONE_LOOKUPS`, default 50); seconds between two phone look-ups
    /// (`OLCHAT_PHONE_PACE_SECS`, default 0 here: the sandbox Telegram needs no pacing).
    pub limits: SafetyLimits,
    /// How often every connected account is caught up with Telegram (`OLCHAT_CATCH_UP_SECS`,
    /// default 5 with the sandbox Telegram, 60 with real Telegram; 0: only after sends). On AWS
    /// an EventBridge rule does this every minute.
    pub catch_up_every: Option<std::time::Duration>,
    /// How the embedded runner delivers the openline queue (`OLCHAT_OPENLINE_ORDER`):
    /// `grouped` (default), or `unordered` as SQS does on AWS. The telegram queue is always
    /// grouped: it is FIFO on AWS.
    pub openline_order: Order,
    /// Sandbox or real portals, from which credentials are configured.
    pub mode: Mode,
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
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            per_sec: parsed("OLCHAT_PORTAL_RATE", Self::default().per_sec)?,
            burst: parsed("OLCHAT_PORTAL_BURST", Self::default().burst)?,
        })
    }
}

impl SafetyLimits {
    /// The limits from the environment; `pace_secs` when `OLCHAT_PHONE_PACE_SECS` is unset.
    pub fn from_env(pace_secs: u64) -> anyhow::Result<Self> {
        let defaults = Self::default();
        Ok(Self {
            new_chats_per_day: parsed("OLCHAT_DAILY_NEW_CHATS", defaults.new_chats_per_day)?,
            phone_lookups_per_day: parsed("OLCHAT_DAILY_PHONE_LOOKUPS", defaults.phone_lookups_per_day)?,
            phone_pace: std::time::Duration::from_secs(parsed("OLCHAT_PHONE_PACE_SECS", pace_secs)?),
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
            allow_loopback_portals: matches!(mode, Mode::Sandbox) || var("OLCHAT_ALLOW_LOOPBACK_PORTALS").is_some_and(|v| v == "true"),
            openline_order: match var("OLCHAT_OPENLINE_ORDER").as_deref() {
                None | Some("grouped") => Order::Grouped,
                Some("unordered") => Order::Unordered,
                Some(other) => anyhow::bail!("OLCHAT_OPENLINE_ORDER is {other:?}, not grouped or unordered"),
            },
            limits: SafetyLimits::from_env(phone_pace_secs)?,
            catch_up_every: Some(parsed("OLCHAT_CATCH_UP_SECS", catch_up_secs)?).filter(|&s| s > 0).map(std::time::Duration::from_secs),
            mode,
        })
    }

    /// Settings for a throwaway instance (tests, benchmarks): a random port, the given directory.
    pub fn ephemeral(data_dir: PathBuf) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            encryption_key: Some(Secret::new(Sealer::generate_key())),
            phone_region: "RU".into(),
            session_minutes: 60,
            max_receives: 10,
            public_url: None,
            portal_rate: PortalRate::default(),
            allow_loopback_portals: true,
            limits: SafetyLimits { phone_pace: std::time::Duration::ZERO, ..SafetyLimits::default() },
            // As often as a test can wait for; tests that drive catch-ups themselves turn it off.
            catch_up_every: Some(std::time::Duration::from_millis(250)),
            // Out of order and in parallel, as on AWS: the tests see production's races.
            openline_order: Order::Unordered,
            mode: Mode::Sandbox,
        }
    }

    /// The configured key, or the sandbox's own, made once and kept beside its data. Real
    /// portals' tokens are only ever sealed with a configured key.
    pub fn sealer(&self) -> anyhow::Result<Sealer> {
        let key = match (&self.encryption_key, &self.mode) {
            (Some(key), _) => key.clone(),
            (None, Mode::Real(_)) => anyhow::bail!("OLCHAT_ENCRYPTION_KEY must be set to serve real portals"),
            (None, Mode::Sandbox) => {
                let path = self.data_dir.join("sandbox.key");
                if !path.exists() {
                    std::fs::write(&path, Sealer::generate_key()).with_context(|| format!("writing {}", path.display()))?;
                }
                Secret::new(std::fs::read_to_string(&path)?)
            }
        };
        Sealer::from_base64(key.expose()).context("OLCHAT_ENCRYPTION_KEY")
    }
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
        need("OLCHAT_ENCRYPTION_KEY", "base64 of 32 random bytes (head -c 32 /dev/urandom | base64); it seals the portals' tokens and Telegram sessions; keep it safe, backups need it");
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
                "Not starting: real credentials are configured ({}), but not all of them.\n  - {}\n\
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
