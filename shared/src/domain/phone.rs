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

#[cfg(test)]
mod tests {
    use super::*;
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
