//! The sandbox Telegram's memory: every change to its world as one JSON line, appended
//! before anyone learns of the change and replayed at start. Telegram's own state outlives
//! connections and restarts: a `random_id` once used stays used (core.telegram.org/method/messages.sendMessage,
//! `RANDOM_ID_DUPLICATE`), and an account's updates stay in sequence (core.telegram.org/api/updates). A process killed mid-write
//! leaves at most a torn last line, which is skipped: that change never happened, and no
//! one heard of it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::ReceivedMessage;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    KeyRegistered { dc: i32, key: Vec<u8>, user_id: Option<i64> },
    /// Logged in (`Some`) or out (`None`) on the key.
    KeyAuthorized { key_id: i64, user_id: Option<i64> },
    /// A message written, with the sender's `random_id` when it came through the API.
    Message { message: ReceivedMessage, random_id: Option<i64> },
    /// The sender changed a message's text (`edit_date` is when).
    Edited { id: i32, text: String, entities: Vec<crate::domain::formatting::TextEntity>, edit_date: i64 },
    /// Messages deleted for both sides of their chat.
    Deleted { ids: Vec<i32> },
    /// `to_user_id` read every message sent to them.
    Read { to_user_id: i64 },
    Contacts { owner: i64, added: Vec<i64>, removed: Vec<i64> },
    UserMoved { user_id: i64, dc: i32 },
    FileMoved { file_id: i64, dc: i32 },
}

pub struct Journal {
    file: Mutex<File>,
}

impl Journal {
    /// Opens (or starts) the journal at `path`, handing every event it holds to `replay`.
    pub fn open(path: &Path, mut replay: impl FnMut(Event)) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new().create(true).read(true).append(true).open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut whole = 0u64;
        for line in BufReader::new(&file).split(b'\n') {
            let line = line?;
            match serde_json::from_slice(&line) {
                Ok(event) => {
                    replay(event);
                    whole += line.len() as u64 + 1;
                }
                Err(e) => {
                    tracing::warn!("sandbox Telegram journal: a torn last line dropped ({e})");
                    break;
                }
            }
        }
        // What follows the last whole event is cut, so the next one starts a line of its own.
        let len = file.metadata()?.len();
        if whole > len {
            (&file).write_all(b"\n")?;
        } else {
            file.set_len(whole)?;
        }
        Ok(Self { file: Mutex::new(file) })
    }

    /// One write per event: once it returns, the event survives the process being killed.
    pub fn append(&self, event: &Event) {
        let mut line = serde_json::to_vec(event).expect("an event serializes");
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(&line) {
            tracing::error!("sandbox Telegram journal not written: {e}");
        }
    }
}
