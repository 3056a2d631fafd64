//! The sandbox portal's CRM tracker: when a client's first message opens an Open Line chat,
//! Bitrix24 links the lead, contact or company whose Messenger field holds that chat, else
//! creates a lead with it (b24restdocs: tutorials/openlines/find-crm-object-by-dialog.md).
//! The entry is an `IM` multi-field of `VALUE_TYPE` `OPENLINE` whose value is `imol|` and the
//! dialog's `entity_id` (api-reference/crm/leads/crm-lead-get.md, api-reference/crm/data-types.md).
//! The docs do not say how the tracker titles a lead: here, the client's name and "Open Line".

use std::collections::HashMap;

use serde_json::{Value, json};

use super::openlines::SimChat;
use super::portal::SimPortal;
use crate::domain::EntityType;

/// The Messenger value of a chat: `imol|<connector>|<line>|<external chat id>|<external user id>`.
pub fn imol_value(connector: &str, line: &str, external_chat_id: &str, external_user_id: &str) -> String {
    format!("imol|{connector}|{line}|{external_chat_id}|{external_user_id}")
}

/// The record whose Messenger field holds `imol`, else a new lead with it; either's id.
pub fn link_or_create_lead(records: &mut HashMap<(EntityType, u64), Value>, imol: &str, client_name: &str) -> (EntityType, u64) {
    let holds = |record: &Value| record["IM"].as_array().is_some_and(|im| im.iter().any(|e| e["VALUE"] == imol));
    let linked = records.iter().filter(|(_, record)| holds(record)).map(|(key, _)| *key).min_by_key(|(kind, id)| (kind.type_id(), *id));
    if let Some(found) = linked {
        return found;
    }
    let id = records.keys().filter(|(kind, _)| *kind == EntityType::Lead).map(|(_, id)| *id).max().unwrap_or(0) + 1;
    let (name, last_name) = client_name.split_once(' ').unwrap_or((client_name, ""));
    records.insert((EntityType::Lead, id), json!({
        "ID": id.to_string(), "TITLE": format!("{client_name} — Open Line"), "NAME": name, "LAST_NAME": last_name,
        "STATUS_ID": "NEW", "OPENED": "Y", "CONTACT_ID": null, "COMPANY_ID": null, "HAS_PHONE": "N", "HAS_EMAIL": "N", "HAS_IMOL": "Y",
        "IM": [{ "ID": "1", "TYPE_ID": "IM", "VALUE_TYPE": "OPENLINE", "VALUE": imol }],
    }));
    (EntityType::Lead, id)
}

/// What the tracker does when a client's first message opened `chat`.
pub(super) fn client_wrote_first(portals: &mut [SimPortal], chat: &SimChat) {
    let Some(portal) = portals.iter_mut().find(|p| p.member_id == chat.portal) else { return };
    let imol = imol_value(&chat.connector, &chat.line, &chat.external_chat_id, &chat.external_user_id);
    link_or_create_lead(&mut portal.records, &imol, &chat.user_name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_message_creates_a_lead_once_and_links_it_after() {
        let mut records = HashMap::from([((EntityType::Lead, 4), json!({ "ID": "4", "TITLE": "Older lead" }))]);
        let imol = imol_value("myconnector", "107", "channel-123", "ext-user-42");
        assert_eq!(imol, "imol|myconnector|107|channel-123|ext-user-42");
        let lead = link_or_create_lead(&mut records, &imol, "Klaus Meyer");
        assert_eq!(lead, (EntityType::Lead, 5));
        let created = &records[&lead];
        assert_eq!((created["NAME"].as_str(), created["LAST_NAME"].as_str(), created["HAS_IMOL"].as_str()), (Some("Klaus"), Some("Meyer"), Some("Y")));
        assert_eq!(created["IM"], json!([{ "ID": "1", "TYPE_ID": "IM", "VALUE_TYPE": "OPENLINE", "VALUE": imol }]));
        assert_eq!(link_or_create_lead(&mut records, &imol, "Klaus Meyer"), lead, "the same chat again: linked, not a second lead");
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn a_contact_holding_the_chat_is_linked_rather_than_a_new_lead() {
        let imol = imol_value("myconnector", "107", "channel-123", "ext-user-42");
        let contact = json!({ "ID": "42", "IM": [{ "TYPE_ID": "IM", "VALUE_TYPE": "OPENLINE", "VALUE": imol }] });
        let mut records = HashMap::from([((EntityType::Contact, 42), contact)]);
        assert_eq!(link_or_create_lead(&mut records, &imol, "Klaus"), (EntityType::Contact, 42));
        assert_eq!(records.len(), 1);
    }
}
