//! The connectors page: an administrator connects Telegram accounts (phone → code → cloud
//! password, or a QR code), sees their status, links each to an Open Line, disconnects.

use serde::Serialize;

use serde_json::{Value, json};

use super::install::register_connector;
use super::portal::{EmployeeView, PortalClient, active_employees, confirm_admin, unknown_portal};
use super::{AppError, ErrorKind, Services};
use crate::auth::{AdminClaims, Claims};
use crate::crypto::Secret;
use crate::domain::PhoneE164;
use crate::i18n::{Lang, text};
use crate::ports::{LoggedIn, LoginError, LoginStep, TelegramError};
use crate::repo::connectors::{Access, Budgets, Connector, ConnectorStatus, OverBudget};
use crate::repo::logins::{LoginStage, PendingLogin};
use crate::repo::portals::{TokenOwner, UserAuth};
use crate::repo::safety::Usage;

/// Confirms with the portal that `auth_id` is one of its administrators; the page's token.
/// The administrator's tokens are kept: every later call asks the portal again whether they
/// still are one ([`super::portal::recheck_admin`]).
pub async fn open_page(svc: &Services, member_id: &str, domain: &str, auth: &UserAuth, lang: Lang) -> Result<String, AppError> {
    let portal = svc.portals.get(member_id).await?.ok_or_else(unknown_portal)?;
    if !portal.domain.eq_ignore_ascii_case(domain.trim()) {
        return Err(AppError::new(ErrorKind::Forbidden, "domain_mismatch", "The DOMAIN of this request is not this portal's."));
    }
    let user_id = confirm_admin(svc, &portal, &auth.access_token, lang).await?;
    svc.portals.save_auth(member_id, TokenOwner::User(user_id), auth).await?;
    Ok(svc.sessions.issue_admin(&portal.installed(), user_id, lang))
}

#[derive(Serialize)]
pub struct ConnectorAdminView {
    pub id: String,
    pub name: String,
    pub phone: String,
    pub username: Option<String>,
    pub status: ConnectorStatus,
    /// The Open Line its chats go to; `None`: the portal's line.
    pub line: Option<String>,
    /// Today's new chats and phone look-ups, against `budgets`.
    pub usage: Usage,
    pub budgets: Budgets,
    /// Whether `budgets` are this connector's own rather than the defaults.
    pub own_budgets: bool,
    /// Messages from anyone reach the Open Line, not only from people the portal wrote to.
    pub accept_all: bool,
    /// Numbers imported to find their owners stay in the account's contacts.
    pub keep_imported_contacts: bool,
    /// Who may send from it.
    pub access: Access,
    /// What automated messages do beyond the day's budgets.
    pub over_budget: OverBudget,
}

#[derive(Serialize)]
pub struct ConnectorsView {
    pub connectors: Vec<ConnectorAdminView>,
    pub limits: LimitsView,
    /// Open Lines' own messages (greetings, ratings) reach clients through the connectors.
    pub system_messages: bool,
    /// The connector our message provider sends through (the card's SMS form, campaigns):
    /// the one chosen, else the only one; `None`: SMS through us fail until one is chosen.
    pub provider_connector: Option<String>,
}

#[derive(Serialize)]
pub struct LimitsView {
    pub new_chats_per_day: u32,
    pub phone_lookups_per_day: u32,
}

pub async fn list(svc: &Services, admin: &AdminClaims) -> Result<ConnectorsView, AppError> {
    let mut views = Vec::new();
    for connector in svc.connectors.list(&admin.portal).await? {
        views.push(admin_view(svc, connector).await?);
    }
    let limits = LimitsView { new_chats_per_day: svc.limits.new_chats_per_day, phone_lookups_per_day: svc.limits.phone_lookups_per_day };
    let portal = svc.portals.get(&admin.portal).await?.ok_or_else(unknown_portal)?;
    let chosen = portal.provider_connector.filter(|id| views.iter().any(|c| &c.id == id));
    let provider_connector = chosen.or_else(|| (views.len() == 1).then(|| views[0].id.clone()));
    Ok(ConnectorsView { connectors: views, limits, system_messages: portal.system_messages, provider_connector })
}

async fn admin_view(svc: &Services, c: Connector) -> Result<ConnectorAdminView, AppError> {
    let usage = svc.safety.today(&c.id).await?;
    let (budgets, own_budgets) = (svc.limits.budgets(&c), c.budgets.is_some());
    Ok(ConnectorAdminView {
        id: c.id,
        name: c.name,
        phone: c.phone,
        username: c.username,
        status: c.status,
        line: c.line,
        usage,
        budgets,
        own_budgets,
        accept_all: c.accept_all,
        keep_imported_contacts: c.keep_imported_contacts,
        access: c.access,
        over_budget: c.over_budget,
    })
}

