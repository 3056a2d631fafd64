//! The API methods the sandbox data centres answer, decoded and encoded with grammers' own
//! TL types of layer 230, each as its core.telegram.org/method page documents it (results
//! and errors). Where a page is silent the stricter reading is taken and said.

use std::sync::Arc;

use grammers_client::tl::{self, Deserializable, Identifiable, Serializable};

use super::srp::{self, Challenge, Verifier};
use super::{
    CODE_TTL_SECS, DCS, DIFFERENCE_SLICE, EXPIRED_CODE, Event, Fault, LOGIN_CODE, PhonePrivacy, QR_TTL_SECS, QrToken, ReceivedFile,
    ReceivedMessage, SandboxTelegram, SimLogin, SimUpdate, SimUser, State, TOO_LONG_GAP,
};
use crate::clock::now_secs;
use crate::domain::Formatted;
use crate::domain::formatting::TextEntity;

/// `help.getConfig`'s `edit_time_limit`: how long a message stays editable.
const EDIT_TIME_LIMIT_SECS: i64 = 172_800;

/// The sandbox's Telegram application (my.telegram.org): the app's `api_id`/`api_hash` in the sandbox.
pub const API_ID: i32 = 94_575;
pub const API_HASH: &str = "a3406de8d171bb422bb6ddf3bbd800e2";

/// Who is calling: the connection's data centre and auth key, and the fault aimed at the call.
pub struct Caller {
    pub dc: i32,
    pub key_id: i64,
    pub fault: Option<Fault>,
}

/// How a call ends.
pub enum Answer {
    Result(Vec<u8>),
    Error(i32, String),
    /// Executed, but the connection drops before the answer leaves.
    Drop,
}

struct Fail(i32, String);

fn bad(name: &str) -> Fail {
    Fail(400, name.to_owned())
}

fn unauthorized() -> Fail {
    Fail(401, "AUTH_KEY_UNREGISTERED".into())
}

/// The RPC error a fault answers with; `None` for the faults that change what a call does
/// instead (they are handled where the call does it).
fn fault_error(fault: &Fault) -> Option<Fail> {
    Some(match fault {
        Fault::FloodWait { seconds } => Fail(420, format!("FLOOD_WAIT_{seconds}")),
        Fault::PeerFlood => bad("PEER_FLOOD"),
        Fault::PrivacyRestricted => Fail(403, "USER_PRIVACY_RESTRICTED".into()),
        Fault::Unauthorized => unauthorized(),
        Fault::Rpc { code, message } => Fail(*code, message.clone()),
        Fault::DropAfterDelivery
        | Fault::DifferenceTooLong
        | Fault::DuplicateAsOriginal
        | Fault::UserMigrate { .. }
        | Fault::FileMigrate { .. }
        | Fault::ImportLimited
        | Fault::MinUsers
        | Fault::BadSrp => return None,
    })
}

/// Answers one API call (`body` starts with the method's constructor).
pub async fn call(world: &Arc<SandboxTelegram>, caller: &Caller, method: &str, body: &[u8]) -> Answer {
    let mut drop_after = false;
    let result = dispatch(world, caller, method, body, &mut drop_after).await;
    match result {
        _ if drop_after => Answer::Drop,
        Ok(bytes) => Answer::Result(bytes),
        Err(Fail(code, name)) => Answer::Error(code, name),
    }
}

/// A request's fields (grammers' function types read what follows the constructor).
fn decode<T: Deserializable>(body: &[u8]) -> Result<T, Fail> {
    T::from_bytes(body.get(4..).unwrap_or_default()).map_err(|_| bad("INPUT_REQUEST_INVALID"))
}

macro_rules! methods {
    ($id:expr, $body:expr, { $( $f:ty => $handler:expr ),* $(,)? }) => {
        match $id {
            $( <$f as Identifiable>::CONSTRUCTOR_ID => { let request: $f = decode($body)?; ($handler)(request).map(|r| r.to_bytes()) } )*
            _ => Err(bad("INPUT_METHOD_INVALID")),
        }
    };
}

async fn dispatch(world: &Arc<SandboxTelegram>, caller: &Caller, method: &str, body: &[u8], drop_after: &mut bool) -> Result<Vec<u8>, Fail> {
    use tl::functions::{account, auth, contacts, help, messages, updates, users};
    let id = super::wire::constructor(body).ok_or_else(|| bad("INPUT_REQUEST_INVALID"))?;
    // Faults hit an account's calls (and the login steps, made before there is an account);
    // the connection's own set-up is never faulted, nor a call refused for want of a login.
    let fault = {
        let mut state = world.lock();
        let authorized = state.keys.get(&caller.key_id).is_some_and(|k| k.user_id.is_some());
        let login_step = method.starts_with("auth.") || method == "account.getPassword";
        let faultable = id != <help::GetConfig as Identifiable>::CONSTRUCTOR_ID && (authorized || login_step);
        if faultable { state.fault(method) } else { None }
    };
    if let Some(e) = fault.as_ref().and_then(fault_error) {
        return Err(e);
    }
    match &fault {
        Some(Fault::DropAfterDelivery) => *drop_after = true,
        Some(Fault::DifferenceTooLong) => {
            let state = world.lock();
            let me = state.keys.get(&caller.key_id).and_then(|k| k.user_id).ok_or_else(unauthorized)?;
            return Ok(tl::enums::updates::Difference::TooLong(tl::types::updates::DifferenceTooLong { pts: state.pts(me) }).to_bytes());
        }
        Some(Fault::UserMigrate { dc }) => {
            let mut state = world.lock();
            if let Some(me) = state.keys.get(&caller.key_id).and_then(|k| k.user_id) {
                world.record(&mut state, Event::UserMoved { user_id: me, dc: *dc });
            }
        }
        _ => {}
    }
    let caller = &Caller { dc: caller.dc, key_id: caller.key_id, fault };
    if method.starts_with("upload.") {
        return files(world, caller, id, body).await;
    }
    if id == <messages::SendMedia as Identifiable>::CONSTRUCTOR_ID {
        let request: messages::SendMedia = decode(body)?;
        return send_media(world, caller, request).await.map(|r| r.to_bytes());
    }
    let world_ref = world.as_ref();
    let mut guard = world.lock();
    let state = &mut *guard;
    let mut call = Call { world: world_ref, state, caller };
    methods!(id, body, {
        help::GetConfig => |_| Ok(call.config()),
        auth::SendCode => |r| call.send_code(r),
        auth::SignIn => |r| call.sign_in(r),
        account::GetPassword => |_: account::GetPassword| call.get_password(),
        auth::CheckPassword => |r| call.check_password(r),
        auth::ExportLoginToken => |r| call.export_login_token(r),
        auth::ImportLoginToken => |r| call.import_login_token(r),
        auth::ExportAuthorization => |r| call.export_authorization(r),
        auth::ImportAuthorization => |r| call.import_authorization(r),
        auth::LogOut => |_: auth::LogOut| call.log_out(),
        users::GetUsers => |r| call.get_users(r),
        contacts::ResolvePhone => |r| call.resolve_phone(r),
        contacts::ResolveUsername => |r| call.resolve_username(r),
        contacts::ImportContacts => |r| call.import_contacts(r),
        contacts::DeleteContacts => |r| call.delete_contacts(r),
        contacts::GetContacts => |_: contacts::GetContacts| call.get_contacts(),
        messages::SendMessage => |r| call.send_message(r),
        messages::EditMessage => |r| call.edit_message(r),
        messages::DeleteMessages => |r| call.delete_messages(r),
        messages::GetHistory => |r| call.get_history(r),
        messages::GetPeerDialogs => |r| call.get_peer_dialogs(r),
        updates::GetState => |_: updates::GetState| call.get_state(),
        updates::GetDifference => |r| call.get_difference(r),
    })
}

