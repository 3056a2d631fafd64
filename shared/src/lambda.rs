//! What every Lambda function shares: its settings, its adapters built once per cold start,
//! and the mapping of job outcomes to SQS partial batch failures.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_config::environment::{EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tracing::Instrument;

use crate::adapters::aws::{DynamoTable, HttpsOnFirstUse, QueueUrls, S3Blobs, SqsQueue};
use crate::adapters::grammers::{ApiCredentials, GrammersTelegram, Servers};
use crate::adapters::telegram_unavailable::TelegramUnavailable;
use crate::app::install::RestEndpoints;
use crate::app::{Adapters, Services, Site};
use crate::bitrix::pacer::PortalRate;
use crate::bitrix::outbound::Reach;
use crate::bitrix::{AppCredentials, BitrixClient};
use crate::crypto::{MasterKey, Secret};
use crate::domain::cadence::{AWS_TICK_MS, Arrivals};
use crate::domain::phone::region_from_code;
use crate::jobs::{self, Outcome};
use crate::ports::{Delivery, JobQueue, Table, Telegram};
use crate::repo::Records;
use crate::repo::safety::SafetyLimits;
use crate::repo::sessions::TelegramSessions;
use crate::settings::{parsed, var};

/// What a function's main returns on failure (lambda_http's and lambda_runtime's are the same).
pub type Error = lambda_runtime::Error;

const PORTAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The deployment's configuration, from the environment the SAM template sets.
#[derive(Debug)]
pub struct AwsSettings {
    pub table: String,
    pub bucket: String,
    pub telegram_queue: QueueUrls,
    pub openline_queue: QueueUrls,
    /// The key itself (tests), or the SSM SecureString parameter holding it (deployments).
    pub encryption_key: Option<Secret>,
    pub encryption_key_parameter: Option<String>,
    pub bitrix_client_id: String,
    /// What `app.info` names as our `CODE` (`BITRIX_APP_CODE`): a Marketplace app's code; a
    /// local app's is its `client_id`, the default.
    pub bitrix_app_code: String,
    pub bitrix_client_secret: Option<Secret>,
    pub bitrix_client_secret_parameter: Option<String>,
    pub bitrix_oauth_url: String,
    /// Path-style S3 addressing, for S3-compatible servers such as moto.
    pub s3_path_style: bool,
    pub phone_region: String,
    pub session_minutes: i64,
    /// Our pace per portal (`OLCHAT_PORTAL_RATE` / `OLCHAT_PORTAL_BURST`), per function instance.
    pub portal_rate: PortalRate,
    /// The pace of token checks (`OLCHAT_PORTAL_CHECK_RATE` / `_BURST`), per function instance.
    pub check_rate: PortalRate,
    /// Portals on the loopback may be called (`OLCHAT_ALLOW_LOOPBACK_PORTALS=true`): only
    /// tests against a sandbox portal set it; a deployment never does (the template does not).
    pub allow_loopback_portals: bool,
    /// The API's base URL, where portals send placements and events (`OLCHAT_PUBLIC_URL`).
    pub public_url: String,
    /// Telegram's api_id (`TELEGRAM_API_ID`); without it no account can connect or send.
    pub telegram_api_id: Option<i32>,
    /// The api_hash itself (`TELEGRAM_API_HASH`), or the SSM SecureString holding it.
    pub telegram_api_hash: Option<Secret>,
    pub telegram_api_hash_parameter: Option<String>,
    /// Account-safety budgets and the phone look-up pace (3 s unless configured).
    pub limits: SafetyLimits,
}

fn required(name: &str) -> anyhow::Result<String> {
    var(name).with_context(|| format!("{name} must be set"))
}

