use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The CRM record types whose cards carry our tab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityType {
    Lead,
    Deal,
    Contact,
    Company,
}

impl EntityType {
    pub const ALL: [EntityType; 4] = [Self::Lead, Self::Deal, Self::Contact, Self::Company];

    /// The card tab placement code Bitrix24 sends as `PLACEMENT`.
    pub fn placement(self) -> &'static str {
        match self {
            Self::Lead => "CRM_LEAD_DETAIL_TAB",
            Self::Deal => "CRM_DEAL_DETAIL_TAB",
            Self::Contact => "CRM_CONTACT_DETAIL_TAB",
            Self::Company => "CRM_COMPANY_DETAIL_TAB",
        }
    }

    pub fn from_placement(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.placement() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lead => "lead",
            Self::Deal => "deal",
            Self::Contact => "contact",
            Self::Company => "company",
        }
    }

    /// CRM's numeric entity type id (`ownerTypeId`).
    pub fn type_id(self) -> u64 {
        match self {
            Self::Lead => 1,
            Self::Deal => 2,
            Self::Contact => 3,
            Self::Company => 4,
        }
    }

    /// The REST method reading one record: `crm.lead.get` etc.
    pub fn get_method(self) -> String {
        format!("crm.{}.get", self.as_str())
    }
}

impl FromStr for EntityType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| format!("unknown CRM entity type {s:?}"))
    }
}

/// One CRM record: its type and numeric id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    #[serde(rename = "type")]
    pub kind: EntityType,
    pub id: u64,
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.kind.as_str(), self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_codes_round_trip() {
        for t in EntityType::ALL {
            assert_eq!(EntityType::from_placement(t.placement()), Some(t));
            assert_eq!(t.as_str().parse::<EntityType>(), Ok(t));
        }
        assert_eq!(EntityType::from_placement("CRM_QUOTE_DETAIL_TAB"), None);
    }
}
