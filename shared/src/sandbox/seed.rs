//! The demo data a newcomer sees: one portal with a lead, a deal, contacts and a company,
//! Telegram users behind their fields, two connected accounts, and a lead Bitrix24's CRM
//! tracker made when a client wrote first (b24restdocs: tutorials/openlines/find-crm-object-by-dialog.md).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::state::{Installation, SimPortal};
use super::telegram::{PhonePrivacy, SimUser};
use super::tracker;
use crate::app::install::CONNECTOR_ID;
use crate::domain::{EntityType, Peer};
use crate::repo::openlines::{external_chat_id, external_user_id};

pub const DEMO_MEMBER_ID: &str = "sandbox-demo-portal";
pub const DEMO_DOMAIN: &str = "demo.bitrix24.sandbox";
/// A second installed portal, so that crossing portals can be tried (and refused).
pub const OTHER_MEMBER_ID: &str = "sandbox-other-portal";
pub const OTHER_DOMAIN: &str = "other.bitrix24.sandbox";
/// A portal that has not installed the app yet: the install flow can be tried on it.
pub const FRESH_MEMBER_ID: &str = "sandbox-fresh-portal";
pub const FRESH_DOMAIN: &str = "fresh.bitrix24.sandbox";
/// The fresh portal's lead, with a Berlin number written as Germans write it.
pub const FRESH_LEAD: u64 = 1;
pub const FRESH_LEAD_PHONE: &str = "030 1234567";

/// The connectors' own Telegram accounts.
pub const SALES_ACCOUNT: i64 = 9001;
pub const SUPPORT_ACCOUNT: i64 = 9002;
/// A Telegram account no connector uses yet: connect it with the sandbox code, 12345.
pub const SPARE_ACCOUNT: i64 = 9003;
pub const SPARE_PHONE: &str = "+79990005566";
/// A spare account with two-step verification; its cloud password is [`CLOUD_PASSWORD`].
pub const GUARDED_ACCOUNT: i64 = 9004;
pub const GUARDED_PHONE: &str = "+79990007788";
pub const CLOUD_PASSWORD: &str = "sandbox-password";

pub struct DemoConnector {
    pub id: &'static str,
    pub name: &'static str,
    pub telegram_user_id: i64,
}

pub const DEMO_CONNECTORS: [DemoConnector; 2] = [
    DemoConnector { id: "sales", name: "Sales team", telegram_user_id: SALES_ACCOUNT },
    DemoConnector { id: "support", name: "Customer care", telegram_user_id: SUPPORT_ACCOUNT },
];

fn tg(id: i64, phone: &str, username: Option<&str>, name: (&str, &str), privacy: PhonePrivacy) -> SimUser {
    SimUser {
        id,
        access_hash: access_hash(id),
        phone: phone.to_owned(),
        username: username.map(str::to_owned),
        first_name: name.0.to_owned(),
        last_name: name.1.to_owned(),
        phone_privacy: privacy,
        accepts_strangers: true,
        contacts: Vec::new(),
        dc: 2,
        logged_in: false,
        cloud_password: None,
    }
}

/// Clients in the sales account's own Telegram contacts, found by the first-use sync.
const SALES_CONTACTS: std::ops::Range<i64> = 3000..3040;
/// A CRM campaign's segment on the demo portal: contacts "Campaign Client 01" … "50", one
/// phone each. The first 40 carry the phones of [`SALES_CONTACTS`], the last 10 those of
/// [`CAMPAIGN_PROSPECTS`].
pub const CAMPAIGN_CONTACTS: std::ops::Range<u64> = 100..150;
/// Telegram users nobody has in their contacts, found by anyone by phone: the campaign's new clients.
const CAMPAIGN_PROSPECTS: std::ops::Range<i64> = 3100..3110;

fn sales_contact_phone(id: i64) -> String {
    format!("+7900555{:04}", id - SALES_CONTACTS.start)
}

fn prospect_phone(id: i64) -> String {
    format!("+7900666{:04}", id - CAMPAIGN_PROSPECTS.start)
}

/// The campaign segment's contacts, in `crm.contact.get` shape.
fn campaign_contacts() -> impl Iterator<Item = ((EntityType, u64), Value)> {
    let phones = SALES_CONTACTS.map(sales_contact_phone).chain(CAMPAIGN_PROSPECTS.map(prospect_phone));
    CAMPAIGN_CONTACTS.zip(phones).map(|(id, phone)| {
        let contact = json!({
            "ID": id.to_string(), "NAME": "Campaign", "LAST_NAME": format!("Client {:02}", id - CAMPAIGN_CONTACTS.start + 1),
            "COMPANY_ID": "0", "TYPE_ID": "CLIENT", "PHONE": multi("PHONE", &[("MOBILE", &phone)]),
        });
        ((EntityType::Contact, id), contact)
    })
}