impl AwsSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            table: required("OLCHAT_TABLE")?,
            bucket: required("OLCHAT_BUCKET")?,
            telegram_queue: QueueUrls {
                queue: required("OLCHAT_TELEGRAM_QUEUE_URL")?,
                dead_letters: required("OLCHAT_TELEGRAM_DLQ_URL")?,
            },
            openline_queue: QueueUrls {
                queue: required("OLCHAT_OPENLINE_QUEUE_URL")?,
                dead_letters: required("OLCHAT_OPENLINE_DLQ_URL")?,
            },
            encryption_key: var("OLCHAT_ENCRYPTION_KEY").map(Secret::new),
            encryption_key_parameter: var("OLCHAT_ENCRYPTION_KEY_PARAMETER"),
            bitrix_client_id: var("BITRIX_CLIENT_ID").unwrap_or_default(),
            bitrix_app_code: var("BITRIX_APP_CODE").or_else(|| var("BITRIX_CLIENT_ID")).unwrap_or_default(),
            bitrix_client_secret: var("BITRIX_CLIENT_SECRET").map(Secret::new),
            bitrix_client_secret_parameter: var("BITRIX_CLIENT_SECRET_PARAMETER"),
            bitrix_oauth_url: var("BITRIX_OAUTH_URL").unwrap_or_else(|| "https://oauth.bitrix.info".into()),
            s3_path_style: var("OLCHAT_S3_PATH_STYLE").is_some_and(|v| v == "true"),
            phone_region: var("OLCHAT_PHONE_REGION").unwrap_or_else(|| "RU".into()),
            session_minutes: parsed("OLCHAT_SESSION_MINUTES", 60)?,
            portal_rate: PortalRate::from_env()?,
            check_rate: PortalRate::checks_from_env()?,
            allow_loopback_portals: var("OLCHAT_ALLOW_LOOPBACK_PORTALS").is_some_and(|v| v == "true"),
            public_url: required("OLCHAT_PUBLIC_URL")?,
            telegram_api_id: var("TELEGRAM_API_ID").map(|v| v.parse()).transpose().context("TELEGRAM_API_ID must be a number")?,
            telegram_api_hash: var("TELEGRAM_API_HASH").map(Secret::new),
            telegram_api_hash_parameter: var("TELEGRAM_API_HASH_PARAMETER"),
            limits: SafetyLimits::from_env(3)?,
        })
    }
}

/// A secret: given directly, or the SSM SecureString parameter holding it.
struct Wanted<'a> {
    what: &'static str,
    direct: &'a Option<Secret>,
    parameter: &'a Option<String>,
}

/// The secrets, those not given directly read (decrypted) from SSM Parameter Store in one
/// call: a cold start waits for one round trip, not one per secret.
async fn secrets(config: &aws_config::SdkConfig, wanted: &[Wanted<'_>]) -> anyhow::Result<Vec<Secret>> {
    let mut names = Vec::new();
    for w in wanted.iter().filter(|w| w.direct.is_none()) {
        names.push(w.parameter.clone().with_context(|| format!("neither {} nor its SSM parameter is configured", w.what))?);
    }
    let mut fetched = HashMap::new();
    if !names.is_empty() {
        // Made only here: a function given its secrets directly has no SSM client to make.
        let ssm = aws_sdk_ssm::Client::new(config);
        let answer = ssm.get_parameters().set_names(Some(names)).with_decryption(true).send().await.map_err(crate::adapters::aws::sdk_error)?;
        for p in answer.parameters() {
            fetched.insert(p.name().unwrap_or_default().to_owned(), p.value().unwrap_or_default().to_owned());
        }
    }
    wanted
        .iter()
        .map(|w| match (w.direct, w.parameter) {
            (Some(value), _) => Ok(value.clone()),
            (None, Some(name)) => {
                let value = fetched.get(name).filter(|v| !v.is_empty());
                value.map(Secret::new).with_context(|| format!("SSM parameter {name} is missing or empty"))
            }
            (None, None) => unreachable!("checked above"),
        })
        .collect()
}

/// A function's cold start: JSON logs, settings from the environment, the services. Region and
/// credentials are the environment's, as Lambda gives them (AWS_REGION, AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN): the default chains' making (profiles, IMDS, SSO,
/// web identity) was a quarter of the init, for providers a function never reaches.
pub async fn cold_start() -> anyhow::Result<Arc<Services>> {
    crate::telemetry::init_json("info");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(EnvironmentVariableRegionProvider::new())
        .credentials_provider(EnvironmentVariableCredentialsProvider::new())
        .http_client(HttpsOnFirstUse::new())
        .load()
        .await;
    services(&config, &AwsSettings::from_env()?).await
}

/// Builds the AWS adapters and the services once; every invocation borrows them.
pub async fn services(config: &aws_config::SdkConfig, settings: &AwsSettings) -> anyhow::Result<Arc<Services>> {
    let (sqs_config, s3_config, s3_path_style) = (config.clone(), config.clone(), settings.s3_path_style);
    let mut wanted = vec![
        Wanted { what: "OLCHAT_ENCRYPTION_KEY", direct: &settings.encryption_key, parameter: &settings.encryption_key_parameter },
        Wanted { what: "BITRIX_CLIENT_SECRET", direct: &settings.bitrix_client_secret, parameter: &settings.bitrix_client_secret_parameter },
    ];
    if settings.telegram_api_id.is_some() {
        wanted.push(Wanted { what: "TELEGRAM_API_HASH", direct: &settings.telegram_api_hash, parameter: &settings.telegram_api_hash_parameter });
    }
    let mut secrets = secrets(config, &wanted).await?.into_iter();
    let (encryption_key, client_secret, api_hash) = (secrets.next().expect("asked"), secrets.next().expect("asked"), secrets.next());
    let master = MasterKey::from_base64(encryption_key.expose())?;
    let queues = HashMap::from([
        (JobQueue::Telegram, settings.telegram_queue.clone()),
        (JobQueue::Openline, settings.openline_queue.clone()),
    ]);
    let dynamo_config = config.clone();
    let table: Arc<dyn Table> = Arc::new(DynamoTable::new(move || aws_sdk_dynamodb::Client::new(&dynamo_config), &settings.table));
    // Only the functions that talk to Telegram (placement: logins and look-ups; the
    // telegram-worker) are given its credentials.
    let telegram: Arc<dyn Telegram> = match (settings.telegram_api_id, api_hash) {
        (Some(api_id), Some(api_hash)) => {
            let sessions = TelegramSessions::new(Records::new(table.clone()), &master);
            Arc::new(GrammersTelegram::new(ApiCredentials { api_id, api_hash }, sessions, Servers::Production))
        }
        _ => Arc::new(TelegramUnavailable),
    };
    let adapters = Adapters {
        table,
        queue: Arc::new(SqsQueue::new(move || aws_sdk_sqs::Client::new(&sqs_config), queues)),
        blobs: Arc::new(S3Blobs::new(move || aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&s3_config).force_path_style(s3_path_style).build()), &settings.bucket)),
        telegram,
    };
    let credentials = AppCredentials {
        client_id: settings.bitrix_client_id.clone(),
        code: settings.bitrix_app_code.clone(),
        client_secret,
        oauth_url: settings.bitrix_oauth_url.clone(),
    };
    Ok(Arc::new(Services::new(
        adapters,
        BitrixClient::new(credentials, PORTAL_TIMEOUT, settings.portal_rate, settings.check_rate, Reach::from_flag(settings.allow_loopback_portals)),
        &master,
        settings.session_minutes * 60,
        region_from_code(&settings.phone_region),
        Site { public_url: settings.public_url.clone(), endpoints: RestEndpoints::Public, arrivals: Arrivals::AtTicks { every_ms: AWS_TICK_MS } },
        settings.limits,
    )))
}