/// Where a login stands, for the page.
#[derive(Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum LoginView {
    Code { login_id: String },
    Password { login_id: String, hint: Option<String> },
    Qr { login_id: String, svg: String, expires: i64 },
    Done { connector: ConnectorAdminView },
}

/// A new login, or the login of an existing connector whose session is gone (`reconnect`).
async fn new_login(svc: &Services, admin: &AdminClaims, reconnect: Option<&str>, stage: LoginStage) -> Result<PendingLogin, AppError> {
    let id = match reconnect {
        Some(id) => {
            let connector = svc.connectors.get(&admin.portal, id).await?.ok_or_else(|| unknown_connector(admin.lang))?;
            // The old session is dead (its key unknown to Telegram, or unreadable): the new login
            // must not start from it.
            svc.telegram.log_out(&connector.account()).await.map_err(|e| login_problem(admin.lang, e.into()))?;
            id.to_owned()
        }
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    Ok(PendingLogin { id, member_id: admin.portal.clone(), user: admin.user, phone: None, phone_code_hash: None, stage })
}

async fn pending(svc: &Services, admin: &AdminClaims, login_id: &str, stage: LoginStage) -> Result<PendingLogin, AppError> {
    svc.logins
        .get(&admin.portal, login_id)
        .await?
        .filter(|l| l.stage == stage)
        .ok_or_else(|| login_problem(admin.lang, LoginError::CodeExpired))
}

pub async fn start_phone(svc: &Services, admin: &AdminClaims, phone: &str, reconnect: Option<&str>) -> Result<LoginView, AppError> {
    let portal = svc.portals.get(&admin.portal).await?.ok_or_else(unknown_portal)?;
    let phone = PhoneE164::parse(phone, svc.phone_region_of(&portal)).map_err(|_| login_problem(admin.lang, LoginError::InvalidPhone))?;
    let mut login = new_login(svc, admin, reconnect, LoginStage::Code).await?;
    login.phone = Some(phone.to_string());
    let step = svc.telegram.send_code(&login.id, &phone).await.map_err(|e| login_problem(admin.lang, e))?;
    advance(svc, admin, login, step).await
}

pub async fn submit_code(svc: &Services, admin: &AdminClaims, login_id: &str, code: &str) -> Result<LoginView, AppError> {
    let login = pending(svc, admin, login_id, LoginStage::Code).await?;
    let expired = || login_problem(admin.lang, LoginError::CodeExpired);
    let phone = login.phone.as_deref().and_then(|p| PhoneE164::parse(p, None).ok()).ok_or_else(expired)?;
    let hash = svc.logins.open_hash(&login).ok_or_else(expired)?;
    let step = svc.telegram.sign_in(&login.id, &phone, &hash, code).await.map_err(|e| login_problem(admin.lang, e))?;
    advance(svc, admin, login, step).await
}

pub async fn submit_password(svc: &Services, admin: &AdminClaims, login_id: &str, password: &Secret) -> Result<LoginView, AppError> {
    let login = pending(svc, admin, login_id, LoginStage::Password).await?;
    let step = svc.telegram.check_password(&login.id, password).await.map_err(|e| login_problem(admin.lang, e))?;
    advance(svc, admin, login, step).await
}

/// A QR code to scan (a fresh one each time: they live about 30 s), until it is scanned.
pub async fn qr(svc: &Services, admin: &AdminClaims, login_id: Option<&str>, reconnect: Option<&str>) -> Result<LoginView, AppError> {
    let login = match login_id {
        Some(id) => pending(svc, admin, id, LoginStage::Qr).await?,
        None => new_login(svc, admin, reconnect, LoginStage::Qr).await?,
    };
    let step = svc.telegram.qr_login(&login.id).await.map_err(|e| login_problem(admin.lang, e))?;
    advance(svc, admin, login, step).await
}

/// Records where the login got to; a finished one becomes a connected connector.
async fn advance(svc: &Services, admin: &AdminClaims, mut login: PendingLogin, step: LoginStep) -> Result<LoginView, AppError> {
    let view = match step {
        LoginStep::CodeSent { phone_code_hash } => {
            login.stage = LoginStage::Code;
            login.phone_code_hash = Some(svc.logins.seal_hash(&login, &phone_code_hash));
            LoginView::Code { login_id: login.id.clone() }
        }
        LoginStep::PasswordNeeded { hint } => {
            login.stage = LoginStage::Password;
            LoginView::Password { login_id: login.id.clone(), hint }
        }
        LoginStep::Qr { url, expires } => {
            login.stage = LoginStage::Qr;
            LoginView::Qr { login_id: login.id.clone(), svg: qr_svg(&url)?, expires }
        }
        LoginStep::Done(done) => {
            let connector = connect(svc, admin, &login, done).await?;
            svc.logins.delete(&admin.portal, &login.id).await?;
            return Ok(LoginView::Done { connector: admin_view(svc, connector).await? });
        }
    };
    svc.logins.save(&login).await?;
    Ok(view)
}

async fn connect(svc: &Services, admin: &AdminClaims, login: &PendingLogin, done: LoggedIn) -> Result<Connector, AppError> {
    let existing = svc.connectors.get(&admin.portal, &login.id).await?;
    let phone = PhoneE164::parse(&format!("+{}", done.phone), None).map(|p| p.to_string()).unwrap_or(done.phone);
    let connector = Connector {
        id: login.id.clone(),
        member_id: admin.portal.clone(),
        name: existing.as_ref().map(|c| c.name.clone()).unwrap_or_else(|| done.user.display_name()),
        phone,
        username: done.user.username.clone(),
        telegram_user_id: done.user.peer.user_id,
        status: ConnectorStatus::Connected,
        accept_all: existing.as_ref().is_some_and(|c| c.accept_all),
        keep_imported_contacts: existing.as_ref().is_some_and(|c| c.keep_imported_contacts),
        access: existing.as_ref().map(|c| c.access.clone()).unwrap_or_default(),
        budgets: existing.as_ref().and_then(|c| c.budgets),
        over_budget: existing.as_ref().map(|c| c.over_budget).unwrap_or_default(),
        line: existing.and_then(|c| c.line),
    };
    svc.connectors.save(&connector).await?;
    // The first catch-up marks where the account's updates start being ours.
    if let Err(e) = super::catch_up::request_catch_up(svc, &connector.member_id, &connector.id).await {
        tracing::warn!(connector_id = connector.id, "first catch-up not queued (the schedule makes it): {e:#}");
    }
    refresh_automation(svc, &connector.member_id).await;
    tracing::info!(connector_id = connector.id, "Telegram account connected");
    Ok(connector)
}

fn qr_svg(url: &str) -> Result<String, AppError> {
    let code = qrcode::QrCode::new(url.as_bytes()).map_err(AppError::internal)?;
    Ok(code.render::<qrcode::render::svg::Color>().min_dimensions(220, 220).build())
}

/// Signs the account out, forgets its session and the connector.
pub async fn disconnect(svc: &Services, admin: &AdminClaims, id: &str) -> Result<(), AppError> {
    let connector = svc.connectors.get(&admin.portal, id).await?.ok_or_else(|| unknown_connector(admin.lang))?;
    svc.telegram.log_out(&connector.account()).await.map_err(|e| login_problem(admin.lang, e.into()))?;
    svc.connectors.delete(&admin.portal, id).await?;
    refresh_automation(svc, &admin.portal).await;
    tracing::info!(connector_id = id, "Telegram account disconnected");
    Ok(())
}

/// The robot's "From" lists the portal's accounts (its "Template" the templates): registered
/// again once they change.
pub(super) async fn refresh_automation(svc: &Services, member_id: &str) {
    let job = crate::work::Job::SetUp { member_id: member_id.to_owned() };
    if let Err(e) = job.enqueue(svc.queue.as_ref(), std::time::Duration::ZERO).await {
        tracing::warn!(member_id, "the robot's accounts not brought up to date (the next update does): {e:#}");
    }
}

/// What a connector's automated messages do beyond its daily budgets.
pub async fn set_over_budget(svc: &Services, admin: &AdminClaims, id: &str, choice: OverBudget) -> Result<ConnectorAdminView, AppError> {
    let updated = svc.connectors.update(&admin.portal, id, |c| std::mem::replace(&mut c.over_budget, choice) != choice).await?;
    admin_view(svc, updated.ok_or_else(|| unknown_connector(admin.lang))?).await
}

/// Puts connector `id` in charge of the message provider (`None`: back to the only one).
pub async fn set_provider_connector(svc: &Services, admin: &AdminClaims, id: Option<&str>) -> Result<ConnectorsView, AppError> {
    if let Some(id) = id {
        svc.connectors.get(&admin.portal, id).await?.ok_or_else(|| unknown_connector(admin.lang))?;
    }
    let chosen = id.map(str::to_owned);
    svc.portals.update(&admin.portal, |p| std::mem::replace(&mut p.provider_connector, chosen.clone()) != chosen).await?;
    list(svc, admin).await
}

/// Sends the connector's chats to Open Line `line` (`None`: the portal's line).
pub async fn link_line(svc: &Services, admin: &AdminClaims, id: &str, line: Option<&str>) -> Result<ConnectorAdminView, AppError> {
    let line = line.map(str::trim).filter(|l| !l.is_empty());
    if line.is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit())) {
        return Err(AppError::invalid("bad_line", text(admin.lang, "bad_line", &[])));
    }
    let line = line.map(str::to_owned);
    let updated = svc.connectors.update(&admin.portal, id, |c| std::mem::replace(&mut c.line, line.clone()) != line).await?;
    admin_view(svc, updated.ok_or_else(|| unknown_connector(admin.lang))?).await
}