/// In the sales account's contacts, but hides his number from everybody: only the sync finds him.
pub const PAVEL: i64 = 1007;

/// Wrote first, to the sales account, on the demo portal's first line; hides her number and
/// has no username: only her Open Line chat reaches her.
pub const MARIA: i64 = 1008;
pub const MARIA_NAME: &str = "Maria Volkova";
pub const MARIA_CONNECTOR: &str = "sales";
const MARIA_LINE: &str = "1";
/// The lead the tracker made for her: the demo portal's next lead.
pub const MARIA_LEAD: u64 = 2;

fn access_hash(user_id: i64) -> i64 {
    user_id * 7919 + 13
}

/// Maria's Telegram account as the sales account sees it.
pub fn maria_peer() -> Peer {
    Peer { user_id: MARIA, access_hash: access_hash(MARIA) }
}

pub fn telegram_users() -> Vec<SimUser> {
    let sales_contacts = SALES_CONTACTS.chain([PAVEL]).collect();
    let clients = SALES_CONTACTS.map(|id| tg(id, &sales_contact_phone(id), None, ("Client", &format!("{}", id - 2999)), PhonePrivacy::Nobody));
    let prospects = CAMPAIGN_PROSPECTS.map(|id| tg(id, &prospect_phone(id), None, ("Prospect", &format!("{}", id - 3099)), PhonePrivacy::Everybody));
    let mut users = vec![
        SimUser {
            contacts: sales_contacts,
            ..tg(SALES_ACCOUNT, "+79990001122", Some("olchat_sales"), ("Sales", "Team"), PhonePrivacy::Contacts)
        },
        tg(SUPPORT_ACCOUNT, "+79990003344", Some("olchat_care"), ("Customer", "Care"), PhonePrivacy::Contacts),
        // Lives on the other data centre: its logins migrate (PHONE_MIGRATE_1, loginTokenMigrateTo).
        SimUser { dc: 1, ..tg(SPARE_ACCOUNT, SPARE_PHONE, Some("olchat_marketing"), ("Marketing", "Team"), PhonePrivacy::Contacts) },
        SimUser {
            dc: 1,
            cloud_password: Some(CLOUD_PASSWORD.into()),
            ..tg(GUARDED_ACCOUNT, GUARDED_PHONE, Some("olchat_director"), ("Director", "Office"), PhonePrivacy::Contacts)
        },
        // On the other data centre: the files he sends are fetched from there.
        SimUser { dc: 1, ..tg(1001, "+79161234567", Some("ivan_petrov"), ("Ivan", "Petrov"), PhonePrivacy::Everybody) },
        tg(1002, "+79031112233", Some("olga_smirnova"), ("Olga", "Smirnova"), PhonePrivacy::Contacts),
        // Hides her number: "Who can find me by my number: My contacts".
        tg(1003, "+79265554433", None, ("Svetlana", "Kuznetsova"), PhonePrivacy::Contacts),
        tg(1004, "+74957771122", Some("acme_shop"), ("Acme", "Shop"), PhonePrivacy::Nobody),
        tg(1005, "+79857776655", Some("d_sokolov"), ("Dmitry", "Sokolov"), PhonePrivacy::Everybody),
        // Names are the sender's to choose: this one must show as text, never run.
        tg(1006, "+79167770011", Some("mallory_x"), ("<script>alert('name')</script>", "<img src=x onerror=alert(1)>"), PhonePrivacy::Nobody),
        tg(PAVEL, "+79037778899", None, ("Pavel", "Orlov"), PhonePrivacy::Nobody),
        tg(MARIA, "+79261110099", None, MARIA_NAME.split_once(' ').expect("first and last name"), PhonePrivacy::Nobody),
    ];
    users.extend(clients.chain(prospects));
    users
}

fn multi(kind: &str, entries: &[(&str, &str)]) -> Value {
    let items: Vec<Value> = entries
        .iter()
        .enumerate()
        .map(|(i, (value_type, value))| json!({ "ID": (i + 1).to_string(), "TYPE_ID": kind, "VALUE": value, "VALUE_TYPE": value_type }))
        .collect();
    Value::Array(items)
}

