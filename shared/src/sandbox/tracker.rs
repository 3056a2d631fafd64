//! The sandbox portal's CRM tracker: when a message opens an Open Line chat, Bitrix24 links
//! the lead, contact or company whose Messenger field holds that chat (or whose phone the
//! client gave), else creates a lead, and binds the chat to it
//! (b24restdocs: tutorials/openlines/find-crm-object-by-dialog.md). The entry is an `IM`
//! multi-field of `VALUE_TYPE` `OPENLINE` whose value is `imol|` and the dialog's `entity_id`
//! (api-reference/crm/leads/crm-lead-get.md, api-reference/crm/data-types.md).
//! The docs do not say how the tracker titles a lead: here, the client's name and "Open Line";
//! nor whether a chat an employee's message opened through the connector is tracked: here it
//! is, as a chat the client's message opened.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::state::{SimChat, SimPortal};
use crate::domain::EntityType;

/// The Messenger value of a chat: `imol|<connector>|<line>|<external chat id>|<external user id>`.
pub fn imol_value(connector: &str, line: &str, external_chat_id: &str, external_user_id: &str) -> String {
    format!("imol|{connector}|{line}|{external_chat_id}|{external_user_id}")
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// The record whose Messenger field holds `imol`, else the contact or lead with the client's
/// phone (given the entry), else a new lead with it; either's id.
pub fn link_or_create_lead(records: &mut HashMap<(EntityType, u64), Value>, imol: &str, client_name: &str, phone: &str) -> (EntityType, u64) {
    let holds = |record: &Value| record["IM"].as_array().is_some_and(|im| im.iter().any(|e| e["VALUE"] == imol));
    let first = |found: Vec<(EntityType, u64)>| found.into_iter().min_by_key(|(kind, id)| (kind.type_id(), *id));
    if let Some(found) = first(records.iter().filter(|(_, r)| holds(r)).map(|(key, _)| *key).collect()) {
        return found;
    }
    let phone = digits(phone);
    let has_phone = |record: &Value| record["PHONE"].as_array().is_some_and(|ps| ps.iter().any(|p| p["VALUE"].as_str().is_some_and(|v| digits(v) == phone)));
    let by_phone = records.iter().filter(|((kind, _), r)| matches!(kind, EntityType::Contact | EntityType::Lead) && !phone.is_empty() && has_phone(r));
    let entry = |n: usize| json!({ "ID": n.to_string(), "TYPE_ID": "IM", "VALUE_TYPE": "OPENLINE", "VALUE": imol });
    if let Some(found) = first(by_phone.map(|(key, _)| *key).collect()) {
        let record = records.get_mut(&found).expect("found above");
        let im = record.as_object_mut().expect("records are objects").entry("IM").or_insert_with(|| json!([]));
        if let Some(im) = im.as_array_mut() {
            im.push(entry(im.len() + 1));
        }
        record["HAS_IMOL"] = json!("Y");
        return found;
    }
    let id = records.keys().filter(|(kind, _)| *kind == EntityType::Lead).map(|(_, id)| *id).max().unwrap_or(0) + 1;
    let (name, last_name) = client_name.split_once(' ').unwrap_or((client_name, ""));
    records.insert((EntityType::Lead, id), json!({
        "ID": id.to_string(), "TITLE": format!("{client_name} — Open Line"), "NAME": name, "LAST_NAME": last_name,
        "STATUS_ID": "NEW", "OPENED": "Y", "CONTACT_ID": null, "COMPANY_ID": null, "HAS_PHONE": "N", "HAS_EMAIL": "N", "HAS_IMOL": "Y",
        "IM": [entry(1)],
    }));
    (EntityType::Lead, id)
}

/// What the tracker does when a message opened `chat`: the record the chat is bound to.
pub(super) fn track(portal: &mut SimPortal, chat: &SimChat, phone: &str) -> (EntityType, u64) {
    let imol = imol_value(&chat.connector, &chat.line, &chat.external_chat_id, &chat.external_user_id);
    link_or_create_lead(&mut portal.records, &imol, &chat.user_name, phone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_message_creates_a_lead_once_and_links_it_after() {
        let mut records = HashMap::from([((EntityType::Lead, 4), json!({ "ID": "4", "TITLE": "Older lead" }))]);
        let imol = imol_value("myconnector", "107", "channel-123", "ext-user-42");
        assert_eq!(imol, "imol|myconnector|107|channel-123|ext-user-42");
        let lead = link_or_create_lead(&mut records, &imol, "Klaus Meyer", "");
        assert_eq!(lead, (EntityType::Lead, 5));
        let created = &records[&lead];
        assert_eq!((created["NAME"].as_str(), created["LAST_NAME"].as_str(), created["HAS_IMOL"].as_str()), (Some("Klaus"), Some("Meyer"), Some("Y")));
        assert_eq!(created["IM"], json!([{ "ID": "1", "TYPE_ID": "IM", "VALUE_TYPE": "OPENLINE", "VALUE": imol }]));
        assert_eq!(link_or_create_lead(&mut records, &imol, "Klaus Meyer", ""), lead, "the same chat again: linked, not a second lead");
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn a_contact_holding_the_chat_or_the_phone_is_linked_rather_than_a_new_lead() {
        let imol = imol_value("myconnector", "107", "channel-123", "ext-user-42");
        let contact = json!({ "ID": "42", "IM": [{ "TYPE_ID": "IM", "VALUE_TYPE": "OPENLINE", "VALUE": imol }] });
        let mut records = HashMap::from([((EntityType::Contact, 42), contact)]);
        assert_eq!(link_or_create_lead(&mut records, &imol, "Klaus", ""), (EntityType::Contact, 42));
        let other = imol_value("myconnector", "107", "channel-124", "ext-user-43");
        records.insert((EntityType::Contact, 7), json!({ "ID": "7", "PHONE": [{ "VALUE": "+7 (916) 123-45-67" }] }));
        assert_eq!(link_or_create_lead(&mut records, &other, "Ivan", "+79161234567"), (EntityType::Contact, 7));
        assert_eq!(records[&(EntityType::Contact, 7)]["IM"][0]["VALUE"], other.as_str(), "the chat is written into the record");
        assert_eq!(records.len(), 2);
    }
}