struct Call<'a> {
    world: &'a SandboxTelegram,
    state: &'a mut State,
    caller: &'a Caller,
}

/// A user as the account `me` sees them (core.telegram.org/constructor/user): `contact` when
/// in `me`'s contacts, `mutual_contact` when both ways; the phone only to themselves, to
/// whoever has them as a contact (they saved the number), or to all when it is public.
pub(crate) fn tl_user(u: &SimUser, me: &SimUser) -> tl::types::User {
    let is_self = u.id == me.id;
    let contact = me.contacts.contains(&u.id);
    tl::types::User {
        is_self,
        contact,
        mutual_contact: contact && u.contacts.contains(&me.id),
        deleted: false,
        bot: false,
        bot_chat_history: false,
        bot_nochats: false,
        verified: false,
        restricted: false,
        min: false,
        bot_inline_geo: false,
        support: false,
        scam: false,
        apply_min_photo: false,
        fake: false,
        bot_attach_menu: false,
        premium: false,
        attach_menu_enabled: false,
        bot_can_edit: false,
        close_friend: false,
        stories_hidden: false,
        stories_unavailable: false,
        contact_require_premium: false,
        bot_business: false,
        bot_has_main_app: false,
        bot_forum_view: false,
        bot_forum_can_manage_topics: false,
        bot_can_manage_bots: false,
        bot_guestchat: false,
        bot_guard: false,
        id: u.id,
        access_hash: Some(u.access_hash),
        first_name: Some(u.first_name.clone()),
        last_name: Some(u.last_name.clone()).filter(|n| !n.is_empty()),
        username: u.username.clone(),
        phone: (is_self || contact || u.phone_privacy == PhonePrivacy::Everybody).then(|| u.phone.trim_start_matches('+').to_owned()),
        photo: None,
        status: None,
        bot_info_version: None,
        restriction_reason: None,
        bot_inline_placeholder: None,
        lang_code: None,
        emoji_status: None,
        usernames: None,
        stories_max_id: None,
        color: None,
        profile_color: None,
        bot_active_users: None,
        bot_verification_icon: None,
        send_paid_messages_stars: None,
        linked_community_id: None,
    }
}


/// The access hash and file reference of a sandbox file (Telegram's are opaque too).
fn file_access_hash(id: i64) -> i64 {
    id.rotate_left(17) ^ 0x5bd1_e995
}

fn tl_media(m: &ReceivedMessage) -> Option<tl::enums::MessageMedia> {
    let f = m.file.as_ref()?;
    let (date, size) = (m.date as i32, i64::try_from(f.size).unwrap_or(i64::MAX));
    if m.media == "photo" {
        let size = tl::types::PhotoSize { r#type: "y".into(), w: 1280, h: 1280, size: size as i32 }.into();
        let photo = tl::types::Photo {
            has_stickers: false,
            id: f.id,
            access_hash: file_access_hash(f.id),
            file_reference: f.id.to_le_bytes().to_vec(),
            date,
            sizes: vec![size],
            video_sizes: None,
            dc_id: f.dc,
        };
        return Some(tl::types::MessageMediaPhoto { spoiler: false, live_photo: false, photo: Some(photo.into()), ttl_seconds: None, video: None }.into());
    }
    let voice = m.media == "voice";
    // A voice note carries no file name (documentAttributeAudio with `voice`), other files do.
    let mut attributes: Vec<tl::enums::DocumentAttribute> = Vec::new();
    if !voice {
        attributes.push(tl::types::DocumentAttributeFilename { file_name: f.file_name.clone() }.into());
    } else {
        let duration = f.duration.map_or(0, |d| d as i32);
        attributes.push(tl::types::DocumentAttributeAudio { voice: true, duration, title: None, performer: None, waveform: f.waveform.clone() }.into());
    }
    let document = tl::types::Document {
        id: f.id,
        access_hash: file_access_hash(f.id),
        file_reference: f.id.to_le_bytes().to_vec(),
        date,
        mime_type: f.mime_type.clone(),
        size,
        thumbs: None,
        video_thumbs: None,
        dc_id: f.dc,
        attributes,
    };
    Some(
        tl::types::MessageMediaDocument {
            nopremium: false,
            spoiler: false,
            video: false,
            round: false,
            voice,
            document: Some(document.into()),
            alt_documents: None,
            video_cover: None,
            video_timestamp: None,
            ttl_seconds: None,
        }
        .into(),
    )
}

/// Our formatting as Telegram's entities and back: the adapter's own conversions, the one
/// place that maps them.
fn tl_entities(entities: &[TextEntity]) -> Option<Vec<tl::enums::MessageEntity>> {
    crate::adapters::grammers::entities(&Formatted { text: String::new(), entities: entities.to_vec() })
}

fn our_entities(entities: Option<&[tl::enums::MessageEntity]>) -> Vec<TextEntity> {
    entities.unwrap_or_default().iter().filter_map(crate::adapters::grammers::text_entity).collect()
}

/// A private-chat message as `me` sees it: `out` for their own, `peer_id` the other side.
pub(crate) fn tl_message(m: &ReceivedMessage, me: i64) -> tl::types::Message {
    let out = m.from_user_id == me;
    let other = if out { m.to_user_id } else { m.from_user_id };
    tl::types::Message {
        out,
        mentioned: false,
        media_unread: false,
        silent: false,
        post: false,
        from_scheduled: false,
        legacy: false,
        edit_hide: false,
        pinned: false,
        noforwards: false,
        invert_media: false,
        offline: false,
        video_processing_pending: false,
        paid_suggested_post_stars: false,
        paid_suggested_post_ton: false,
        id: m.id,
        from_id: Some(tl::types::PeerUser { user_id: m.from_user_id }.into()),
        from_boosts_applied: None,
        from_rank: None,
        peer_id: tl::types::PeerUser { user_id: other }.into(),
        saved_peer_id: None,
        fwd_from: None,
        via_bot_id: None,
        via_business_bot_id: None,
        guestchat_via_from: None,
        reply_to: None,
        date: m.date as i32,
        message: m.text.clone(),
        media: tl_media(m),
        reply_markup: None,
        entities: tl_entities(&m.entities),
        views: None,
        forwards: None,
        replies: None,
        edit_date: m.edit_date.map(|d| d as i32),
        post_author: None,
        grouped_id: None,
        reactions: None,
        restriction_reason: None,
        ttl_period: None,
        quick_reply_shortcut_id: None,
        effect: None,
        factcheck: None,
        report_delivery_until_date: None,
        paid_message_stars: None,
        suggested_post: None,
        schedule_repeat_period: None,
        summary_from_language: None,
        rich_message: None,
    }
}

fn tl_state(pts: i32) -> tl::enums::updates::State {
    tl::types::updates::State { pts, qts: 0, date: now_secs() as i32, seq: 0, unread_count: 0 }.into()
}

fn authorization(user: tl::enums::User) -> tl::enums::auth::Authorization {
    tl::types::auth::Authorization { setup_password_required: false, otherwise_relogin_days: None, tmp_sessions: None, future_auth_token: None, user }.into()
}

fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    super::getrandom(&mut b);
    b
}

