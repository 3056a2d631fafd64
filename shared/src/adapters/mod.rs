//! Implementations of the ports. Embedded: SQLite and a directory; AWS behind the `aws` feature.

#[cfg(feature = "aws")]
pub mod aws;
pub mod dir_blobs;
pub mod grammers;
pub mod sqlite;
pub mod telegram_unavailable;

pub use dir_blobs::DirBlobs;
pub use sqlite::{SqliteDb, SqliteQueue, SqliteTable};
