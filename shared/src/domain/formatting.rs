//! Text as Telegram formats it (plain text plus entities counted in UTF-16 units), and the
//! BBCode Bitrix24 operators write, converted to it.

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

/// What an opening tag becomes: an entity, or text kept without formatting.
fn open_tag(tag: &str) -> Option<(&'static str, Option<EntityKind>)> {
    let lower = tag.to_ascii_lowercase();
    let (name, value) = lower.split_once('=').map(|(n, _)| (n, Some(&tag[n.len() + 1..]))).unwrap_or((lower.as_str(), None));
    Some(match (name, value) {
        ("b", None) => ("b", Some(EntityKind::Bold)),
        ("i", None) => ("i", Some(EntityKind::Italic)),
        ("u", None) => ("u", Some(EntityKind::Underline)),
        ("s", None) => ("s", Some(EntityKind::Strikethrough)),
        ("code", None) => ("code", Some(EntityKind::Code)),
        ("url", Some(url)) => ("url", Some(EntityKind::TextUrl { url: url.trim_matches(['"', '\'']).to_owned() })),
        // A bare [url] wraps the address itself, which Telegram links on its own.
        ("url", None) => ("url", None),
        ("quote", _) => ("quote", None),
        ("user", Some(_)) => ("user", None),
        ("chat", Some(_)) => ("chat", None),
        ("send", Some(_)) => ("send", None),
        ("put", Some(_)) => ("put", None),
        ("color", Some(_)) => ("color", None),
        ("size", Some(_)) => ("size", None),
        ("font", Some(_)) => ("font", None),
        _ => return None,
    })
}

/// Converts operator BBCode to Telegram's text and entities. Unknown tags stay as written.
pub fn from_bbcode(input: &str) -> Formatted {
    let mut out = Formatted::default();
    let mut offset = 0; // UTF-16 units written so far
    let mut open: Vec<(&'static str, Option<EntityKind>, usize)> = Vec::new();
    let push = |out: &mut Formatted, s: &str, offset: &mut usize| {
        out.text.push_str(s);
        *offset += utf16_len(s);
    };
    let mut rest = input;
    while let Some(i) = rest.find('[') {
        push(&mut out, &rest[..i], &mut offset);
        let candidate = &rest[i..];
        let tag = candidate.find(']').map(|end| (&candidate[1..end], end));
        let handled = match tag {
            Some((tag, _)) if tag.eq_ignore_ascii_case("br") => {
                push(&mut out, "\n", &mut offset);
                true
            }
            Some((tag, _)) if tag.starts_with('/') => match open.iter().rposition(|(name, ..)| name.eq_ignore_ascii_case(&tag[1..])) {
                Some(at) => {
                    let (_, kind, start) = open.remove(at);
                    if let Some(kind) = kind.filter(|_| offset > start) {
                        out.entities.push(TextEntity { offset: start, length: offset - start, kind });
                    }
                    true
                }
                None => false,
            },
            Some((tag, _)) => match open_tag(tag) {
                Some((name, kind)) => {
                    open.push((name, kind, offset));
                    true
                }
                None => false,
            },
            None => false,
        };
        rest = match (handled, tag) {
            (true, Some((_, end))) => &candidate[end + 1..],
            _ => {
                push(&mut out, "[", &mut offset);
                &candidate[1..]
            }
        };
    }
    push(&mut out, rest, &mut offset);
    out.entities.sort_by_key(|e| e.offset);
    out
}

/// Telegram's text and entities as the BBCode Open Lines shows: what [`from_bbcode`] reads.
pub fn to_bbcode(f: &Formatted) -> String {
    let tag = |kind: &EntityKind, open: bool| -> String {
        let name = match kind {
            EntityKind::Bold => "b",
            EntityKind::Italic => "i",
            EntityKind::Underline => "u",
            EntityKind::Strikethrough => "s",
            EntityKind::Code => "code",
            EntityKind::TextUrl { url } if open => return format!("[url={url}]"),
            EntityKind::TextUrl { .. } => "url",
        };
        if open { format!("[{name}]") } else { format!("[/{name}]") }
    };
    // Outer entities open first and close last: by start, then longest first.
    let mut entities: Vec<&TextEntity> = f.entities.iter().filter(|e| e.length > 0).collect();
    entities.sort_by_key(|e| (e.offset, std::cmp::Reverse(e.length)));
    let mut out = String::with_capacity(f.text.len());
    let mut open: Vec<&TextEntity> = Vec::new();
    let mut next = entities.into_iter().peekable();
    let mut offset = 0;
    for c in f.text.chars().map(Some).chain([None]) {
        while let Some(e) = open.last().filter(|e| e.offset + e.length <= offset) {
            out.push_str(&tag(&e.kind, false));
            open.pop();
        }
        while let Some(e) = next.next_if(|e| e.offset <= offset) {
            out.push_str(&tag(&e.kind, true));
            open.push(e);
        }
        let Some(c) = c else { break };
        out.push(c);
        offset += c.len_utf16();
    }
    for e in open.iter().rev() {
        out.push_str(&tag(&e.kind, false));
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

    #[test]
    fn strips_only_a_signature() {
        assert_eq!(strip_signature("[b]Anna Smirnova:[/b][br]Hello"), "Hello");
        assert_eq!(strip_signature("[b]Klaus Weber:[/b] [br]Guten Tag!"), "Guten Tag!");
        assert_eq!(strip_signature("[b]Klaus Weber:[/b][br] Guten Tag!"), "Guten Tag!");
        assert_eq!(strip_signature("[b]Important[/b][br]Hello"), "[b]Important[/b][br]Hello");
        assert_eq!(strip_signature("Hello"), "Hello");
    }

    proptest! {
        #[test]
        fn never_panics_and_entities_stay_inside_the_text(input in "[a-zа-я😀 \\[\\]/=bBiurlsh]{0,80}") {
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
    }
}
