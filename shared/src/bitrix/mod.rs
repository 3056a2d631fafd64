//! Bitrix24 REST over HTTP: calls, `batch`, and OAuth refresh, paced per portal. Knows
//! nothing of storage: callers hand it the endpoint and token and keep what it returns.

pub mod outbound;
pub mod pacer;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::clock::now_secs;
use crate::crypto::Secret;
use outbound::Reach;
use pacer::{LeakyBucket, PortalRate};

/// How many times a rate-limited call is tried before giving up.
const RATE_LIMIT_TRIES: u32 = 3;
const RATE_LIMIT_BACKOFF: Duration = Duration::from_millis(500);
/// How long a method blocked by its time budget rests when no `operating_reset_at` is known:
/// the budget's baskets are one minute each (`settings/performance/limits.md`).
const BASKET_SECS: i64 = 60;
/// The longest an HTTP request waits for its turn in a portal's bucket: past it the user
/// is told at once to come back (503 with `Retry-After`), rather than kept waiting.
pub const REQUEST_MAX_WAIT: Duration = Duration::from_secs(2);
/// The longest a job waits for its turn; past it the job is delivered again after the wait.
pub const JOB_MAX_WAIT: Duration = Duration::from_secs(20);

tokio::task_local! {
    /// Set while a queued job runs: it may wait for its turn longer than a request.
    static PATIENT: ();
}

/// Runs `work` as a job does: its portal calls may wait up to [`JOB_MAX_WAIT`] for their turn.
pub async fn patiently<F: Future>(work: F) -> F::Output {
    PATIENT.scope((), work).await
}

fn max_wait() -> Duration {
    if PATIENT.try_with(|_| ()).is_ok() { JOB_MAX_WAIT } else { REQUEST_MAX_WAIT }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BitrixError {
    #[error("Bitrix24 answered {status} {code}: {description}")]
    Api { status: u16, code: String, description: String },
    #[error("Bitrix24 could not be reached: {0}")]
    Transport(String),
    #[error("Bitrix24 answered something unexpected: {0}")]
    Protocol(String),
    /// `OPERATION_TIME_LIMIT`: the method's time budget is spent until `until` (unix seconds).
    #[error("Bitrix24 blocked {method} for this app until its time budget resets")]
    MethodBlocked { method: String, until: i64 },
    /// Our own pace for the portal has no turn free soon enough for the caller.
    #[error("this portal's calls are paced; the next turn is {}s away", .retry_after.as_secs_f64().ceil())]
    Paced { retry_after: Duration },
}

impl BitrixError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_expired_token(&self) -> bool {
        self.code() == Some("expired_token")
    }

    /// The portal asks us to slow down: later, the same call may go through.
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, Self::MethodBlocked { .. } | Self::Paced { .. }) || matches!(self.code(), Some("QUERY_LIMIT_EXCEEDED" | "OVERLOAD_LIMIT"))
    }

    /// How long to wait before the call can go through, when the portal said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::MethodBlocked { until, .. } => Some(Duration::from_secs((until - now_secs()).max(1) as u64)),
            Self::Paced { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// The app's credentials with Bitrix24's OAuth server.
#[derive(Clone, Debug)]
pub struct AppCredentials {
    pub client_id: String,
    pub client_secret: Secret,
    /// What `app.info` names as `CODE` for our tokens: a local app's `client_id`, a
    /// Marketplace app's own code (`api-reference/common/system/app-info.md`).
    pub code: String,
    /// `https://oauth.bitrix.info` for real portals.
    pub oauth_url: String,
}

/// What the OAuth server answers to a refresh.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenGrant {
    pub access_token: Secret,
    pub refresh_token: Secret,
    #[serde(default)]
    pub member_id: String,
    /// The portal's REST base, as the OAuth server (not the caller) knows it.
    #[serde(default)]
    pub client_endpoint: String,
}

/// The outcome of a `batch`: each command's result or error, by key.
#[derive(Debug, Default)]
pub struct BatchResult {
    pub results: BTreeMap<String, Value>,
    pub errors: BTreeMap<String, BitrixError>,
}

/// One page of a list method: its rows, and where the next page starts (`next`), if any.
#[derive(Debug)]
pub struct Page {
    pub result: Value,
    pub next: Option<u64>,
}

#[derive(Clone)]
pub struct BitrixClient {
    /// Built on the first portal call: loading the TLS roots is a good part of a Lambda's
    /// cold start, and most invocations of most functions never call a portal.
    http: Arc<OnceLock<reqwest::Client>>,
    timeout: Duration,
    reach: Reach,
    app: AppCredentials,
    /// One bucket per REST endpoint, which is one portal: the calls of real work.
    work: Arc<LeakyBucket>,
    /// The checks of tokens that came with unauthenticated requests ([`pacer::CHECK_RATE`] unless configured).
    checks: Arc<LeakyBucket>,
    /// Per (endpoint, method): when its time budget next resets, from the last answer's
    /// `operating_reset_at`, and whether it is blocked until then.
    budgets: Arc<Mutex<HashMap<(String, String), MethodBudget>>>,
}

