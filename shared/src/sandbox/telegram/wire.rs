//! MTProto 2.0 from the server's side (core.telegram.org/mtproto/description): the
//! encrypted message (`auth_key_id`, `msg_key`, AES-256-IGE), `msg_id`s and `seq_no`s, and
//! the manually parsed service constructors (`msg_container`, `gzip_packed`, `rpc_result`,
//! core.telegram.org/mtproto/service_messages).

use std::io::Read;

use grammers_client::tl::{self, Deserializable, Serializable};
use sha2::{Digest, Sha256};

pub const MSG_CONTAINER: u32 = 0x73f1f8dc;
pub const GZIP_PACKED: u32 = 0x3072cfa1;
pub const RPC_RESULT: u32 = 0xf35c6d01;

/// Which way a message goes: the `x` of the key derivation (0 from the client, 8 from the server).
#[derive(Clone, Copy)]
enum Side {
    Client = 0,
    Server = 8,
}

/// `aes_key` and `aes_iv` from `auth_key` and `msg_key`
/// (core.telegram.org/mtproto/description#defining-aes-key-and-initialization-vector).
fn aes_key_iv(auth_key: &[u8; 256], msg_key: &[u8; 16], side: Side) -> ([u8; 32], [u8; 32]) {
    let x = side as usize;
    let a: [u8; 32] = Sha256::new().chain_update(msg_key).chain_update(&auth_key[x..x + 36]).finalize().into();
    let b: [u8; 32] = Sha256::new().chain_update(&auth_key[40 + x..76 + x]).chain_update(msg_key).finalize().into();
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&a[..8]);
    key[8..24].copy_from_slice(&b[8..24]);
    key[24..].copy_from_slice(&a[24..]);
    let mut iv = [0u8; 32];
    iv[..8].copy_from_slice(&b[..8]);
    iv[8..24].copy_from_slice(&a[8..24]);
    iv[24..].copy_from_slice(&b[24..]);
    (key, iv)
}

/// `msg_key` = the middle 128 bits of SHA256(substr(auth_key, 88+x, 32) + plaintext + padding).
fn msg_key(auth_key: &[u8; 256], padded: &[u8], side: Side) -> [u8; 16] {
    let x = side as usize;
    let large: [u8; 32] = Sha256::new().chain_update(&auth_key[88 + x..120 + x]).chain_update(padded).finalize().into();
    large[8..24].try_into().expect("16 bytes")
}

/// The `auth_key_id` a client's encrypted message names (its first 8 bytes).
pub fn auth_key_id(payload: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

/// A client's message, decrypted.
#[derive(Debug)]
pub struct Incoming {
    pub salt: i64,
    pub session_id: i64,
    pub msg_id: i64,
    pub seq_no: i32,
    pub body: Vec<u8>,
}

/// Decrypts a client's message with `auth_key`; `None` when it is not one (a wrong
/// `msg_key`, a length that does not add up): the server then drops the connection.
pub fn decrypt(payload: &[u8], auth_key: &[u8; 256]) -> Option<Incoming> {
    if payload.len() < 24 + 32 || !(payload.len() - 24).is_multiple_of(16) {
        return None;
    }
    let key: [u8; 16] = payload[8..24].try_into().ok()?;
    let mut plain = payload[24..].to_vec();
    let (aes_key, iv) = aes_key_iv(auth_key, &key, Side::Client);
    grammers_crypto::aes::ige_decrypt(&mut plain, &aes_key, &iv);
    if msg_key(auth_key, &plain, Side::Client) != key {
        return None;
    }
    let word = |at: usize| i64::from_le_bytes(plain[at..at + 8].try_into().expect("8 bytes"));
    let len = i32::from_le_bytes(plain[28..32].try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    // MTProto 2.0 pads with 12 to 1024 bytes.
    let padding = plain.len().checked_sub(32 + len)?;
    if !(12..=1024).contains(&padding) {
        return None;
    }
    Some(Incoming {
        salt: word(0),
        session_id: word(8),
        msg_id: word(16),
        seq_no: i32::from_le_bytes(plain[24..28].try_into().ok()?),
        body: plain[32..32 + len].to_vec(),
    })
}

/// Encrypts one server message for the client.
pub fn encrypt(auth_key: &[u8; 256], salt: i64, session_id: i64, msg_id: i64, seq_no: i32, body: &[u8]) -> Vec<u8> {
    let mut plain = Vec::with_capacity(32 + body.len() + 32);
    plain.extend_from_slice(&salt.to_le_bytes());
    plain.extend_from_slice(&session_id.to_le_bytes());
    plain.extend_from_slice(&msg_id.to_le_bytes());
    plain.extend_from_slice(&seq_no.to_le_bytes());
    plain.extend_from_slice(&(body.len() as i32).to_le_bytes());
    plain.extend_from_slice(body);
    // 12 to 1024 bytes of random padding, to a multiple of 16.
    let mut padding = 16 - plain.len() % 16;
    if padding < 12 {
        padding += 16;
    }
    let mut random = vec![0u8; padding];
    super::getrandom(&mut random);
    plain.extend_from_slice(&random);
    let key = msg_key(auth_key, &plain, Side::Server);
    let (aes_key, iv) = aes_key_iv(auth_key, &key, Side::Server);
    grammers_crypto::aes::ige_encrypt(&mut plain, &aes_key, &iv);
    let mut out = Vec::with_capacity(24 + plain.len());
    out.extend_from_slice(&super::key_id(auth_key).to_le_bytes());
    out.extend_from_slice(&key);
    out.extend_from_slice(&plain);
    out
}

/// The constructor a body starts with.
pub fn constructor(body: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(body.get(..4)?.try_into().ok()?))
}

/// An inner message of a `msg_container`.
pub struct Inner {
    pub msg_id: i64,
    pub body: Vec<u8>,
}

/// `msg_container#73f1f8dc messages:vector<%Message>`: `None` when malformed.
pub fn container(body: &[u8]) -> Option<Vec<Inner>> {
    let mut at = 4;
    let mut take = |n: usize| -> Option<&[u8]> {
        let slice = body.get(at..at + n)?;
        at += n;
        Some(slice)
    };
    let count = i32::from_le_bytes(take(4)?.try_into().ok()?);
    // A container holds at most 1020 messages (core.telegram.org/mtproto/service_messages#containers).
    if !(0..=1020).contains(&count) {
        return None;
    }
    let mut messages = Vec::new();
    for _ in 0..count {
        let msg_id = i64::from_le_bytes(take(8)?.try_into().ok()?);
        let _seq_no = take(4)?;
        let len = usize::try_from(i32::from_le_bytes(take(4)?.try_into().ok()?)).ok()?;
        messages.push(Inner { msg_id, body: take(len)?.to_vec() });
    }
    Some(messages)
}

/// `gzip_packed#3072cfa1 packed_data:bytes`, inflated; `None` when it does not inflate.
pub fn gunzip(body: &[u8]) -> Option<Vec<u8>> {
    let packed = Vec::<u8>::from_bytes(body.get(4..)?).ok()?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(packed.as_slice()).take(16 * 1024 * 1024).read_to_end(&mut out).ok()?;
    Some(out)
}

/// `rpc_result#f35c6d01 req_msg_id:long result:Object`.
pub fn rpc_result(req_msg_id: i64, result: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + result.len());
    out.extend_from_slice(&RPC_RESULT.to_le_bytes());
    out.extend_from_slice(&req_msg_id.to_le_bytes());
    out.extend_from_slice(result);
    out
}

