//! The sandbox data centres: one TCP listener per DC on loopback, speaking MTProto 2.0 over
//! the TCP "full" transport (core.telegram.org/mtproto/mtproto-transports#full) as Telegram
//! does to grammers: salts (`bad_server_salt`, `get_future_salts`), `new_session_created`,
//! containers, `gzip_packed`, pings, `invokeWithLayer(initConnection(...))`, `rpc_result`.
//!
//! A connection whose auth key the DC does not know is closed: the key exchange that would
//! follow cannot succeed here (grammers trusts only Telegram's RSA keys), so keys are
//! registered out of band ([`SandboxTelegram::register_keys`]).

use std::sync::Arc;

use anyhow::Context;
use grammers_client::tl::{self, Deserializable, Identifiable, Serializable};
use grammers_mtproto::transport::{self, Full, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::rpc::{self, Answer, Caller};
use super::wire::{self, Incoming, MsgIds, Query};
use super::{DCS, Push, SandboxTelegram};
use crate::clock::now_secs;

/// The largest frame a client may send: an upload part of 512 KiB and its envelope.
const MAX_FRAME: usize = 1024 * 1024;
/// A client's `msg_id` may lag the server's clock by 300 s and lead it by 30 s
/// (core.telegram.org/mtproto/service_messages_about_messages, codes 16 and 17).
const MSG_ID_PAST: i64 = 300;
const MSG_ID_FUTURE: i64 = 30;
const LAYER_MIN: i32 = 1;

/// Binds every data centre on loopback and serves it until the process ends. A DC's address
/// stays what it was in an earlier run (kept in the data directory): the sessions made then
/// know it, as clients know Telegram's. A port taken meanwhile gives way to a free one.
pub async fn start(world: Arc<SandboxTelegram>) -> anyhow::Result<()> {
    let mut known: std::collections::HashMap<i32, u16> = std::fs::read(&world.ports_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    for dc in DCS {
        let listener = match known.get(&dc) {
            Some(port) => match TcpListener::bind(("127.0.0.1", *port)).await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(dc, port, "the sandbox data centre's port is taken ({e}); its old sessions will not reach it");
                    TcpListener::bind(("127.0.0.1", 0)).await.context("binding a sandbox data centre")?
                }
            },
            None => TcpListener::bind(("127.0.0.1", 0)).await.context("binding a sandbox data centre")?,
        };
        let address = listener.local_addr()?;
        known.insert(dc, address.port());
        world.addresses.lock().unwrap_or_else(|p| p.into_inner()).insert(dc, address);
        let world = world.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                world.lock().stats.connections.entry(dc).and_modify(|n| *n += 1).or_insert(1);
                let world = world.clone();
                tokio::spawn(async move {
                    let (push, pushed) = tokio::sync::mpsc::unbounded_channel();
                    if let Err(e) = Connection::new(dc, push).serve(&world, stream, pushed).await {
                        tracing::debug!(dc, "sandbox DC connection closed: {e}");
                    }
                });
            }
        });
    }
    std::fs::write(&world.ports_file, serde_json::to_vec(&known)?).context("keeping the sandbox data centres' ports")?;
    Ok(())
}

/// The salt of hour `hour` for `dc`: salts change hourly and stay good an hour after.
fn salt(world: &SandboxTelegram, dc: i32, hour: i64) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(world.salt_secret).chain_update(dc.to_le_bytes()).chain_update(hour.to_le_bytes()).finalize();
    i64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

struct Connection {
    dc: i32,
    transport: Full,
    key: Option<(i64, [u8; 256])>,
    session_id: i64,
    new_session_sent: bool,
    /// `invokeWithLayer(initConnection(...))` came first, as a new session must begin.
    initialised: bool,
    msg_ids: MsgIds,
    /// Content-related messages sent so far (their `seq_no` is 2n+1).
    content_sent: i32,
    /// Bodies to send: (body, answers a client message, content-related).
    out: Vec<(Vec<u8>, bool, bool)>,
    /// Where the world pushes this connection's updates once it receives its key's.
    push: tokio::sync::mpsc::UnboundedSender<Push>,
    /// When the connection closes unless another `ping_delay_disconnect` comes first.
    disconnect_at: Option<tokio::time::Instant>,
    /// Counted among its account's connections (in the stats).
    counted: bool,
}

