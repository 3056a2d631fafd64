//! The sandbox's CRM card, around our app's tab as Bitrix24 shows a record: its fields, the
//! tab's launcher, and the automation our app registered there: run a robot or an action for
//! the record (as an automation rule would), send an SMS through a provider (the card's SMS
//! form), and what came of both. And a CRM campaign to the demo segment.
//!
//! What the page offers is what Bitrix24's card does, per b24restdocs: a robot's settings form
//! is one field per registered `PROPERTIES` entry, a `select` listing its `Options` and every
//! field starting from its `Default` (`api-reference/bizproc/bizproc-robot/bizproc-robot-add.md`,
//! "Object PROPERTY"); the card's **SMS/WhatsApp** form lists the providers the apps registered
//! and the record's phones (`tutorials/messageservice/index.md`, "3. Verifying Sending from
//! Bitrix24"); a campaign sends through a provider as the card does (`messageservice/index.md`,
//! "Connection with Other Objects"). How the page looks is the sandbox's own.

use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::get;
use minijinja::HtmlEscape;
use serde::Deserialize;
use serde_json::Value;

use super::portal::SandboxPortal;
use super::seed::{CAMPAIGN_CONTACTS, DEMO_MEMBER_ID};
use super::state::{Automation, Params, ProviderMessage, RobotRun, Sender, SimPortal, scalar};
use crate::domain::{EntityRef, EntityType};

type PortalRef = State<Arc<SandboxPortal>>;

pub fn routes() -> Router<Arc<SandboxPortal>> {
    Router::new().route("/sandbox/card", get(card)).route("/sandbox/campaign", get(campaign))
}

#[derive(Deserialize)]
struct CardQuery {
    entity: String,
    id: u64,
    #[serde(default = "english")]
    lang: String,
}

fn english() -> String {
    "en".into()
}

/// A name given as a string or as localized strings (`NAME` of `bizproc-robot-add.md`).
fn label(value: &Value, lang: &str) -> String {
    match value {
        Value::Object(names) => names.get(lang).or_else(|| names.get("en")).or_else(|| names.values().next()).and_then(scalar).unwrap_or_default(),
        other => scalar(other).unwrap_or_default(),
    }
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>OLChat sandbox — {title}</title>
<link rel=stylesheet href=/assets/tab.css><main class=olc>{body}<p><a href=/sandbox>Back</a></p></main></html>",
        title = HtmlEscape(title)
    ))
}

fn demo_portal(portal: &SandboxPortal) -> Result<SimPortal, (StatusCode, String)> {
    portal.portal(DEMO_MEMBER_ID).ok_or((StatusCode::NOT_FOUND, "the demo portal is gone".into()))
}

/// `<option>`s of registrations, by `NAME`, their code the value.
fn options<'a>(items: impl Iterator<Item = (&'a str, &'a Params)>, lang: &str) -> String {
    items.map(|(code, fields)| format!("<option value=\"{}\">{}</option>", HtmlEscape(code), HtmlEscape(&label(fields.get("NAME").unwrap_or(&Value::Null), lang)))).collect()
}

fn hidden(name: &str, value: &str) -> String {
    format!("<input type=hidden name=\"{}\" value=\"{}\">", HtmlEscape(name), HtmlEscape(value))
}

/// One input per registered property, prefilled with its `Default`; a `select` property as a
/// select of its `Options` (an object of value → title, or a list of values).
fn property_input(key: &str, property: &Value, lang: &str) -> String {
    let name = format!("properties[{key}]");
    let default = scalar(&property["Default"]).unwrap_or_default();
    let field = if property["Type"] == "select" {
        let choices: Vec<(String, String)> = match &property["Options"] {
            Value::Object(o) => o.iter().map(|(value, title)| (value.clone(), label(title, lang))).collect(),
            Value::Array(a) => a.iter().filter_map(scalar).map(|v| (v.clone(), v)).collect(),
            _ => Vec::new(),
        };
        let choices: String = choices.iter().map(|(value, title)| {
            let selected = if *value == default { " selected" } else { "" };
            format!("<option value=\"{}\"{selected}>{}</option>", HtmlEscape(value), HtmlEscape(title))
        }).collect();
        format!("<select name=\"{}\">{choices}</select>", HtmlEscape(&name))
    } else {
        format!("<input name=\"{}\" value=\"{}\">", HtmlEscape(&name), HtmlEscape(&default))
    };
    format!("<label>{} {field}</label> ", HtmlEscape(&label(&property["Name"], lang)))
}

