//! How the sandbox portal's Open Lines show a message's BBCode: which of it takes effect and
//! which arrives as text, so that a test sees what an operator would. Only what the docs say:
//! the tags of `api-reference/chat-bots/chat-bots-v2/imbot.v2/messages/message-formatting.md`
//! (the current list, to which `api-reference/chats/messages/formatting.md` and the `text` of
//! `imconnector-send-messages.md` point), in either case (`formatting.md` writes `[B]`,
//! `[URL=…]`, `[SEND=…]`; the list `[b]`, `[url=…]`, `[send=…]`), with attributes after the
//! name or value (`[img size=…]`, `[icon=URL size=… title=…]`, `[timestamp=… format=…]`,
//! `[USER=503 REPLACE]` in `im-dialog-messages-get.md`), and the quotes (`>>` at a line's
//! start, `------`). Where the docs are silent the stricter reading: a tag takes effect
//! whether or not it is closed and whatever its value (no scheme check on `[url=…]`, none on
//! a `[send=…]` command), and a tag's value runs to the first `]`.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// A documented tag: `[`, at once its name, then `]`, or `=`/a space and anything up to `]`.
static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\[(/?)(b|i|u|s|size|color|url|user|chat|context|code|img|icon|put|send|call|timestamp|disk|br)(?:[= ]([^\]]*))?\]")
        .expect("the tag pattern compiles")
});
/// `>>` opens a quoted line; `------` a quoted message (`message-formatting.md`, Quotes).
static QUOTE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?m)^>>|-{6}").expect("the quote pattern compiles"));

/// A message as the chat shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Shown {
    /// What the reader sees: the text without the tags that took effect, `[br]` a new line.
    pub text: String,
    /// Every tag and quote mark that took effect, as written.
    pub effects: Vec<String>,
    /// Where the message's links lead: `[url=…]`'s value, or a bare `[url]`'s text.
    pub links: Vec<String>,
    /// The name a leading bold `Name:` shows as the message's author: the operator's
    /// signature Open Lines puts before their text (`on-im-connector-message-add.md`,
    /// `[b]Klaus Weber:[/b] [br]Guten Tag!`).
    pub signature: Option<String>,
}

pub fn show(bbcode: &str) -> Shown {
    let mut shown = Shown::default();
    let mut written = 0;
    let mut bare_link: Option<usize> = None; // where a bare `[url]`'s address starts in `text`
    let mut bold: Option<(usize, usize)> = None; // a `[b]` at the very start, and where its text starts
    for tag in TAG.captures_iter(bbcode) {
        let whole = tag.get(0).expect("a match has its whole");
        shown.text.push_str(&bbcode[written..whole.start()]);
        written = whole.end();
        let closing = !tag[1].is_empty();
        let name = tag[2].to_ascii_lowercase();
        match (name.as_str(), closing, tag.get(3)) {
            ("br", ..) => shown.text.push('\n'),
            ("url", false, Some(value)) => shown.links.push(value.as_str().to_owned()),
            ("url", false, None) => bare_link = Some(shown.text.len()),
            ("url", true, _) => shown.links.extend(bare_link.take().map(|from| shown.text[from..].to_owned())),
            ("b", false, _) if whole.start() == 0 => bold = Some((shown.effects.len(), shown.text.len())),
            ("b", true, _) => {
                let leading = bold.take().filter(|&(at, _)| at == 0 && shown.effects.len() == 1);
                shown.signature = leading.and_then(|(_, from)| Some(shown.text[from..].strip_suffix(':')?.trim().to_owned())).filter(|n| !n.is_empty());
            }
            _ => {}
        }
        shown.effects.push(whole.as_str().to_owned());
    }
    shown.text.push_str(&bbcode[written..]);
    shown.links.extend(bare_link.map(|from| shown.text[from..].to_owned()));
    shown.effects.extend(QUOTE.find_iter(&shown.text).map(|m| m.as_str().to_owned()));
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::formatting::{EntityKind, Formatted, TextEntity, to_bbcode};

    #[test]
    fn documented_tags_take_effect_in_either_case_closed_or_not() {
        let shown = show("[b]Klaus Weber:[/b] [br]See [URL=javascript:alert(1)]this[/URL] [url]https://e.x[/url] [USER=1]boss[/USER] [SEND=/cmd]go[/SEND] [img size=large]https://e.x/p.png [/img] [put=/x]");
        assert_eq!(shown.signature.as_deref(), Some("Klaus Weber"));
        assert_eq!(shown.links, ["javascript:alert(1)", "https://e.x"]);
        assert_eq!(shown.text, "Klaus Weber: \nSee this https://e.x boss go https://e.x/p.png  ");
        assert_eq!(shown.effects.len(), 14, "{:?}", shown.effects);
        assert_eq!(show(">>quoted\n------\nx------").effects, [">>", "------", "------"]);
    }

    #[test]
    fn a_bold_word_is_a_signature_only_at_the_start_with_its_colon() {
        assert_eq!(show("[b]Important[/b] [br]Hello").signature, None);
        assert_eq!(show("Hi [b]Anna:[/b] [br]Hello").signature, None);
        assert_eq!(show("[b][i]x[/i]Anna:[/b]").signature, None);
        assert_eq!(show("[B]Anna Smirnova:[/B][br]Hello").signature.as_deref(), Some("Anna Smirnova"));
    }

    #[test]
    fn what_our_app_writes_for_a_client_shows_as_typed_with_only_its_entities_in_effect() {
        let typed = "[b]Fake:[/b] [url=javascript:alert(1)]x[/url] [USER=1]boss[/USER] [SEND=/cmd]go[/SEND]\n>>q\n------ [icon=https://e.x/i.png]";
        let shown = show(&to_bbcode(&Formatted::plain(typed)));
        assert_eq!((shown.signature, shown.links, shown.effects), (None, Vec::new(), Vec::new()));
        assert_eq!(shown.text.replace('\u{200B}', ""), typed, "U+200B shows nothing");

        let offered = Formatted {
            text: "[b]See the offer".into(),
            entities: vec![
                TextEntity { offset: 0, length: 3, kind: EntityKind::Bold },
                TextEntity { offset: 7, length: 9, kind: EntityKind::TextUrl { url: "https://e.x/o]".into() } },
            ],
        };
        let shown = show(&to_bbcode(&offered));
        assert_eq!((shown.effects.len(), shown.links), (4, vec!["https://e.x/o%5D".to_owned()]));
        assert_eq!(shown.text.replace('\u{200B}', ""), "[b]See the offer");
    }
}