impl Call<'_> {
    /// `u` as the account `me` sees them; `min` (core.telegram.org/api/min: an access hash
    /// that addresses no one) when the fault asks.
    fn shown(&self, u: &SimUser, me: i64) -> tl::enums::User {
        let mut user = tl_user(u, self.state.user(me).unwrap_or(u));
        if self.caller.fault == Some(Fault::MinUsers) && user.id != me {
            user.min = true;
            user.access_hash = user.access_hash.map(|h| !h);
        }
        user.into()
    }

    fn me(&self) -> Result<i64, Fail> {
        self.state.keys.get(&self.caller.key_id).and_then(|k| k.user_id).ok_or_else(unauthorized)
    }

    /// The logged-in account, on its own data centre: an account works from its home DC, and
    /// a key authorised elsewhere (`auth.importAuthorization`) is good for files only. The
    /// docs do not list what a foreign DC serves; this is the strict reading.
    fn account(&self) -> Result<i64, Fail> {
        let me = self.me()?;
        let home = self.state.user(me).map_or(self.caller.dc, |u| u.dc);
        if home != self.caller.dc {
            return Err(Fail(303, format!("USER_MIGRATE_{home}")));
        }
        Ok(me)
    }

    fn user(&self, id: i64) -> Result<&SimUser, Fail> {
        self.state.user(id).ok_or_else(|| bad("USER_ID_INVALID"))
    }

    /// An `InputUser`/`InputPeer` by id and access hash; a wrong hash is `PEER_ID_INVALID`.
    fn peer(&self, me: i64, user_id: i64, access_hash: i64) -> Result<&SimUser, Fail> {
        self.state.users.iter().find(|u| u.id == user_id && (u.access_hash == access_hash || u.id == me)).ok_or_else(|| bad("PEER_ID_INVALID"))
    }

    fn input_peer(&self, me: i64, peer: &tl::enums::InputPeer) -> Result<i64, Fail> {
        match peer {
            tl::enums::InputPeer::User(p) => self.peer(me, p.user_id, p.access_hash).map(|u| u.id),
            tl::enums::InputPeer::PeerSelf => Ok(me),
            _ => Err(bad("PEER_ID_INVALID")),
        }
    }

    fn check_app(&self, api_id: i32, api_hash: &str) -> Result<(), Fail> {
        if api_id != API_ID || api_hash != API_HASH {
            return Err(bad("API_ID_INVALID"));
        }
        Ok(())
    }

    fn authorize(&mut self, user_id: i64) -> Result<tl::enums::auth::Authorization, Fail> {
        let key_id = self.caller.key_id;
        self.world.record(self.state, Event::KeyAuthorized { key_id, user_id: Some(user_id) });
        self.state.logins.remove(&key_id);
        Ok(authorization(self.shown(self.user(user_id)?, user_id)))
    }

    /// help.getConfig (core.telegram.org/method/help.getConfig): the sandbox's own data
    /// centres, on loopback; none is `static`, so a client keeps the addresses it has.
    fn config(&self) -> tl::enums::Config {
        let now = now_secs() as i32;
        let dc_options = DCS
            .iter()
            .filter_map(|dc| {
                let address = self.world.address(*dc)?;
                Some(
                    tl::types::DcOption {
                        ipv6: false,
                        media_only: false,
                        tcpo_only: false,
                        cdn: false,
                        r#static: false,
                        this_port_only: false,
                        id: *dc,
                        ip_address: address.ip().to_string(),
                        port: i32::from(address.port()),
                        secret: None,
                    }
                    .into(),
                )
            })
            .collect();
        tl::types::Config {
            default_p2p_contacts: false,
            preload_featured_stickers: false,
            revoke_pm_inbox: true,
            blocked_mode: false,
            force_try_ipv6: false,
            date: now,
            expires: now + 3600,
            test_mode: false,
            this_dc: self.caller.dc,
            dc_options,
            dc_txt_domain_name: String::new(),
            chat_size_max: 200,
            megagroup_size_max: 200_000,
            forwarded_count_max: 100,
            online_update_period_ms: 210_000,
            offline_blur_timeout_ms: 5000,
            offline_idle_timeout_ms: 30_000,
            online_cloud_timeout_ms: 300_000,
            notify_cloud_delay_ms: 30_000,
            notify_default_delay_ms: 1500,
            push_chat_period_ms: 60_000,
            push_chat_limit: 2,
            edit_time_limit: EDIT_TIME_LIMIT_SECS as i32,
            revoke_time_limit: i32::MAX,
            revoke_pm_time_limit: i32::MAX,
            rating_e_decay: 2_419_200,
            stickers_recent_limit: 200,
            channels_read_media_period: 604_800,
            tmp_sessions: None,
            call_receive_timeout_ms: 20_000,
            call_ring_timeout_ms: 90_000,
            call_connect_timeout_ms: 30_000,
            call_packet_timeout_ms: 10_000,
            me_url_prefix: "https://t.me/".into(),
            autoupdate_url_prefix: None,
            gif_search_username: None,
            venue_search_username: None,
            img_search_username: None,
            static_maps_provider: None,
            caption_length_max: 1024,
            message_length_max: 4096,
            webfile_dc_id: self.caller.dc,
            suggested_lang_code: None,
            lang_pack_version: None,
            base_lang_pack_version: None,
            reactions_default: None,
            autologin_token: None,
        }
        .into()
    }

    /// auth.sendCode: a number registered on another DC answers `PHONE_MIGRATE_X`; an
    /// unregistered one still gets a code (sign-up is the app's to refuse, at signIn).
    fn send_code(&mut self, r: tl::functions::auth::SendCode) -> Result<tl::enums::auth::SentCode, Fail> {
        self.check_app(r.api_id, &r.api_hash)?;
        let phone = digits(&r.phone_number);
        if !(7..=15).contains(&phone.len()) {
            return Err(bad("PHONE_NUMBER_INVALID"));
        }
        if let Some(u) = self.state.users.iter().find(|u| digits(&u.phone) == phone)
            && u.dc != self.caller.dc
        {
            return Err(Fail(303, format!("PHONE_MIGRATE_{}", u.dc)));
        }
        let phone_code_hash = super::hex(&random_bytes(9));
        let login = SimLogin { phone, phone_code_hash: phone_code_hash.clone(), code_sent_at: now_secs(), ..SimLogin::default() };
        self.state.logins.insert(self.caller.key_id, login);
        Ok(tl::types::auth::SentCode {
            r#type: tl::types::auth::SentCodeTypeApp { length: LOGIN_CODE.len() as i32 }.into(),
            phone_code_hash,
            next_type: None,
            timeout: None,
        }
        .into())
    }

    /// auth.signIn: the code of this key's sendCode; an account with a cloud password answers
    /// 401 `SESSION_PASSWORD_NEEDED`; an unregistered number `auth.authorizationSignUpRequired`.
    fn sign_in(&mut self, r: tl::functions::auth::SignIn) -> Result<tl::enums::auth::Authorization, Fail> {
        let code = r.phone_code.unwrap_or_default();
        if code.is_empty() {
            return Err(bad("PHONE_CODE_EMPTY"));
        }
        let phone = digits(&r.phone_number);
        let login = self.state.logins.get(&self.caller.key_id).filter(|l| l.phone == phone && !l.phone_code_hash.is_empty());
        let login = login.ok_or_else(|| bad("PHONE_CODE_EXPIRED"))?;
        if r.phone_code_hash.is_empty() {
            return Err(bad("PHONE_CODE_HASH_EMPTY"));
        }
        if login.phone_code_hash != r.phone_code_hash {
            // Another sendCode's hash: that code is gone (the docs list no error of its own).
            return Err(bad("PHONE_CODE_EXPIRED"));
        }
        if code == EXPIRED_CODE || login.code_sent_at + CODE_TTL_SECS <= now_secs() {
            return Err(bad("PHONE_CODE_EXPIRED"));
        }
        if code != LOGIN_CODE {
            return Err(bad("PHONE_CODE_INVALID"));
        }
        let Some(user) = self.state.users.iter().find(|u| digits(&u.phone) == phone) else {
            return Ok(tl::types::auth::AuthorizationSignUpRequired { terms_of_service: None }.into());
        };
        let (user_id, guarded) = (user.id, user.cloud_password.is_some());
        // The account signs in on its own DC (core.telegram.org/api/datacenter: USER_MIGRATE_X).
        if user.dc != self.caller.dc {
            return Err(Fail(303, format!("USER_MIGRATE_{}", user.dc)));
        }
        if guarded {
            self.state.logins.entry(self.caller.key_id).or_default().awaiting_password = Some(user_id);
            return Err(Fail(401, "SESSION_PASSWORD_NEEDED".into()));
        }
        self.authorize(user_id)
    }

    /// Whose password this key may see: its account's, or the one its login still owes.
    fn password_owner(&self) -> Result<i64, Fail> {
        self.me().or_else(|_| self.state.logins.get(&self.caller.key_id).and_then(|l| l.awaiting_password).ok_or_else(unauthorized))
    }

    fn verifier(&mut self, user_id: i64) -> Option<Verifier> {
        let password = self.state.user(user_id)?.cloud_password.clone()?;
        Some(self.state.verifiers.entry(user_id).or_insert_with(|| Verifier::new(&password)).clone())
    }

    /// account.getPassword (core.telegram.org/api/srp): the current algorithm with its salts,
    /// a fresh `srp_B` under a fresh `srp_id`, and 256 random bytes.
    fn get_password(&mut self) -> Result<tl::enums::account::Password, Fail> {
        let owner = self.password_owner()?;
        // An unusual generator when the fault asks: a client must not trust what it cannot check.
        let g = if self.caller.fault == Some(Fault::BadSrp) { 8 } else { srp::G };
        let algo = |salt1: Vec<u8>, salt2: Vec<u8>| -> tl::enums::PasswordKdfAlgo {
            tl::types::PasswordKdfAlgoSha256Sha256Pbkdf2Hmacsha512iter100000Sha256ModPow { salt1, salt2, g, p: srp::p() }.into()
        };
        let mut password = tl::types::account::Password {
            has_recovery: false,
            has_secure_values: false,
            has_password: false,
            current_algo: None,
            srp_b: None,
            srp_id: None,
            hint: None,
            email_unconfirmed_pattern: None,
            new_algo: algo(random_bytes(8), random_bytes(16)),
            new_secure_algo: tl::types::SecurePasswordKdfAlgoPbkdf2Hmacsha512iter100000 { salt: random_bytes(8) }.into(),
            secure_random: random_bytes(256),
            pending_reset_date: None,
            login_email_pattern: None,
        };
        if let Some(verifier) = self.verifier(owner) {
            let challenge = Challenge::new(owner, verifier.clone());
            let srp_id = super::random_i64();
            password.has_password = true;
            password.current_algo = Some(algo(verifier.salt1.clone(), verifier.salt2.clone()));
            password.srp_b = Some(challenge.g_b.clone());
            password.srp_id = Some(srp_id);
            password.hint = Some("sandbox".into());
            self.state.srp.insert(srp_id, challenge);
        }
        Ok(password.into())
    }

    /// auth.checkPassword: `M1` must prove the password against the challenge `srp_id` names.
    fn check_password(&mut self, r: tl::functions::auth::CheckPassword) -> Result<tl::enums::auth::Authorization, Fail> {
        let tl::enums::InputCheckPasswordSrp::Srp(srp) = r.password else { return Err(bad("PASSWORD_HASH_INVALID")) };
        let owner = self.password_owner()?;
        let challenge = self.state.srp.remove(&srp.srp_id).filter(|c| c.user_id == owner).ok_or_else(|| bad("SRP_ID_INVALID"))?;
        if !challenge.check(&srp.a, &srp.m1) {
            return Err(bad("PASSWORD_HASH_INVALID"));
        }
        self.authorize(owner)
    }

    /// auth.exportLoginToken (core.telegram.org/api/qr-login): a fresh token until someone
    /// accepts one, then the login: here, or `loginTokenMigrateTo` the account's own DC.
    fn export_login_token(&mut self, r: tl::functions::auth::ExportLoginToken) -> Result<tl::enums::auth::LoginToken, Fail> {
        self.check_app(r.api_id, &r.api_hash)?;
        let now = now_secs();
        let accepted = self.state.logins.get(&self.caller.key_id).and_then(|l| l.qr.clone()).filter(|q| q.accepted_by.is_some());
        if let Some(QrToken { token, accepted_by: Some(user_id), .. }) = accepted {
            let user = self.user(user_id)?;
            if user.dc != self.caller.dc {
                return Ok(tl::types::auth::LoginTokenMigrateTo { dc_id: user.dc, token }.into());
            }
            return self.qr_signed_in(user_id);
        }
        let token = random_bytes(32);
        let login = self.state.logins.entry(self.caller.key_id).or_default();
        login.qr = Some(QrToken { token: token.clone(), shown_at: now, accepted_by: None });
        Ok(tl::types::auth::LoginToken { expires: (now + QR_TTL_SECS) as i32, token }.into())
    }

    fn qr_signed_in(&mut self, user_id: i64) -> Result<tl::enums::auth::LoginToken, Fail> {
        if self.user(user_id)?.cloud_password.is_some() {
            // What Telegram answers here is not documented; piltover asks for the password.
            self.state.logins.entry(self.caller.key_id).or_default().awaiting_password = Some(user_id);
            return Err(Fail(401, "SESSION_PASSWORD_NEEDED".into()));
        }
        let authorization = self.authorize(user_id)?;
        Ok(tl::types::auth::LoginTokenSuccess { authorization }.into())
    }

    /// auth.importLoginToken, on the DC `loginTokenMigrateTo` named: the accepted token logs
    /// this key in.
    fn import_login_token(&mut self, r: tl::functions::auth::ImportLoginToken) -> Result<tl::enums::auth::LoginToken, Fail> {
        let now = now_secs();
        let found = self.state.logins.values().filter_map(|l| l.qr.as_ref()).find(|q| q.token == r.token).cloned();
        let qr = found.ok_or_else(|| bad("AUTH_TOKEN_INVALID"))?;
        if qr.shown_at + QR_TTL_SECS <= now {
            return Err(bad("AUTH_TOKEN_EXPIRED"));
        }
        let user_id = qr.accepted_by.ok_or_else(|| bad("AUTH_TOKEN_INVALID"))?;
        if self.user(user_id)?.dc != self.caller.dc {
            return Err(bad("AUTH_TOKEN_INVALID"));
        }
        self.state.logins.retain(|_, l| l.qr.as_ref().is_none_or(|q| q.token != r.token));
        self.qr_signed_in(user_id)
    }

    /// auth.exportAuthorization: bytes that log the same account in on `dc_id`.
    fn export_authorization(&mut self, r: tl::functions::auth::ExportAuthorization) -> Result<tl::enums::auth::ExportedAuthorization, Fail> {
        let me = self.me()?;
        if r.dc_id == self.caller.dc || !DCS.contains(&r.dc_id) {
            return Err(bad("DC_ID_INVALID"));
        }
        let (id, bytes) = (super::random_i64(), random_bytes(128));
        self.state.exported.insert(id, (me, bytes.clone()));
        Ok(tl::types::auth::ExportedAuthorization { id, bytes }.into())
    }

    fn import_authorization(&mut self, r: tl::functions::auth::ImportAuthorization) -> Result<tl::enums::auth::Authorization, Fail> {
        let (user_id, bytes) = self.state.exported.remove(&r.id).ok_or_else(|| bad("AUTH_BYTES_INVALID"))?;
        if bytes != r.bytes {
            return Err(bad("AUTH_BYTES_INVALID"));
        }
        self.authorize(user_id)
    }

    /// auth.logOut: the key stays, unauthorised (its next calls answer 401).
    fn log_out(&mut self) -> Result<tl::enums::auth::LoggedOut, Fail> {
        self.me()?;
        let key_id = self.caller.key_id;
        self.world.record(self.state, Event::KeyAuthorized { key_id, user_id: None });
        Ok(tl::types::auth::LoggedOut { future_auth_token: None }.into())
    }

    fn get_users(&self, r: tl::functions::users::GetUsers) -> Result<Vec<tl::enums::User>, Fail> {
        let me = self.account()?;
        Ok(r.id
            .iter()
            .filter_map(|input| match input {
                tl::enums::InputUser::UserSelf => self.state.user(me),
                tl::enums::InputUser::User(u) => self.peer(me, u.user_id, u.access_hash).ok(),
                _ => None,
            })
            .map(|u| self.shown(u, me))
            .collect())
    }

    fn resolved(&self, user: &SimUser, me: i64) -> tl::enums::contacts::ResolvedPeer {
        let peer = tl::types::PeerUser { user_id: user.id }.into();
        tl::types::contacts::ResolvedPeer { peer, chats: Vec::new(), users: vec![self.shown(user, me)] }.into()
    }

    /// Whether `me` may find `user` by number ("Who can find me by my number"): everybody, or
    /// their contacts; and anyone already in `me`'s own contacts is known to `me` (the contact
    /// list links their account, core.telegram.org/method/contacts.getContacts).
    fn findable(&self, user: &SimUser, me: i64) -> bool {
        let known = self.state.user(me).is_some_and(|m| m.contacts.contains(&user.id));
        known
            || match user.phone_privacy {
                PhonePrivacy::Everybody => true,
                PhonePrivacy::Contacts => user.contacts.contains(&me),
                PhonePrivacy::Nobody => false,
            }
    }

    /// contacts.resolvePhone: a hidden number answers exactly like an unregistered one.
    fn resolve_phone(&mut self, r: tl::functions::contacts::ResolvePhone) -> Result<tl::enums::contacts::ResolvedPeer, Fail> {
        let me = self.account()?;
        self.state.lookups += 1;
        let phone = digits(&r.phone);
        let found = self.state.users.iter().find(|u| digits(&u.phone) == phone && self.findable(u, me));
        found.map(|u| self.resolved(u, me)).ok_or_else(|| bad("PHONE_NOT_OCCUPIED"))
    }

    /// contacts.resolveUsername: letters, digits and `_`, 5–32 long, or 4 for collectible
    /// usernames (core.telegram.org/method/contacts.resolveUsername, fragment.com).
    fn resolve_username(&mut self, r: tl::functions::contacts::ResolveUsername) -> Result<tl::enums::contacts::ResolvedPeer, Fail> {
        let me = self.account()?;
        self.state.lookups += 1;
        let valid = (4..=32).contains(&r.username.len()) && r.username.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(bad("USERNAME_INVALID"));
        }
        let found = self.state.users.iter().find(|u| u.username.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&r.username)));
        found.map(|u| self.resolved(u, me)).ok_or_else(|| bad("USERNAME_NOT_OCCUPIED"))
    }

    /// contacts.importContacts: the numbers whose owners let us find them become contacts;
    /// past the account's import limit, the rest come back in `retry_contacts`.
    fn import_contacts(&mut self, r: tl::functions::contacts::ImportContacts) -> Result<tl::enums::contacts::ImportedContacts, Fail> {
        let me = self.account()?;
        self.state.lookups += 1;
        let mut imported = Vec::new();
        let mut retry = Vec::new();
        let mut users = Vec::new();
        let mut added = Vec::new();
        for tl::enums::InputContact::InputPhoneContact(c) in &r.contacts {
            if self.caller.fault == Some(Fault::ImportLimited) {
                retry.push(c.client_id);
                continue;
            }
            let phone = digits(&c.phone);
            if let Some(u) = self.state.users.iter().find(|u| digits(&u.phone) == phone && self.findable(u, me)) {
                imported.push(tl::types::ImportedContact { user_id: u.id, client_id: c.client_id }.into());
                added.push(u.id);
            }
        }
        if !added.is_empty() {
            self.world.record(self.state, Event::Contacts { owner: me, added: added.clone(), removed: Vec::new() });
        }
        for id in added {
            users.push(self.shown(self.user(id)?, me));
        }
        Ok(tl::types::contacts::ImportedContacts { imported, popular_invites: Vec::new(), retry_contacts: retry, users }.into())
    }

    fn delete_contacts(&mut self, r: tl::functions::contacts::DeleteContacts) -> Result<tl::enums::Updates, Fail> {
        let me = self.account()?;
        let removed: Vec<i64> = r
            .id
            .iter()
            .filter_map(|u| match u {
                tl::enums::InputUser::User(u) => self.peer(me, u.user_id, u.access_hash).ok().map(|u| u.id),
                _ => None,
            })
            .collect();
        self.world.record(self.state, Event::Contacts { owner: me, added: Vec::new(), removed: removed.clone() });
        let users = removed.iter().filter_map(|id| self.state.user(*id)).map(|u| self.shown(u, me)).collect();
        Ok(tl::types::Updates { updates: Vec::new(), users, chats: Vec::new(), date: now_secs() as i32, seq: 0 }.into())
    }

    fn get_contacts(&self) -> Result<tl::enums::contacts::Contacts, Fail> {
        let me = self.account()?;
        let mine = self.user(me)?.contacts.clone();
        let users: Vec<&SimUser> = mine.iter().filter_map(|id| self.state.user(*id)).collect();
        let contacts = users.iter().map(|u| tl::types::Contact { user_id: u.id, mutual: u.contacts.contains(&me) }.into()).collect();
        Ok(tl::types::contacts::Contacts { contacts, saved_count: 0, users: users.iter().map(|u| self.shown(u, me)).collect() }.into())
    }

    /// What every send checks: the recipient, a repeated `random_id`, the privacy settings.
    fn deliverable(&self, me: i64, to: i64, random_id: i64) -> Result<Option<i32>, Fail> {
        if let Some(id) = self.state.random_ids.get(&(me, random_id)) {
            if self.caller.fault == Some(Fault::DuplicateAsOriginal) {
                return Ok(Some(*id));
            }
            return Err(bad("RANDOM_ID_DUPLICATE"));
        }
        let recipient = self.user(to)?;
        if !recipient.accepts_strangers && !recipient.contacts.contains(&me) {
            return Err(Fail(403, "USER_PRIVACY_RESTRICTED".into()));
        }
        Ok(None)
    }

    /// messages.sendMessage: `updateShortSentMessage` with the new id; a repeated `random_id`
    /// is not delivered again (`RANDOM_ID_DUPLICATE`).
    fn send_message(&mut self, r: tl::functions::messages::SendMessage) -> Result<tl::enums::Updates, Fail> {
        let me = self.account()?;
        let to = self.input_peer(me, &r.peer)?;
        if r.message.trim().is_empty() {
            return Err(bad("MESSAGE_EMPTY"));
        }
        if r.message.encode_utf16().count() > 4096 {
            return Err(bad("MESSAGE_TOO_LONG"));
        }
        let id = match self.deliverable(me, to, r.random_id)? {
            Some(original) => original,
            None => {
                let message = self.state.new_message(me, to, r.message, our_entities(r.entities.as_deref()), "text", None);
                let id = message.id;
                self.world.record_by(self.state, Some(self.caller.key_id), Event::Message { message, random_id: Some(r.random_id) });
                id
            }
        };
        let date = self.state.message(id).map_or(now_secs(), |m| m.date) as i32;
        Ok(tl::types::UpdateShortSentMessage { out: true, id, pts: self.state.pts(me), pts_count: 1, date, media: None, entities: None, ttl_period: None }.into())
    }

    /// messages.editMessage (core.telegram.org/method/messages.editMessage): one's own message
    /// of the chat with `peer` (`MESSAGE_ID_INVALID` for any other, `MESSAGE_AUTHOR_REQUIRED`
    /// for the other side's), within the config's `edit_time_limit` (`MESSAGE_EDIT_TIME_EXPIRED`);
    /// the same text and entities again is `MESSAGE_NOT_MODIFIED`. Only text is edited here
    /// (a new `media` is refused as `MEDIA_INVALID`, the stricter reading). The answer is
    /// `updates` with `updateEditMessage`; the other side gets it in its difference.
    fn edit_message(&mut self, r: tl::functions::messages::EditMessage) -> Result<tl::enums::Updates, Fail> {
        let me = self.account()?;
        let peer = self.input_peer(me, &r.peer)?;
        if r.media.is_some() {
            return Err(bad("MEDIA_INVALID"));
        }
        let m = self.state.message(r.id).filter(|m| [(me, peer), (peer, me)].contains(&(m.from_user_id, m.to_user_id))).ok_or_else(|| bad("MESSAGE_ID_INVALID"))?;
        if m.from_user_id != me {
            return Err(Fail(403, "MESSAGE_AUTHOR_REQUIRED".into()));
        }
        if m.date + EDIT_TIME_LIMIT_SECS < now_secs() {
            return Err(bad("MESSAGE_EDIT_TIME_EXPIRED"));
        }
        let Some(text) = r.message else { return Err(bad("MESSAGE_NOT_MODIFIED")) };
        let entities = our_entities(r.entities.as_deref());
        if m.file.is_none() && text.trim().is_empty() {
            return Err(bad("MESSAGE_EMPTY"));
        }
        let (limit, too_long) = if m.file.is_some() { (1024, "MEDIA_CAPTION_TOO_LONG") } else { (4096, "MESSAGE_TOO_LONG") };
        if text.encode_utf16().count() > limit {
            return Err(bad(too_long));
        }
        if m.text == text && m.entities == entities {
            return Err(bad("MESSAGE_NOT_MODIFIED"));
        }
        self.world.record_by(self.state, Some(self.caller.key_id), Event::Edited { id: r.id, text, entities, edit_date: now_secs() });
        let m = self.state.message(r.id).ok_or_else(|| bad("MESSAGE_ID_INVALID"))?;
        let update = tl::types::UpdateEditMessage { message: tl_message(m, me).into(), pts: self.state.pts(me), pts_count: 1 };
        let users = [me, peer].iter().filter_map(|id| self.state.user(*id)).map(|u| self.shown(u, me)).collect();
        Ok(tl::types::Updates { updates: vec![update.into()], users, chats: Vec::new(), date: now_secs() as i32, seq: 0 }.into())
    }

    /// messages.deleteMessages (core.telegram.org/method/messages.deleteMessages): with
    /// `revoke`, messages of the account's private chats go for both sides, the other side's
    /// too (the config's `revoke_pm_inbox`, no time limit); ids it does not have are skipped,
    /// as `pts_count` counts only what was deleted. Deleting for oneself only is not
    /// simulated: refused as `MESSAGE_DELETE_FORBIDDEN` rather than done wrong.
    fn delete_messages(&mut self, r: tl::functions::messages::DeleteMessages) -> Result<tl::enums::messages::AffectedMessages, Fail> {
        let me = self.account()?;
        if !r.revoke {
            return Err(Fail(403, "MESSAGE_DELETE_FORBIDDEN".into()));
        }
        let ids: Vec<i32> = r.id.iter().copied().filter(|id| self.state.message(*id).is_some_and(|m| m.from_user_id == me || m.to_user_id == me)).collect();
        let pts_count = ids.len() as i32;
        if !ids.is_empty() {
            self.world.record_by(self.state, Some(self.caller.key_id), Event::Deleted { ids });
        }
        Ok(tl::types::messages::AffectedMessages { pts: self.state.pts(me), pts_count }.into())
    }

    /// messages.getHistory (core.telegram.org/api/offsets): newest first, the window starts
    /// at the first message older than `offset_id` (the newest for 0), moved by `add_offset`,
    /// `limit` long and cut to what exists; then `max_id`/`min_id` filter it.
    fn get_history(&self, r: tl::functions::messages::GetHistory) -> Result<tl::enums::messages::Messages, Fail> {
        let me = self.account()?;
        let peer = self.input_peer(me, &r.peer)?;
        let limit = r.limit.clamp(0, 100) as i64;
        let chat: Vec<&ReceivedMessage> = self
            .state
            .received
            .iter()
            .rev()
            .filter(|m| (m.from_user_id, m.to_user_id) == (me, peer) || (m.from_user_id, m.to_user_id) == (peer, me))
            .collect();
        let start = if r.offset_id == 0 { 0 } else { chat.iter().position(|m| m.id < r.offset_id).unwrap_or(chat.len()) as i64 };
        let start = start + i64::from(r.add_offset);
        let (from, to) = (start.max(0) as usize, (start + limit).clamp(0, chat.len() as i64) as usize);
        let page: Vec<tl::enums::Message> = chat
            .get(from..to.max(from))
            .unwrap_or_default()
            .iter()
            .filter(|m| (r.max_id == 0 || m.id < r.max_id) && (r.min_id == 0 || m.id > r.min_id))
            .map(|m| tl_message(m, me).into())
            .collect();
        let users = [me, peer].iter().filter_map(|id| self.state.user(*id)).map(|u| self.shown(u, me)).collect();
        if page.len() == chat.len() {
            return Ok(tl::types::messages::Messages { messages: page, topics: Vec::new(), chats: Vec::new(), users }.into());
        }
        Ok(tl::types::messages::MessagesSlice {
            inexact: false,
            count: chat.len() as i32,
            next_rate: None,
            offset_id_offset: None,
            search_flood: None,
            messages: page,
            topics: Vec::new(),
            chats: Vec::new(),
            users,
        }
        .into())
    }

    /// messages.getPeerDialogs: the chat's top message and how far each side has read.
    fn get_peer_dialogs(&self, r: tl::functions::messages::GetPeerDialogs) -> Result<tl::enums::messages::PeerDialogs, Fail> {
        let me = self.account()?;
        let mut dialogs = Vec::new();
        let mut messages = Vec::new();
        let mut users = Vec::new();
        for p in r.peers.iter().filter_map(|p| if let tl::enums::InputDialogPeer::Peer(p) = p { Some(p) } else { None }) {
            let peer = self.input_peer(me, &p.peer)?;
            let chat = || self.state.received.iter().filter(move |m| (m.from_user_id, m.to_user_id) == (me, peer) || (m.from_user_id, m.to_user_id) == (peer, me));
            let Some(top) = chat().next_back() else { continue };
            let read_max = |from: i64| chat().filter(|m| m.from_user_id == from && m.read).map(|m| m.id).max().unwrap_or(0);
            let notify_settings = tl::types::PeerNotifySettings {
                show_previews: None,
                silent: None,
                mute_until: None,
                ios_sound: None,
                android_sound: None,
                other_sound: None,
                stories_muted: None,
                stories_hide_sender: None,
                stories_ios_sound: None,
                stories_android_sound: None,
                stories_other_sound: None,
            };
            dialogs.push(
                tl::types::Dialog {
                    pinned: false,
                    unread_mark: false,
                    view_forum_as_messages: false,
                    peer: tl::types::PeerUser { user_id: peer }.into(),
                    top_message: top.id,
                    read_inbox_max_id: read_max(peer),
                    read_outbox_max_id: read_max(me),
                    unread_count: chat().filter(|m| m.from_user_id == peer && !m.read).count() as i32,
                    unread_mentions_count: 0,
                    unread_reactions_count: 0,
                    unread_poll_votes_count: 0,
                    notify_settings: notify_settings.into(),
                    pts: None,
                    draft: None,
                    folder_id: None,
                    ttl_period: None,
                }
                .into(),
            );
            messages.push(tl_message(top, me).into());
            users.extend(self.state.user(peer).map(|u| self.shown(u, me)));
        }
        Ok(tl::types::messages::PeerDialogs { dialogs, messages, chats: Vec::new(), users, state: tl_state(self.state.pts(me)) }.into())
    }

    fn get_state(&self) -> Result<tl::enums::updates::State, Fail> {
        let me = self.account()?;
        Ok(tl_state(self.state.pts(me)))
    }

    /// updates.getDifference (core.telegram.org/api/updates): what happened after `pts`, at
    /// most [`DIFFERENCE_SLICE`] updates at a time (`differenceSlice` until the last);
    /// `differenceTooLong` past [`TOO_LONG_GAP`], or for a `pts` this account never reached.
    fn get_difference(&self, r: tl::functions::updates::GetDifference) -> Result<tl::enums::updates::Difference, Fail> {
        use tl::enums::updates::Difference as D;
        let me = self.account()?;
        let log = self.state.updates.get(&me).map(Vec::as_slice).unwrap_or_default();
        let now = now_secs() as i32;
        let Ok(start) = usize::try_from(r.pts) else { return Err(bad("PERSISTENT_TIMESTAMP_INVALID")) };
        if start == log.len() {
            return Ok(D::Empty(tl::types::updates::DifferenceEmpty { date: now, seq: 0 }));
        }
        if start > log.len() || log.len() - start > TOO_LONG_GAP {
            return Ok(D::TooLong(tl::types::updates::DifferenceTooLong { pts: log.len() as i32 }));
        }
        let end = log.len().min(start + DIFFERENCE_SLICE);
        let (logged, involved) = logged(self.state, me, start, end);
        let mut new_messages = Vec::new();
        let mut other_updates = Vec::new();
        // A difference lists new messages apart (core.telegram.org/constructor/updates.difference).
        for update in logged {
            match update {
                tl::enums::Update::NewMessage(u) => new_messages.push(u.message),
                other => other_updates.push(other),
            }
        }
        let users = involved.iter().filter_map(|id| self.state.user(*id)).map(|u| self.shown(u, me)).collect();
        let state = tl_state(end as i32);
        if end < log.len() {
            return Ok(D::Slice(tl::types::updates::DifferenceSlice {
                new_messages,
                new_encrypted_messages: Vec::new(),
                other_updates,
                chats: Vec::new(),
                users,
                intermediate_state: state,
            }));
        }
        Ok(D::Difference(tl::types::updates::Difference { new_messages, new_encrypted_messages: Vec::new(), other_updates, chats: Vec::new(), users, state }))
    }
}

