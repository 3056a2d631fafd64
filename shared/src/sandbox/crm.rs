//! The sandbox portal's CRM: records (`api-reference/crm/leads/crm-lead-get.md` and its
//! deal, contact and company siblings, `api-reference/crm/deals/crm-deal-contact-items-get.md`),
//! configurable activities held to their layout rules
//! (`api-reference/crm/timeline/activities/configurable/crm-activity-configurable-add.md`,
//! `…/configurable/structure/*.md`), their listing
//! (`api-reference/crm/timeline/activities/activity-base/crm-activity-list.md`), and the
//! timeline's logos and icons (`api-reference/crm/timeline/logmessage/logo/crm-timeline-logo-list.md`,
//! `…/logmessage/icons/crm-timeline-icon-list.md`).

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::state::{Answer, Grant, Params, PortalState, RestError, SimActivity, page, access_denied, number, required_id, scalar};
use crate::domain::EntityType;

/// The system logos of the timeline. The docs name `call` and `arrow-down` in their example
/// and leave the full list to the method; these are the codes the sandbox offers.
const LOGOS: [&str; 8] = ["call", "call-incoming", "call-outgoing", "arrow-down", "document", "info", "notification", "channel-telegram"];
/// The system icons, likewise (`call`, `arrow-down` in the example; `info`, `document`,
/// `notification` in the layout examples).
const ICONS: [&str; 7] = ["call", "call-completed", "arrow-down", "document", "info", "notification", "comment"];
/// `header.md`: the tag types a configurable activity accepts (`lavender` is refused).
const TAG_TYPES: [&str; 5] = ["warning", "success", "failure", "primary", "secondary"];
/// `field-types.md`: text colours.
const TEXT_COLORS: [&str; 4] = ["base_50", "base_60", "base_70", "base_90"];

/// A record-level refusal as `crm.*.get` words it: an empty code and a description.
fn crm_error(description: &str) -> RestError {
    RestError::new(StatusCode::BAD_REQUEST, "", description)
}

fn layout_error(code: &'static str, description: impl Into<String>) -> RestError {
    RestError::new(StatusCode::BAD_REQUEST, code, description)
}

impl PortalState {
    /// The CRM methods; `None` for a method that is not one of them.
    pub(super) fn crm_call(&mut self, grant: &Grant, method: &str, params: &Params) -> Option<Result<Answer, RestError>> {
        if let Some(kind) = EntityType::ALL.into_iter().find(|t| t.get_method() == method) {
            return Some(self.record(grant, kind, params).map(Answer::from));
        }
        Some(match method {
            "crm.deal.contact.items.get" => self.deal_contacts(grant, params).map(Answer::from),
            "crm.activity.configurable.add" => self.activity_add(grant, params).map(Answer::from),
            "crm.activity.configurable.update" => self.activity_update(grant, params).map(Answer::from),
            "crm.activity.list" => Ok(self.activity_list(grant, params)),
            "crm.timeline.logo.list" => Ok(system_list("logos", &LOGOS)),
            "crm.timeline.icon.list" => Ok(system_list("icons", &ICONS)),
            _ => return None,
        })
    }

    /// `crm.<type>.get`: "ID is not defined or invalid", "Not found", "Access denied".
    fn record(&self, grant: &Grant, kind: EntityType, params: &Params) -> Result<Value, RestError> {
        let id = number(params.get("id").or_else(|| params.get("ID"))).filter(|&i| i > 0).ok_or_else(|| crm_error("ID is not defined or invalid"))?;
        let portal = self.portal(&grant.member_id)?;
        let record = portal.records.get(&(kind, id)).ok_or_else(|| crm_error("Not found"))?;
        if !portal.can_read(grant.user_id, kind, id) {
            return Err(RestError::new(StatusCode::FORBIDDEN, "", "Access denied"));
        }
        Ok(record.clone())
    }

    fn deal_contacts(&self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        // crm-deal-contact-items-get.md: its own texts, with their trailing dots.
        self.record(grant, EntityType::Deal, params).map_err(|e| match e.description.as_str() {
            "ID is not defined or invalid" => crm_error("The parameter ownerEntityID is invalid or not defined."),
            "Not found" => crm_error("Not found."),
            "Access denied" => RestError::new(e.status, "", "Access denied."),
            _ => e,
        })?;
        let id = number(params.get("id").or_else(|| params.get("ID"))).unwrap_or_default();
        Ok(Value::Array(self.portal(&grant.member_id)?.deal_contacts.get(&id).cloned().unwrap_or_default()))
    }

