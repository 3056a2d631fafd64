//! Catching up on what happened to the account: `updates.getState`/`getDifference`, a chat's
//! history and downloads, with Telegram's messages reduced to the port's in one pure conversion.

use grammers_client::media::{Media, Photo};
use grammers_client::tl::{self, Deserializable, Serializable};
use grammers_session::updates::UpdatesLike;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::errors::classify;
use super::{Connection, in_time, input_peer, transfer_time, user_by_id};
use crate::domain::Formatted;
use crate::domain::formatting::{EntityKind, TextEntity};
use crate::ports::{ChatMessage, Difference, HISTORY_LIMIT, HistoryPage, IncomingKind, IncomingMessage, Peer, Pushed, RemoteFile, TelegramError, Update, UpdatesState};

impl Connection<'_> {
    pub(super) async fn updates_state(&self) -> Result<UpdatesState, TelegramError> {
        let tl::enums::updates::State::State(s) = self.call(&tl::functions::updates::GetState {}).await?;
        Ok(state(s))
    }

    pub(super) async fn difference(&self, from: UpdatesState) -> Result<Difference, TelegramError> {
        let request = tl::functions::updates::GetDifference {
            pts: from.pts,
            pts_limit: None,
            pts_total_limit: None,
            date: from.date,
            qts: from.qts,
            qts_limit: None,
        };
        Ok(difference(self.call(&request).await?, from))
    }

    pub(super) async fn history(&self, peer: Peer, after_id: i32) -> Result<HistoryPage, TelegramError> {
        // Forward from `after_id`, as Telegram's offsets page (core.telegram.org/api/offsets):
        // the window ends just before the first message older than `after_id + 1`, i.e. at
        // `after_id` itself, and `add_offset = -limit` moves it to the `limit` newer ones.
        // `min_id` is not trusted with a negative offset (other clients filter locally too):
        // it would cut the window short and end the paging early. For `after_id = 0` the
        // window is the chat's oldest messages.
        let request = tl::functions::messages::GetHistory {
            peer: input_peer(peer),
            offset_id: after_id.saturating_add(1),
            offset_date: 0,
            add_offset: -(HISTORY_LIMIT as i32),
            limit: HISTORY_LIMIT as i32,
            max_id: 0,
            min_id: 0,
            hash: 0,
        };
        Ok(history(self.call(&request).await?, peer.user_id, after_id))
    }

    pub(super) async fn earlier(&self, peer: Peer, before_id: i32) -> Result<Vec<ChatMessage>, TelegramError> {
        // Back from `before_id` as Telegram's offsets page (core.telegram.org/api/offsets): the
        // window starts at the first message older than `offset_id`, the newest for 0.
        let request = tl::functions::messages::GetHistory {
            peer: input_peer(peer),
            offset_id: before_id,
            offset_date: 0,
            add_offset: 0,
            limit: HISTORY_LIMIT as i32,
            max_id: 0,
            min_id: 0,
            hash: 0,
        };
        let (messages, _) = messages_of(self.call(&request).await?);
        Ok(messages.into_iter().filter_map(|m| chat_message(m, peer.user_id)).collect())
    }

    pub(super) async fn download(&self, file: &RemoteFile, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64, TelegramError> {
        let media = tl::enums::MessageMedia::from_bytes(&file.location)
            .ok()
            .and_then(Media::from_raw)
            .ok_or_else(|| TelegramError::Rejected("not a downloadable file".into()))?;
        let mut chunks = self.client.iter_download(&media);
        // Each chunk within a call's time, and the whole within the lease taken for it.
        let copy = async {
            let mut written = 0;
            while let Some(chunk) = in_time(chunks.next()).await.map_err(|e| classify(&e))? {
                sink.write_all(&chunk).await.map_err(|e| TelegramError::Transient(format!("download: {e}")))?;
                written += chunk.len() as u64;
            }
            Ok(written)
        };
        tokio::time::timeout(transfer_time(file.size), copy)
            .await
            .unwrap_or_else(|_| Err(TelegramError::Transient("the download did not finish in time".into())))
    }
}

