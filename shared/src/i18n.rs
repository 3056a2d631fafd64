//! Russian and English, chosen by the portal's `LANG`. The strings live in
//! `assets/i18n.json`, shared with the tab's script.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Ru,
}

impl Lang {
    /// Bitrix24's `LANG` (`ru`, `en`, `de`, `by`, `kz`...): Russian for the Russian-speaking
    /// portals, English for the rest.
    pub fn from_portal(code: &str) -> Self {
        match code.trim().to_ascii_lowercase().as_str() {
            "ru" | "by" | "kz" => Self::Ru,
            _ => Self::En,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Ru => "ru",
        }
    }
}

type Strings = HashMap<String, String>;

fn catalog() -> &'static HashMap<Lang, Strings> {
    static CATALOG: OnceLock<HashMap<Lang, Strings>> = OnceLock::new();
    CATALOG.get_or_init(|| serde_json::from_str(include_str!("../assets/i18n.json")).expect("assets/i18n.json is valid"))
}

/// All strings of one language (for the page template and script).
pub fn strings(lang: Lang) -> &'static Strings {
    &catalog()[&lang]
}

/// The `{name}` placeholders of a string.
fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template.split('{').skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}

/// One string, with `{name}` placeholders filled in.
pub fn text(lang: Lang, key: &str, args: &[(&str, &str)]) -> String {
    let mut out = strings(lang).get(key).cloned().unwrap_or_else(|| key.to_owned());
    debug_assert!(placeholders(&out).all(|p| args.iter().any(|(name, _)| *name == p)), "{key}: a placeholder has no value");
    for (name, value) in args {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_the_same_keys() {
        let mut en: Vec<_> = strings(Lang::En).keys().collect();
        let mut ru: Vec<_> = strings(Lang::Ru).keys().collect();
        en.sort();
        ru.sort();
        assert_eq!(en, ru);
    }

    #[test]
    fn both_languages_fill_the_same_placeholders() {
        for (key, en) in strings(Lang::En) {
            let mut ours: Vec<_> = placeholders(en).collect();
            let mut theirs: Vec<_> = placeholders(&strings(Lang::Ru)[key]).collect();
            ours.sort();
            theirs.sort();
            assert_eq!(ours, theirs, "{key}");
        }
    }

    #[test]
    fn labels_follow_the_portal_language() {
        assert_eq!(text(Lang::from_portal("ru"), "send", &[]), "Отправить");
        assert_eq!(text(Lang::from_portal("de"), "send", &[]), "Send");
        assert!(text(Lang::En, "flood_wait", &[("seconds", "42")]).contains("42"));
    }
}