/// A `user.get` row (`api-reference/user/user-get.md`); whether one is an administrator is
/// the portal's to say (`user.admin`), not a field.
fn employee(id: u64, name: &str, last_name: &str, email: &str, departments: &[u64]) -> Value {
    json!({ "ID": id.to_string(), "ACTIVE": true, "NAME": name, "LAST_NAME": last_name, "EMAIL": email,
            "TIME_ZONE": "Europe/Moscow", "USER_TYPE": "employee", "UF_DEPARTMENT": departments })
}

/// A `department.get` row (`api-reference/departments/department-get.md`).
fn department(id: u64, name: &str, parent: Option<u64>) -> Value {
    let mut row = json!({ "ID": id.to_string(), "NAME": name, "SORT": 500 });
    if let Some(parent) = parent {
        row["PARENT"] = json!(parent.to_string());
    }
    row
}

/// The demo portal's departments: the company (Bitrix24's top department) and two under it.
pub const COMPANY_DEPARTMENT: u64 = 1;
pub const SALES_DEPARTMENT: u64 = 2;
pub const CARE_DEPARTMENT: u64 = 3;
/// Demo employees: Anna (the administrator) in the company, Boris in sales, Clara in customer care.
pub const ANNA: u64 = 1;
pub const BORIS: u64 = 2;
pub const CLARA: u64 = 3;

/// The demo portal's sales floor: more employees than one `user.get` page holds.
pub const DEMO_EMPLOYEES: u64 = 60;

fn line(id: u64, name: &str) -> Value {
    json!({ "ID": id.to_string(), "LINE_NAME": name, "ACTIVE": "Y" })
}

