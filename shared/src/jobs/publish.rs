//! The openline-worker's job: publish a message into its Open Line chat and keep its CRM
//! activity showing its status. The message records each step, so a redelivery repeats nothing.

use super::{Outcome, portal_outcome};
use crate::app::Services;
use crate::app::openlines::publish_message;

pub async fn publish(svc: &Services, message_id: &str, receive_count: u32) -> Outcome {
    portal_outcome(publish_message(svc, message_id).await, receive_count)
}