/// `rpc_error#2144ca19 error_code:int error_message:string`.
pub fn rpc_error(code: i32, message: &str) -> Vec<u8> {
    tl::enums::RpcError::Error(tl::types::RpcError { error_code: code, error_message: message.to_owned() }).to_bytes()
}

/// The rest of a body as it stands: the `query:!X` of a wrapper such as `invokeWithLayer`.
pub struct Query(pub Vec<u8>);

impl Deserializable for Query {
    fn deserialize(buf: &mut tl::Cursor<'_>) -> tl::deserialize::Result<Self> {
        let mut rest = Vec::new();
        buf.read_to_end(&mut rest)?;
        Ok(Query(rest))
    }
}

/// Server `msg_id`s: about unixtime·2³², increasing, ≡ 1 mod 4 for answers and ≡ 3 for the
/// rest (core.telegram.org/mtproto/description#message-identifier-msg-id).
#[derive(Default)]
pub struct MsgIds {
    last: i64,
}

impl MsgIds {
    pub fn next(&mut self, answer: bool) -> i64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let base = ((now.as_secs() as i64) << 32) | ((now.subsec_nanos() as i64) << 2 & 0xffff_fffc);
        let mut id = base.max(self.last + 1) & !3;
        id |= if answer { 1 } else { 3 };
        if id <= self.last {
            id += 4;
        }
        self.last = id;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_server_encrypts_grammers_decrypts() {
        let mut key = [0u8; 256];
        super::super::getrandom(&mut key);
        let auth_key = grammers_crypto::AuthKey::from_bytes(key);
        let mut payload = encrypt(&key, 5, 6, 7, 1, b"hello world!");
        let plain = grammers_crypto::decrypt_data_v2(&mut payload, &auth_key).expect("grammers reads the server's message");
        assert_eq!(&plain[..8], &5i64.to_le_bytes());
        assert_eq!(&plain[32..44], b"hello world!");
    }

    #[test]
    fn what_grammers_encrypts_the_server_decrypts() {
        let mut key = [0u8; 256];
        super::super::getrandom(&mut key);
        let auth_key = grammers_crypto::AuthKey::from_bytes(key);
        let mut plain = grammers_crypto::DequeBuffer::with_capacity(64, 32);
        for part in [&9i64.to_le_bytes()[..], &8i64.to_le_bytes(), &(4i64 << 32).to_le_bytes(), &1i32.to_le_bytes(), &4i32.to_le_bytes(), b"ping"] {
            plain.extend(part.iter().copied());
        }
        grammers_crypto::encrypt_data_v2(&mut plain, &auth_key);
        let got = decrypt(plain.as_ref(), &key).expect("the server reads grammers' message");
        assert_eq!((got.salt, got.session_id, got.seq_no, got.body.as_slice()), (9, 8, 1, &b"ping"[..]));
        let mut tampered = plain.as_ref().to_vec();
        tampered[40] ^= 1;
        assert!(decrypt(&tampered, &key).is_none());
    }

    #[test]
    fn server_msg_ids_grow_with_the_right_remainder() {
        let mut ids = MsgIds::default();
        let (a, b, c) = (ids.next(true), ids.next(false), ids.next(true));
        assert!(a < b && b < c);
        assert_eq!((a % 4, b % 4, c % 4), (1, 3, 1));
    }
}