pub fn portals() -> Vec<SimPortal> {
    let mut records = HashMap::new();
    records.insert((EntityType::Lead, 1), json!({
        "ID": "1", "TITLE": "Request: 20 office chairs", "NAME": "Ivan", "LAST_NAME": "Petrov",
        "STATUS_ID": "NEW", "CONTACT_ID": "2", "COMPANY_ID": "1", "ASSIGNED_BY_ID": "1",
        "PHONE": multi("PHONE", &[("MOBILE", "+7 916 123-45-67"), ("WORK", "+7 (495) 100-20-30")]),
        "IM": multi("IM", &[("TELEGRAM", "t.me/olga_smirnova")]),
        "HAS_PHONE": "Y", "HAS_IMOL": "N",
    }));
    records.insert((EntityType::Contact, 1), json!({
        "ID": "1", "NAME": "Dmitry", "LAST_NAME": "Sokolov", "COMPANY_ID": "1", "TYPE_ID": "CLIENT",
        "PHONE": multi("PHONE", &[("MOBILE", "8 985 777-66-55")]),
    }));
    records.insert((EntityType::Contact, 2), json!({
        "ID": "2", "NAME": "Svetlana", "LAST_NAME": "Kuznetsova", "COMPANY_ID": "0", "TYPE_ID": "CLIENT",
        "PHONE": multi("PHONE", &[("MOBILE", "+7 926 555-44-33")]),
    }));
    records.insert((EntityType::Contact, 3), json!({
        "ID": "3", "NAME": "<b>Mallory</b>", "LAST_NAME": "<script>alert('card')</script>", "COMPANY_ID": "0", "TYPE_ID": "CLIENT",
        "IM": multi("IM", &[("TELEGRAM", "@mallory_x")]),
    }));
    // His number is hidden from everybody; the sales account has him in its contacts.
    records.insert((EntityType::Contact, 4), json!({
        "ID": "4", "NAME": "Pavel", "LAST_NAME": "Orlov", "COMPANY_ID": "0", "TYPE_ID": "CLIENT",
        "PHONE": multi("PHONE", &[("MOBILE", "+7 903 777-88-99")]),
    }));
    records.insert((EntityType::Company, 1), json!({
        "ID": "1", "TITLE": "Acme Shop LLC", "COMPANY_TYPE": "CUSTOMER",
        "PHONE": multi("PHONE", &[("WORK", "+7 495 777-11-22")]),
        "WEB": multi("WEB", &[("WORK", "https://acme.example"), ("OTHER", "https://t.me/acme_shop")]),
    }));
    records.insert((EntityType::Deal, 1), json!({
        "ID": "1", "TITLE": "Chairs for Acme Shop", "STAGE_ID": "NEW", "COMPANY_ID": "1", "CONTACT_ID": "1",
        "OPPORTUNITY": "96000.00", "CURRENCY_ID": "RUB", "ASSIGNED_BY_ID": "2",
    }));
    // Her first message through our connector opened a chat; the tracker made her lead.
    let maria = tracker::imol_value(CONNECTOR_ID, MARIA_LINE, &external_chat_id(MARIA_CONNECTOR, maria_peer()), &external_user_id(maria_peer()));
    tracker::link_or_create_lead(&mut records, &maria, MARIA_NAME, "");
    records.extend(campaign_contacts());
    let deal_contacts = HashMap::from([(1, vec![
        json!({ "CONTACT_ID": 1, "SORT": 10, "ROLE_ID": 0, "IS_PRIMARY": "Y" }),
        json!({ "CONTACT_ID": 2, "SORT": 20, "ROLE_ID": 0, "IS_PRIMARY": "N" }),
    ])]);
    let demo = SimPortal {
        member_id: DEMO_MEMBER_ID.into(),
        domain: DEMO_DOMAIN.into(),
        users: [
            employee(ANNA, "Anna", "Smirnova", "anna@demo.example", &[COMPANY_DEPARTMENT]),
            employee(BORIS, "Boris", "Ivanov", "boris@demo.example", &[SALES_DEPARTMENT]),
            employee(CLARA, "Clara", "Orlova", "clara@demo.example", &[CARE_DEPARTMENT]),
        ]
        .into_iter()
        .chain((4..=DEMO_EMPLOYEES).map(|id| employee(id, "Employee", &format!("No{id}"), &format!("e{id}@demo.example"), &[SALES_DEPARTMENT])))
        .collect(),
        departments: vec![
            department(COMPANY_DEPARTMENT, "Demo Company", None),
            department(SALES_DEPARTMENT, "Sales", Some(COMPANY_DEPARTMENT)),
            department(CARE_DEPARTMENT, "Customer care", Some(COMPANY_DEPARTMENT)),
        ],
        admins: vec![ANNA],
        license: "ru_project".into(),
        record_access: HashMap::new(),
        records,
        deal_contacts,
        lines: vec![line(1, "Sales"), line(2, "Support")],
        installation: Installation::default(),
    };
    let other = SimPortal {
        member_id: OTHER_MEMBER_ID.into(),
        domain: OTHER_DOMAIN.into(),
        users: vec![employee(1, "Oleg", "Other", "oleg@other.example", &[1])],
        departments: vec![department(1, "Other Company", None)],
        admins: vec![1],
        license: "en_project".into(),
        record_access: HashMap::new(),
        records: HashMap::from([((EntityType::Lead, 5), json!({
            "ID": "5", "TITLE": "A lead of another portal",
            "PHONE": multi("PHONE", &[("MOBILE", "+7 916 123-45-67")]),
        }))]),
        deal_contacts: HashMap::new(),
        lines: vec![line(1, "Open Line")],
        installation: Installation::default(),
    };
    let fresh = SimPortal {
        member_id: FRESH_MEMBER_ID.into(),
        domain: FRESH_DOMAIN.into(),
        users: vec![employee(1, "Fiona", "Fresh", "fiona@fresh.example", &[1])],
        departments: vec![department(1, "Fresh GmbH", None)],
        admins: vec![1],
        // A German portal: numbers written without a country code are German there.
        license: "de_project".into(),
        record_access: HashMap::new(),
        records: HashMap::from([((EntityType::Lead, FRESH_LEAD), json!({
            "ID": FRESH_LEAD.to_string(), "TITLE": "Anfrage: Bürostühle",
            "PHONE": multi("PHONE", &[("WORK", FRESH_LEAD_PHONE)]),
        }))]),
        deal_contacts: HashMap::new(),
        lines: vec![line(7, "Clients")],
        installation: Installation::default(),
    };
    vec![demo, other, fresh]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_made_marias_lead_with_her_chat() {
        let demo = portals().into_iter().find(|p| p.member_id == DEMO_MEMBER_ID).unwrap();
        let lead = &demo.records[&(EntityType::Lead, MARIA_LEAD)];
        assert_eq!(lead["IM"][0]["VALUE"], "imol|olchat_telegram|1|sales-1008|tg1008");
        assert!(lead.get("PHONE").is_none());
        let user = telegram_users().into_iter().find(|u| u.id == MARIA).unwrap();
        assert_eq!((user.access_hash, user.username), (maria_peer().access_hash, None));
    }
}
