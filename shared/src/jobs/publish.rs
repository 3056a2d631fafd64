//! The openline-worker's job: publish a message into its Open Line chat and keep its CRM
//! activity showing its status. The job claims the message while it works and the message
//! records each step, so neither a concurrent delivery nor a redelivery repeats anything.

use super::{Outcome, portal_outcome};
use crate::app::Services;
use crate::app::openlines::publish_message;

pub async fn publish(svc: &Services, message_id: &str, receive_count: u32) -> Outcome {
    portal_outcome(publish_message(svc, message_id).await, receive_count)
}
