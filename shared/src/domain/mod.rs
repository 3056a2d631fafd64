//! Pure domain types: no I/O, no HTTP, no SDKs.

pub mod contact;
pub mod entity;
pub mod formatting;
pub mod message;
pub mod peer;
pub mod phone;
pub mod publication;
pub mod username;

pub use contact::{ContactPoint, FieldSource, RecipientKey};
pub use entity::{EntityRef, EntityType};
pub use formatting::Formatted;
pub use message::{Failure, Message, MessageStatus, Part};
pub use publication::{Publication, PublicationMode};
pub use peer::{Peer, TelegramUser};
pub use phone::PhoneE164;
pub use username::TelegramUsername;