fn state(s: tl::types::updates::State) -> UpdatesState {
    UpdatesState { pts: s.pts, qts: s.qts, date: s.date, seq: s.seq }
}

/// `updates.Difference` as the port's ([`acted_on`]).
fn difference(answer: tl::enums::updates::Difference, from: UpdatesState) -> Difference {
    use tl::enums::updates::Difference as D;
    let (new_messages, other_updates, users, after, more) = match answer {
        D::Empty(e) => {
            return Difference::Updates { updates: Vec::new(), state: UpdatesState { date: e.date, seq: e.seq, ..from }, more: false };
        }
        D::TooLong(_) => return Difference::TooLong,
        D::Difference(d) => (d.new_messages, d.other_updates, d.users, d.state, false),
        D::Slice(d) => (d.new_messages, d.other_updates, d.users, d.intermediate_state, true),
    };
    let tl::enums::updates::State::State(after) = after;
    Difference::Updates { updates: acted_on(new_messages, other_updates, &users), state: state(after), more }
}

/// What the app acts on among new messages and other updates: every new message first, then
/// edits and deletions in their order, then the reads, so neither comes before a message it
/// covers.
fn acted_on(new_messages: Vec<tl::enums::Message>, other_updates: Vec<tl::enums::Update>, users: &[tl::enums::User]) -> Vec<Update> {
    let mut updates: Vec<Update> = new_messages.into_iter().filter_map(|m| incoming(m, users)).map(Update::Message).collect();
    let mut reads = Vec::new();
    for update in other_updates {
        match update {
            tl::enums::Update::NewMessage(u) => updates.extend(incoming(u.message, users).map(Update::Message)),
            tl::enums::Update::ReadHistoryOutbox(u) => {
                if let tl::enums::Peer::User(peer) = u.peer {
                    reads.push(Update::ReadOutbox { user_id: peer.user_id, max_id: u.max_id });
                }
            }
            tl::enums::Update::EditMessage(u) => updates.extend(incoming(u.message, users).map(Update::Edited)),
            tl::enums::Update::DeleteMessages(u) => updates.push(Update::Deleted { ids: u.messages }),
            _ => {}
        }
    }
    updates.append(&mut reads);
    updates
}

/// What a kept connection was pushed, as the port's; `None` for what does not touch the
/// account's `pts` (typing, statuses, channels: core.telegram.org/api/updates keeps those apart).
/// Answers to our own calls come this way too (grammers hands them over as well), and move
/// `pts` like the rest.
pub(super) fn pushed(update: UpdatesLike) -> Option<Pushed> {
    use tl::enums::Updates as U;
    let moved = |pts, pts_count| Some(Pushed::Updates { updates: Vec::new(), pts, pts_count });
    let updates = match update {
        UpdatesLike::ConnectionClosed => return Some(Pushed::Closed),
        UpdatesLike::MalformedUpdates => return Some(Pushed::Gap),
        UpdatesLike::ShortSentMessage { update, .. } => return moved(update.pts, update.pts_count),
        UpdatesLike::AffectedMessages(affected) => return moved(affected.pts, affected.pts_count),
        UpdatesLike::AffectedChannelMessages { .. } => return None,
        UpdatesLike::InvitedUsers(invited) => invited.updates,
        UpdatesLike::ChatInviteJoinResult(joined) => joined.updates,
        UpdatesLike::Updates(updates) => updates,
    };
    let (list, users) = match updates {
        U::TooLong => return Some(Pushed::Gap),
        // Names the sender by id alone: only a difference brings their access_hash. Ours
        // (and a group's) only move `pts`.
        U::UpdateShortMessage(m) if !m.out => return Some(Pushed::Gap),
        U::UpdateShortMessage(m) => return moved(m.pts, m.pts_count),
        U::UpdateShortChatMessage(m) => return moved(m.pts, m.pts_count),
        U::UpdateShortSentMessage(m) => return moved(m.pts, m.pts_count),
        U::UpdateShort(short) => (vec![short.update], Vec::new()),
        U::Combined(c) => (c.updates, c.users),
        U::Updates(u) => (u.updates, u.users),
    };
    let mut counted: Vec<(i32, i32, tl::enums::Update)> = list.into_iter().filter_map(|u| common_pts(&u).map(|(pts, count)| (pts, count, u))).collect();
    if counted.is_empty() {
        return None;
    }
    // core.telegram.org/api/updates#update-handling: each update moves `pts` from
    // `pts - pts_count`; together they must follow each other, or something is missing.
    counted.sort_by_key(|(pts, count, _)| pts - count);
    let (first_pts, first_count, _) = counted[0];
    let mut end = first_pts;
    for (pts, count, _) in &counted[1..] {
        if pts - count != end {
            return Some(Pushed::Gap);
        }
        end = *pts;
    }
    let pts_count = end - (first_pts - first_count);
    Some(Pushed::Updates { updates: acted_on(Vec::new(), counted.into_iter().map(|(_, _, u)| u).collect(), &users), pts: end, pts_count })
}

