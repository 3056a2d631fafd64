//! Logging an account in across separate HTTP requests: raw `auth.sendCode`/`auth.signIn`
//! (the `phone_code_hash` travels through the app, sealed), the cloud password, and QR login.
//! The session being made is stored under the login's id, which becomes the connector's.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use grammers_client::client::{PasswordToken, SignInError};
use grammers_client::session::Session;
use grammers_client::session::types::{PeerAuth, PeerInfo, UpdateState, UpdatesState};
use grammers_client::{InvocationError, tl};

use super::errors::classify;
use super::{Connection, telegram_user};
use crate::crypto::Secret;
use crate::ports::{LoggedIn, LoginError, LoginStep, TelegramError};

/// A failed login call as the port's error: the user-facing ones by name, the rest as usual.
pub fn login_error(error: &InvocationError) -> LoginError {
    let InvocationError::Rpc(rpc) = error else { return LoginError::Telegram(classify(error)) };
    match rpc.name.as_str() {
        "PHONE_NUMBER_INVALID" | "PHONE_NUMBER_BANNED" => LoginError::InvalidPhone,
        "PHONE_NUMBER_UNOCCUPIED" => LoginError::NoAccount,
        "PHONE_CODE_INVALID" | "PHONE_CODE_EMPTY" => LoginError::InvalidCode,
        "PHONE_CODE_EXPIRED" | "PHONE_CODE_HASH_EMPTY" | "AUTH_TOKEN_EXPIRED" => LoginError::CodeExpired,
        "PASSWORD_HASH_INVALID" => LoginError::InvalidPassword,
        _ => LoginError::Telegram(classify(error)),
    }
}

fn password_needed(error: &InvocationError) -> bool {
    matches!(error, InvocationError::Rpc(e) if e.is("SESSION_PASSWORD_NEEDED"))
}

/// The DC Telegram sends us to (`PHONE_MIGRATE_2`, `USER_MIGRATE_4`...), if it does.
pub(super) fn migrate_to(error: &InvocationError) -> Option<i32> {
    match error {
        InvocationError::Rpc(e) if e.code == 303 => e.value.and_then(|v| i32::try_from(v).ok()),
        _ => None,
    }
}

/// Whether grammers' `check_password` can work with these SRP parameters without panicking
/// (it unwraps `srp_B`/`srp_id`, takes at most 256 bytes of each number, and panics when `p`
/// and `g` fail its checks twice): the known algorithm, a 2048-bit safe prime `p` with a
/// generator `g` it accepts (core.telegram.org/api/srp#checking-the-password-with-srp).
fn srp_parameters_usable(info: &tl::types::account::Password) -> bool {
    let Some(tl::enums::PasswordKdfAlgo::Sha256Sha256Pbkdf2Hmacsha512iter100000Sha256ModPow(algo)) = &info.current_algo else { return false };
    let numbers_fit = info.srp_b.as_ref().is_some_and(|b| !b.is_empty() && b.len() <= 256) && info.srp_id.is_some() && info.secure_random.len() <= 256;
    numbers_fit && (2..=7).contains(&algo.g) && algo.p.len() == 256 && grammers_crypto::two_factor_auth::check_p_and_g(&algo.p, &algo.g)
}

