//! The telegram port where no Telegram adapter is configured: every call says the
//! connector must log in, so nothing is sent and the tab says why.

use async_trait::async_trait;

use crate::crypto::Secret;
use crate::domain::PhoneE164;
use crate::ports::{Account, KeptConnection, LoginError, LoginStep, Telegram, TelegramError, TelegramSession};

pub struct TelegramUnavailable;

fn unavailable() -> TelegramError {
    TelegramError::Unauthorized("no Telegram adapter is configured in this deployment".into())
}

#[async_trait]
impl Telegram for TelegramUnavailable {
    async fn connect(&self, _: &Account) -> Result<Box<dyn TelegramSession + '_>, TelegramError> {
        Err(unavailable())
    }

    async fn keep(&self, _: &Account) -> Result<Box<dyn KeptConnection + '_>, TelegramError> {
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