/// The most an administrator may allow per day: far above what Telegram tolerates, so a
/// typo cannot open the gates.
const MAX_DAILY: u32 = 1000;

/// Sets a connector's own daily budgets (`None`: back to the deployment's defaults).
pub async fn set_budgets(svc: &Services, admin: &AdminClaims, id: &str, budgets: Option<Budgets>) -> Result<ConnectorAdminView, AppError> {
    if budgets.is_some_and(|b| b.new_chats_per_day > MAX_DAILY || b.phone_lookups_per_day > MAX_DAILY) {
        let max = MAX_DAILY.to_string();
        return Err(AppError::invalid("bad_budgets", text(admin.lang, "bad_budgets", &[("max", &max)])));
    }
    let updated = svc.connectors.update(&admin.portal, id, |c| std::mem::replace(&mut c.budgets, budgets) != budgets).await?;
    admin_view(svc, updated.ok_or_else(|| unknown_connector(admin.lang))?).await
}

/// A connector's yes-or-no choices, the administrator's to make; named in URLs as
/// `accept-all` and `keep-imported-contacts`.
#[derive(Clone, Copy, Debug, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectorFlag {
    /// Messages from anyone who writes to the account reach the Open Line, not only from
    /// people the portal wrote to.
    AcceptAll,
    /// Numbers imported as Telegram contacts to find their owners stay in the account's contacts.
    KeepImportedContacts,
}

