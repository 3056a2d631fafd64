//! grammers' `Session` over bytes we keep sealed in the table. It holds what a connection
//! needs (home DC, DC options with their auth keys, the self user, the updates state), not
//! the peers Telegram shows us: recipients' `(user_id, access_hash)` live in our own table.
//! A dirty flag says whether anything really changed, so a connection that only rewrote the
//! same DC options costs no write.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use grammers_session::types::{DcOption, PeerAuth, PeerId, PeerInfo, UpdateState, UpdatesState};
use grammers_session::{BoxFuture, Session, SessionData};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Snapshot {
    home_dc: i32,
    dc_options: BTreeMap<i32, DcOption>,
    self_user: Option<PeerInfo>,
    updates: UpdatesState,
}

impl Default for Snapshot {
    fn default() -> Self {
        let data = SessionData::default();
        Self { home_dc: data.home_dc, dc_options: data.dc_options.into_iter().collect(), self_user: None, updates: data.updates_state }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the Telegram session's bytes are unreadable")]
pub struct BadSessionBytes(#[from] serde_json::Error);

#[derive(Debug, thiserror::Error)]
#[error("the session lock was poisoned")]
pub struct Poisoned;

#[derive(Default)]
pub struct TableSession {
    snapshot: Mutex<Snapshot>,
    dirty: AtomicBool,
}

impl TableSession {
    /// A session that has never connected: no auth key yet.
    pub fn fresh() -> Self {
        Self { dirty: AtomicBool::new(true), ..Self::default() }
    }

    /// A fresh session on Telegram's test servers (for the opt-in live test).
    pub fn fresh_on_test_servers() -> Self {
        let session = Self::fresh();
        session.change(|s| {
            for (id, ip) in [(1, [149, 154, 175, 10]), (2, [149, 154, 167, 40]), (3, [149, 154, 175, 117])] {
                let ipv4 = std::net::SocketAddrV4::new(ip.into(), 443);
                let ipv6 = std::net::SocketAddrV6::new(ipv4.ip().to_ipv6_mapped(), 443, 0, 0);
                s.dc_options.insert(id, DcOption { id, ipv4, ipv6, auth_key: None });
            }
            s.dc_options.retain(|id, _| *id <= 3);
            s.home_dc = 2;
        })
        .expect("a fresh session's lock is not poisoned");
        session
    }

    /// A session on data centres that already know its keys (a sandbox's), logged in as the
    /// account `me` (`user_id`, `access_hash`) when given.
    pub fn registered(keys: &super::RegisteredKeys, me: Option<(i64, i64)>) -> Self {
        let me = me.map(|(id, hash)| PeerInfo::User { id, auth: Some(PeerAuth::from_hash(hash)), bot: Some(false), is_self: Some(true) });
        let snapshot = Snapshot {
            home_dc: keys.home_dc,
            dc_options: keys
                .dcs
                .iter()
                .filter_map(|(id, address, key)| {
                    let std::net::SocketAddr::V4(ipv4) = address else { return None };
                    let ipv6 = std::net::SocketAddrV6::new(ipv4.ip().to_ipv6_mapped(), ipv4.port(), 0, 0);
                    Some((*id, DcOption { id: *id, ipv4: *ipv4, ipv6, auth_key: Some(*key) }))
                })
                .collect(),
            self_user: me,
            updates: UpdatesState::default(),
        };
        Self { snapshot: Mutex::new(snapshot), dirty: AtomicBool::new(true) }
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BadSessionBytes> {
        Ok(Self { snapshot: Mutex::new(serde_json::from_slice(bytes)?), dirty: AtomicBool::new(false) })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let snapshot = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::to_vec(&*snapshot).expect("a session snapshot serializes")
    }

    /// Whether anything changed since it was loaded (or last taken), clearing the flag.
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }

    /// Changes the snapshot; marks it dirty only when `change` really changed something.
    fn change(&self, change: impl FnOnce(&mut Snapshot)) -> Result<(), Poisoned> {
        let mut snapshot = self.snapshot.lock().map_err(|_| Poisoned)?;
        let before = snapshot.clone();
        change(&mut snapshot);
        if *snapshot != before {
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn read<T>(&self, read: impl FnOnce(&Snapshot) -> T) -> Result<T, Poisoned> {
        Ok(read(&*self.snapshot.lock().map_err(|_| Poisoned)?))
    }
}

impl Session for TableSession {
    type Error = Poisoned;

    fn home_dc_id(&self) -> Result<i32, Poisoned> {
        self.read(|s| s.home_dc)
    }

    fn set_home_dc_id(&self, dc_id: i32) -> BoxFuture<'_, Result<(), Poisoned>> {
        Box::pin(async move { self.change(|s| s.home_dc = dc_id) })
    }

    fn dc_option(&self, dc_id: i32) -> Result<Option<DcOption>, Poisoned> {
        self.read(|s| s.dc_options.get(&dc_id).cloned())
    }

    fn set_dc_option(&self, dc_option: &DcOption) -> BoxFuture<'_, Result<(), Poisoned>> {
        let dc_option = dc_option.clone();
        Box::pin(async move {
            self.change(|s| {
                s.dc_options.insert(dc_option.id, dc_option);
            })
        })
    }

    fn peer(&self, peer: PeerId) -> BoxFuture<'_, Result<Option<PeerInfo>, Poisoned>> {
        Box::pin(async move {
            self.read(|s| s.self_user.clone().filter(|me| peer == PeerId::self_user() || me.id() == peer))
        })
    }

    fn cache_peer(&self, peer: PeerInfo) -> BoxFuture<'_, Result<(), Poisoned>> {
        Box::pin(async move {
            if !matches!(peer, PeerInfo::User { is_self: Some(true), .. }) {
                return Ok(());
            }
            self.change(|s| match &mut s.self_user {
                Some(me) if me.id() == peer.id() => {
                    me.extend_info(&peer);
                }
                me => *me = Some(peer),
            })
        })
    }

    fn updates_state(&self) -> BoxFuture<'_, Result<UpdatesState, Poisoned>> {
        Box::pin(async move { self.read(|s| s.updates.clone()) })
    }