#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("the client left")]
    Eof,
    #[error("{0}")]
    Protocol(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Connection {
    fn new(dc: i32, push: tokio::sync::mpsc::UnboundedSender<Push>) -> Self {
        Self {
            dc,
            transport: Full::new(),
            key: None,
            session_id: 0,
            new_session_sent: false,
            initialised: false,
            msg_ids: MsgIds::default(),
            content_sent: 0,
            out: Vec::new(),
            push,
            disconnect_at: None,
            counted: false,
        }
    }

    async fn serve(mut self, world: &Arc<SandboxTelegram>, mut stream: TcpStream, mut pushed: tokio::sync::mpsc::UnboundedReceiver<Push>) -> Result<(), Closed> {
        stream.set_nodelay(true)?;
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            let frame = loop {
                match self.transport.unpack(&mut buf) {
                    Ok(offset) => {
                        let frame = buf[offset.data_range].to_vec();
                        buf.drain(..offset.next_offset);
                        break Some(frame);
                    }
                    Err(transport::Error::MissingBytes) => {
                        if buf.len() > MAX_FRAME {
                            return Err(Closed::Protocol("frame too large"));
                        }
                        let mut chunk = [0u8; 64 * 1024];
                        let disconnect_at = self.disconnect_at;
                        let disconnect = async move {
                            match disconnect_at {
                                Some(at) => tokio::time::sleep_until(at).await,
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            n = stream.read(&mut chunk) => {
                                let n = n?;
                                if n == 0 {
                                    return Err(Closed::Eof);
                                }
                                buf.extend_from_slice(&chunk[..n]);
                            }
                            push = pushed.recv() => match push {
                                // Updates go out as a message of their own, content-related, not an answer.
                                Some(Push::Updates(updates)) => {
                                    self.out.push((updates, false, true));
                                    break None;
                                }
                                Some(Push::Close) | None => return Err(Closed::Protocol("dropped by the data centre")),
                            },
                            () = disconnect => return Err(Closed::Protocol("no ping within its disconnect_delay")),
                        }
                    }
                    Err(_) => return Err(Closed::Protocol("bad transport frame")),
                }
            };
            let mut dropped = false;
            if let Some(frame) = frame {
                world.lock().stats.frames += 1;
                dropped = self.receive(world, &frame).await?;
            }
            for (body, answer, content) in std::mem::take(&mut self.out) {
                let payload = self.seal(world, &body, answer, content);
                let mut packed = grammers_crypto::DequeBuffer::with_capacity(payload.len() + 12, 8);
                packed.extend(payload);
                self.transport.pack(&mut packed);
                stream.write_all(packed.as_ref()).await?;
            }
            if dropped {
                return Err(Closed::Protocol("dropped after the call, as the fault asked"));
            }
        }
    }

    /// Handles one encrypted message; `true` when the connection is to drop afterwards.
    async fn receive(&mut self, world: &Arc<SandboxTelegram>, payload: &[u8]) -> Result<bool, Closed> {
        let key_id = wire::auth_key_id(payload).ok_or(Closed::Protocol("short frame"))?;
        let key = match self.key {
            Some((id, key)) if id == key_id => key,
            Some(_) => return Err(Closed::Protocol("another auth key on the same connection")),
            None => {
                let known = world.lock().keys.get(&key_id).filter(|k| k.dc == self.dc).map(|k| k.key);
                let key = known.ok_or(Closed::Protocol("unknown auth key (no key exchange in the sandbox)"))?;
                self.key = Some((key_id, key));
                key
            }
        };
        let message = wire::decrypt(payload, &key).ok_or(Closed::Protocol("undecryptable message"))?;
        if self.session_id == 0 {
            self.session_id = message.session_id;
        }
        if let Some(code) = bad_msg_id(message.msg_id) {
            let notice = tl::enums::BadMsgNotification::Notification(tl::types::BadMsgNotification { bad_msg_id: message.msg_id, bad_msg_seqno: message.seq_no, error_code: code });
            self.out.push((notice.to_bytes(), true, false));
            return Ok(false);
        }
        let hour = now_secs() / 3600;
        if message.salt != salt(world, self.dc, hour) && message.salt != salt(world, self.dc, hour - 1) {
            let notice = tl::types::BadServerSalt { bad_msg_id: message.msg_id, bad_msg_seqno: message.seq_no, error_code: 48, new_server_salt: salt(world, self.dc, hour) };
            self.out.push((tl::enums::BadMsgNotification::BadServerSalt(notice).to_bytes(), true, false));
            return Ok(false);
        }
        if !self.new_session_sent {
            self.new_session_sent = true;
            let created = tl::types::NewSessionCreated { first_msg_id: message.msg_id, unique_id: super::random_i64(), server_salt: message.salt };
            self.out.push((tl::enums::NewSession::Created(created).to_bytes(), false, true));
        }
        let Incoming { msg_id, body, .. } = message;
        self.process(world, msg_id, body, 0).await
    }

    /// One message's body: a container or gzip wraps others; service messages are answered
    /// here; anything else is an API call.
    fn process<'a>(&'a mut self, world: &'a Arc<SandboxTelegram>, msg_id: i64, body: Vec<u8>, depth: u8) -> futures_util::future::BoxFuture<'a, Result<bool, Closed>> {
        Box::pin(async move {
            if depth > 2 {
                return Err(Closed::Protocol("containers nested too deep"));
            }
            match wire::constructor(&body).ok_or(Closed::Protocol("empty body"))? {
                wire::MSG_CONTAINER => {
                    let mut dropped = false;
                    for inner in wire::container(&body).ok_or(Closed::Protocol("malformed container"))? {
                        if bad_msg_id(inner.msg_id).is_some() {
                            continue;
                        }
                        dropped |= self.process(world, inner.msg_id, inner.body, depth + 1).await?;
                    }
                    Ok(dropped)
                }
                wire::GZIP_PACKED => match wire::gunzip(&body) {
                    Some(inner) => self.process(world, msg_id, inner, depth + 1).await,
                    None => {
                        self.answer(msg_id, wire::rpc_error(400, "INPUT_REQUEST_INVALID"));
                        Ok(false)
                    }
                },
                tl::types::MsgsAck::CONSTRUCTOR_ID => Ok(false),
                tl::functions::Ping::CONSTRUCTOR_ID | tl::functions::PingDelayDisconnect::CONSTRUCTOR_ID => {
                    let ping_id = i64::from_le_bytes(body.get(4..12).ok_or(Closed::Protocol("short ping"))?.try_into().expect("8 bytes"));
                    if wire::constructor(&body) == Some(tl::functions::PingDelayDisconnect::CONSTRUCTOR_ID) {
                        // core.telegram.org/mtproto/service_messages#deferred-connection-closure--ping:
                        // the connection closes `disconnect_delay` seconds after this ping
                        // unless another one of its kind resets the timer.
                        let delay = i32::from_le_bytes(body.get(12..16).ok_or(Closed::Protocol("short ping"))?.try_into().expect("4 bytes"));
                        self.disconnect_at = Some(tokio::time::Instant::now() + std::time::Duration::from_secs(delay.max(0) as u64));
                    }
                    let pong = tl::enums::Pong::Pong(tl::types::Pong { msg_id, ping_id });
                    self.out.push((pong.to_bytes(), true, true));
                    Ok(false)
                }
                tl::functions::GetFutureSalts::CONSTRUCTOR_ID => {
                    let request = tl::functions::GetFutureSalts::from_bytes(&body[4..]).map_err(|_| Closed::Protocol("bad get_future_salts"))?;
                    let salts = self.future_salts(world, msg_id, request.num);
                    // Bare, not in an rpc_result (core.telegram.org/mtproto/service_messages#request-for-several-future-salts).
                    self.out.push((salts, true, true));
                    Ok(false)
                }
                tl::functions::InvokeWithLayer::<Query>::CONSTRUCTOR_ID => {
                    // Function types read what follows their constructor.
                    let wrapped = tl::functions::InvokeWithLayer::<Query>::from_bytes(&body[4..]).map_err(|_| Closed::Protocol("bad invokeWithLayer"))?;
                    if wrapped.layer < LAYER_MIN {
                        self.answer(msg_id, wire::rpc_error(400, "CONNECTION_LAYER_INVALID"));
                        return Ok(false);
                    }
                    let query = wrapped.query.0;
                    if wire::constructor(&query) != Some(tl::functions::InitConnection::<Query>::CONSTRUCTOR_ID) {
                        return self.call(world, msg_id, &query).await;
                    }
                    let init = tl::functions::InitConnection::<Query>::from_bytes(&query[4..]).map_err(|_| Closed::Protocol("bad initConnection"))?;
                    if init.api_id != rpc::API_ID {
                        self.answer(msg_id, wire::rpc_error(400, "API_ID_INVALID"));
                        return Ok(false);
                    }
                    self.initialised = true;
                    self.call(world, msg_id, &init.query.0).await
                }
                _ => self.call(world, msg_id, &body).await,
            }
        })
    }

    async fn call(&mut self, world: &Arc<SandboxTelegram>, msg_id: i64, body: &[u8]) -> Result<bool, Closed> {
        if !self.initialised {
            // A session's first call must carry initConnection (core.telegram.org/method/initConnection).
            self.answer(msg_id, wire::rpc_error(400, "CONNECTION_NOT_INITED"));
            return Ok(false);
        }
        let method = wire::constructor(body).map_or("unknown", tl::name_for_id);
        world.lock().stats.calls.entry(method.to_owned()).and_modify(|n| *n += 1).or_insert(1);
        let (key_id, _) = self.key.expect("a key before any call");
        // A call as a logged-in account makes this connection the one its updates go to
        // (before the answer: what the call changes is already the others' to push).
        world.called(key_id, method, &self.push, &mut self.counted);
        let caller = Caller { dc: self.dc, key_id, fault: None };
        match rpc::call(world, &caller, method, body).await {
            Answer::Result(bytes) => self.answer(msg_id, bytes),
            Answer::Error(code, name) => self.answer(msg_id, wire::rpc_error(code, &name)),
            Answer::Drop => return Ok(true),
        }
        Ok(false)
    }

    fn answer(&mut self, msg_id: i64, result: Vec<u8>) {
        self.out.push((wire::rpc_result(msg_id, &result), true, true));
    }

    /// `future_salts`: `num` (at most 64) hourly salts from the current one.
    fn future_salts(&self, world: &SandboxTelegram, req_msg_id: i64, num: i32) -> Vec<u8> {
        let now = now_secs();
        let hour = now / 3600;
        let salts = (0..i64::from(num.clamp(1, 64)))
            .map(|i| tl::types::FutureSalt {
                valid_since: ((hour + i) * 3600) as i32,
                valid_until: ((hour + i + 2) * 3600) as i32,
                salt: salt(world, self.dc, hour + i),
            })
            .collect();
        tl::enums::FutureSalts::Salts(tl::types::FutureSalts { req_msg_id, now: now as i32, salts: tl::RawVec(salts) }).to_bytes()
    }

    fn seal(&mut self, world: &SandboxTelegram, body: &[u8], answer: bool, content: bool) -> Vec<u8> {
        let (_, key) = self.key.expect("a key before any answer");
        let seq_no = if content {
            self.content_sent += 1;
            self.content_sent * 2 - 1
        } else {
            self.content_sent * 2
        };
        let msg_id = self.msg_ids.next(answer);
        wire::encrypt(&key, salt(world, self.dc, now_secs() / 3600), self.session_id, msg_id, seq_no, body)
    }
}

/// The `bad_msg_notification` code for a client `msg_id` the server refuses: 18 when not
/// divisible by 4, 16 too far in the past, 17 too far in the future.
fn bad_msg_id(msg_id: i64) -> Option<i32> {
    let (time, now) = (msg_id >> 32, now_secs());
    if msg_id % 4 != 0 {
        Some(18)
    } else if time < now - MSG_ID_PAST {
        Some(16)
    } else if time > now + MSG_ID_FUTURE {
        Some(17)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use grammers_client::{Client, SenderPool};
    use grammers_session::updates::UpdatesLike;

    use super::*;
    use crate::adapters::grammers::KeyRegistry;
    use crate::adapters::grammers::session::TableSession;
    use crate::sandbox::seed;

    const IVAN: i64 = 1001;

    /// The sandbox data centres, and a grammers client logged in as the sales account.
    async fn connected(dir: &std::path::Path) -> (Arc<SandboxTelegram>, Client, tokio::sync::mpsc::Receiver<UpdatesLike>) {
        let world = Arc::new(SandboxTelegram::open(seed::telegram_users(), dir).unwrap());
        start(world.clone()).await.unwrap();
        let keys = world.register_keys(Some(seed::SALES_ACCOUNT));
        let pool = SenderPool::new(Arc::new(TableSession::registered(&keys, None)), rpc::API_ID);
        tokio::spawn(pool.runner.run());
        (world, Client::new(pool.handle), pool.updates)
    }

    async fn next(updates: &mut tokio::sync::mpsc::Receiver<UpdatesLike>) -> UpdatesLike {
        tokio::time::timeout(Duration::from_secs(5), updates.recv()).await.expect("in time").expect("open")
    }

    #[tokio::test]
    async fn a_session_that_asked_is_pushed_what_getdifference_tells_after() {
        let dir = tempfile::tempdir().unwrap();
        let (world, client, mut updates) = connected(dir.path()).await;
        let tl::enums::updates::State::State(before) = client.invoke(&tl::functions::updates::GetState {}).await.unwrap();
        let id = world.reply(IVAN, seed::SALES_ACCOUNT, "pushed", None).unwrap();
        let UpdatesLike::Updates(tl::enums::Updates::Updates(pushed)) = next(&mut updates).await else { panic!("not updates") };
        let [tl::enums::Update::NewMessage(new)] = pushed.updates.as_slice() else { panic!("{:?}", pushed.updates) };
        assert_eq!((new.pts, new.pts_count), (before.pts + 1, 1));
        assert!(pushed.users.iter().any(|u| matches!(u, tl::enums::User::User(u) if u.id == IVAN && u.access_hash.is_some())), "the sender comes along");
        let request = tl::functions::updates::GetDifference { pts: before.pts, pts_limit: None, pts_total_limit: None, date: before.date, qts: 0, qts_limit: None };
        let tl::enums::updates::Difference::Difference(difference) = client.invoke(&request).await.unwrap() else { panic!("one difference") };
        let tl::enums::updates::State::State(after) = difference.state;
        assert_eq!(after.pts, new.pts, "the same pts as the push");
        assert!(matches!(difference.new_messages.as_slice(), [tl::enums::Message::Message(m)] if m.id == id));

        // A deletion goes short: it names nobody the client must know.
        world.delete(IVAN, id).unwrap();
        let UpdatesLike::Updates(tl::enums::Updates::UpdateShort(short)) = next(&mut updates).await else { panic!("not short") };
        assert!(matches!(short.update, tl::enums::Update::DeleteMessages(d) if d.messages == [id] && d.pts == after.pts + 1));
        assert_eq!(world.stats().accounts[&seed::SALES_ACCOUNT].pushes, 2);
    }

    #[tokio::test]
    async fn of_two_connections_of_one_auth_key_only_the_one_that_called_last_is_pushed() {
        let dir = tempfile::tempdir().unwrap();
        let world = Arc::new(SandboxTelegram::open(seed::telegram_users(), dir.path()).unwrap());
        start(world.clone()).await.unwrap();
        let keys = world.register_keys(Some(seed::SALES_ACCOUNT));
        let session = Arc::new(TableSession::registered(&keys, None));
        let (first, second) = (SenderPool::new(session.clone(), rpc::API_ID), SenderPool::new(session, rpc::API_ID));
        let mut pushed = second.updates;
        tokio::spawn(first.runner.run());
        tokio::spawn(second.runner.run());
        let (first, second) = (Client::new(first.handle), Client::new(second.handle));
        first.invoke(&tl::functions::updates::GetState {}).await.unwrap();
        second.invoke(&tl::functions::updates::GetState {}).await.unwrap();
        world.reply(IVAN, seed::SALES_ACCOUNT, "to the latest", None).unwrap();
        assert!(matches!(next(&mut pushed).await, UpdatesLike::Updates(_)));
        let stats = world.stats();
        assert_eq!((stats.pushes, stats.accounts[&seed::SALES_ACCOUNT].listening), (1, 1), "one session per key");
    }

    #[tokio::test]
    async fn a_connection_closes_once_its_ping_delay_passes_without_a_ping() {
        let dir = tempfile::tempdir().unwrap();
        let (_world, client, mut updates) = connected(dir.path()).await;
        let tl::enums::Pong::Pong(pong) = client.invoke(&tl::functions::PingDelayDisconnect { ping_id: 7, disconnect_delay: 1 }).await.unwrap();
        assert_eq!(pong.ping_id, 7);
        assert!(matches!(next(&mut updates).await, UpdatesLike::ConnectionClosed));
    }
}
