//! An uninstalled portal's Telegram accounts: each signed out (`auth.logOut`) in its
//! connector's queue group, then forgotten with everything kept under it (session, look-ups,
//! counters, mailbox) and the files its clients sent.

use super::{Outcome, backoff};
use crate::app::Services;
use crate::ports::{Account, TelegramError};

pub async fn sign_out(svc: &Services, member_id: &str, connector_id: &str, telegram_user_id: i64, receive_count: u32) -> Outcome {
    let account = Account { connector_id: connector_id.to_owned(), user_id: telegram_user_id };
    match svc.telegram.log_out(&account).await {
        Ok(()) | Err(TelegramError::Unauthorized(_)) => {}
        Err(TelegramError::FloodWait { seconds }) => return Outcome::RetryAfter(std::time::Duration::from_secs(seconds.into())),
        Err(TelegramError::Transient(e)) => {
            tracing::warn!("sign-out not confirmed, retrying: {e}");
            return Outcome::RetryAfter(backoff(receive_count));
        }
        // A refusal other than a dead session: the session is deleted all the same below.
        Err(e) => tracing::warn!("Telegram refused the sign-out: {e}"),
    }
    let forgotten = async {
        svc.connectors.delete(member_id, connector_id).await?;
        svc.blobs.delete_prefix(&format!("received/{connector_id}")).await.map_err(|e| anyhow::anyhow!("blobs: {e:#}"))
    };
    match forgotten.await {
        Ok(()) => {
            tracing::info!("connector signed out and forgotten");
            Outcome::Done
        }
        Err(e) => {
            tracing::error!("a signed-out connector was not forgotten: {e:#}");
            Outcome::RetryAfter(backoff(receive_count))
        }
    }
}