    /// `crm.activity.configurable.add`: only with an app's token (`ERROR_WRONG_CONTEXT`), on a
    /// record the user may see, with a layout that passes [`validate_layout`].
    fn activity_add(&mut self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        let owner_type_id = required_id(params, "ownerTypeId")?;
        let owner_id = required_id(params, "ownerId")?;
        let kind = EntityType::ALL.into_iter().find(|t| t.type_id() == owner_type_id).ok_or_else(|| layout_error("WRONG_FIELD_VALUE", "ownerTypeId"))?;
        let portal = self.portal(&grant.member_id)?;
        if !portal.records.contains_key(&(kind, owner_id)) {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "NOT_FOUND", "Not found."));
        }
        if !portal.can_read(grant.user_id, kind, owner_id) {
            return Err(access_denied("Insufficient permissions to perform the operation"));
        }
        let fields = params.get("fields").cloned().filter(Value::is_object).ok_or_else(|| layout_error("100", "Required fields are not filled"))?;
        let layout = params.get("layout").cloned().filter(|l| l.as_object().is_some_and(|o| !o.is_empty())).ok_or_else(|| layout_error("ERROR_EMPTY_LAYOUT", "The layout field must be filled"))?;
        validate_layout(&layout)?;
        let id = self.next_id();
        self.activities.push(SimActivity {
            id, portal: grant.member_id.clone(), owner_type_id, owner_id, fields,
            history: vec![status_tag(&layout)], layout, app: grant.app.clone(),
        });
        Ok(json!({ "activity": { "id": id } }))
    }

    /// `crm.activity.configurable.update`: the fields and the whole layout again; only the app
    /// that created the activity may (`ERROR_WRONG_APPLICATION`).
    fn activity_update(&mut self, grant: &Grant, params: &Params) -> Result<Value, RestError> {
        let id = required_id(params, "id")?;
        let layout = params.get("layout").cloned().filter(|l| l.as_object().is_some_and(|o| !o.is_empty())).ok_or_else(|| layout_error("ERROR_EMPTY_LAYOUT", "The layout field must be filled"))?;
        validate_layout(&layout)?;
        let activity = self.activities.iter_mut().find(|a| a.id == id && a.portal == grant.member_id);
        // crm-activity-configurable-update.md: NOT_FOUND "Element not found"; ERROR_WRONG_APPLICATION
        // when another app than the one that created it updates it.
        let activity = activity.ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "NOT_FOUND", "Element not found"))?;
        if activity.app != grant.app {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "ERROR_WRONG_APPLICATION", "The activity can only be updated by the application that created it"));
        }
        if let Some(fields) = params.get("fields").filter(|f| f.is_object()) {
            activity.fields = fields.clone();
        }
        let status = status_tag(&layout);
        if activity.history.last() != Some(&status) {
            activity.history.push(status);
        }
        activity.layout = layout;
        Ok(json!({ "activity": { "id": id } }))
    }

    /// `crm.activity.list` over the configurable activities: equality filters on the fields
    /// we keep, `select` honoured for `ID`, pages of 50.
    fn activity_list(&self, grant: &Grant, params: &Params) -> Answer {
        let filter = params.get("filter").and_then(Value::as_object).cloned().unwrap_or_default();
        let wanted = |key: &str, actual: &Value| filter.get(key).is_none_or(|w| scalar(w) == scalar(actual));
        let rows = self.activities.iter().filter(|a| a.portal == grant.member_id).map(|a| {
            json!({ "ID": a.id.to_string(), "OWNER_TYPE_ID": a.owner_type_id.to_string(), "OWNER_ID": a.owner_id.to_string(),
                    "PROVIDER_ID": "CONFIGURABLE_REST_APP", "ORIGIN_ID": a.fields.get("originId").cloned().unwrap_or(Value::Null),
                    "ORIGINATOR_ID": a.fields.get("originatorId").cloned().unwrap_or(Value::Null) })
        });
        let rows = rows.filter(|row| filter.keys().all(|k| row.get(k).is_some_and(|v| wanted(k, v)))).collect();
        page(rows, params)
    }
}