impl ConnectorFlag {
    /// Its field in the connector's view and in the request that sets it.
    pub fn field(self) -> &'static str {
        match self {
            ConnectorFlag::AcceptAll => "accept_all",
            ConnectorFlag::KeepImportedContacts => "keep_imported_contacts",
        }
    }
}

pub async fn set_flag(svc: &Services, admin: &AdminClaims, id: &str, flag: ConnectorFlag, on: bool) -> Result<ConnectorAdminView, AppError> {
    let updated = svc
        .connectors
        .update(&admin.portal, id, |c| {
            let field = match flag {
                ConnectorFlag::AcceptAll => &mut c.accept_all,
                ConnectorFlag::KeepImportedContacts => &mut c.keep_imported_contacts,
            };
            std::mem::replace(field, on) != on
        })
        .await?;
    admin_view(svc, updated.ok_or_else(|| unknown_connector(admin.lang))?).await
}

/// The most employees or departments one connector's access names.
const MAX_CHOSEN: usize = 500;

/// Sets who may send from the connector: everyone, or the chosen employees and departments.
pub async fn set_access(svc: &Services, admin: &AdminClaims, id: &str, access: Access) -> Result<ConnectorAdminView, AppError> {
    let access = match access {
        Access::Everyone => Access::Everyone,
        Access::Chosen { mut users, mut departments } => {
            // Nobody at all is a locked account, never what "chosen" means: refused, not stored.
            let bad = (users.is_empty() && departments.is_empty()) || users.len() > MAX_CHOSEN || departments.len() > MAX_CHOSEN;
            if bad || users.contains(&0) || departments.contains(&0) {
                return Err(AppError::invalid("bad_access", text(admin.lang, "bad_access", &[("max", &MAX_CHOSEN.to_string())])));
            }
            for ids in [&mut users, &mut departments] {
                ids.sort_unstable();
                ids.dedup();
            }
            Access::Chosen { users, departments }
        }
    };
    let updated = svc.connectors.update(&admin.portal, id, |c| std::mem::replace(&mut c.access, access.clone()) != access).await?;
    admin_view(svc, updated.ok_or_else(|| unknown_connector(admin.lang))?).await
}

#[derive(Serialize)]
pub struct DepartmentView {
    pub id: u64,
    pub name: String,
}

/// Whom an administrator can choose from: the portal's employees and departments.
#[derive(Serialize)]
pub struct PeopleView {
    pub employees: Vec<EmployeeView>,
    pub departments: Vec<DepartmentView>,
}