/// The main of an HTTP function: the router over API Gateway events.
pub async fn run_http(router: fn(Arc<Services>) -> axum::Router) -> Result<(), Error> {
    let services = cold_start().await?;
    lambda_http::run(router(services)).await
}

/// The main of an SQS-triggered worker consuming `queue`.
pub async fn run_worker(queue: JobQueue) -> Result<(), Error> {
    let services = cold_start().await?;
    lambda_runtime::run(lambda_runtime::service_fn(|event: lambda_runtime::LambdaEvent<SqsEvent>| {
        let services = services.clone();
        async move { Ok::<_, Error>(handle_sqs(&services, queue, event.payload).await) }
    }))
    .await
}

/// Runs each record of an SQS batch through its job handler, in its own span, and reports
/// the ones to deliver again. A retry-after moves the message's visibility to its time.
/// In a FIFO queue a failed record also fails the later records of its group, which keeps
/// their order; those are made visible again at once, to wait behind it in their group.
pub async fn handle_sqs(svc: &Services, queue: JobQueue, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut failed_groups = HashSet::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let group = record.attributes.get("MessageGroupId").cloned();
        let receipt = record.receipt_handle.clone().unwrap_or_default();
        if group.as_ref().is_some_and(|g| failed_groups.contains(g)) {
            if let Err(e) = svc.queue.retry_after(queue, &receipt, Duration::ZERO).await {
                tracing::warn!(sqs_message_id = %id, "visibility change failed; SQS retries after its default: {e:#}");
            }
            response.add_failure(id);
            continue;
        }
        let delivery = Delivery {
            receipt,
            body: record.body.clone().unwrap_or_default(),
            receive_count: record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1),
        };
        let span = tracing::info_span!("sqs_record", sqs_message_id = %id, queue = queue.name());
        // SQS hid it for the queue's timeout (no shorter than the function's): a minute, while it runs.
        let work = jobs::handle(svc, &delivery).instrument(span);
        let retry = match jobs::keep_hidden(svc.queue.as_ref(), queue, &delivery.receipt, jobs::HEARTBEAT, true, work).await {
            Outcome::Done => None,
            Outcome::Failed(reason) => {
                tracing::warn!(sqs_message_id = %id, reason, "job failed for good");
                None
            }
            Outcome::RetryAfter(delay) => Some(delay),
        };
        if let Some(delay) = retry {
            if let Err(e) = svc.queue.retry_after(queue, &delivery.receipt, delay).await {
                tracing::error!(sqs_message_id = %id, "visibility change failed; SQS retries after its default: {e:#}");
            }
            failed_groups.extend(group);
            response.add_failure(id);
        }
    }
    response
}