/// `me`'s updates `start..end` of its log as Telegram writes them for the account, each
/// with its `pts` (its place in the log, from 1; a new message as `updateNewMessage`), and
/// the users they involve (`me` among them): what `getDifference` answers and what is
/// pushed, one rendering.
fn logged(state: &State, me: i64, start: usize, end: usize) -> (Vec<tl::enums::Update>, Vec<i64>) {
    let log = state.updates.get(&me).map(Vec::as_slice).unwrap_or_default();
    let mut logged = Vec::new();
    let mut involved = vec![me];
    for (at, update) in log[start.min(log.len())..end.min(log.len())].iter().enumerate() {
        let pts = (start + at + 1) as i32;
        match *update {
            SimUpdate::Message(id) => {
                if let Some(m) = state.message(id) {
                    involved.extend([m.from_user_id, m.to_user_id]);
                    logged.push(tl::types::UpdateNewMessage { message: tl_message(m, me).into(), pts, pts_count: 1 }.into());
                }
            }
            SimUpdate::Edit(id) => {
                if let Some(m) = state.message(id) {
                    involved.extend([m.from_user_id, m.to_user_id]);
                    logged.push(tl::types::UpdateEditMessage { message: tl_message(m, me).into(), pts, pts_count: 1 }.into());
                }
            }
            SimUpdate::Delete(id) => logged.push(tl::types::UpdateDeleteMessages { messages: vec![id], pts, pts_count: 1 }.into()),
            SimUpdate::ReadOutbox { user_id, max_id } => {
                involved.push(user_id);
                let peer = tl::types::PeerUser { user_id }.into();
                logged.push(tl::types::UpdateReadHistoryOutbox { peer, max_id, pts, pts_count: 1 }.into());
            }
        }
    }
    involved.sort();
    involved.dedup();
    (logged, involved)
}