#[derive(Clone, Copy, Default)]
struct MethodBudget {
    reset_at: i64,
    blocked: bool,
}

impl BitrixClient {
    /// `reach` says which hosts may be called: [`Reach::Public`] unless the deployment
    /// explicitly serves a portal on the loopback (the sandbox, tests).
    pub fn new(app: AppCredentials, timeout: Duration, rate: PortalRate, check_rate: PortalRate, reach: Reach) -> Self {
        let (work, checks) = (Arc::new(LeakyBucket::new(rate)), Arc::new(LeakyBucket::new(check_rate)));
        Self { http: Arc::default(), timeout, reach, app, work, checks, budgets: Arc::default() }
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| outbound::client(self.timeout, self.reach))
    }

    /// How full the work bucket of the portal at `endpoint` is now, in calls.
    pub fn work_level(&self, endpoint: &str) -> f64 {
        self.work.level(endpoint)
    }

    /// Our app's code, which `app.info` names as `CODE` for a token of ours.
    pub fn app_code(&self) -> &str {
        &self.app.code
    }

    /// Calls `method` on the portal whose REST base is `endpoint`; its `result`.
    pub async fn call(&self, endpoint: &str, token: &Secret, method: &str, params: &Value) -> Result<Value, BitrixError> {
        self.call_page(endpoint, token, method, params).await.map(|p| p.result)
    }

    /// Calls `method`, paced by the portal's leaky bucket, backing off while the portal says it
    /// is over its rate limit anyway. A method whose time budget is spent
    /// (`OPERATION_TIME_LIMIT`) is not called again before its documented reset.
    pub async fn call_page(&self, endpoint: &str, token: &Secret, method: &str, params: &Value) -> Result<Page, BitrixError> {
        let url = format!("{}/{method}", endpoint.trim_end_matches('/'));
        let key = (endpoint.to_owned(), method.to_owned());
        let mut tries = 0;
        loop {
            let budget = self.budgets.lock().unwrap_or_else(|p| p.into_inner()).get(&key).copied().unwrap_or_default();
            if budget.blocked && budget.reset_at > now_secs() {
                return Err(BitrixError::MethodBlocked { method: method.to_owned(), until: budget.reset_at });
            }
            tries += 1;
            self.work.acquire(endpoint, max_wait()).await.map_err(|retry_after| BitrixError::Paced { retry_after })?;
            let answer = self.call_once(&url, token, params).await;
            let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
            match answer {
                Ok((page, reset_at)) => {
                    if let Some(reset_at) = reset_at {
                        budgets.insert(key, MethodBudget { reset_at, blocked: false });
                    }
                    return Ok(page);
                }
                Err(e) if e.code() == Some("OPERATION_TIME_LIMIT") => {
                    // "For the first retry, refer to operating_reset_at from the last successful response."
                    let reset_at = Some(budget.reset_at).filter(|&r| r > now_secs()).unwrap_or(now_secs() + BASKET_SECS);
                    budgets.insert(key, MethodBudget { reset_at, blocked: true });
                    tracing::warn!(method, "Bitrix24 blocked the method until its time budget resets");
                    return Err(BitrixError::MethodBlocked { method: method.to_owned(), until: reset_at });
                }
                Err(e) if e.code() == Some("QUERY_LIMIT_EXCEEDED") && tries < RATE_LIMIT_TRIES => {
                    drop(budgets);
                    tracing::warn!(method, "Bitrix24 rate limit, backing off: {e}");
                    tokio::time::sleep(RATE_LIMIT_BACKOFF * 2u32.pow(tries - 1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A `batch` that checks a token an unauthenticated request brought (a placement, the
    /// connectors page, an install): paced by the checks' own bucket, never waiting in it and
    /// never retried, so a flood of forged tokens is refused at once and leaves the work
    /// bucket as it was. A token the portal accepted was counted by it, so it is charged to
    /// the work bucket then.
    pub async fn check_batch(&self, endpoint: &str, token: &Secret, commands: &[(String, String)]) -> Result<BatchResult, BitrixError> {
        self.checks.acquire(endpoint, Duration::ZERO).await.map_err(|retry_after| BitrixError::Paced { retry_after })?;
        let url = format!("{}/batch", endpoint.trim_end_matches('/'));
        let (page, _) = self.call_once(&url, token, &batch_params(commands)).await?;
        self.work.charge(endpoint);
        parse_batch(&page.result)
    }

    /// One request: the page and the method's `time.operating_reset_at`. The token goes in
    /// the JSON body, never the URL (`settings/how-to-call-rest-api/authorization.md` passes
    /// `auth` so), where no proxy's or server's log keeps it.
    async fn call_once(&self, url: &str, token: &Secret, params: &Value) -> Result<(Page, Option<i64>), BitrixError> {
        let mut body = match params {
            Value::Object(map) => map.clone(),
            Value::Null => serde_json::Map::new(),
            _ => return Err(BitrixError::Protocol("method parameters must be an object".into())),
        };
        body.insert("auth".into(), Value::String(token.expose().to_owned()));
        let (status, body) = self.send(self.http().post(url).json(&body)).await?;
        if let Ok(err) = serde_json::from_value::<ErrorBody>(body.clone()) {
            return Err(BitrixError::Api { status, code: err.error, description: err.error_description });
        }
        let result = body.get("result").cloned().ok_or_else(|| BitrixError::Protocol(format!("no result in a {status} answer")))?;
        let reset_at = body.pointer("/time/operating_reset_at").and_then(Value::as_i64);
        Ok((Page { result, next: body.get("next").and_then(Value::as_u64) }, reset_at))
    }

    /// Runs up to 50 commands (`key`, `method?query`) in one request.
    pub async fn batch(&self, endpoint: &str, token: &Secret, commands: &[(String, String)]) -> Result<BatchResult, BitrixError> {
        parse_batch(&self.call(endpoint, token, "batch", &batch_params(commands)).await?)
    }

    /// Trades a refresh token for new tokens. The refresh token rotates: store the new one.
    ///
    /// The secrets travel in the query string: the only form Bitrix24 documents for
    /// `oauth/token/` ("a GET request ... with four parameters in the query string",
    /// `api-reference/chat-bots/send-command.md`; `settings/oauth/auto-renewal.md`), and
    /// the stricter reading is that no other is accepted. The URL is never logged
    /// ([`without_url`]), goes only to the configured OAuth server, and no redirect takes
    /// it anywhere else.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenGrant, BitrixError> {
        let url = format!("{}/oauth/token/", self.app.oauth_url.trim_end_matches('/'));
        let request = self.http().get(url).query(&[
            ("grant_type", "refresh_token"),
            ("client_id", &self.app.client_id),
            ("client_secret", self.app.client_secret.expose()),
            ("refresh_token", refresh_token.expose()),
        ]);
        let (status, body) = self.send(request).await?;
        if let Ok(err) = serde_json::from_value::<ErrorBody>(body.clone()) {
            return Err(BitrixError::Api { status, code: err.error, description: err.error_description });
        }
        serde_json::from_value(body).map_err(|e| BitrixError::Protocol(e.to_string()))
    }

    /// Sends `request` to a host [`Reach`] allows; its status and JSON body, read up to
    /// [`outbound::MAX_ANSWER`]. A redirect is an error: it is not followed.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), BitrixError> {
        let request = request.build().map_err(|e| BitrixError::Protocol(without_url(e)))?;
        outbound::check_url(request.url(), self.reach).map_err(BitrixError::Transport)?;
        let response = self.http().execute(request).await.map_err(|e| BitrixError::Transport(without_url(e)))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(BitrixError::Protocol(format!("answered {status}, a redirect, which is not followed")));
        }
        let body = outbound::capped_body(response).await.map_err(BitrixError::Protocol)?;
        let body = serde_json::from_slice(&body).map_err(|e| BitrixError::Protocol(format!("a {status} answer that is not JSON: {e}")))?;
        Ok((status.as_u16(), body))
    }
}

/// The parameters of a `batch` call.
pub fn batch_params(commands: &[(String, String)]) -> Value {
    let cmd: serde_json::Map<String, Value> = commands.iter().map(|(k, c)| (k.clone(), Value::String(c.clone()))).collect();
    json!({ "halt": 0, "cmd": cmd })
}

/// Splits a `batch` answer into each command's result or error.
pub fn parse_batch(answer: &Value) -> Result<BatchResult, BitrixError> {
    let mut out = BatchResult::default();
    if let Some(results) = answer.get("result").and_then(Value::as_object) {
        out.results = results.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    // `result_error` is `[]` when empty and an object otherwise.
    if let Some(errors) = answer.get("result_error").and_then(Value::as_object) {
        for (key, err) in errors {
            let err: ErrorBody = serde_json::from_value(err.clone()).map_err(|e| BitrixError::Protocol(e.to_string()))?;
            out.errors.insert(key.clone(), BitrixError::Api { status: 400, code: err.error, description: err.error_description });
        }
    }
    Ok(out)
}

/// reqwest's errors print the URL, which carries the token: keep only the cause.
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::any;

    use super::*;

    /// A stand-in portal on the loopback: its port and how many requests reached it.
    async fn serve(router: impl FnOnce(u16, Arc<AtomicUsize>) -> Router) -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let router = router(port, hits.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (port, hits)
    }

    /// Answers every method with `answer`, counting the requests.
    fn answering(answer: fn(u16) -> axum::response::Response) -> impl FnOnce(u16, Arc<AtomicUsize>) -> Router {
        move |port, hits| {
            Router::new().route(
                "/rest/{method}",
                any(move || async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    answer(port)
                }),
            )
        }
    }

    fn ok(_: u16) -> axum::response::Response {
        axum::Json(json!({ "result": true })).into_response()
    }

    fn client(reach: Reach) -> BitrixClient {
        let app = AppCredentials { client_id: "app".into(), client_secret: Secret::new("s"), code: "app".into(), oauth_url: "http://127.0.0.1:9".into() };
        BitrixClient::new(app, Duration::from_secs(5), PortalRate::default(), pacer::CHECK_RATE, reach)
    }

    async fn call(reach: Reach, endpoint: &str) -> Result<Value, BitrixError> {
        client(reach).call(endpoint, &Secret::new("a".repeat(32)), "user.current", &json!({})).await
    }

    #[tokio::test]
    async fn a_portal_name_that_resolves_to_the_loopback_is_refused_unless_explicitly_allowed() {
        let (port, hits) = serve(answering(ok)).await;
        let endpoint = format!("http://localhost:{port}/rest/");
        let refused = call(Reach::Public, &endpoint).await;
        assert!(matches!(&refused, Err(BitrixError::Transport(_))), "{refused:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the loopback");
        assert_eq!(call(Reach::AlsoLoopback, &endpoint).await.unwrap(), json!(true), "the same portal, explicitly allowed");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_literal_loopback_address_is_refused_before_any_connection() {
        let (port, hits) = serve(answering(ok)).await;
        for host in ["127.0.0.1", "[::ffff:127.0.0.1]"] {
            let refused = call(Reach::Public, &format!("http://{host}:{port}/rest/")).await;
            assert!(matches!(&refused, Err(BitrixError::Transport(e)) if e.contains("not a public address")), "{host}: {refused:?}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let (port, redirected) = serve(|port, hits| {
            let elsewhere = format!("http://127.0.0.1:{port}/elsewhere");
            Router::new()
                .route("/rest/{method}", any(move || async move { (StatusCode::FOUND, [(header::LOCATION, elsewhere)]).into_response() }))
                .route("/elsewhere", any(move || async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    ok(0)
                }))
        })
        .await;
        let answer = call(Reach::AlsoLoopback, &format!("http://127.0.0.1:{port}/rest/")).await;
        assert!(matches!(&answer, Err(BitrixError::Protocol(e)) if e.contains("redirect")), "{answer:?}");
        assert_eq!(redirected.load(Ordering::SeqCst), 0, "the redirect's target was never asked");
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_cap_is_refused_announced_or_streamed() {
        fn announced(_: u16) -> axum::response::Response {
            format!("{{\"result\":\"{}\"}}", "a".repeat(outbound::MAX_ANSWER)).into_response()
        }
        fn streamed(_: u16) -> axum::response::Response {
            // No Content-Length: only reading it in chunks finds out.
            let chunk = || Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 1024 * 1024]));
            let chunks = std::iter::repeat_with(chunk).take(outbound::MAX_ANSWER / (1024 * 1024) + 1);
            axum::body::Body::from_stream(futures_util::stream::iter(chunks)).into_response()
        }
        for answer in [announced as fn(u16) -> axum::response::Response, streamed] {
            let (port, _) = serve(answering(answer)).await;
            let refused = call(Reach::AlsoLoopback, &format!("http://127.0.0.1:{port}/rest/")).await;
            assert!(matches!(&refused, Err(BitrixError::Protocol(e)) if e.contains("larger than")), "read whole: {}", refused.is_ok());
        }
    }

    #[tokio::test]
    async fn the_access_token_travels_in_the_body_not_the_url() {
        let (port, _) = serve(|_, _| {
            Router::new().route(
                "/rest/{method}",
                any(|uri: axum::http::Uri, body: axum::body::Bytes| async move {
                    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
                    axum::Json(json!({ "result": { "query": uri.query(), "auth": body["auth"] } }))
                }),
            )
        })
        .await;
        let seen = call(Reach::AlsoLoopback, &format!("http://127.0.0.1:{port}/rest/")).await.unwrap();
        assert_eq!(seen, json!({ "query": null, "auth": "a".repeat(32) }));
    }
}
