use std::fmt;

use phonenumber::{Mode, country};
use serde::{Deserialize, Serialize};

/// A phone number in E.164 form (`+79161234567`), valid by libphonenumber's rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneE164(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a valid phone number: {0:?}")]
pub struct InvalidPhone(pub String);

impl PhoneE164 {
    /// Parses what people type into CRM phone fields (`8 (916) 123-45-67`, `+7 916 ...`).
    /// `region` resolves numbers written without a country code.
    pub fn parse(raw: &str, region: Option<country::Id>) -> Result<Self, InvalidPhone> {
        let trimmed = raw.trim();
        let digits = trimmed.chars().filter(char::is_ascii_digit).count();
        if !(6..=15).contains(&digits) {
            return Err(InvalidPhone(raw.to_owned()));
        }
        let number = phonenumber::parse(region, trimmed).map_err(|_| InvalidPhone(raw.to_owned()))?;
        if !phonenumber::is_valid(&number) {
            return Err(InvalidPhone(raw.to_owned()));
        }
        Ok(Self(number.format().mode(Mode::E164).to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits only, as Telegram's `contacts.resolvePhone` wants them.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl TryFrom<String> for PhoneE164 {
    type Error = InvalidPhone;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value, None)
    }
}

impl From<PhoneE164> for String {
    fn from(value: PhoneE164) -> Self {
        value.0
    }
}

impl fmt::Display for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The region used for numbers without a country code, from an ISO 3166 code like `RU`.
pub fn region_from_code(code: &str) -> Option<country::Id> {
    code.trim().to_ascii_uppercase().parse().ok()
}

/// A portal's own country from the prefix of its `LICENSE` (`de_project` → `DE`;
/// `api-reference/common/system/app-info.md`: the prefix is the portal's base language and
/// region). Most prefixes are the country's ISO code (`ru`, `by`, `kz`, `ua`, `de`, `pl`, `fr`,
/// `it`, `es`, `br`, `tr`...). A few name a language: those of one country map to it (`ja` →
/// JP, `uk` → GB), those of no one country give `None` (`en`: the international zone; `la`:
/// Latin America; `eu`; `ar`: the Arabic zone), and so does any prefix we do not know. `sc`,
/// `tc` and `ms` are also ISO codes of other countries, so they are mapped before the ISO reading.
pub fn region_from_license(license: &str) -> Option<country::Id> {
    let prefix = license.split_once('_').map_or(license, |(p, _)| p).trim().to_ascii_lowercase();
    let code = match prefix.as_str() {
        "en" | "la" | "eu" | "ar" => return None,
        "ja" => "JP",
        "uk" => "GB",
        "sc" => "CN",
        "tc" => "TW",
        "ms" => "MY",
        "hi" => "IN",
        "vn" => "VN",
        other if other.len() == 2 => other,
        _ => return None,
    };
    region_from_code(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_licenses_prefix_names_the_portals_country() {
        let region = |l| region_from_license(l).map(|c| c.as_ref().to_owned());
        assert_eq!(region("ru_project").as_deref(), Some("RU"));
        assert_eq!(region("de_ent10000").as_deref(), Some("DE"));
        assert_eq!(region("kz_basic").as_deref(), Some("KZ"));
        assert_eq!(region("tc_std").as_deref(), Some("TW"));
        for none in ["en_project", "la_basic", "", "xx_project", "nfr"] {
            assert_eq!(region(none), None, "{none}");
        }
        assert_eq!(PhoneE164::parse("030 1234567", region_from_license("de_project")).unwrap().as_str(), "+49301234567");
    }
    use proptest::prelude::*;

    fn ru() -> Option<country::Id> {
        region_from_code("RU")
    }

    #[test]
    fn formats_as_e164() {
        for raw in ["+7 916 123-45-67", "8 (916) 123-45-67", "+79161234567", " 7-916-123-45-67 "] {
            assert_eq!(PhoneE164::parse(raw, ru()).unwrap().as_str(), "+79161234567", "{raw}");
        }
        assert_eq!(PhoneE164::parse("+1 650 253 0000", ru()).unwrap().as_str(), "+16502530000");
        assert_eq!(PhoneE164::parse("+79161234567", None).unwrap().digits(), "79161234567");
    }

    #[test]
    fn rejects_non_numbers() {
        for raw in ["", "abc", "123", "+7 916", "@ivan", "+999 123 456 789"] {
            assert!(PhoneE164::parse(raw, ru()).is_err(), "{raw}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(raw in "\\PC{0,40}") {
            let _ = PhoneE164::parse(&raw, ru());
        }

        #[test]
        fn formatting_noise_does_not_matter(sep in "[ ()-]{0,2}", subscriber in 1000000u32..9999999) {
            let plain = format!("+7916{subscriber}");
            let noisy = format!("+7{sep}916{sep}{:03}{sep}{:04}", subscriber / 10000, subscriber % 10000);
            prop_assert_eq!(PhoneE164::parse(&noisy, ru()).unwrap(), PhoneE164::parse(&plain, ru()).unwrap());
        }

        #[test]
        fn e164_round_trips(subscriber in 1000000u32..9999999) {
            let phone = PhoneE164::parse(&format!("8916{subscriber}"), ru()).unwrap();
            prop_assert_eq!(PhoneE164::parse(phone.as_str(), None).unwrap(), phone);
        }
    }
}