    fn set_update_state(&self, update: UpdateState) -> BoxFuture<'_, Result<(), Poisoned>> {
        Box::pin(async move {
            self.change(|s| match update {
                UpdateState::All(all) => s.updates = all,
                UpdateState::Primary { pts, date, seq } => {
                    s.updates.pts = pts;
                    s.updates.date = date;
                    s.updates.seq = seq;
                }
                UpdateState::Secondary { qts } => s.updates.qts = qts,
                // We follow no channels; their states are not worth a write.
                UpdateState::Channel { .. } => {}
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyPurpose, MasterKey};

    fn me() -> PeerInfo {
        PeerInfo::User { id: 777, auth: Some(PeerAuth::from_hash(42)), bot: Some(false), is_self: Some(true) }
    }

    #[tokio::test]
    async fn round_trips_through_sealed_bytes() {
        let session = TableSession::fresh();
        let mut dc = session.dc_option(2).unwrap().expect("DC 2 is known statically");
        dc.auth_key = Some([7; 256]);
        session.set_dc_option(&dc).await.unwrap();
        session.set_home_dc_id(2).await.unwrap();
        session.cache_peer(me()).await.unwrap();
        session.set_update_state(UpdateState::Primary { pts: 5, date: 6, seq: 7 }).await.unwrap();

        let sealer = MasterKey::from_base64(&MasterKey::generate_key()).unwrap().sealer(KeyPurpose::SealSessions);
        let sealed = sealer.seal(&session.to_bytes(), "connector#c1/session");
        let opened = sealer.open(&sealed, "connector#c1/session").unwrap();
        assert!(sealer.open(&sealed, "connector#c2/session").is_err(), "bound to its record");
        let back = TableSession::from_bytes(&opened).unwrap();

        assert!(!back.take_dirty());
        assert_eq!(back.home_dc_id().unwrap(), 2);
        assert_eq!(back.dc_option(2).unwrap().unwrap().auth_key, Some([7; 256]));
        assert_eq!(back.peer(PeerId::self_user()).await.unwrap(), Some(me()));
        assert_eq!(back.updates_state().await.unwrap().pts, 5);
        assert!(opened.len() < 2048, "a session stays small: {} bytes", opened.len());
    }

    #[tokio::test]
    async fn only_real_changes_make_it_dirty() {
        let session = TableSession::from_bytes(&TableSession::fresh().to_bytes()).unwrap();
        let mut dc = session.dc_option(4).unwrap().unwrap();
        session.set_dc_option(&dc).await.unwrap();
        session.set_home_dc_id(session.home_dc_id().unwrap()).await.unwrap();
        session.cache_peer(PeerInfo::User { id: 5, auth: None, bot: None, is_self: Some(false) }).await.unwrap();
        assert!(!session.take_dirty(), "the same DC options again, and a stranger, change nothing");

        dc.auth_key = Some([1; 256]);
        session.set_dc_option(&dc).await.unwrap();
        assert!(session.take_dirty());
        assert!(!session.take_dirty(), "taking the flag clears it");
        assert_eq!(session.peer(PeerId::user(5).unwrap()).await.unwrap(), None);
    }

    #[test]
    fn test_server_sessions_start_on_test_dc_2() {
        let session = TableSession::fresh_on_test_servers();
        assert_eq!(session.home_dc_id().unwrap(), 2);
        assert_eq!(session.dc_option(2).unwrap().unwrap().ipv4.to_string(), "149.154.167.40:443");
        assert_eq!(session.dc_option(4).unwrap(), None);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(TableSession::from_bytes(b"not json").is_err());
    }
}