/// The properties of each robot, one fieldset per robot; only the chosen one's is enabled (so
/// only its values are sent): the first without script, the selected one with it.
fn property_fieldsets(automations: &[&Automation], lang: &str) -> String {
    let mut out = String::new();
    for (i, automation) in automations.iter().enumerate() {
        let properties = automation.fields.get("PROPERTIES").and_then(Value::as_object).cloned().unwrap_or_default();
        let inputs: String = properties.iter().map(|(key, property)| property_input(key, property, lang)).collect();
        let disabled = if i == 0 { "" } else { " disabled hidden" };
        let _ = write!(out, "<fieldset data-code=\"{}\"{disabled}>{inputs}</fieldset>", HtmlEscape(&automation.code));
    }
    out
}

const CHOOSE_ROBOT: &str = "<script>document.getElementById('robot-code').addEventListener('change', e => {
for (const f of document.querySelectorAll('#robot fieldset[data-code]')) { const on = f.dataset.code === e.target.value; f.disabled = !on; f.hidden = !on; }
});</script>";

fn robot_form(automations: &[&Automation], target: &str, lang: &str) -> String {
    if automations.is_empty() {
        return "<p>Our app has registered no robot or action on this portal.</p>".into();
    }
    let choices = options(automations.iter().map(|a| (a.code.as_str(), &a.fields)), lang);
    format!(
        "<form id=robot method=post action=/sandbox/portal/automation/fire>{target}
<label>Robot <select id=robot-code name=code>{choices}</select></label> {fields}
<button class=olc-btn id=run-robot>Run robot</button></form>{CHOOSE_ROBOT}",
        fields = property_fieldsets(automations, lang)
    )
}

fn sms_form(senders: &[&Sender], phones: &[String], target: &str, lang: &str) -> String {
    if senders.is_empty() {
        return "<p>Our app has registered no message provider on this portal.</p>".into();
    }
    if phones.is_empty() {
        return "<p>The record has no phone to send an SMS to.</p>".into();
    }
    let providers = options(senders.iter().map(|s| (s.code.as_str(), &s.fields)), lang);
    let phones: String = phones.iter().map(|p| format!("<option>{}</option>", HtmlEscape(p))).collect();
    format!(
        "<form id=sms method=post action=/sandbox/portal/messageservice/send>{target}
<label>Provider <select name=code>{providers}</select></label> <label>Phone <select name=phone>{phones}</select></label>
<label>Text <input name=text required></label> <button class=olc-btn id=send-sms>Send SMS</button></form>"
    )
}

fn runs_table(runs: &[RobotRun]) -> String {
    let rows: String = runs.iter().map(|r| format!(
        "<tr data-workflow-id=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        HtmlEscape(&r.workflow_id), HtmlEscape(&r.code), r.kind, r.status,
        r.handler_status.map(|s| s.to_string()).unwrap_or_else(|| "not reached".into()),
        HtmlEscape(&Value::Object(r.return_values.clone()).to_string()), HtmlEscape(&r.log.join(" · ")),
    )).collect();
    format!("<table class=olc-table id=runs><thead><tr><th>Robot</th><th>Kind</th><th>Status</th><th>Handler answered</th><th>Return values</th><th>Log</th></tr></thead><tbody>{rows}</tbody></table>")
}

fn messages_table(messages: &[ProviderMessage]) -> String {
    let rows: String = messages.iter().map(|m| format!(
        "<tr data-message-id=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        HtmlEscape(&m.message_id), HtmlEscape(&m.code), HtmlEscape(&m.to), HtmlEscape(&m.body),
        HtmlEscape(&if m.history.is_empty() { "no status yet".to_owned() } else { m.history.join(" → ") }),
        m.handler_status.map(|s| s.to_string()).unwrap_or_else(|| "not reached".into()),
    )).collect();
    format!("<table class=olc-table id=messages><thead><tr><th>Provider</th><th>To</th><th>Text</th><th>Statuses</th><th>Handler answered</th></tr></thead><tbody>{rows}</tbody></table>")
}

fn ours<'a, T>(items: &'a [T], portal: &SandboxPortal, app_of: impl Fn(&T) -> &str) -> Vec<&'a T> {
    items.iter().filter(|item| app_of(item) == portal.app.client_id).collect()
}