/// What `me`'s sessions are pushed for its log after `from` (core.telegram.org/api/updates):
/// one update that names no one else goes as `updateShort` (a read, a deletion); anything
/// else as `updates`, new messages as `updateNewMessage`, with the users they involve, so
/// the client can address the sender without asking. (Telegram may also send a private
/// chat's text as `updateShortMessage`, which names the sender by id alone; which form it
/// picks when is not documented, and a client must take both: the stricter choice for a
/// server is the form a client can act on without a call.) `seq` 0: the sandbox keeps no
/// `seq` (its `updates.state` says 0 too); `pts` orders these updates.
pub(super) fn pushed(state: &State, me: i64, from: i32) -> Option<Vec<u8>> {
    let start = usize::try_from(from).ok()?;
    let (updates, involved) = logged(state, me, start, state.pts(me) as usize);
    let date = now_secs() as i32;
    let names_others = updates.iter().any(|u| !matches!(u, tl::enums::Update::ReadHistoryOutbox(_) | tl::enums::Update::DeleteMessages(_)));
    let pushed: tl::enums::Updates = match updates.as_slice() {
        [] => return None,
        [only] if !names_others => tl::types::UpdateShort { update: only.clone(), date }.into(),
        _ => {
            let me_user = state.user(me)?;
            let users = involved.iter().filter_map(|id| state.user(*id)).map(|u| tl_user(u, me_user).into()).collect();
            tl::types::Updates { updates, users, chats: Vec::new(), date, seq: 0 }.into()
        }
    };
    Some(pushed.to_bytes())
}

