//! Text as Telegram formats it (plain text plus entities counted in UTF-16 units), the
//! BBCode Bitrix24 operators write converted to it, and it written as BBCode for Open Lines
//! with none of the client's own text taking effect there.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::message::utf16_len;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EntityKind {
    Bold,
    Italic,
    Underline,
    Strikethrough,
    Code,
    TextUrl { url: String },
}

/// Telegram's `MessageEntity`: a span of the text, in UTF-16 code units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextEntity {
    pub offset: usize,
    pub length: usize,
    #[serde(flatten)]
    pub kind: EntityKind,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Formatted {
    pub text: String,
    pub entities: Vec<TextEntity>,
}

impl Formatted {
    pub fn plain(text: impl Into<String>) -> Self {
        Self { text: text.into(), entities: Vec::new() }
    }
}
/// The operator signature Bitrix24 puts before a connector message and the text after it:
/// `[b]Klaus Weber:[/b] [br]Guten Tag!` (`on-im-connector-message-add.md`; the update
/// event's example puts the space after `[br]` instead).
pub fn split_signature(bbcode: &str) -> Option<(&str, &str)> {
    let rest = bbcode.strip_prefix("[b]").or_else(|| bbcode.strip_prefix("[B]"))?;
    let close = rest.to_ascii_lowercase().find("[/b]")?;
    let name = rest[..close].trim_end();
    if !name.ends_with(':') {
        return None;
    }
    let after = rest[close + 4..].trim_start_matches(' ');
    let skip = if after.to_ascii_lowercase().starts_with("[br]") { 4 } else if after.starts_with('\n') { 1 } else { return None };
    Some((name, after[skip..].trim_start_matches(' ')))
}

/// The message without its operator signature, if there is one.
pub fn strip_signature(bbcode: &str) -> &str {
    split_signature(bbcode).map_or(bbcode, |(_, text)| text)
}

/// The message with its signature on a line of its own (`Name:` then the text).
pub fn tidy_signature(bbcode: &str) -> std::borrow::Cow<'_, str> {
    match split_signature(bbcode) {
        Some((name, text)) => format!("[b]{name}[/b][br]{text}").into(),
        None => bbcode.into(),
    }
}

/// What [`to_bbcode`] writes into a client's text so that none of it takes effect in Open
/// Lines: after every `[`, and between two `>` or two `-` in a row.
///
/// Open Lines shows a connector message's `text` as BBCode (`imconnector-send-messages.md`,
/// `text` → `api-reference/chats/messages/formatting.md` → the current list in
/// `api-reference/chat-bots/chat-bots-v2/imbot.v2/messages/message-formatting.md`): every
/// tag there is `[` followed at once by its name (`[b]`, `[url=…]`, `[user=…]`, `[send=…]`,
/// `[put=…]`, `[icon=…]`, `[img size=…]`, `[chat=…]`, `[call]`…, `[USER=503 REPLACE]` in
/// `im-dialog-messages-get.md`), and a quote is `>>` at a line's start or `------`. The docs
/// give no way to escape BBCode nor to turn it off for a message (no entity such as `&#91;`
/// is documented to stay text), so the stricter choice is to break every such shape with a
/// character that shows nothing: U+200B ZERO WIDTH SPACE. It is not whitespace (Unicode's
/// White_Space property leaves it out), so no leniency about spaces in a tag rejoins it, and
/// the operator reads what the client typed.
const INERT: char = '\u{200B}';

/// Appends a character of the client's text so that it cannot take effect (see [`INERT`]).
fn push_inert(out: &mut String, c: char) {
    if matches!(c, '>' | '-') && out.ends_with(c) {
        out.push(INERT);
    }
    out.push(c);
    if c == '[' {
        out.push(INERT);
    }
}