/// The portal's employees and departments (`department.get`, `api-reference/departments/department-get.md`,
/// 50 a page), read with the portal's own tokens: the page's user is a confirmed administrator
/// and the page carries no refresh token of theirs.
pub async fn people(svc: &Services, admin: &AdminClaims) -> Result<PeopleView, AppError> {
    let mut portal = PortalClient::app(svc, &admin.portal).await?;
    let employees = active_employees(&mut portal).await?;
    let rows = portal.call_all("department.get", &json!({ "sort": "NAME", "order": "ASC" })).await?;
    let departments = rows
        .iter()
        .filter_map(|d| {
            let id = d.get("ID").and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))?;
            Some(DepartmentView { id, name: d.get("NAME").and_then(Value::as_str).unwrap_or("").trim().to_owned() })
        })
        .collect();
    Ok(PeopleView { employees, departments })
}

/// Lets Open Lines' own messages (greetings, ratings) reach clients through the connector, or
/// not: registering the connector again with the same ID updates `NEED_SYSTEM_MESSAGES`
/// (`api-reference/imopenlines/imconnector/imconnector-register.md`). Stored once the portal took it.
pub async fn set_system_messages(svc: &Services, admin: &AdminClaims, allowed: bool) -> Result<ConnectorsView, AppError> {
    let mut portal = PortalClient::app(svc, &admin.portal).await?;
    portal.portal.system_messages = allowed;
    register_connector(&mut portal, svc.site.public_url.trim_end_matches('/')).await?;
    svc.portals.update(&admin.portal, |p| std::mem::replace(&mut p.system_messages, allowed) != allowed).await?;
    list(svc, admin).await
}

/// Whether the tab's user may send from `connector`.
pub fn may_use(claims: &Claims, connector: &Connector) -> bool {
    connector.access.allows(claims.user, &claims.departments)
}

/// The tab's connector `id`, if its user may send from it (403 otherwise).
pub async fn usable_connector(svc: &Services, claims: &Claims, id: &str) -> Result<Connector, AppError> {
    let unknown = || AppError::invalid("unknown_connector", text(claims.lang, "unknown_connector", &[]));
    let connector = svc.connectors.get(&claims.portal, id).await?.ok_or_else(unknown)?;
    if !may_use(claims, &connector) {
        return Err(not_permitted(claims.lang));
    }
    Ok(connector)
}

pub fn not_permitted(lang: Lang) -> AppError {
    AppError::new(ErrorKind::Forbidden, "connector_not_permitted", text(lang, "connector_not_permitted", &[]))
}

fn unknown_connector(lang: Lang) -> AppError {
    AppError::new(ErrorKind::NotFound, "unknown_connector", text(lang, "unknown_connector", &[]))
}

/// A login that did not work, said plainly.
fn login_problem(lang: Lang, e: LoginError) -> AppError {
    let invalid = |code, key| AppError::invalid(code, text(lang, key, &[]));
    match e {
        LoginError::InvalidPhone => invalid("invalid_phone", "login_invalid_phone"),
        LoginError::NoAccount => invalid("no_account", "login_no_account"),
        LoginError::InvalidCode => invalid("wrong_code", "login_wrong_code"),
        LoginError::CodeExpired => invalid("code_expired", "login_code_expired"),
        LoginError::InvalidPassword => invalid("wrong_password", "login_wrong_password"),
        LoginError::Telegram(TelegramError::FloodWait { seconds }) => {
            AppError::new(ErrorKind::Busy, "flood_wait", text(lang, "login_flood_wait", &[("seconds", &seconds.to_string())]))
        }
        LoginError::Telegram(e) => {
            tracing::warn!("Telegram login step failed: {e}");
            AppError::new(ErrorKind::Upstream, "telegram_failed", text(lang, "login_failed", &[("detail", &e.to_string())]))
        }
    }
}

/// What a refusal from Telegram says about the account itself: a dead session needs a login,
/// PEER_FLOOD limits it. Every job that talks to Telegram records it the same way.
pub async fn note_connector(svc: &Services, member_id: &str, connector_id: &str, e: &TelegramError) -> Result<(), crate::repo::RepoError> {
    let status = match e {
        TelegramError::Unauthorized(detail) => {
            tracing::warn!(connector_id, "connector session unauthorized: {detail}");
            ConnectorStatus::NeedsLogin
        }
        TelegramError::PeerFlood => {
            tracing::warn!(connector_id, "connector limited by Telegram (PEER_FLOOD)");
            ConnectorStatus::Limited
        }
        _ => return Ok(()),
    };
    svc.connectors.set_status(member_id, connector_id, status).await
}
