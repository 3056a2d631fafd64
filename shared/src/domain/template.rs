//! Message templates: texts with placeholders `{ENTITY.FIELD}` named as Bitrix24's REST API
//! names fields (`{DEAL.TITLE}`, `{CONTACT.NAME}`, `{ASSIGNED_BY.LAST_NAME}`), filled from
//! the records a card shows. A placeholder nothing fills stays in the text as written, so the
//! manager sees it and edits it, and the send refuses a text that still has one.

use std::collections::HashMap;

use serde_json::Value;

/// The records a template is filled from, by the placeholder's entity (`DEAL`, `CONTACT`,
/// `ASSIGNED_BY`…): each a record as `crm.<type>.get` or `user.get` returns it.
pub type Sources = HashMap<String, Value>;

/// A text after filling: what is left unfilled, each once, in the order first written.
#[derive(Debug, PartialEq, Eq)]
pub struct Filled {
    pub text: String,
    pub missing: Vec<String>,
}

/// Letters, digits and `_`, starting with a letter, all in upper case: how Bitrix24 names
/// entities and fields (`UF_CRM_…` included).
fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase()) && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `ENTITY.FIELD` when `inner` (what stands between the braces) is a placeholder.
fn placeholder(inner: &str) -> Option<(&str, &str)> {
    let (entity, field) = inner.split_once('.')?;
    (is_name(entity) && is_name(field)).then_some((entity, field))
}

/// Walks `text`, handing each placeholder's `(entity, field)` to `replace`: its value, or
/// `None` to keep it as written.
fn substitute(text: &str, mut replace: impl FnMut(&str, &str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        // The nearest `}` with no `{` before it: `{{DEAL.TITLE}` keeps its first brace.
        let close = after.find(['{', '}']).filter(|&i| after.as_bytes()[i] == b'}');
        match close.and_then(|i| placeholder(&after[..i]).map(|p| (i, p))) {
            Some((i, (entity, field))) => {
                match replace(entity, field) {
                    Some(value) => out.push_str(&value),
                    None => out.push_str(&rest[open..open + i + 2]),
                }
                rest = &after[i + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A field's value as text: strings and numbers; an empty value, a list (a multi-field such
/// as PHONE, which has no one value to pick) or an object fills nothing.
fn field_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Fills every placeholder `sources` has a value for. What is missing is what the filled
/// text still has: also a placeholder a value happened to complete (`{DEAL.{DEAL.CURRENCY_ID}}`).
pub fn fill(text: &str, sources: &Sources) -> Filled {
    let text = substitute(text, |entity, field| sources.get(entity).and_then(|record| record.get(field)).and_then(field_text));
    Filled { missing: unfilled(&text), text }
}

/// The placeholders `text` has, each once, in the order first written.
pub fn unfilled(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    substitute(text, |entity, field| {
        let name = format!("{entity}.{field}");
        if !found.contains(&name) {
            found.push(name);
        }
        None
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn deal_sources() -> Sources {
        Sources::from([
            ("DEAL".to_owned(), json!({ "TITLE": "Chairs for Acme Shop", "OPPORTUNITY": "96000.00", "CURRENCY_ID": "RUB", "PROBABILITY": 40, "COMMENTS": "" })),
            ("CONTACT".to_owned(), json!({ "NAME": "Dmitry", "LAST_NAME": "Sokolov", "PHONE": [{ "VALUE": "+79857776655", "VALUE_TYPE": "MOBILE" }] })),
            ("ASSIGNED_BY".to_owned(), json!({ "NAME": "Boris", "LAST_NAME": "Ivanov" })),
        ])
    }

    #[test]
    fn a_template_fills_from_a_deal_and_flags_a_missing_field() {
        let text = "Hello {CONTACT.NAME}! {DEAL.TITLE}: {DEAL.OPPORTUNITY} {DEAL.CURRENCY_ID} ({DEAL.PROBABILITY}%). \
                    {ASSIGNED_BY.NAME} {ASSIGNED_BY.LAST_NAME}, {COMPANY.TITLE}, {CONTACT.PHONE}, {DEAL.COMMENTS}, {COMPANY.TITLE}";
        let filled = fill(text, &deal_sources());
        assert_eq!(
            filled.text,
            "Hello Dmitry! Chairs for Acme Shop: 96000.00 RUB (40%). Boris Ivanov, {COMPANY.TITLE}, {CONTACT.PHONE}, {DEAL.COMMENTS}, {COMPANY.TITLE}"
        );
        // An entity the card has none of, a multi-field, an empty field; each named once.
        assert_eq!(filled.missing, ["COMPANY.TITLE", "CONTACT.PHONE", "DEAL.COMMENTS"]);
        assert_eq!(unfilled(&filled.text), filled.missing);
    }

    #[test]
    fn only_bitrix24_names_are_placeholders() {
        let text = "{name} {Deal.Title} {DEAL} {DEAL.} {.TITLE} {DEAL.TITLE.X} {{DEAL.TITLE} {DEAL.TITLE}} { DEAL.TITLE} {DEAL.TITLE";
        let filled = fill(text, &deal_sources());
        assert_eq!(filled.text, "{name} {Deal.Title} {DEAL} {DEAL.} {.TITLE} {DEAL.TITLE.X} {Chairs for Acme Shop Chairs for Acme Shop} { DEAL.TITLE} {DEAL.TITLE");
        assert!(filled.missing.is_empty());
        assert_eq!(unfilled("{DEAL.UF_CRM_1700000000}"), ["DEAL.UF_CRM_1700000000"]);
    }

    proptest! {
        /// Whatever is written, a text without placeholders comes back unchanged, and what
        /// filling leaves unfilled is exactly what is still in it.
        #[test]
        fn filling_keeps_every_other_character(text in "[a-zA-Z{}. _0-9ЁёЖж]{0,80}") {
            let filled = fill(&text, &deal_sources());
            prop_assert_eq!(unfilled(&filled.text), filled.missing.clone());
            if unfilled(&text).is_empty() {
                prop_assert_eq!(filled.text, text);
            }
        }
    }
}
