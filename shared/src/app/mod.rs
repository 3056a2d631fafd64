//! Use cases: what the routes and jobs do, over the ports and repositories.

pub mod automation;
pub mod card;
pub mod catch_up;
pub mod connectors;
pub mod conversation;
pub mod events;
pub mod install;
pub mod openlines;
pub mod placement;
pub mod portal;
pub mod schedule;
pub mod send;
pub mod templates;
pub mod uploads;

use std::sync::Arc;

use phonenumber::country;

use crate::auth::SessionSigner;
use crate::bitrix::BitrixClient;
use crate::crypto::{KeyPurpose, MasterKey};
use crate::domain::phone::region_from_code;
use crate::links::SignedLinks;
use crate::ports::{Blobs, Queue, Table, Telegram};
use crate::repo::RepoError;
use crate::repo::automation::AutomationRequests;
use crate::repo::cards::Cards;
use crate::repo::connectors::Connectors;
use crate::repo::conversations::Conversations;
use crate::repo::logins::Logins;
use crate::repo::mailbox::Mailbox;
use crate::repo::messages::Messages;
use crate::repo::schedule::Schedule;
use crate::repo::openlines::OpenLines;
use crate::repo::portals::{Portal, Portals};
use crate::repo::resolutions::Resolutions;
use crate::repo::safety::{Safety, SafetyLimits};
use crate::repo::templates::Templates;
use crate::repo::uploads::Uploads;
use crate::repo::Records;

/// Everything a route or a job needs, built once per process and lent to every request.
pub struct Services {
    pub portals: Portals,
    pub connectors: Connectors,
    pub logins: Logins,
    pub resolutions: Resolutions,
    pub safety: Safety,
    /// Account-safety budgets and pacing of every connector.
    pub limits: SafetyLimits,
    pub cards: Cards,
    pub messages: Messages,
    /// Each connector's conversation with each client, as the tab shows it.
    pub conversations: Conversations,
    /// The due-time index of scheduled messages.
    pub schedule: Schedule,
    pub automation: AutomationRequests,
    pub templates: Templates,
    pub uploads: Uploads,
    pub openlines: OpenLines,
    pub mailbox: Mailbox,
    pub queue: Arc<dyn Queue>,
    pub blobs: Arc<dyn Blobs>,
    pub telegram: Arc<dyn Telegram>,
    /// The accounts a kept connection listens for (the single-server deployment only).
    pub listening: catch_up::Listening,
    pub bitrix: BitrixClient,
    pub sessions: SessionSigner,
    /// Links to stored files: what Bitrix24 downloads published files from.
    pub links: SignedLinks,
    /// For phone numbers typed without a country code, on portals whose own country is not known.
    pub phone_region: Option<country::Id>,
    pub site: Site,
}

/// Where the app answers and where the portals it serves answer.
pub struct Site {
    /// The app's public base URL: handlers registered with portals point here.
    pub public_url: String,
    pub endpoints: install::RestEndpoints,
    /// When replies and reads come in: an open tab paces its looks by it.
    pub arrivals: crate::domain::cadence::Arrivals,
}

/// The adapters a process runs on.
pub struct Adapters {
    pub table: Arc<dyn Table>,
    pub queue: Arc<dyn Queue>,
    pub blobs: Arc<dyn Blobs>,
    pub telegram: Arc<dyn Telegram>,
}

impl Services {
    pub fn new(
        adapters: Adapters,
        bitrix: BitrixClient,
        master: &MasterKey,
        session_secs: i64,
        phone_region: Option<country::Id>,
        site: Site,
        limits: SafetyLimits,
    ) -> Self {
        let records = Records::new(adapters.table);
        Self {
            portals: Portals::new(records.clone(), master),
            connectors: Connectors::new(records.clone()),
            logins: Logins::new(records.clone(), master),
            resolutions: Resolutions::new(records.clone()),
            safety: Safety::new(records.clone()),
            limits,
            cards: Cards::new(records.clone()),
            messages: Messages::new(records.clone(), limits.retention),
            conversations: Conversations::new(records.clone(), limits.retention),
            schedule: Schedule::new(records.clone()),
            automation: AutomationRequests::new(records.clone()),
            templates: Templates::new(records.clone()),
            uploads: Uploads::new(records.clone()),
            openlines: OpenLines::new(records.clone()),
            mailbox: Mailbox::new(records),
            queue: adapters.queue,
            blobs: adapters.blobs,
            telegram: adapters.telegram,
            listening: catch_up::Listening::default(),
            bitrix,
            sessions: SessionSigner::new(master.derive_key(KeyPurpose::SignTabTokens), session_secs),
            links: SignedLinks::of_site(master, &site.public_url),
            phone_region,
            site,
        }
    }

    /// Where a phone number written without a country code is read: the portal's own country,
    /// else the deployment's.
    pub fn phone_region_of(&self, portal: &Portal) -> Option<country::Id> {
        portal.region.as_deref().and_then(region_from_code).or(self.phone_region)
    }
}

/// How far a job got with work that concurrent jobs may share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Done,
    /// Another job holds part of the work this much longer: come back by then.
    Wait(std::time::Duration),
}

impl From<()> for Progress {
    fn from((): ()) -> Self {
        Self::Done
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    /// Well-formed but not acceptable (422).
    Invalid,
    /// Too late for this: the record moved on (409).
    Conflict,
    /// The portal or Telegram failed us (502).
    Upstream,
    /// Try again later (503).
    Busy,
    Internal,
}

/// An error as the user sees it: a kind (the HTTP status), a stable code, a clear message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
    /// When the other side said how long to wait before trying again.
    pub retry_after: Option<std::time::Duration>,
}

impl AppError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self { kind, code, message: message.into(), retry_after: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {error}");
        Self::new(ErrorKind::Internal, "internal", "Something went wrong on our side; nothing was lost. Try again.")
    }
}

impl From<RepoError> for AppError {
    fn from(e: RepoError) -> Self {
        Self::internal(format!("storage: {e:#}"))
    }
}
