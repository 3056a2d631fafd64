//! The telegram port where no Telegram adapter is configured: every call says the
//! connector must log in, so nothing is sent and the tab says why.

use async_trait::async_trait;

use crate::domain::{Formatted, PhoneE164, TelegramUsername};
use crate::ports::blobs::BlobReader;
use crate::crypto::Secret;
use crate::ports::{
    Account, Contact, Difference, HistoryPage, LoginError, LoginStep, Media, Peer, RemoteFile, SentMessage, Telegram, TelegramError,
    TelegramUser, UpdatesState,
};

pub struct TelegramUnavailable;

fn unavailable() -> TelegramError {
    TelegramError::Unauthorized("no Telegram adapter is configured in this deployment".into())
}

#[async_trait]
impl Telegram for TelegramUnavailable {
    async fn resolve_phone(&self, _: &Account, _: &PhoneE164) -> Result<Option<TelegramUser>, TelegramError> {
        Err(unavailable())
    }

    async fn resolve_username(&self, _: &Account, _: &TelegramUsername) -> Result<Option<TelegramUser>, TelegramError> {
        Err(unavailable())
    }

    async fn send_text(&self, _: &Account, _: Peer, _: &Formatted, _: i64) -> Result<SentMessage, TelegramError> {
        Err(unavailable())
    }

    async fn send_media(&self, _: &Account, _: Peer, _: &Media, _: BlobReader, _: &Formatted, _: i64) -> Result<SentMessage, TelegramError> {
        Err(unavailable())
    }

    async fn read_outbox_max_id(&self, _: &Account, _: Peer) -> Result<i32, TelegramError> {
        Err(unavailable())
    }

    async fn contacts(&self, _: &Account) -> Result<Vec<Contact>, TelegramError> {
        Err(unavailable())
    }

    async fn updates_state(&self, _: &Account) -> Result<UpdatesState, TelegramError> {
        Err(unavailable())
    }

    async fn difference(&self, _: &Account, _: UpdatesState) -> Result<Difference, TelegramError> {
        Err(unavailable())
    }

    async fn history(&self, _: &Account, _: Peer, _: i32) -> Result<HistoryPage, TelegramError> {
        Err(unavailable())
    }

    async fn download(&self, _: &Account, _: &RemoteFile, _: &mut (dyn tokio::io::AsyncWrite + Send + Unpin)) -> Result<u64, TelegramError> {
        Err(unavailable())
    }

    async fn send_code(&self, _: &str, _: &PhoneE164) -> Result<LoginStep, LoginError> {
        Err(unavailable().into())
    }

    async fn sign_in(&self, _: &str, _: &PhoneE164, _: &Secret, _: &str) -> Result<LoginStep, LoginError> {
        Err(unavailable().into())
    }

    async fn check_password(&self, _: &str, _: &Secret) -> Result<LoginStep, LoginError> {
        Err(unavailable().into())
    }

    async fn qr_login(&self, _: &str) -> Result<LoginStep, LoginError> {
        Err(unavailable().into())
    }

    async fn log_out(&self, _: &Account) -> Result<(), TelegramError> {
        Ok(())
    }
}