fn system_list(key: &str, codes: &[&str]) -> Answer {
    let rows: Vec<Value> = codes.iter().map(|c| json!({ "code": c, "isSystem": true, "fileUri": "" })).collect();
    Answer { total: Some(rows.len()), next: None, result: json!({ key: rows }) }
}

fn status_tag(layout: &Value) -> Value {
    layout.pointer("/header/tags").and_then(Value::as_object).and_then(|t| t.values().next()).cloned().unwrap_or(Value::Null)
}

/// An activity as the sandbox's JSON shows it.
pub fn activity_view(a: &SimActivity) -> Value {
    json!({
        "id": a.id, "portal": a.portal, "owner": { "type_id": a.owner_type_id, "id": a.owner_id },
        "subject": a.layout.pointer("/header/title").cloned().unwrap_or(Value::Null),
        "status": status_tag(&a.layout), "history": a.history,
        "completed": a.fields.get("completed").cloned().unwrap_or(Value::Null),
        "origin_id": a.fields.get("originId").cloned().unwrap_or(Value::Null), "layout": a.layout,
    })
}

/// An object's fields: the required ones present, none beyond `allowed` (`FIELD_IS_REQUIRED`,
/// `FIELD_IS_REDUNDANT`).
fn fields<'a>(value: &'a Value, at: &str, required: &[&str], allowed: &[&str]) -> Result<&'a Map<String, Value>, RestError> {
    let object = value.as_object().ok_or_else(|| layout_error("WRONG_FIELD_VALUE", format!("{at} must be an object")))?;
    if let Some(missing) = required.iter().find(|k| object.get(**k).is_none_or(Value::is_null)) {
        return Err(layout_error("FIELD_IS_REQUIRED", format!("{at}.{missing} is required")));
    }
    if let Some(extra) = object.keys().find(|k| !required.contains(&k.as_str()) && !allowed.contains(&k.as_str())) {
        return Err(layout_error("FIELD_IS_REDUNDANT", format!("{at}.{extra} is not a field of this object")));
    }
    Ok(object)
}

/// A `textWithTranslation` that must say something: a required text is never empty.
fn text(value: Option<&Value>, at: &str) -> Result<(), RestError> {
    let filled = match value {
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Object(translations)) => !translations.is_empty() && translations.values().all(|t| t.as_str().is_some_and(|s| !s.trim().is_empty())),
        Some(Value::Number(_)) => true,
        _ => false,
    };
    if filled { Ok(()) } else { Err(layout_error("FIELD_IS_REQUIRED", format!("{at} must not be empty"))) }
}

fn key_ok(key: &str) -> Result<(), RestError> {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(())
    } else {
        Err(layout_error("KEY_CONTAIN_WRONG_SYMBOLS", format!("the key {key:?} may hold only Latin letters, digits, hyphens and underscores")))
    }
}

/// `layout.md`, `icon.md`, `header.md`, `body.md`, `content-block.md`: the structure the
/// app sends. Block types other than `text`, `largeText`, `link` and `withTitle` are not
/// simulated and are refused (stricter than Bitrix24, which has more).
fn validate_layout(layout: &Value) -> Result<(), RestError> {
    let top = fields(layout, "layout", &["icon", "header", "body"], &["footer", "menu"])?;
    let icon = fields(&top["icon"], "icon", &["code"], &[])?;
    let code = icon["code"].as_str().unwrap_or("");
    if !ICONS.contains(&code) {
        return Err(layout_error("ENUM_FIELD", format!("icon.code {code:?} is not one of crm.timeline.icon.list")));
    }
    let header = fields(&top["header"], "header", &["title"], &["titleAction", "tags"])?;
    text(header.get("title"), "header.title")?;
    if let Some(tags) = header.get("tags") {
        let tags = tags.as_object().ok_or_else(|| layout_error("WRONG_FIELD_VALUE", "header.tags must be an object"))?;
        if tags.len() > 2 {
            return Err(layout_error("TOO_MANY_ITEMS", "No more than two tags are allowed"));
        }
        for (key, tag) in tags {
            key_ok(key)?;
            let tag = fields(tag, "tag", &["title", "type"], &["action", "scope", "hideIfReadonly"])?;
            text(tag.get("title"), "tag.title")?;
            if !tag["type"].as_str().is_some_and(|t| TAG_TYPES.contains(&t)) {
                return Err(layout_error("ENUM_FIELD", format!("tag type {} is not allowed", tag["type"])));
            }
        }
    }
    let body = fields(&top["body"], "body", &["logo"], &["blocks"])?;
    let logo = fields(&body["logo"], "body.logo", &["code"], &["action"])?;
    let logo_code = logo["code"].as_str().unwrap_or("");
    if !LOGOS.contains(&logo_code) {
        return Err(layout_error("ENUM_FIELD", format!("body.logo.code {logo_code:?} is not one of crm.timeline.logo.list")));
    }
    let blocks = body.get("blocks").and_then(Value::as_object).ok_or_else(|| layout_error("FIELD_IS_REQUIRED", "body.blocks is required"))?;
    if blocks.is_empty() || blocks.len() > 20 {
        return Err(layout_error("TOO_MANY_ITEMS", "body.blocks must hold 1 to 20 blocks"));
    }
    for (key, block) in blocks {
        key_ok(key)?;
        validate_block(block, true)?;
    }
    Ok(())
}