/// The `pts` and `pts_count` of an update of the account's own sequence (private chats and
/// basic groups; channels count their own), as grammers' message box reads them.
fn common_pts(update: &tl::enums::Update) -> Option<(i32, i32)> {
    use tl::enums::Update as U;
    let in_channel = |m: &tl::enums::Message| match m {
        tl::enums::Message::Message(m) => matches!(m.peer_id, tl::enums::Peer::Channel(_)),
        tl::enums::Message::Service(m) => matches!(m.peer_id, tl::enums::Peer::Channel(_)),
        tl::enums::Message::Empty(_) => false,
    };
    match update {
        U::NewMessage(u) if !in_channel(&u.message) => Some((u.pts, u.pts_count)),
        U::EditMessage(u) if !in_channel(&u.message) => Some((u.pts, u.pts_count)),
        U::DeleteMessages(u) => Some((u.pts, u.pts_count)),
        U::ReadHistoryInbox(u) if !matches!(u.peer, tl::enums::Peer::Channel(_)) => Some((u.pts, u.pts_count)),
        U::ReadHistoryOutbox(u) if !matches!(u.peer, tl::enums::Peer::Channel(_)) => Some((u.pts, u.pts_count)),
        U::WebPage(u) => Some((u.pts, u.pts_count)),
        U::ReadMessagesContents(u) => Some((u.pts, u.pts_count)),
        U::PinnedMessages(u) => Some((u.pts, u.pts_count)),
        U::FolderPeers(u) => Some((u.pts, u.pts_count)),
        _ => None,
    }
}

fn message_id(m: &tl::enums::Message) -> i32 {
    match m {
        tl::enums::Message::Message(m) => m.id,
        tl::enums::Message::Service(m) => m.id,
        tl::enums::Message::Empty(m) => m.id,
    }
}

fn messages_of(answer: tl::enums::messages::Messages) -> (Vec<tl::enums::Message>, Vec<tl::enums::User>) {
    use tl::enums::messages::Messages as M;
    match answer {
        M::Messages(m) => (m.messages, m.users),
        M::Slice(m) => (m.messages, m.users),
        M::ChannelMessages(m) => (m.messages, m.users),
        M::NotModified(_) => (Vec::new(), Vec::new()),
    }
}

