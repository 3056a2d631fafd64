//! Implementations of the ports. Embedded: SQLite and a directory.

pub mod dir_blobs;
pub mod sqlite;

pub use dir_blobs::DirBlobs;
pub use sqlite::{SqliteDb, SqliteQueue, SqliteTable};
