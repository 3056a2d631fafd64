//! What every Lambda function shares: its settings, its adapters built once per cold start,
//! and the mapping of job outcomes to SQS partial batch failures.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tracing::Instrument;

use crate::adapters::aws::sqs::Forward;
use crate::adapters::aws::{DynamoTable, QueueUrls, S3Blobs, SqsQueue};
use crate::adapters::grammers::{ApiCredentials, GrammersTelegram};
use crate::adapters::telegram_unavailable::TelegramUnavailable;
use crate::app::install::RestEndpoints;
use crate::app::{Adapters, Services, Site};
use crate::bitrix::pacer::PortalRate;
use crate::bitrix::{AppCredentials, BitrixClient};
use crate::crypto::{Sealer, Secret};
use crate::domain::phone::region_from_code;
use crate::jobs::{self, Outcome};
use crate::ports::{Delivery, JobQueue, Table, Telegram};
use crate::repo::Records;
use crate::repo::safety::SafetyLimits;
use crate::repo::sessions::TelegramSessions;

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
    pub bitrix_client_secret: Option<Secret>,
    pub bitrix_client_secret_parameter: Option<String>,
    pub bitrix_oauth_url: String,
    /// Path-style S3 addressing, for S3-compatible servers such as moto.
    pub s3_path_style: bool,
    pub phone_region: String,
    pub session_minutes: i64,
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

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
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
            bitrix_client_secret: var("BITRIX_CLIENT_SECRET").map(Secret::new),
            bitrix_client_secret_parameter: var("BITRIX_CLIENT_SECRET_PARAMETER"),
            bitrix_oauth_url: var("BITRIX_OAUTH_URL").unwrap_or_else(|| "https://oauth.bitrix.info".into()),
            s3_path_style: var("OLCHAT_S3_PATH_STYLE").is_some_and(|v| v == "true"),
            phone_region: var("OLCHAT_PHONE_REGION").unwrap_or_else(|| "RU".into()),
            session_minutes: var("OLCHAT_SESSION_MINUTES").and_then(|v| v.parse().ok()).unwrap_or(60),
            public_url: required("OLCHAT_PUBLIC_URL")?,
            telegram_api_id: var("TELEGRAM_API_ID").map(|v| v.parse()).transpose().context("TELEGRAM_API_ID must be a number")?,
            telegram_api_hash: var("TELEGRAM_API_HASH").map(Secret::new),
            telegram_api_hash_parameter: var("TELEGRAM_API_HASH_PARAMETER"),
            limits: SafetyLimits::from_env(3)?,
        })
    }
}

/// A secret given directly, else read (decrypted) from SSM Parameter Store.
async fn secret(ssm: &aws_sdk_ssm::Client, direct: &Option<Secret>, parameter: &Option<String>, what: &str) -> anyhow::Result<Secret> {
    if let Some(value) = direct {
        return Ok(value.clone());
    }
    let name = parameter.as_ref().with_context(|| format!("neither {what} nor its SSM parameter is configured"))?;
    let answer = ssm.get_parameter().name(name).with_decryption(true).send().await.map_err(crate::adapters::aws::sdk_error)?;
    let value = answer.parameter().and_then(|p| p.value()).with_context(|| format!("SSM parameter {name} is empty"))?;
    Ok(Secret::new(value))
}

/// A function's cold start: JSON logs, settings from the environment, the services.
pub async fn cold_start() -> anyhow::Result<Arc<Services>> {
    crate::telemetry::init_json("info");
    services(&aws_config::load_from_env().await, &AwsSettings::from_env()?).await
}

/// Builds the AWS adapters and the services once; every invocation borrows them.
pub async fn services(config: &aws_config::SdkConfig, settings: &AwsSettings) -> anyhow::Result<Arc<Services>> {
    let s3_config = aws_sdk_s3::config::Builder::from(config).force_path_style(settings.s3_path_style).build();
    let ssm = aws_sdk_ssm::Client::new(config);
    let sealer = Sealer::from_base64(
        secret(&ssm, &settings.encryption_key, &settings.encryption_key_parameter, "OLCHAT_ENCRYPTION_KEY").await?.expose(),
    )?;
    let client_secret =
        secret(&ssm, &settings.bitrix_client_secret, &settings.bitrix_client_secret_parameter, "BITRIX_CLIENT_SECRET").await?;
    let queues = HashMap::from([
        (JobQueue::Telegram, settings.telegram_queue.clone()),
        (JobQueue::Openline, settings.openline_queue.clone()),
    ]);
    let table: Arc<dyn Table> = Arc::new(DynamoTable::new(aws_sdk_dynamodb::Client::new(config), &settings.table));
    let telegram: Arc<dyn Telegram> = match settings.telegram_api_id {
        Some(api_id) => {
            let api_hash =
                secret(&ssm, &settings.telegram_api_hash, &settings.telegram_api_hash_parameter, "TELEGRAM_API_HASH").await?;
            let sessions = TelegramSessions::new(Records::new(table.clone()), sealer.clone());
            Arc::new(GrammersTelegram::new(ApiCredentials { api_id, api_hash }, sessions))
        }
        None => {
            tracing::warn!("TELEGRAM_API_ID is not set: no Telegram account can be used");
            Arc::new(TelegramUnavailable)
        }
    };
    let adapters = Adapters {
        table,
        queue: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(config), queues)),
        blobs: Arc::new(S3Blobs::new(aws_sdk_s3::Client::from_conf(s3_config), &settings.bucket)),
        telegram,
    };
    let credentials = AppCredentials {
        client_id: settings.bitrix_client_id.clone(),
        client_secret,
        oauth_url: settings.bitrix_oauth_url.clone(),
    };
    Ok(Arc::new(Services::new(
        adapters,
        BitrixClient::new(credentials, PORTAL_TIMEOUT, PortalRate::default()),
        sealer,
        settings.session_minutes * 60,
        region_from_code(&settings.phone_region),
        Site { public_url: settings.public_url.clone(), endpoints: RestEndpoints::Public },
        settings.limits,
    )))
}

/// A delayed job for a FIFO queue, due or not yet (a standard queue delays 15 min at most).
async fn hand_on(svc: &Services, forward: Forward) -> Outcome {
    let Some(queue) = forward.queue() else { return Outcome::Failed(format!("no queue named {}", forward.forward_to)) };
    match svc.queue.send(queue, &forward.body, &forward.group, forward.remaining()).await {
        Ok(()) => Outcome::Done,
        Err(e) => {
            tracing::error!("forwarding a delayed job failed: {e:#}");
            Outcome::RetryAfter(Duration::from_secs(5))
        }
    }
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
/// their order.
pub async fn handle_sqs(svc: &Services, queue: JobQueue, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut failed_groups = HashSet::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let group = record.attributes.get("MessageGroupId").cloned();
        if group.as_ref().is_some_and(|g| failed_groups.contains(g)) {
            response.add_failure(id);
            continue;
        }
        let delivery = Delivery {
            receipt: record.receipt_handle.clone().unwrap_or_default(),
            body: record.body.clone().unwrap_or_default(),
            receive_count: record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1),
        };
        let span = tracing::info_span!("sqs_record", sqs_message_id = %id, queue = queue.name());
        let outcome = match Forward::parse(&delivery.body) {
            Some(forward) => hand_on(svc, forward).await,
            None => jobs::handle(svc, &delivery).instrument(span).await,
        };
        let retry = match outcome {
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
