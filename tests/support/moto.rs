//! The moto server (PyPI `moto[server]`): real DynamoDB, SQS and S3 protocols on loopback.
//! Started on a free port for one test binary and stopped with it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification};
use aws_sdk_sqs::types::QueueAttributeName;
use shared::adapters::aws::QueueUrls;
use shared::ports::JobQueue;

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `MOTO_SERVER`, else the venv `.ci/run` makes, else `moto_server` on the PATH.
fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return path.into();
    }
    let venv = PathBuf::from("/opt/olchat-tools/bin/moto_server");
    if venv.exists() { venv } else { "moto_server".into() }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Moto {
    pub async fn start() -> Moto {
        let port = free_port();
        let child = Command::new(binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts (pip install 'moto[server]'; .ci/run installs it)");
        let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.get(format!("{}/moto-api/", moto.endpoint)).send().await.is_ok() {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not answer on {}", moto.endpoint);
    }

    pub async fn config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region("us-east-1")
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .load()
            .await
    }
}

/// The resources `template.yaml` declares, made on moto under names starting with `prefix`.
pub struct Resources {
    pub table: String,
    pub bucket: String,
    pub queues: HashMap<JobQueue, QueueUrls>,
}

pub async fn provision(config: &SdkConfig, prefix: &str, max_receives: u32) -> Resources {
    let dynamo = aws_sdk_dynamodb::Client::new(config);
    let table = format!("{prefix}-table");
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap();
    let attr = |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().unwrap();
    dynamo
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .send()
        .await
        .unwrap();
    dynamo
        .update_time_to_live()
        .table_name(&table)
        .time_to_live_specification(TimeToLiveSpecification::builder().attribute_name("expires_at").enabled(true).build().unwrap())
        .send()
        .await
        .unwrap();

    let sqs = aws_sdk_sqs::Client::new(config);
    let mut queues = HashMap::new();
    for job_queue in [JobQueue::Telegram, JobQueue::Openline] {
        let dead = sqs.create_queue().queue_name(format!("{prefix}-{}-dlq", job_queue.name())).send().await.unwrap();
        let dead_url = dead.queue_url().unwrap().to_owned();
        let dead_arn = sqs
            .get_queue_attributes()
            .queue_url(&dead_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .unwrap();
        let redrive = format!(r#"{{"deadLetterTargetArn":"{dead_arn}","maxReceiveCount":"{max_receives}"}}"#);
        let main = sqs
            .create_queue()
            .queue_name(format!("{prefix}-{}", job_queue.name()))
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .unwrap();
        queues.insert(job_queue, QueueUrls { queue: main.queue_url().unwrap().to_owned(), dead_letters: dead_url });
    }

    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build());
    let bucket = format!("{prefix}-files");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    Resources { table, bucket, queues }
}

/// A FIFO queue `{name}.fifo` with its dead-letter queue, as `template.yaml` makes the
/// telegram queue: high throughput (its limits per message group, one group per account).
pub async fn fifo_queues(config: &SdkConfig, name: &str) -> QueueUrls {
    let sqs = aws_sdk_sqs::Client::new(config);
    let fifo = |name: String| {
        sqs.create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::DeduplicationScope, "messageGroup")
            .attributes(QueueAttributeName::FifoThroughputLimit, "perMessageGroupId")
            .send()
    };
    let (main, dead) = (fifo(format!("{name}.fifo")).await.unwrap(), fifo(format!("{name}-dlq.fifo")).await.unwrap());
    QueueUrls { queue: main.queue_url().unwrap().into(), dead_letters: dead.queue_url().unwrap().into() }
}
