//! The AWS adapters against the moto server: the same port contracts as the embedded
//! backends, plus what only AWS has (presigned URLs over plain HTTP, TTL settings).

use std::sync::Arc;
use std::time::Duration;

use olchat_tests::contracts::{blobs_contract, heartbeat_contract, queue_contract, table_contract};
use olchat_tests::moto::{Moto, fifo_queues, provision};
use shared::adapters::aws::{DynamoTable, S3Blobs, SqsQueue};
use reqwest::StatusCode;
use shared::ports::blobs::Download;
use shared::ports::{Blobs, Condition, Item, Table};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn aws_adapters_keep_the_port_contracts() {
    let moto = Moto::start().await;
    let config = moto.config().await;
    let resources = provision(&config, "contract", 5).await;

    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let table = Arc::new(DynamoTable::new({ let dynamo = dynamo.clone(); move || dynamo }, &resources.table));
    table_contract(table.clone()).await;

    // What the adapter writes as an item's expiry is what the deployed table expires by.
    let template = std::fs::read_to_string(olchat_tests::workspace().join("template.yaml")).unwrap();
    let ttl_spec = template.split("TimeToLiveSpecification:").nth(1).unwrap();
    let deployed = ttl_spec.split("AttributeName:").nth(1).unwrap().lines().next().unwrap().trim();
    let item = Item { pk: "ttl".into(), sk: "item".into(), data: "{}".into(), version: 1, expires_at: Some(4_000_000_000) };
    table.put(item, Condition::Always).await.unwrap();
    let s = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.into());
    let raw = dynamo.get_item().table_name(&resources.table).key("pk", s("ttl")).key("sk", s("item")).send().await.unwrap();
    assert!(raw.item().unwrap().contains_key(deployed), "the table expires items by {deployed}: {raw:?}");

    let sqs = SqsQueue::new({ let sqs = aws_sdk_sqs::Client::new(&config); move || sqs }, resources.queues.clone());
    let sqs = Arc::new(sqs);
    queue_contract(sqs.clone(), 5, Duration::from_secs(1)).await;
    heartbeat_contract(sqs, shared::ports::JobQueue::Telegram).await;

    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    blobs_contract(Arc::new(S3Blobs::new(move || s3, &resources.bucket))).await;
}

#[tokio::test]
async fn a_presigned_put_by_plain_http_is_read_back_streamed() {
    let moto = Moto::start().await;
    let config = moto.config().await;
    let resources = provision(&config, "presign", 5).await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let blobs = S3Blobs::new(move || s3, &resources.bucket);

    let data: Vec<u8> = (0..20_000_000u32).map(|i| (i % 253) as u8).collect();
    let target = blobs.upload_target("uploads/m1/photo.jpg", "image/jpeg", data.len() as u64, Duration::from_secs(600)).await.unwrap();
    let put = |body: Vec<u8>| {
        let mut request = reqwest::Client::new().put(&target.url);
        for (name, value) in &target.headers {
            request = request.header(name, value);
        }
        async move { request.body(body).send().await.unwrap().status() }
    };
    // S3 refuses a body of another length than signed; moto checks no signatures, so here
    // only the signing is seen (X-Amz-SignedHeaders), and the app checks the stored size.
    assert!(target.url.contains("content-length"), "the size is signed: {}", target.url);
    assert!(target.headers.iter().any(|(n, v)| n == "if-none-match" && v == "*"), "{:?}", target.headers);
    let stored = put(data.clone()).await;
    assert!(stored.is_success(), "{stored}");
    assert_eq!(put(data.clone()).await, StatusCode::PRECONDITION_FAILED, "a slot is used once");

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

    // A holder of the app's own link is sent to a presigned GET made just now.
    let Some(Download::Redirect(download)) = blobs.open_download("uploads/m1/photo.jpg").await.unwrap() else { panic!("S3 redirects") };
    let fetched = reqwest::get(&download).await.unwrap().bytes().await.unwrap();
    assert_eq!(fetched.len(), data.len());
}

#[tokio::test]
async fn a_fifo_queue_keeps_each_groups_order_and_takes_no_delay() {
    use shared::ports::{JobQueue, Queue};

    let moto = Moto::start().await;
    let config = moto.config().await;
    let resources = provision(&config, "fifo", 5).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let mut urls = resources.queues.clone();
    urls.insert(JobQueue::Telegram, fifo_queues(&config, "fifo-telegram").await);
    let queue = SqsQueue::new(move || sqs, urls);

    for body in ["first", "second", "third"] {
        queue.send(JobQueue::Telegram, body, "connector-1", Duration::ZERO).await.unwrap();
    }
    let delayed = queue.send(JobQueue::Telegram, "later", "connector-1", Duration::from_secs(1)).await;
    assert!(delayed.is_err(), "a FIFO queue has no per-message delay: a job waits by its visibility instead");
    let mut got = Vec::new();
    while got.len() < 3 {
        for delivery in queue.receive(JobQueue::Telegram, 10, Duration::from_secs(30)).await.unwrap() {
            got.push(delivery.body.clone());
            queue.delete(JobQueue::Telegram, &delivery.receipt).await.unwrap();
        }
    }
    assert_eq!(got, ["first", "second", "third"]);
}

#[tokio::test]
async fn a_published_files_link_lives_its_week_and_redirects_to_a_get_presigned_when_used() {
    use olchat_tests::{samples, spawn_app};
    let moto = Moto::start().await;
    let config = moto.config().await;
    let resources = provision(&config, "links", 5).await;
    let app = spawn_app().await;
    let svc = Arc::new(samples::deployment(&config, &resources, &shared::crypto::MasterKey::generate_key(), &app).await);
    svc.blobs.put("uploads/m1/offer.pdf", &mut &b"%PDF-1.4 offer"[..]).await.unwrap();
    // The send function's router, as Lambda runs it, on a port of its own.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, shared::http::send_router(svc.clone())).into_future());

    let link = reqwest::Url::parse(&svc.links.download_url("uploads/m1/offer.pdf", Duration::from_secs(7 * 24 * 3600))).unwrap();
    let expires: i64 = link.query_pairs().find(|(k, _)| k == "expires").unwrap().1.parse().unwrap();
    assert!(expires >= shared::clock::now_secs() + 7 * 24 * 3600 - 1, "valid the week it claims: {link}");
    let here = format!("http://{addr}{}?{}", link.path(), link.query().unwrap());
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let answer = no_redirects.get(&here).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::TEMPORARY_REDIRECT);
    let presigned = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(presigned.contains("X-Amz-Expires=300"), "presigned now, for minutes: {presigned}");
    assert_eq!(reqwest::get(&presigned).await.unwrap().text().await.unwrap(), "%PDF-1.4 offer");
    let forged = here.replace("signature=", "signature=x");
    assert_eq!(no_redirects.get(&forged).send().await.unwrap().status(), StatusCode::FORBIDDEN);
}