impl Connection<'_> {
    pub(super) async fn send_code(&self, phone: &str) -> Result<LoginStep, LoginError> {
        let request = tl::functions::auth::SendCode {
            phone_number: phone.to_owned(),
            api_id: self.adapter.credentials.api_id,
            api_hash: self.adapter.credentials.api_hash.expose().to_owned(),
            settings: tl::types::CodeSettings {
                allow_flashcall: false,
                current_number: false,
                allow_app_hash: false,
                allow_missed_call: false,
                allow_firebase: false,
                unknown_number: false,
                logout_tokens: None,
                token: None,
                app_sandbox: None,
            }
            .into(),
        };
        // A number that lives on another DC answers PHONE_MIGRATE_X: `invoke` moves there.
        match self.invoke(&request).await.map_err(|e| login_error(&e))? {
            tl::enums::auth::SentCode::Code(code) => {
                Ok(LoginStep::CodeSent { phone_code_hash: Secret::new(code.phone_code_hash) })
            }
            tl::enums::auth::SentCode::Success(s) => match s.authorization {
                tl::enums::auth::Authorization::Authorization(done) => self.complete(done).await,
                tl::enums::auth::Authorization::SignUpRequired(_) => Err(LoginError::NoAccount),
            },
            tl::enums::auth::SentCode::PaymentRequired(_) => Err(TelegramError::Rejected("PAYMENT_REQUIRED".into()).into()),
        }
    }

    pub(super) async fn sign_in(&self, phone: &str, phone_code_hash: &Secret, code: &str) -> Result<LoginStep, LoginError> {
        let request = tl::functions::auth::SignIn {
            phone_number: phone.to_owned(),
            phone_code_hash: phone_code_hash.expose().to_owned(),
            phone_code: Some(code.trim().to_owned()),
            email_verification: None,
        };
        match self.invoke(&request).await {
            Ok(tl::enums::auth::Authorization::Authorization(done)) => self.complete(done).await,
            Ok(tl::enums::auth::Authorization::SignUpRequired(_)) => Err(LoginError::NoAccount),
            Err(e) if password_needed(&e) => self.password_needed().await,
            Err(e) => Err(login_error(&e)),
        }
    }

    async fn password_needed(&self) -> Result<LoginStep, LoginError> {
        let tl::enums::account::Password::Password(password) =
            self.call(&tl::functions::account::GetPassword {}).await?;
        Ok(LoginStep::PasswordNeeded { hint: password.hint })
    }

    pub(super) async fn check_password(&self, password: &Secret) -> Result<LoginStep, LoginError> {
        let tl::enums::account::Password::Password(info) = self.call(&tl::functions::account::GetPassword {}).await?;
        if info.current_algo.is_none() {
            return Err(TelegramError::Rejected("NO_CLOUD_PASSWORD".into()).into());
        }
        if !srp_parameters_usable(&info) {
            // grammers would panic on them; the login stops with a clear reason instead.
            return Err(TelegramError::Rejected("PASSWORD_ALGO_UNSUPPORTED".into()).into());
        }
        let checked = tokio::time::timeout(
            super::CALL_TIMEOUT,
            self.client.check_password(PasswordToken::new(info), password.expose().as_bytes()),
        )
        .await
        .map_err(|_| TelegramError::Transient("no answer in time".into()))?;
        match checked {
            // grammers has cached the self user and the updates state in the session.
            Ok(user) => self.logged_in(&user.raw),
            Err(SignInError::InvalidPassword(_)) => Err(LoginError::InvalidPassword),
            Err(SignInError::Other(e)) => Err(login_error(&e)),
            Err(_) => Err(TelegramError::Rejected("SIGN_IN_FAILED".into()).into()),
        }
    }

    pub(super) async fn qr_login(&self) -> Result<LoginStep, LoginError> {
        let request = tl::functions::auth::ExportLoginToken {
            api_id: self.adapter.credentials.api_id,
            api_hash: self.adapter.credentials.api_hash.expose().to_owned(),
            except_ids: Vec::new(),
        };
        let mut answer = self.invoke(&request).await;
        if let Ok(tl::enums::auth::LoginToken::MigrateTo(to)) = &answer {
            self.move_home(to.dc_id).await?;
            answer = self.invoke(&tl::functions::auth::ImportLoginToken { token: to.token.clone() }).await;
        }
        match answer {
            Ok(tl::enums::auth::LoginToken::Token(t)) => {
                Ok(LoginStep::Qr { url: format!("tg://login?token={}", URL_SAFE_NO_PAD.encode(&t.token)), expires: t.expires.into() })
            }
            Ok(tl::enums::auth::LoginToken::Success(s)) => match s.authorization {
                tl::enums::auth::Authorization::Authorization(done) => self.complete(done).await,
                tl::enums::auth::Authorization::SignUpRequired(_) => Err(LoginError::NoAccount),
            },
            Ok(tl::enums::auth::LoginToken::MigrateTo(_)) => Err(TelegramError::Transient("migrated twice".into()).into()),
            Err(e) if password_needed(&e) => self.password_needed().await,
            Err(e) => Err(login_error(&e)),
        }
    }

    /// The account lives on another DC: work there from now on.
    async fn move_home(&self, dc: i32) -> Result<(), LoginError> {
        self.session.set_home_dc_id(dc).await.map_err(|e| TelegramError::Transient(e.to_string()))?;
        Ok(())
    }

    /// After a raw sign-in: the self user and the updates state go into the session.
    async fn complete(&self, done: tl::types::auth::Authorization) -> Result<LoginStep, LoginError> {
        let step = self.logged_in(&done.user)?;
        if let LoginStep::Done(LoggedIn { user, .. }) = &step {
            let me = PeerInfo::User {
                id: user.peer.user_id,
                auth: Some(PeerAuth::from_hash(user.peer.access_hash)),
                bot: Some(false),
                is_self: Some(true),
            };
            let transient = |e: super::session::Poisoned| TelegramError::Transient(e.to_string());
            self.session.cache_peer(me).await.map_err(transient)?;
            if let Ok(tl::enums::updates::State::State(s)) = self.invoke(&tl::functions::updates::GetState {}).await {
                let all = UpdatesState { pts: s.pts, qts: s.qts, date: s.date, seq: s.seq, channels: Vec::new() };
                self.session.set_update_state(UpdateState::All(all)).await.map_err(transient)?;
            }
        }
        Ok(step)
    }

    fn logged_in(&self, user: &tl::enums::User) -> Result<LoginStep, LoginError> {
        let found = telegram_user(user).ok_or_else(|| TelegramError::Rejected("USER_EMPTY".into()))?;
        let phone = match user {
            tl::enums::User::User(u) => u.phone.clone().unwrap_or_default(),
            tl::enums::User::Empty(_) => String::new(),
        };
        Ok(LoginStep::Done(LoggedIn { user: found, phone }))
    }
}

