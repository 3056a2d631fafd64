//! The portal's message templates, kept with its other records (`portal#<member_id>`), so an
//! uninstall deletes them with the rest (`app::install::forget_portal`).

use serde::{Deserialize, Serialize};

use super::{Records, RepoError, portal_pk};

const PREFIX: &str = "template#";
/// More than an administrator keeps, and what one list read returns.
pub const MAX_TEMPLATES: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub text: String,
    /// Files that go with the text, stored under `templates/<member_id>/`; each message
    /// sends its own copy, so editing or deleting the template never touches a message.
    #[serde(default)]
    pub files: Vec<TemplateFile>,
}

/// A file of a template, as its upload was announced and stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateFile {
    pub key: String,
    pub name: String,
    pub size: u64,
    pub content_type: String,
}

fn sk(id: &str) -> String {
    format!("{PREFIX}{id}")
}

#[derive(Clone)]
pub struct Templates {
    records: Records,
}

impl Templates {
    pub fn new(records: Records) -> Self {
        Self { records }
    }

    /// The portal's templates, by name.
    pub async fn list(&self, member_id: &str) -> Result<Vec<Template>, RepoError> {
        let mut templates: Vec<Template> = self.records.query(&portal_pk(member_id), PREFIX, MAX_TEMPLATES, false).await?;
        templates.sort_by_cached_key(|t| (t.name.to_lowercase(), t.id.clone()));
        Ok(templates)
    }

    pub async fn get(&self, member_id: &str, id: &str) -> Result<Option<Template>, RepoError> {
        Ok(self.records.get(&portal_pk(member_id), &sk(id)).await?.map(|s| s.value))
    }

    pub async fn put(&self, member_id: &str, template: &Template) -> Result<(), RepoError> {
        self.records.put(&portal_pk(member_id), &sk(&template.id), template, None).await
    }

    /// Replaces a stored template; `false` when there is none with its id.
    pub async fn replace(&self, member_id: &str, template: &Template) -> Result<bool, RepoError> {
        let replace = |stored: &mut Template| {
            *stored = template.clone();
            true
        };
        Ok(self.records.update(&portal_pk(member_id), &sk(&template.id), replace).await?.is_some())
    }

    pub async fn delete(&self, member_id: &str, id: &str) -> Result<(), RepoError> {
        self.records.delete(&portal_pk(member_id), &sk(id)).await
    }
}