/// `upload.*`: parts of an upload under way, and chunks of a stored file.
async fn files(world: &Arc<SandboxTelegram>, caller: &Caller, id: u32, body: &[u8]) -> Result<Vec<u8>, Fail> {
    use tl::functions::upload;
    let key_id = caller.key_id;
    if world.lock().keys.get(&key_id).and_then(|k| k.user_id).is_none() {
        return Err(unauthorized());
    }
    match id {
        upload::SaveFilePart::CONSTRUCTOR_ID => {
            let r: upload::SaveFilePart = decode(body)?;
            world.files.save_part(key_id, r.file_id, r.file_part, &r.bytes, None).map_err(bad)?;
            Ok(true.to_bytes())
        }
        upload::SaveBigFilePart::CONSTRUCTOR_ID => {
            let r: upload::SaveBigFilePart = decode(body)?;
            world.files.save_part(key_id, r.file_id, r.file_part, &r.bytes, Some(r.file_total_parts)).map_err(bad)?;
            Ok(true.to_bytes())
        }
        upload::GetFile::CONSTRUCTOR_ID => {
            let r: upload::GetFile = decode(body)?;
            get_file(world, caller, r).await.map(|f| f.to_bytes())
        }
        _ => Err(bad("INPUT_METHOD_INVALID")),
    }
}