/// `GET /sandbox/card?entity=deal&id=1&lang=en`: the demo portal's record.
async fn card(State(portal): PortalRef, Query(q): Query<CardQuery>) -> Result<Html<String>, (StatusCode, String)> {
    let kind: EntityType = q.entity.parse().map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let demo = demo_portal(&portal)?;
    let record = demo.records.get(&(kind, q.id)).ok_or((StatusCode::NOT_FOUND, format!("no {} {}", kind.as_str(), q.id)))?;
    let this = EntityRef { kind, id: q.id };
    let name = |field: &str| record[field].as_str().unwrap_or_default().to_owned();
    let title = if record["TITLE"].is_string() { name("TITLE") } else { format!("{} {}", name("NAME"), name("LAST_NAME")).trim().to_owned() };
    let phones: Vec<String> = record["PHONE"].as_array().into_iter().flatten().filter_map(|p| scalar(&p["VALUE"])).collect();
    let target = [hidden("member_id", DEMO_MEMBER_ID), hidden("entity", kind.as_str()), hidden("id", &q.id.to_string())].concat();
    let automations = ours(&demo.installation.automations, &portal, |a| &a.app);
    let senders = ours(&demo.installation.senders, &portal, |s| &s.app);
    let runs: Vec<RobotRun> = portal.robot_runs().into_iter().filter(|r| r.member_id == DEMO_MEMBER_ID && r.record == this).collect();
    let messages: Vec<ProviderMessage> = portal.provider_messages().into_iter().filter(|m| m.member_id == DEMO_MEMBER_ID && m.record == this).collect();
    let body = format!(
        "<h1 class=olc-heading>{kind} #{id}: {title}</h1>
<p>Phones: {phone_list}. <a href=\"/sandbox/open?entity={kind}&amp;id={id}&amp;lang={lang}\" id=open-tab>Open the app's tab</a></p>
<h2 class=olc-heading>Automation</h2>{robot}<h2 class=olc-heading>SMS</h2>{sms}
<h2 class=olc-heading>Robot runs</h2>{runs}<h2 class=olc-heading>SMS messages</h2>{messages}",
        kind = kind.as_str(),
        id = q.id,
        title = HtmlEscape(&title),
        phone_list = if phones.is_empty() { "none".to_owned() } else { HtmlEscape(&phones.join(", ")).to_string() },
        lang = HtmlEscape(&q.lang),
        robot = robot_form(&automations, &target, &q.lang),
        sms = sms_form(&senders, &phones, &target, &q.lang),
        runs = runs_table(&runs),
        messages = messages_table(&messages),
    );
    Ok(page(&title, &body))
}

/// `GET /sandbox/campaign`: a CRM campaign to the demo segment ([`CAMPAIGN_CONTACTS`]).
async fn campaign(State(portal): PortalRef) -> Result<Html<String>, (StatusCode, String)> {
    let demo = demo_portal(&portal)?;
    let senders = ours(&demo.installation.senders, &portal, |s| &s.app);
    let segment = |m: &ProviderMessage| m.record.kind == EntityType::Contact && CAMPAIGN_CONTACTS.contains(&m.record.id);
    let messages: Vec<ProviderMessage> = portal.provider_messages().into_iter().filter(|m| m.member_id == DEMO_MEMBER_ID && segment(m)).collect();
    let form = if senders.is_empty() {
        "<p>Our app has registered no message provider on this portal.</p>".to_owned()
    } else {
        let records: String = CAMPAIGN_CONTACTS.enumerate().map(|(i, id)| [hidden(&format!("records[{i}][entity]"), "contact"), hidden(&format!("records[{i}][id]"), &id.to_string())].concat()).collect();
        format!(
            "<form id=campaign method=post action=/sandbox/portal/messageservice/campaign>{member}{records}
<label>Provider <select name=code>{providers}</select></label> <label>Text <input name=text required value=\"Hello, {{=Document:NAME}}!\"></label>
<button class=olc-btn id=send-campaign>Send the campaign</button></form>",
            member = hidden("member_id", DEMO_MEMBER_ID),
            providers = options(senders.iter().map(|s| (s.code.as_str(), &s.fields)), "en"),
        )
    };
    let body = format!(
        "<h1 class=olc-heading>CRM campaign</h1><p>Sends an SMS through a provider to the {count} contacts of the demo segment
(contacts #{first}–#{last}); <code>{{=Document:NAME}}</code> in the text takes each contact's field.</p>{form}
<h2 class=olc-heading>Sent</h2>{messages}",
        count = CAMPAIGN_CONTACTS.end - CAMPAIGN_CONTACTS.start,
        first = CAMPAIGN_CONTACTS.start,
        last = CAMPAIGN_CONTACTS.end - 1,
        messages = messages_table(&messages),
    );
    Ok(page("CRM campaign", &body))
}
