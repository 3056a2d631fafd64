//! The recipients last shown on a card: a send may only go to one of them.

use std::time::Duration;

use super::{Records, RepoError, portal_pk};
use crate::domain::{EntityRef, RecipientKey};

const TTL: Duration = Duration::from_secs(24 * 3600);

fn sk(entity: EntityRef) -> String {
    format!("card#{}#{}", entity.kind.as_str(), entity.id)
}

#[derive(Clone)]
pub struct Cards {
    records: Records,
}

impl Cards {
    pub fn new(records: Records) -> Self {
        Self { records }
    }

    pub async fn save_recipients(&self, member_id: &str, entity: EntityRef, keys: &[RecipientKey]) -> Result<(), RepoError> {
        self.records.put(&portal_pk(member_id), &sk(entity), &keys, Some(TTL)).await
    }

    pub async fn recipients(&self, member_id: &str, entity: EntityRef) -> Result<Vec<RecipientKey>, RepoError> {
        Ok(self.records.get(&portal_pk(member_id), &sk(entity)).await?.map(|s| s.value).unwrap_or_default())
    }
}