#[cfg(test)]
mod tests {
    use grammers_client::sender::RpcError;

    use super::*;

    fn rpc(code: i32, message: &str) -> InvocationError {
        InvocationError::Rpc(RpcError::from(tl::types::RpcError { error_code: code, error_message: message.into() }))
    }

    #[test]
    fn login_errors_say_what_went_wrong() {
        assert_eq!(login_error(&rpc(400, "PHONE_CODE_INVALID")), LoginError::InvalidCode);
        assert_eq!(login_error(&rpc(400, "PHONE_CODE_EXPIRED")), LoginError::CodeExpired);
        assert_eq!(login_error(&rpc(400, "PASSWORD_HASH_INVALID")), LoginError::InvalidPassword);
        assert_eq!(login_error(&rpc(400, "PHONE_NUMBER_INVALID")), LoginError::InvalidPhone);
        assert_eq!(login_error(&rpc(400, "PHONE_NUMBER_UNOCCUPIED")), LoginError::NoAccount);
        assert_eq!(login_error(&rpc(420, "FLOOD_WAIT_300")), LoginError::Telegram(TelegramError::FloodWait { seconds: 300 }));
        assert!(password_needed(&rpc(401, "SESSION_PASSWORD_NEEDED")));
        assert_eq!(migrate_to(&rpc(303, "PHONE_MIGRATE_4")), Some(4));
        assert_eq!(migrate_to(&rpc(400, "PHONE_CODE_INVALID")), None);
    }
}
