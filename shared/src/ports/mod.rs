//! The boundaries of the application: every adapter (embedded, AWS, sandbox) implements these.

pub mod blobs;
pub mod queue;
pub mod table;
pub mod telegram;

pub use blobs::{BlobError, Blobs};
pub use queue::{Delivery, JobQueue, Queue, QueueError};
pub use table::{Condition, Item, Table, TableError};
pub use telegram::{
    Account, ChatMessage, Contact, Difference, HISTORY_LIMIT, HistoryPage, IncomingKind, IncomingMessage, KeptConnection, LoggedIn, LoginError, LoginStep, Media, MediaKind, Peer,
    Pushed, RemoteFile, SentMessage, Telegram, TelegramError, TelegramSession, TelegramUser, Update, UpdatesState,
};