fn validate_block(block: &Value, top_level: bool) -> Result<(), RestError> {
    let block = fields(block, "block", &["type", "properties"], &[])?;
    let kind = block["type"].as_str().unwrap_or("");
    let properties = &block["properties"];
    match kind {
        "text" => {
            let p = fields(properties, "text", &["value"], &["multiline", "title", "bold", "size", "color", "scope"])?;
            text(p.get("value"), "text.value")?;
            if let Some(color) = p.get("color").and_then(Value::as_str).filter(|c| !TEXT_COLORS.contains(c)) {
                return Err(layout_error("ENUM_FIELD", format!("text color {color:?} is not allowed")));
            }
            Ok(())
        }
        "largeText" if top_level => text(fields(properties, "largeText", &["value"], &["scope"])?.get("value"), "largeText.value"),
        "link" => {
            let p = fields(properties, "link", &["text", "action"], &["bold", "scope"])?;
            text(p.get("text"), "link.text")
        }
        "withTitle" if top_level => {
            let p = fields(properties, "withTitle", &["title", "block"], &["inline", "scope"])?;
            text(p.get("title"), "withTitle.title")?;
            validate_block(&p["block"], false)
        }
        other => Err(layout_error("ENUM_FIELD", format!("block type {other:?} is not allowed here"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(logo: &str, value: &str) -> Value {
        json!({ "icon": { "code": "info" }, "header": { "title": "Telegram", "tags": { "status": { "title": "sent", "type": "primary" } } },
                "body": { "logo": { "code": logo }, "blocks": { "text": { "type": "largeText", "properties": { "value": value } } } } })
    }

    #[test]
    fn layouts_are_held_to_the_docs() {
        assert!(validate_layout(&layout("channel-telegram", "Hello")).is_ok());
        assert_eq!(validate_layout(&layout("IM", "Hello")).unwrap_err().code, "ENUM_FIELD");
        assert_eq!(validate_layout(&layout("channel-telegram", " ")).unwrap_err().code, "FIELD_IS_REQUIRED");
        let mut three_tags = layout("info", "x");
        three_tags["header"]["tags"] = json!({ "a": { "title": "1", "type": "primary" }, "b": { "title": "2", "type": "primary" }, "c": { "title": "3", "type": "primary" } });
        assert_eq!(validate_layout(&three_tags).unwrap_err().code, "TOO_MANY_ITEMS");
        let mut lavender = layout("info", "x");
        lavender["header"]["tags"]["status"]["type"] = json!("lavender");
        assert_eq!(validate_layout(&lavender).unwrap_err().code, "ENUM_FIELD");
        let mut redundant = layout("info", "x");
        redundant["body"]["colour"] = json!("red");
        assert_eq!(validate_layout(&redundant).unwrap_err().code, "FIELD_IS_REDUNDANT");
        let mut bad_key = layout("info", "x");
        bad_key["body"]["blocks"] = json!({ "a b": { "type": "text", "properties": { "value": "x" } } });
        assert_eq!(validate_layout(&bad_key).unwrap_err().code, "KEY_CONTAIN_WRONG_SYMBOLS");
    }
}