/// A page of `messages.Messages` of the chat with `user_id`, asked for after `after_id`: what
/// that user wrote after it, oldest first, and where the next page starts when this one was
/// full (every message counts, ours and service ones too).
fn history(answer: tl::enums::messages::Messages, user_id: i64, after_id: i32) -> HistoryPage {
    let (messages, users) = messages_of(answer);
    let newer: Vec<tl::enums::Message> = messages.into_iter().filter(|m| message_id(m) > after_id).collect();
    let next_after = newer.iter().map(message_id).max().filter(|_| newer.len() >= HISTORY_LIMIT);
    // Telegram lists the newest first.
    let messages = newer.into_iter().rev().filter_map(|m| incoming(m, &users)).filter(|m| m.from.peer.user_id == user_id).collect();
    HistoryPage { messages, next_after }
}

/// The id of the newest message of ours with `text` among a chat's newest messages.
pub(super) fn own_message_id(answer: tl::enums::messages::Messages, text: &str) -> Option<i32> {
    messages_of(answer).0.iter().find_map(|m| match m {
        tl::enums::Message::Message(m) if m.out && m.message == text => Some(m.id),
        _ => None,
    })
}

/// A message a user wrote to the account in their private chat, as the port's; `None` for
/// anything else (our own, groups, service messages, nothing we can pass on).
fn incoming(message: tl::enums::Message, users: &[tl::enums::User]) -> Option<IncomingMessage> {
    let tl::enums::Message::Message(m) = &message else { return None };
    let tl::enums::Peer::User(chat) = &m.peer_id else { return None };
    let by_them = match &m.from_id {
        None => true,
        Some(tl::enums::Peer::User(from)) => from.user_id == chat.user_id,
        Some(_) => false,
    };
    if m.out || !by_them {
        return None;
    }
    let from = user_by_id(users, chat.user_id)?;
    let said = chat_message(message, from.peer.user_id)?;
    Some(IncomingMessage { id: said.id, from, date: said.date, text: said.text, file: said.file })
}

/// A message of the private chat with `user_id`, either side's; `None` for service messages,
/// other chats and what has neither text nor a file we can pass on.
fn chat_message(message: tl::enums::Message, user_id: i64) -> Option<ChatMessage> {
    let tl::enums::Message::Message(m) = message else { return None };
    let tl::enums::Peer::User(chat) = &m.peer_id else { return None };
    if chat.user_id != user_id {
        return None;
    }
    let file = m.media.and_then(|media| remote_file(m.id, media));
    if m.message.is_empty() && file.is_none() {
        return None;
    }
    let entities = m.entities.iter().flatten().filter_map(text_entity).collect();
    Some(ChatMessage { id: m.id, out: m.out, date: m.date.into(), text: Formatted { text: m.message, entities }, file })
}

/// Telegram's entity as our formatting, for the kinds we have (offsets are UTF-16 units on both sides).
pub(crate) fn text_entity(entity: &tl::enums::MessageEntity) -> Option<TextEntity> {
    use tl::enums::MessageEntity as E;
    let (offset, length, kind) = match entity {
        E::Bold(e) => (e.offset, e.length, EntityKind::Bold),
        E::Italic(e) => (e.offset, e.length, EntityKind::Italic),
        E::Underline(e) => (e.offset, e.length, EntityKind::Underline),
        E::Strike(e) => (e.offset, e.length, EntityKind::Strikethrough),
        E::Code(e) => (e.offset, e.length, EntityKind::Code),
        E::TextUrl(e) => (e.offset, e.length, EntityKind::TextUrl { url: e.url.clone() }),
        _ => return None,
    };
    Some(TextEntity { offset: usize::try_from(offset).ok()?, length: usize::try_from(length).ok()?, kind })
}

