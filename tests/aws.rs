//! The AWS adapters against the moto server: the same port contracts as the embedded
//! backends, plus what only AWS has (presigned URLs over plain HTTP, TTL settings).

use std::sync::Arc;
use std::time::Duration;

use olchat_tests::contracts::{blobs_contract, queue_contract, table_contract};
use olchat_tests::moto::{Moto, provision};
use shared::adapters::aws::{DynamoTable, S3Blobs, SqsQueue};
use shared::ports::Blobs;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn aws_adapters_keep_the_port_contracts() {
    let moto = Moto::start().await;
    let config = moto.config().await;
    let resources = provision(&config, "contract", 5).await;

    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    table_contract(Arc::new(DynamoTable::new(dynamo.clone(), &resources.table))).await;
    let ttl = dynamo.describe_time_to_live().table_name(&resources.table).send().await.unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("expires_at"));

    let sqs = SqsQueue::new(aws_sdk_sqs::Client::new(&config), resources.queues.clone());
    queue_contract(Arc::new(sqs), 5, Duration::from_secs(1)).await;

    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    blobs_contract(Arc::new(S3Blobs::new(s3, &resources.bucket))).await;
}

#[tokio::test]
async fn a_presigned_put_by_plain_http_is_read_back_streamed() {
    let moto = Moto::start().await;
    let config = moto.config().await;
    let resources = provision(&config, "presign", 5).await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let blobs = S3Blobs::new(s3, &resources.bucket);

    let data: Vec<u8> = (0..20_000_000u32).map(|i| (i % 253) as u8).collect();
    let url = blobs.upload_url("uploads/m1/photo.jpg", "image/jpeg", Duration::from_secs(600)).await.unwrap();
    let put = reqwest::Client::new().put(&url).header("content-type", "image/jpeg").body(data.clone()).send().await.unwrap();
    assert!(put.status().is_success(), "{}", put.status());

    let (size, mut reader) = blobs.get("uploads/m1/photo.jpg").await.unwrap().expect("uploaded");
    assert_eq!(size, data.len() as u64);
    let (mut buffer, mut read, mut equal) = (vec![0u8; 64 * 1024], 0usize, true);
    loop {
        let n = reader.read(&mut buffer).await.unwrap();
        if n == 0 {
            break;
        }
        equal &= buffer[..n] == data[read..read + n];
        read += n;
    }
    assert!(equal && read == data.len());

    let download = blobs.download_url("uploads/m1/photo.jpg", Duration::from_secs(600)).await.unwrap();
    let fetched = reqwest::get(&download).await.unwrap().bytes().await.unwrap();
    assert_eq!(fetched.len(), data.len());
}

#[tokio::test]
async fn a_delayed_fifo_job_waits_in_the_standard_queue_then_is_handed_on() {
    use shared::adapters::aws::QueueUrls;
    use shared::adapters::aws::sqs::Forward;
    use shared::ports::{JobQueue, Queue};

    let moto = Moto::start().await;
    let config = moto.config().await;
    let resources = provision(&config, "fifo", 5).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let fifo = |name: &str| {
        sqs.create_queue()
            .queue_name(name)
            .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
            .send()
    };
    let (main, dead) = (fifo("fifo-telegram.fifo").await.unwrap(), fifo("fifo-telegram-dlq.fifo").await.unwrap());
    let mut urls = resources.queues.clone();
    urls.insert(JobQueue::Telegram, QueueUrls { queue: main.queue_url().unwrap().into(), dead_letters: dead.queue_url().unwrap().into() });
    let queue = SqsQueue::new(sqs.clone(), urls);

    queue.send(JobQueue::Telegram, "now", "connector-1", Duration::ZERO).await.unwrap();
    queue.send(JobQueue::Telegram, "later", "connector-1", Duration::from_secs(1)).await.unwrap();
    let direct = queue.receive(JobQueue::Telegram, 10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(direct.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(), ["now"]);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let waiting = queue.receive(JobQueue::Openline, 10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(waiting.len(), 1);
    let forward = Forward::parse(&waiting[0].body).expect("a forward");
    assert_eq!((forward.queue(), forward.body.as_str(), forward.group.as_str()), (Some(JobQueue::Telegram), "later", "connector-1"));
    assert_eq!(forward.remaining(), Duration::ZERO);
    queue.send(JobQueue::Telegram, &forward.body, &forward.group, forward.remaining()).await.unwrap();
    queue.delete(JobQueue::Telegram, &direct[0].receipt).await.unwrap();
    let handed_on = queue.receive(JobQueue::Telegram, 10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(handed_on.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(), ["later"]);
}
