//! Pure domain types: no I/O, no HTTP, no SDKs.

pub mod automation;
pub mod cadence;
pub mod contact;
pub mod entity;
pub mod formatting;
pub mod lease;
pub mod message;
pub mod peer;
pub mod phone;
pub mod publication;
pub mod template;
pub mod username;
pub mod voice;

pub use contact::{ContactPoint, FieldSource, OpenLineChat, RecipientKey};
pub use entity::{EntityRef, EntityType};
pub use formatting::Formatted;
pub use message::{Attachment, Budget, Failure, Message, MessageStatus, Part, SendAs};
pub use publication::{Publication, PublicationMode};
pub use peer::{Peer, TelegramUser};
pub use phone::PhoneE164;
pub use username::TelegramUsername;