/// A photo, voice note or other document of message `id`; its location is the media itself,
/// serialized, for [`Connection::download`] to rebuild.
fn remote_file(id: i32, media: tl::enums::MessageMedia) -> Option<RemoteFile> {
    let location = media.to_bytes();
    let (kind, file_name, mime_type, size) = match media {
        tl::enums::MessageMedia::Photo(photo) => {
            let Some(tl::enums::Photo::Photo(_)) = &photo.photo else { return None };
            // Telegram keeps no original: a download fetches the largest size.
            let size = Photo::from_raw_media(photo).size().unwrap_or(0);
            (IncomingKind::Photo, format!("photo-{id}.jpg"), "image/jpeg".to_owned(), size as u64)
        }
        tl::enums::MessageMedia::Document(document) => {
            let Some(tl::enums::Document::Document(doc)) = document.document else { return None };
            let voice = document.voice
                || doc.attributes.iter().any(|a| matches!(a, tl::enums::DocumentAttribute::Audio(audio) if audio.voice));
            let mime = |default: &str| if doc.mime_type.is_empty() { default.to_owned() } else { doc.mime_type.clone() };
            let (kind, file_name, mime_type) = if voice {
                (IncomingKind::Voice, format!("voice-{id}.ogg"), mime("audio/ogg"))
            } else {
                let name = doc.attributes.iter().find_map(|a| match a {
                    tl::enums::DocumentAttribute::Filename(f) => Some(f.file_name.clone()),
                    _ => None,
                });
                (IncomingKind::Document, name.unwrap_or_else(|| format!("file-{id}")), mime("application/octet-stream"))
            };
            (kind, file_name, mime_type, u64::try_from(doc.size).unwrap_or(0))
        }
        _ => return None,
    };
    Some(RemoteFile { kind, file_name, mime_type, size, location })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::telegram::rpc::{tl_message, tl_user};
    use crate::sandbox::telegram::{PhonePrivacy, ReceivedMessage, SimUser};

    const THEM: i64 = 42;
    const ME: i64 = 1;

    /// A user and a message as Telegram would send them: the sandbox data centre's builders,
    /// the one place that spells out every field of these constructors.
    fn user(id: i64) -> tl::enums::User {
        let sim = |id| SimUser {
            id,
            access_hash: 7,
            phone: String::new(),
            username: None,
            first_name: "Ann".into(),
            last_name: String::new(),
            phone_privacy: PhonePrivacy::Nobody,
            accepts_strangers: true,
            contacts: Vec::new(),
            dc: 2,
            logged_in: false,
            cloud_password: None,
        };
        tl_user(&sim(id), &sim(ME)).into()
    }

    /// Message `id` that [`THEM`] wrote in their private chat with us.
    fn message(id: i32, text: &str) -> tl::types::Message {
        let written = ReceivedMessage {
            id,
            from_user_id: THEM,
            from_username: None,
            to_user_id: ME,
            to_username: None,
            text: text.into(),
            entities: Vec::new(),
            media: "text".into(),
            file: None,
            date: 1_700_000_000,
            read: false,
            edit_date: None,
        };
        tl_message(&written, ME)
    }

    fn document(attributes: Vec<tl::enums::DocumentAttribute>, mime_type: &str) -> tl::enums::MessageMedia {
        let document = tl::types::Document {
            id: 9,
            access_hash: 8,
            file_reference: vec![1, 2, 3],
            date: 1_700_000_000,
            mime_type: mime_type.into(),
            size: 2048,
            thumbs: None,
            video_thumbs: None,
            dc_id: 2,
            attributes,
        };
        tl::types::MessageMediaDocument {
            nopremium: false,
            spoiler: false,
            video: false,
            round: false,
            voice: false,
            document: Some(document.into()),
            alt_documents: None,
            video_cover: None,
            video_timestamp: None,
            ttl_seconds: None,
        }
        .into()
    }

    fn state(pts: i32) -> tl::enums::updates::State {
        tl::types::updates::State { pts, qts: 2, date: 3, seq: 4, unread_count: 0 }.into()
    }

    fn from() -> UpdatesState {
        UpdatesState { pts: 1, qts: 2, date: 1, seq: 1 }
    }

    fn got(new_messages: Vec<tl::types::Message>, other_updates: Vec<tl::enums::Update>) -> Difference {
        let answer = tl::types::updates::Difference {
            new_messages: new_messages.into_iter().map(Into::into).collect(),
            new_encrypted_messages: Vec::new(),
            other_updates,
            chats: Vec::new(),
            users: vec![user(THEM)],
            state: state(10),
        };
        difference(answer.into(), from())
    }

    fn only_message(difference: Difference) -> IncomingMessage {
        let Difference::Updates { mut updates, .. } = difference else { panic!("{difference:?}") };
        let (Some(Update::Message(m)), None) = (updates.pop(), updates.pop()) else { panic!("{updates:?}") };
        m
    }

    #[test]
    fn an_incoming_text_keeps_its_formatting() {
        let mut hi = message(5, "Hi there");
        hi.entities = Some(vec![
            tl::types::MessageEntityBold { offset: 0, length: 2 }.into(),
            tl::types::MessageEntityMention { offset: 3, length: 5 }.into(),
        ]);
        let Difference::Updates { updates, state, more } = got(vec![hi], Vec::new()) else { panic!() };
        assert_eq!((state, more), (UpdatesState { pts: 10, qts: 2, date: 3, seq: 4 }, false));
        let [Update::Message(m)] = updates.as_slice() else { panic!("{updates:?}") };
        assert_eq!((m.id, m.date, m.from.peer.user_id, m.from.peer.access_hash), (5, 1_700_000_000, THEM, 7));
        assert_eq!(m.text.text, "Hi there");
        assert_eq!(m.text.entities, vec![TextEntity { offset: 0, length: 2, kind: EntityKind::Bold }]);
        assert_eq!(m.file, None);
    }

    #[test]
    fn our_own_and_empty_messages_are_skipped() {
        let mut ours = message(5, "from us");
        ours.out = true;
        let mut by_someone_else = message(6, "hi");
        by_someone_else.from_id = Some(tl::types::PeerUser { user_id: THEM + 1 }.into());
        let Difference::Updates { updates, .. } = got(vec![ours, by_someone_else, message(7, "")], Vec::new()) else { panic!() };
        assert_eq!(updates, Vec::new());
    }

    #[test]
    fn documents_become_files() {
        let mut voice = message(5, "");
        let audio = tl::types::DocumentAttributeAudio { voice: true, duration: 3, title: None, performer: None, waveform: None };
        voice.media = Some(document(vec![audio.into()], ""));
        let file = only_message(got(vec![voice], Vec::new())).file.unwrap();
        let found = (file.kind, file.file_name.as_str(), file.mime_type.as_str(), file.size);
        assert_eq!(found, (IncomingKind::Voice, "voice-5.ogg", "audio/ogg", 2048));

        let mut pdf = message(6, "see");
        let name = tl::types::DocumentAttributeFilename { file_name: "a.pdf".into() };
        pdf.media = Some(document(vec![name.into()], "application/pdf"));
        let m = only_message(got(vec![pdf], Vec::new()));
        let file = m.file.unwrap();
        let found = (m.text.text.as_str(), file.kind, file.file_name.as_str(), file.mime_type.as_str());
        assert_eq!(found, ("see", IncomingKind::Document, "a.pdf", "application/pdf"));
    }

    #[test]
    fn a_photo_is_sized_by_its_largest_size() {
        let photo = tl::types::Photo {
            has_stickers: false,
            id: 9,
            access_hash: 8,
            file_reference: vec![1],
            date: 1_700_000_000,
            sizes: vec![
                tl::types::PhotoSize { r#type: "m".into(), w: 320, h: 240, size: 1000 }.into(),
                tl::types::PhotoSize { r#type: "y".into(), w: 1280, h: 960, size: 90_000 }.into(),
            ],
            video_sizes: None,
            dc_id: 2,
        };
        let mut m = message(5, "");
        let media = tl::types::MessageMediaPhoto { spoiler: false, live_photo: false, photo: Some(photo.into()), ttl_seconds: None, video: None };
        m.media = Some(media.into());
        let file = only_message(got(vec![m], Vec::new())).file.unwrap();
        let found = (file.kind, file.file_name.as_str(), file.mime_type.as_str(), file.size);
        assert_eq!(found, (IncomingKind::Photo, "photo-5.jpg", "image/jpeg", 90_000));
    }

    #[test]
    fn a_location_rebuilds_the_media_it_came_from() {
        let media = document(vec![tl::types::DocumentAttributeFilename { file_name: "a.pdf".into() }.into()], "application/pdf");
        let mut m = message(5, "");
        m.media = Some(media.clone());
        let file = only_message(got(vec![m], Vec::new())).file.unwrap();
        assert_eq!(tl::enums::MessageMedia::from_bytes(&file.location).unwrap(), media);
        assert!(matches!(Media::from_raw(media), Some(Media::Document(_))));
    }

    #[test]
    fn reads_come_after_the_messages() {
        let read = tl::types::UpdateReadHistoryOutbox { peer: tl::types::PeerUser { user_id: THEM }.into(), max_id: 3, pts: 9, pts_count: 1 };
        let late = tl::types::UpdateNewMessage { message: message(6, "late").into(), pts: 10, pts_count: 1 };
        let Difference::Updates { updates, .. } = got(vec![message(5, "hi")], vec![read.into(), late.into()]) else { panic!() };
        let [Update::Message(first), Update::Message(second), read] = updates.as_slice() else { panic!("{updates:?}") };
        assert_eq!((first.id, second.id), (5, 6));
        assert_eq!(read, &Update::ReadOutbox { user_id: THEM, max_id: 3 });
    }

    #[test]
    fn a_clients_edit_and_deletions_follow_the_messages() {
        let edit = tl::types::UpdateEditMessage { message: message(5, "hi, fixed").into(), pts: 11, pts_count: 1 };
        let mut ours = message(6, "ours, edited");
        ours.out = true;
        let our_edit = tl::types::UpdateEditMessage { message: ours.into(), pts: 12, pts_count: 1 };
        let deleted = tl::types::UpdateDeleteMessages { messages: vec![5, 9], pts: 14, pts_count: 2 };
        let Difference::Updates { updates, .. } = got(vec![message(5, "hi")], vec![edit.into(), our_edit.into(), deleted.into()]) else { panic!() };
        let [Update::Message(first), Update::Edited(edited), deleted] = updates.as_slice() else { panic!("{updates:?}") };
        assert_eq!((first.id, edited.id, edited.text.text.as_str()), (5, 5, "hi, fixed"), "our own edit is not the client's");
        assert_eq!(deleted, &Update::Deleted { ids: vec![5, 9] });
    }

    #[test]
    fn slices_empty_and_too_long_differences() {
        let slice = tl::types::updates::DifferenceSlice {
            new_messages: Vec::new(),
            new_encrypted_messages: Vec::new(),
            other_updates: Vec::new(),
            chats: Vec::new(),
            users: Vec::new(),
            intermediate_state: state(5),
        };
        let Difference::Updates { state, more, .. } = difference(slice.into(), from()) else { panic!() };
        assert_eq!((state.pts, more), (5, true));
        let empty = tl::types::updates::DifferenceEmpty { date: 8, seq: 9 };
        let expected = UpdatesState { date: 8, seq: 9, ..from() };
        assert_eq!(difference(empty.into(), from()), Difference::Updates { updates: Vec::new(), state: expected, more: false });
        assert_eq!(difference(tl::types::updates::DifferenceTooLong { pts: 50 }.into(), from()), Difference::TooLong);
    }

    fn pushed_updates(updates: Vec<tl::enums::Update>) -> Option<Pushed> {
        let updates = tl::types::Updates { updates, users: vec![user(THEM)], chats: Vec::new(), date: 1, seq: 0 };
        pushed(UpdatesLike::Updates(updates.into()))
    }

    #[test]
    fn pushed_updates_that_follow_each_other_are_one_step_of_pts() {
        let new = tl::types::UpdateNewMessage { message: message(5, "hi").into(), pts: 11, pts_count: 1 };
        let read = tl::types::UpdateReadHistoryOutbox { peer: tl::types::PeerUser { user_id: THEM }.into(), max_id: 4, pts: 12, pts_count: 1 };
        let typing = tl::types::UpdateUserStatus { user_id: THEM, status: tl::enums::UserStatus::Empty };
        let Some(Pushed::Updates { updates, pts, pts_count }) = pushed_updates(vec![read.into(), typing.into(), new.into()]) else { panic!() };
        assert_eq!((pts, pts_count), (12, 2));
        let [Update::Message(m), read] = updates.as_slice() else { panic!("{updates:?}") };
        assert_eq!((m.id, m.from.peer.access_hash), (5, 7), "the sender came with the update");
        assert_eq!(read, &Update::ReadOutbox { user_id: THEM, max_id: 4 });
    }

    #[test]
    fn pushed_updates_with_a_hole_between_them_are_a_gap() {
        let a = tl::types::UpdateDeleteMessages { messages: vec![1], pts: 11, pts_count: 1 };
        let b = tl::types::UpdateDeleteMessages { messages: vec![2], pts: 13, pts_count: 1 };
        assert_eq!(pushed_updates(vec![a.into(), b.into()]), Some(Pushed::Gap));
        let status = tl::types::UpdateUserStatus { user_id: THEM, status: tl::enums::UserStatus::Empty };
        assert_eq!(pushed_updates(vec![status.into()]), None, "no pts: nothing to follow");
        assert_eq!(pushed(UpdatesLike::Updates(tl::enums::Updates::TooLong)), Some(Pushed::Gap));
        assert_eq!(pushed(UpdatesLike::ConnectionClosed), Some(Pushed::Closed));
    }

    #[test]
    fn a_short_message_moves_pts_but_only_a_difference_can_say_who_wrote() {
        let short = |out| tl::types::UpdateShortMessage {
            out,
            mentioned: false,
            media_unread: false,
            silent: false,
            id: 5,
            user_id: THEM,
            message: "hi".into(),
            pts: 20,
            pts_count: 1,
            date: 1,
            fwd_from: None,
            via_bot_id: None,
            reply_to: None,
            entities: None,
            ttl_period: None,
        };
        assert_eq!(pushed(UpdatesLike::Updates(short(false).into())), Some(Pushed::Gap), "no access_hash for the sender");
        assert_eq!(pushed(UpdatesLike::Updates(short(true).into())), Some(Pushed::Updates { updates: Vec::new(), pts: 20, pts_count: 1 }));
        let affected = tl::types::messages::AffectedMessages { pts: 21, pts_count: 2 };
        assert_eq!(pushed(UpdatesLike::AffectedMessages(affected)), Some(Pushed::Updates { updates: Vec::new(), pts: 21, pts_count: 2 }));
    }

    #[test]
    fn history_is_what_they_wrote_oldest_first() {
        let mut ours = message(7, "ours");
        ours.out = true;
        let answer = || tl::types::messages::Messages {
            messages: vec![ours.clone().into(), message(6, "second").into(), message(5, "first").into()],
            topics: Vec::new(),
            chats: Vec::new(),
            users: vec![user(THEM)],
        };
        let page = history(answer().into(), THEM, 0);
        assert_eq!(page.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(page.next_after, None, "a page that is not full is the last");
        assert_eq!(history(answer().into(), THEM, 5).messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![6], "only what is newer");
        assert_eq!(history(answer().into(), THEM + 1, 0).messages, Vec::new(), "another chat's history");
    }
}
