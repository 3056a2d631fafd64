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
    /// Per connector and day: new chats (`OLCHAT_DAILY_NEW_CHATS`, default 40) and phone
    /// look-ups (`OLCHAT_DAILY_PHONE_LOOKUPS`, default 50); seconds between two phone look-ups
    /// (`OLCHAT_PHONE_PACE_SECS`, default 0 here: the sandbox Telegram needs no pacing).
    pub limits: SafetyLimits,
    /// How often every connected account is caught up with Telegram (`OLCHAT_CATCH_UP_SECS`,
    /// default 5; 0: only after sends). On AWS an EventBridge rule does this every minute.
    pub catch_up_every: Option<std::time::Duration>,
    /// How the embedded runner delivers the openline queue (`OLCHAT_OPENLINE_ORDER`):
    /// `grouped` (default), or `unordered` as SQS does on AWS. The telegram queue is always
    /// grouped: it is FIFO on AWS.
    pub openline_order: Order,
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
        Ok(Self {
            addr: parsed("OLCHAT_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            data_dir: var("OLCHAT_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("data")),
            encryption_key: var("OLCHAT_ENCRYPTION_KEY").map(Secret::new),
            phone_region: var("OLCHAT_PHONE_REGION").unwrap_or_else(|| "RU".into()),
            session_minutes: parsed("OLCHAT_SESSION_MINUTES", 60)?,
            max_receives: parsed("OLCHAT_MAX_RECEIVES", 10)?,
            public_url: var("OLCHAT_PUBLIC_URL"),
            portal_rate: PortalRate::from_env()?,
            limits: SafetyLimits::from_env(0)?,
            catch_up_every: Some(parsed("OLCHAT_CATCH_UP_SECS", 5u64)?).filter(|&s| s > 0).map(std::time::Duration::from_secs),
            openline_order: match var("OLCHAT_OPENLINE_ORDER").as_deref() {
                None | Some("grouped") => Order::Grouped,
                Some("unordered") => Order::Unordered,
                Some(other) => anyhow::bail!("OLCHAT_OPENLINE_ORDER is {other:?}, not grouped or unordered"),
            },
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
            limits: SafetyLimits { phone_pace: std::time::Duration::ZERO, ..SafetyLimits::default() },
            // As often as a test can wait for; tests that drive catch-ups themselves turn it off.
            catch_up_every: Some(std::time::Duration::from_millis(250)),
            // Out of order and in parallel, as on AWS: the tests see production's races.
            openline_order: Order::Unordered,
        }
    }

    /// The configured key, or the sandbox's own, made once and kept beside its data.
    pub fn sealer(&self) -> anyhow::Result<Sealer> {
        let key = match &self.encryption_key {
            Some(key) => key.clone(),
            None => {
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