/// upload.getFile (core.telegram.org/api/files#downloading-files): a file of a message the
/// account can see, from the DC holding it (`FILE_MIGRATE_X` elsewhere).
async fn get_file(world: &Arc<SandboxTelegram>, caller: &Caller, r: tl::functions::upload::GetFile) -> Result<tl::enums::upload::File, Fail> {
    let (file_id, access_hash) = match &r.location {
        tl::enums::InputFileLocation::InputDocumentFileLocation(l) => (l.id, l.access_hash),
        tl::enums::InputFileLocation::InputPhotoFileLocation(l) => (l.id, l.access_hash),
        _ => return Err(bad("LOCATION_INVALID")),
    };
    let (dc, date) = {
        let mut state = world.lock();
        let me = state.keys.get(&caller.key_id).and_then(|k| k.user_id).ok_or_else(unauthorized)?;
        if let Some(Fault::FileMigrate { dc }) = caller.fault {
            world.record(&mut state, Event::FileMoved { file_id, dc });
        }
        let message = state
            .received
            .iter()
            .find(|m| (m.from_user_id == me || m.to_user_id == me) && m.file.as_ref().is_some_and(|f| f.id == file_id))
            .filter(|_| file_access_hash(file_id) == access_hash)
            .ok_or_else(|| bad("FILE_REFERENCE_EXPIRED"))?;
        (message.file.as_ref().map_or(caller.dc, |f| f.dc), message.date)
    };
    if dc != caller.dc {
        return Err(Fail(303, format!("FILE_MIGRATE_{dc}")));
    }
    let reader = world.clone();
    let bytes = tokio::task::spawn_blocking(move || reader.files.read(file_id, r.offset, r.limit, r.precise))
        .await
        .map_err(|_| Fail(500, "INTERNAL".into()))?
        .map_err(bad)?;
    Ok(tl::types::upload::File { r#type: tl::types::storage::FilePartial {}.into(), mtime: date as i32, bytes }.into())
}

/// messages.sendMedia with an uploaded photo, document or voice note: the upload's parts
/// become the file (`FILE_PARTS_INVALID` when they do not add up), then it is delivered as
/// sendMessage is; the answer is `updates` with `updateMessageID` and `updateNewMessage`.
async fn send_media(world: &Arc<SandboxTelegram>, caller: &Caller, r: tl::functions::messages::SendMedia) -> Result<tl::enums::Updates, Fail> {
    let (me, to) = {
        let mut state = world.lock();
        let call = Call { world, state: &mut state, caller };
        let me = call.account()?;
        let to = call.input_peer(me, &r.peer)?;
        if r.message.encode_utf16().count() > 1024 {
            return Err(bad("MEDIA_CAPTION_TOO_LONG"));
        }
        if let Some(original) = call.deliverable(me, to, r.random_id)? {
            return Ok(sent_updates(&call, me, to, original, r.random_id));
        }
        (me, to)
    };
    let (kind, file, mime_type, attributes) = match r.media {
        tl::enums::InputMedia::UploadedPhoto(p) => ("photo", p.file, "image/jpeg".to_owned(), Vec::new()),
        tl::enums::InputMedia::UploadedDocument(d) => {
            let voice = d.attributes.iter().any(|a| matches!(a, tl::enums::DocumentAttribute::Audio(a) if a.voice));
            (if voice { "voice" } else { "document" }, d.file, d.mime_type, d.attributes)
        }
        _ => return Err(bad("MEDIA_INVALID")),
    };
    let (file_id, parts, name, md5, big) = match file {
        tl::enums::InputFile::File(f) => (f.id, f.parts, f.name, Some(f.md5_checksum), false),
        tl::enums::InputFile::Big(f) => (f.id, f.parts, f.name, None, true),
        _ => return Err(bad("MEDIA_INVALID")),
    };
    let finisher = world.clone();
    let key_id = caller.key_id;
    let stored = tokio::task::spawn_blocking(move || finisher.files.finish(key_id, file_id, parts, md5.as_deref(), big))
        .await
        .map_err(|_| Fail(500, "INTERNAL".into()))?
        .map_err(bad)?;
    // Telegram makes a photo of an image only (IMAGE_PROCESS_FAILED otherwise).
    if kind == "photo" && !matches!(stored.format, "jpeg" | "png") {
        return Err(bad("IMAGE_PROCESS_FAILED"));
    }
    let mut file_name = name;
    let (mut duration, mut waveform) = (None, None);
    for attribute in &attributes {
        match attribute {
            tl::enums::DocumentAttribute::Filename(f) => file_name = f.file_name.clone(),
            tl::enums::DocumentAttribute::Audio(a) => {
                duration = u32::try_from(a.duration).ok();
                waveform = a.waveform.clone();
            }
            _ => {}
        }
    }
    let received = ReceivedFile {
        id: stored.id,
        dc: caller.dc,
        file_name,
        mime_type,
        size: stored.size,
        received_bytes: stored.size,
        sha256: stored.sha256,
        format: stored.format.into(),
        duration,
        waveform_bytes: waveform.as_ref().map(Vec::len),
        waveform,
    };
    let mut state = world.lock();
    let call = Call { world, state: &mut state, caller };
    // Checked again: another connection may have sent this random_id meanwhile.
    if let Some(original) = call.deliverable(me, to, r.random_id)? {
        return Ok(sent_updates(&call, me, to, original, r.random_id));
    }
    let message = call.state.new_message(me, to, r.message, our_entities(r.entities.as_deref()), kind, Some(received));
    let id = message.id;
    world.record_by(call.state, Some(caller.key_id), Event::Message { message, random_id: Some(r.random_id) });
    Ok(sent_updates(&call, me, to, id, r.random_id))
}

fn sent_updates(call: &Call<'_>, me: i64, to: i64, id: i32, random_id: i64) -> tl::enums::Updates {
    let mut updates: Vec<tl::enums::Update> = vec![tl::types::UpdateMessageId { id, random_id }.into()];
    if let Some(m) = call.state.message(id) {
        updates.push(tl::types::UpdateNewMessage { message: tl_message(m, me).into(), pts: call.state.pts(me), pts_count: 1 }.into());
    }
    let users = [me, to].iter().filter_map(|id| call.state.user(*id)).map(|u| call.shown(u, me)).collect();
    tl::types::Updates { updates, users, chats: Vec::new(), date: now_secs() as i32, seq: 0 }.into()
}
