//! Pure domain types: no I/O, no HTTP, no SDKs.

pub mod contact;
pub mod entity;
pub mod message;
pub mod peer;
pub mod phone;
pub mod username;

pub use contact::{ContactPoint, FieldSource, RecipientKey};
pub use entity::{EntityRef, EntityType};
pub use message::{Failure, Message, MessageStatus, Part};
pub use peer::{Peer, TelegramUser};
pub use phone::PhoneE164;
pub use username::TelegramUsername;