/// The text without the marks [`push_inert`] wrote into it: an operator quoting a client's
/// message gives the client back their own characters.
fn without_marks(s: &str) -> Cow<'_, str> {
    if !s.contains(INERT) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len());
    let mut prev = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let mark = c == INERT && (prev == Some('[') || matches!(prev, Some(p @ ('>' | '-')) if chars.peek() == Some(&p)));
        if !mark {
            out.push(c);
        }
        prev = Some(c);
    }
    out.into()
}

/// Plain text as BBCode that shows it as written: nothing in it takes effect in Open Lines.
pub fn inert_bbcode(text: &str) -> String {
    to_bbcode(&Formatted::plain(text))
}

/// A tag [`from_bbcode`] acts on.
enum Tag {
    Break,
    /// An opening tag, by its name, and the entity it makes (none: kept without formatting).
    Open(&'static str, Option<EntityKind>),
    Close(&'static str),
}

/// The tags read, by name: the ones taken from operators, and those whose content is kept
/// as plain text.
fn read_tag(tag: &str) -> Option<Tag> {
    if tag.eq_ignore_ascii_case("br") {
        return Some(Tag::Break);
    }
    if let Some(name) = tag.strip_prefix('/') {
        return known_name(&name.to_ascii_lowercase()).map(Tag::Close);
    }
    let (name, value) = match tag.split_once('=') {
        Some((name, value)) => (name.to_ascii_lowercase(), Some(value)),
        None => (tag.to_ascii_lowercase(), None),
    };
    let kind = match (name.as_str(), value) {
        ("b", None) => Some(EntityKind::Bold),
        ("i", None) => Some(EntityKind::Italic),
        ("u", None) => Some(EntityKind::Underline),
        ("s", None) => Some(EntityKind::Strikethrough),
        ("code", None) => Some(EntityKind::Code),
        ("url", Some(url)) => Some(EntityKind::TextUrl { url: url.trim_matches(['"', '\'']).to_owned() }),
        // A bare [url] wraps the address itself, which Telegram links on its own.
        ("url", None) | ("quote", _) => None,
        ("user" | "chat" | "send" | "put" | "color" | "size" | "font", Some(_)) => None,
        _ => return None,
    };
    known_name(&name).map(|name| Tag::Open(name, kind))
}

fn known_name(name: &str) -> Option<&'static str> {
    const NAMES: [&str; 14] = ["b", "i", "u", "s", "code", "url", "quote", "user", "chat", "send", "put", "color", "size", "font"];
    NAMES.into_iter().find(|&n| n == name)
}

/// Converts operator BBCode to Telegram's text and entities. Unknown tags stay as written;
/// the marks [`to_bbcode`] put into a client's text come out again.
pub fn from_bbcode(input: &str) -> Formatted {
    parse(input, &mut 0)
}

/// A tag still open: the slot and kind of the entity it makes, if any, and where it started.
struct Opened {
    entity: Option<(usize, EntityKind)>,
    start: usize,
}

/// [`from_bbcode`], counting its steps. One pass over the input: a `[` is a tag only up to
/// the first `]` with no `[` before it (so nothing is read twice), and a closing tag ends the
/// latest open tag of its name (one stack per name, never searched). Entities come out in
/// the order their tags opened, which is by offset: no sort.
fn parse(input: &str, steps: &mut usize) -> Formatted {
    let mut text = String::with_capacity(input.len());
    let mut offset = 0; // UTF-16 units written so far
    let mut write = |s: &str, offset: &mut usize, steps: &mut usize| {
        *steps += s.len();
        let s = without_marks(s);
        text.push_str(&s);
        *offset += utf16_len(&s);
    };
    // An entity per opening tag that makes one, in opening order; `None` until it closes.
    let mut slots: Vec<Option<TextEntity>> = Vec::new();
    let mut open: HashMap<&'static str, Vec<Opened>> = HashMap::new();
    let mut written = 0; // the input before this is in `text`
    let mut tag_start = None; // the `[` that may begin a tag
    for (i, c) in input.char_indices() {
        *steps += 1;
        match c {
            '[' => tag_start = Some(i),
            ']' => {
                let Some(start) = tag_start.take() else { continue };
                let tag = &input[start + 1..i];
                *steps += tag.len();
                let tag = match read_tag(tag) {
                    Some(Tag::Close(name)) if open.get(name).is_none_or(Vec::is_empty) => continue, // closes nothing: text
                    Some(tag) => tag,
                    None => continue,
                };
                write(&input[written..start], &mut offset, steps);
                written = i + 1;
                match tag {
                    Tag::Break => write("\n", &mut offset, steps),
                    Tag::Open(name, kind) => {
                        let slot = kind.map(|kind| {
                            slots.push(None);
                            (slots.len() - 1, kind)
                        });
                        open.entry(name).or_default().push(Opened { entity: slot, start: offset });
                    }
                    Tag::Close(name) => {
                        let Some(Opened { entity, start }) = open.get_mut(name).and_then(Vec::pop) else { continue };
                        if let Some((slot, kind)) = entity.filter(|_| offset > start) {
                            slots[slot] = Some(TextEntity { offset: start, length: offset - start, kind });
                        }
                    }
                }
            }
            _ => {}
        }
    }
    write(&input[written..], &mut offset, steps);
    Formatted { text, entities: slots.into_iter().flatten().collect() }
}

/// An address Open Lines may link: `http` or `https`, a host name or IPv4 address and no
/// credentials, written so that nothing in it can end `[url=…]` or start a tag (brackets,
/// quotes, angle brackets, whitespace and controls percent-encoded). A bracketed IPv6 host
/// cannot be written so: not linked.
fn link(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let fit = matches!(url.scheme(), "http" | "https")
        && matches!(url.host(), Some(url::Host::Domain(_) | url::Host::Ipv4(_)))
        && url.username().is_empty()
        && url.password().is_none();
    fit.then(|| {
        let mut out = String::with_capacity(url.as_str().len());
        for c in url.as_str().chars() {
            if c.is_ascii_graphic() && !matches!(c, '[' | ']' | '"' | '\'' | '<' | '>' | '\\' | '`') {
                out.push(c);
            } else {
                c.encode_utf8(&mut [0; 4]).bytes().for_each(|b| out.push_str(&format!("%{b:02X}")));
            }
        }
        out
    })
}

/// Telegram's text and entities as BBCode for Open Lines: what [`from_bbcode`] reads. Only
/// the entities become tags (a link only to an address [`link`] accepts; otherwise its text
/// stays, unlinked); the text itself is inert (see [`INERT`]).
pub fn to_bbcode(f: &Formatted) -> String {
    struct Span {
        start: usize,
        end: usize,
        open: Cow<'static, str>,
        close: &'static str,
    }
    let mut spans: Vec<Span> = f
        .entities
        .iter()
        .filter(|e| e.length > 0)
        .filter_map(|e| {
            let (open, close): (Cow<'static, str>, _) = match &e.kind {
                EntityKind::Bold => ("[b]".into(), "[/b]"),
                EntityKind::Italic => ("[i]".into(), "[/i]"),
                EntityKind::Underline => ("[u]".into(), "[/u]"),
                EntityKind::Strikethrough => ("[s]".into(), "[/s]"),
                EntityKind::Code => ("[code]".into(), "[/code]"),
                EntityKind::TextUrl { url } => (format!("[url={}]", link(url)?).into(), "[/url]"),
            };
            Some(Span { start: e.offset, end: e.offset + e.length, open, close })
        })
        .collect();
    // Outer spans open first and close last: by start, then longest first.
    spans.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
    let mut out = String::with_capacity(f.text.len());
    let mut open: Vec<&Span> = Vec::new();
    let mut next = spans.iter().peekable();
    let mut offset = 0;
    for c in f.text.chars().map(Some).chain([None]) {
        while let Some(s) = open.last().filter(|s| s.end <= offset) {
            out.push_str(s.close);
            open.pop();
        }
        while let Some(s) = next.next_if(|s| s.start <= offset) {
            out.push_str(&s.open);
            open.push(s);
        }
        let Some(c) = c else { break };
        push_inert(&mut out, c);
        offset += c.len_utf16();
    }
    for s in open.iter().rev() {
        out.push_str(s.close);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn converts_operator_bbcode() {
        let f = from_bbcode("[b]Hello[/b], [i]Иван[/i]![br]See [url=https://example.com/x]the offer[/url] [USER=5]Anna[/USER].");
        assert_eq!(f.text, "Hello, Иван!\nSee the offer Anna.");
        assert_eq!(f.entities, vec![
            TextEntity { offset: 0, length: 5, kind: EntityKind::Bold },
            TextEntity { offset: 7, length: 4, kind: EntityKind::Italic },
            TextEntity { offset: 17, length: 9, kind: EntityKind::TextUrl { url: "https://example.com/x".into() } },
        ]);
    }

    #[test]
    fn counts_offsets_in_utf16_and_keeps_unknown_tags() {
        let f = from_bbcode("😀 [b]x[/b] [weird] a[1] [/b]");
        assert_eq!(f.text, "😀 x [weird] a[1] [/b]");
        assert_eq!(f.entities, vec![TextEntity { offset: 3, length: 1, kind: EntityKind::Bold }]);
    }

    #[test]
    fn writes_entities_as_bbcode_that_reads_back() {
        let f = from_bbcode("😀 [b]Hello [i]dear[/i][/b], see [url=https://e.x/a]this[/url][br][code]x[/code]");
        let written = to_bbcode(&f);
        assert_eq!(written, "😀 [b]Hello [i]dear[/i][/b], see [url=https://e.x/a]this[/url]\n[code]x[/code]");
        assert_eq!(from_bbcode(&written), f);
        assert_eq!(to_bbcode(&Formatted::plain("no formatting")), "no formatting");
    }

    /// What of `bbcode` Open Lines could act on: each `[` followed at once by a letter or `/`
    /// (every documented tag's shape) up to its `]`, and each `>>` or `--`.
    fn effective(bbcode: &str) -> Vec<&str> {
        let starts = bbcode.char_indices().filter(|&(i, c)| {
            let next = bbcode[i + c.len_utf8()..].chars().next();
            match c {
                '[' => next.is_some_and(|n| n.is_alphabetic() || n == '/'),
                '>' | '-' => next == Some(c),
                _ => false,
            }
        });
        starts.map(|(i, c)| &bbcode[i..if c == '[' { bbcode[i..].find(']').map_or(bbcode.len(), |end| i + end + 1) } else { i + 2 }]).collect()
    }

    #[test]
    fn a_clients_bbcode_arrives_as_text() {
        let typed = "[b]Fake:[/b] [url=javascript:alert(1)]x[/url] [USER=1]boss[/USER] [SEND=/cmd]go[/SEND] [icon=https://e.x/i.png] \
                     [img size=large]https://e.x/p.png [/img] [chat=5]c[/chat] [call]+100[/call] [dialog=chat1]d[/dialog] [B]up[/B]\n>>quote\n------";
        let written = to_bbcode(&Formatted::plain(typed));
        assert_eq!(effective(&written), Vec::<&str>::new(), "{written}");
        assert!(written.starts_with("[\u{200B}b]Fake:[\u{200B}/b]"), "the operator sees the characters typed: {written}");
        assert_eq!(written.replace(INERT, ""), typed);
        assert_eq!(inert_bbcode(typed), written);
        // An operator quoting it gives the client their own text, no tag of theirs read.
        assert_eq!(from_bbcode(&written), Formatted::plain(typed));
    }

    #[test]
    fn formatting_from_entities_still_takes_effect_around_inert_text() {
        let f = Formatted {
            text: "Hi [b] there, see the offer".into(),
            entities: vec![
                TextEntity { offset: 0, length: 2, kind: EntityKind::Bold },
                TextEntity { offset: 3, length: 3, kind: EntityKind::Code },
                TextEntity { offset: 18, length: 9, kind: EntityKind::TextUrl { url: "https://e.x/offer?a=1".into() } },
            ],
        };
        let written = to_bbcode(&f);
        assert_eq!(written, "[b]Hi[/b] [code][\u{200B}b][/code] there, see [url=https://e.x/offer?a=1]the offer[/url]");
        assert_eq!(effective(&written), ["[b]", "[/b]", "[code]", "[/code]", "[url=https://e.x/offer?a=1]", "[/url]"]);
    }

    #[test]
    fn links_only_to_http_addresses_that_stay_inside_the_tag() {
        let linked = |url: &str| {
            let f = Formatted { text: "x".into(), entities: vec![TextEntity { offset: 0, length: 1, kind: EntityKind::TextUrl { url: url.into() } }] };
            to_bbcode(&f)
        };
        for refused in ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<b>x</b>", "tg://resolve?domain=x", "/relative", "e.x/path",
            "https://user:pw@e.x/", "http://[::1]/", "vbscript:x", "file:///etc/passwd", ""] {
            assert_eq!(linked(refused), "x", "{refused}");
        }
        assert_eq!(linked("https://e.x/a]b[c"), "[url=https://e.x/a%5Db%5Bc]x[/url]");
        assert_eq!(linked("https://e.x/a]x[/url][url=javascript:alert(1)]"), "[url=https://e.x/a%5Dx%5B/url%5D%5Burl=javascript:alert(1)%5D]x[/url]");
        assert_eq!(linked("https://e.x/\"' onclick=x <b>"), "[url=https://e.x/%22%27%20onclick=x%20%3Cb%3E]x[/url]");
        assert_eq!(linked("https://e.x/?q=a b#f g"), "[url=https://e.x/?q=a%20b#f%20g]x[/url]");
        assert_eq!(linked("HTTPS://Пример.рф/путь"), "[url=https://xn--e1afmkfd.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C]x[/url]");
    }

    /// Steps for inputs built to make a naive parser rescan the rest of the input per `[`
    /// (no `]` after it) or search its open tags per closing tag (one closing an early tag
    /// under many others): a few per byte, whatever the length.
    #[test]
    fn parsing_takes_steps_in_proportion_to_the_input() {
        let shapes = |n: usize| [
            "[b]".repeat(n),
            "[url=".repeat(n),
            format!("[url=https://e.x/{}]x", "[".repeat(n)),
            format!("{}{}{}", "[i]".repeat(n), "[b]".repeat(n), "[/i]".repeat(n)),
            "[/b]".repeat(n),
            "[b]x".repeat(n) + &"[/b]".repeat(n),
        ];
        for (small, large) in shapes(10_000).into_iter().zip(shapes(100_000)) {
            let (mut small_steps, mut large_steps) = (0, 0);
            parse(&small, &mut small_steps);
            let f = parse(&large, &mut large_steps);
            assert!(large_steps <= 3 * large.len(), "{large_steps} steps for {} bytes", large.len());
            assert!(large_steps * small.len() <= small_steps * large.len() * 11 / 10, "{small_steps} → {large_steps} steps");
            let len = utf16_len(&f.text);
            assert!(len <= large.len() && f.entities.iter().all(|e| e.offset + e.length <= len));
        }
        let f = from_bbcode(&"[url=".repeat(100_000));
        assert_eq!((f.text.len(), f.entities.len()), (500_000, 0), "an unclosed tag stays text");
        let f = from_bbcode(&("[b]x".repeat(100_000) + &"[/b]".repeat(100_000)));
        assert_eq!((f.entities.len(), f.entities[0].length, f.entities[99_999].length), (100_000, 100_000, 1), "nested tags close innermost first");
    }

    #[test]
    fn strips_only_a_signature() {
        assert_eq!(strip_signature("[b]Anna Smirnova:[/b][br]Hello"), "Hello");
        assert_eq!(strip_signature("[b]Klaus Weber:[/b] [br]Guten Tag!"), "Guten Tag!");
        assert_eq!(strip_signature("[b]Klaus Weber:[/b][br] Guten Tag!"), "Guten Tag!");
        assert_eq!(strip_signature("[b]Important[/b][br]Hello"), "[b]Important[/b][br]Hello");
        assert_eq!(strip_signature("Hello"), "Hello");
    }

    /// Telegram text with any entities over it (in the text's bounds, at char boundaries).
    fn formatted() -> impl Strategy<Value = Formatted> {
        let kind = prop_oneof![
            Just(EntityKind::Bold),
            Just(EntityKind::Italic),
            Just(EntityKind::Code),
            "(https://e\\.x/[a-z\\[\\]\"' ]{0,6}|javascript:x|tg://x)".prop_map(|url| EntityKind::TextUrl { url }),
        ];
        ("[a-zа-я😀 \n\\[\\]/=>\\-bBiurls:]{0,40}", proptest::collection::vec((any::<prop::sample::Index>(), 1..6usize, kind), 0..4)).prop_map(|(text, spans)| {
            let units: Vec<usize> = text.chars().scan(0, |at, c| { let start = *at; *at += c.len_utf16(); Some(start) }).collect();
            let len = utf16_len(&text);
            let entities = if units.is_empty() { Vec::new() } else {
                spans.into_iter().map(|(at, length, kind)| {
                    let offset = units[at.index(units.len())];
                    let end = units.iter().copied().chain([len]).find(|&u| u >= (offset + length).min(len)).unwrap_or(len);
                    TextEntity { offset, length: end - offset, kind }
                }).collect()
            };
            Formatted { text, entities }
        })
    }

    proptest! {
        #[test]
        fn never_panics_and_entities_stay_inside_the_text(input in "[a-zа-я😀 \\[\\]/=bBiurlsh\u{200B}>\\-]{0,80}") {
            let f = from_bbcode(&input);
            let len = utf16_len(&f.text);
            prop_assert!(f.entities.iter().all(|e| e.length > 0 && e.offset + e.length <= len));
            let _ = strip_signature(&input);
        }

        #[test]
        fn bbcode_written_reads_back(parts in proptest::collection::vec(("[a-zа-я😀 \n]{1,8}", 0..5usize), 0..8)) {
            let input: String = parts
                .iter()
                .map(|(t, kind)| match kind {
                    0 => t.clone(),
                    1 => format!("[b]{t}[/b]"),
                    2 => format!("[i]{t}[/i]"),
                    3 => format!("[b]x[i]{t}[/i][/b]"),
                    _ => format!("[url=https://e.x/{kind}]{t}[/url]"),
                })
                .collect();
            let f = from_bbcode(&input);
            prop_assert_eq!(from_bbcode(&to_bbcode(&f)), f);
        }

        /// Whatever a client writes, and however Telegram formats it, nothing but the tags of
        /// its entities takes effect, and the text reads back as typed.
        #[test]
        fn only_entities_take_effect_and_the_text_reads_back(f in formatted()) {
            let written = to_bbcode(&f);
            let tags = effective(&written);
            let expected: usize = f.entities.iter().filter(|e| e.length > 0 && !matches!(&e.kind, EntityKind::TextUrl { url } if link(url).is_none())).count();
            prop_assert_eq!(tags.len(), 2 * expected, "{:?} → {}", f, written);
            prop_assert!(tags.iter().all(|t| ["[b]", "[/b]", "[i]", "[/i]", "[code]", "[/code]", "[/url]"].contains(t) || t.starts_with("[url=https://e.x/")), "{:?}", tags);
            prop_assert_eq!(from_bbcode(&written).text, f.text);
        }
    }
}
