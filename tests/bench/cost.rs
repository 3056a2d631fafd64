//! The cost benchmark: `cargo run -p olchat-tests --bin cost` (debug is enough: it counts, it
//! does not time). The real code runs a reference mix of work on the embedded backends, seen
//! through meters that count what each unit asks of storage, queues and files as DynamoDB,
//! SQS and S3 would bill it; HTTP requests are API Gateway requests and Lambda invocations,
//! each job one invocation of its worker. It prints the requests per unit of work and a
//! monthly bill for the reference load at the list prices stated in its output.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use olchat_tests::{TestApp, eventually, spawn_instrumented};
use serde_json::json;
use shared::domain::cadence::{AWS_TICK_MS, Arrivals};
use shared::embedded::Instrument;
use shared::ports::blobs::{BlobReader, Download, UploadTarget};
use shared::ports::{BlobError, Blobs, Condition, Delivery, Item, JobQueue, Queue, QueueError, Table, TableError};
use shared::sandbox::seed;
use tokio::io::AsyncRead;

/// What a run asked for, in billing units.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// DynamoDB read request units: 4 KB of a strongly consistent read each (every read of
    /// the app is one), at least one per request.
    rru: u64,
    /// DynamoDB write request units: 1 KB written each, at least one per request.
    wru: u64,
    sqs_fifo: u64,
    sqs_standard: u64,
    /// S3 PUT, COPY, POST, LIST requests.
    s3_put: u64,
    /// S3 GET and HEAD requests.
    s3_get: u64,
    /// API Gateway requests, each a Lambda invocation.
    http: u64,
    /// SQS-triggered Lambda invocations (one per job: the telegram queue's batch is 1).
    jobs: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            rru: self.rru - o.rru,
            wru: self.wru - o.wru,
            sqs_fifo: self.sqs_fifo - o.sqs_fifo,
            sqs_standard: self.sqs_standard - o.sqs_standard,
            s3_put: self.s3_put - o.s3_put,
            s3_get: self.s3_get - o.s3_get,
            http: self.http - o.http,
            jobs: self.jobs - o.jobs,
        }
    }
}

/// DynamoDB units by the kind of record: read and write units, keyed by [`record_kind`].
type ByRecord = BTreeMap<String, (u64, u64)>;

#[derive(Clone, Default)]
struct Meter(Arc<Mutex<(Counts, ByRecord)>>);

impl Meter {
    fn add(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.0.lock().unwrap().0);
    }
    fn units(&self, pk: &str, sk: &str, rru: u64, wru: u64) {
        let mut meter = self.0.lock().unwrap();
        meter.0.rru += rru;
        meter.0.wru += wru;
        let kind = meter.1.entry(record_kind(pk, sk)).or_default();
        *kind = (kind.0 + rru, kind.1 + wru);
    }
    fn now(&self) -> Counts {
        self.0.lock().unwrap().0
    }
    fn take_by_record(&self) -> ByRecord {
        std::mem::take(&mut self.0.lock().unwrap().1)
    }
}

/// A record's kind: the leading words of its keys (`portal/message`, `connector/inbox`).
fn record_kind(pk: &str, sk: &str) -> String {
    let word = |key: &str| key.split('#').next().unwrap_or_default().to_owned();
    format!("{}/{}", word(pk), word(sk))
}

/// DynamoDB's item size: names and values of its attributes (pk, sk, data, version, expiry).
fn item_bytes(item: &Item) -> u64 {
    (item.pk.len() + item.sk.len() + item.data.len() + 2 + 4 + 4 + 7 + 10 + 10) as u64
}

struct MeteredTable(Arc<dyn Table>, Meter);
struct MeteredQueue(Arc<dyn Queue>, Meter);
struct MeteredBlobs(Arc<dyn Blobs>, Meter);

impl MeteredTable {
    fn read(&self, pk: &str, sk_prefix: &str, items: &[Item]) {
        let bytes: u64 = items.iter().map(item_bytes).sum();
        self.1.units(pk, sk_prefix, bytes.div_ceil(4096).max(1), 0);
    }
}

#[async_trait]
impl Table for MeteredTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, TableError> {
        let found = self.0.get(pk, sk).await?;
        self.read(pk, sk, found.as_slice());
        Ok(found)
    }
    async fn put(&self, item: Item, condition: Condition) -> Result<(), TableError> {
        // A conditional write that fails is billed as well.
        let units = item_bytes(&item).div_ceil(1024).max(1);
        self.1.units(&item.pk, &item.sk, 0, units);
        self.0.put(item, condition).await
    }
    async fn delete(&self, pk: &str, sk: &str) -> Result<(), TableError> {
        self.1.units(pk, sk, 0, 1);
        self.0.delete(pk, sk).await
    }
    async fn query(&self, pk: &str, sk_prefix: &str, limit: usize, descending: bool) -> Result<Vec<Item>, TableError> {
        let items = self.0.query(pk, sk_prefix, limit, descending).await?;
        self.read(pk, sk_prefix, &items);
        Ok(items)
    }
    async fn query_below(&self, pk: &str, sk_prefix: &str, below: &str, limit: usize) -> Result<Vec<Item>, TableError> {
        let items = self.0.query_below(pk, sk_prefix, below, limit).await?;
        self.read(pk, sk_prefix, &items);
        Ok(items)
    }
}

#[async_trait]
impl Queue for MeteredQueue {
    async fn send(&self, queue: JobQueue, body: &str, group: &str, delay: Duration) -> Result<(), QueueError> {
        // On AWS each job is sent, received by the trigger, hidden a minute while it runs
        // (`jobs::keep_hidden`) and deleted: four requests, on its queue's kind, and one
        // invocation of its worker.
        self.1.add(|c| {
            match queue {
                JobQueue::Telegram => c.sqs_fifo += 4,
                JobQueue::Openline => c.sqs_standard += 4,
            }
            c.jobs += 1;
        });
        self.0.send(queue, body, group, delay).await
    }
    async fn receive(&self, queue: JobQueue, max: usize, visibility: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.0.receive(queue, max, visibility).await
    }
    async fn delete(&self, queue: JobQueue, receipt: &str) -> Result<(), QueueError> {
        self.0.delete(queue, receipt).await
    }
    async fn retry_after(&self, queue: JobQueue, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.0.retry_after(queue, receipt, delay).await
    }
    async fn dead_letters(&self, queue: JobQueue) -> Result<Vec<String>, QueueError> {
        self.0.dead_letters(queue).await
    }
}

#[async_trait]
impl Blobs for MeteredBlobs {
    async fn put(&self, key: &str, body: &mut (dyn AsyncRead + Send + Unpin)) -> Result<u64, BlobError> {
        self.1.add(|c| c.s3_put += 1);
        self.0.put(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Option<(u64, BlobReader)>, BlobError> {
        self.1.add(|c| c.s3_get += 1);
        self.0.get(key).await
    }
    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        self.1.add(|c| c.s3_get += 1);
        self.0.size(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.0.delete(key).await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<bool, BlobError> {
        self.1.add(|c| c.s3_put += 1);
        self.0.copy(from, to).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        self.1.add(|c| c.s3_put += 1);
        self.0.delete_prefix(prefix).await
    }
    async fn upload_target(&self, key: &str, content_type: &str, size: u64, valid_for: Duration) -> Result<UploadTarget, BlobError> {
        self.0.upload_target(key, content_type, size, valid_for).await
    }
    async fn open_download(&self, key: &str) -> Result<Option<Download>, BlobError> {
        self.0.open_download(key).await
    }
}

impl Instrument for Meter {
    fn table(&self, table: Arc<dyn Table>) -> Arc<dyn Table> {
        Arc::new(MeteredTable(table, self.clone()))
    }
    fn queue(&self, queue: Arc<dyn Queue>) -> Arc<dyn Queue> {
        Arc::new(MeteredQueue(queue, self.clone()))
    }
    fn blobs(&self, blobs: Arc<dyn Blobs>) -> Arc<dyn Blobs> {
        Arc::new(MeteredBlobs(blobs, self.clone()))
    }
}

/// List prices (us-east-1, 2026), per unit.
struct Prices;

impl Prices {
    const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// 256 MB (arm64) for 100 ms, an assumed average invocation: $0.0000133334 per GB-s.
    const LAMBDA_DURATION: f64 = 0.25 * 0.1 * 0.000_013_333_4;
    const API_GATEWAY: f64 = 1.00 / 1e6;
    const SQS_FIFO: f64 = 0.50 / 1e6;
    const SQS_STANDARD: f64 = 0.40 / 1e6;
    const DYNAMO_WRU: f64 = 0.625 / 1e6;
    const DYNAMO_RRU: f64 = 0.125 / 1e6;
    const S3_PUT: f64 = 0.005 / 1e3;
    const S3_GET: f64 = 0.0004 / 1e3;
}

fn dollars(c: &Counts, times: f64) -> [f64; 5] {
    let lambda = (c.http + c.jobs) as f64 * (Prices::LAMBDA_REQUEST + Prices::LAMBDA_DURATION);
    let api = c.http as f64 * Prices::API_GATEWAY;
    let sqs = c.sqs_fifo as f64 * Prices::SQS_FIFO + c.sqs_standard as f64 * Prices::SQS_STANDARD;
    let dynamo = c.wru as f64 * Prices::DYNAMO_WRU + c.rru as f64 * Prices::DYNAMO_RRU;
    let s3 = c.s3_put as f64 * Prices::S3_PUT + c.s3_get as f64 * Prices::S3_GET;
    [lambda, api, sqs, dynamo, s3].map(|d| d * times)
}

const IVAN: &str = "phone:+79161234567";
const MINUTE: i64 = 60_000;

/// Runs `work` and returns what it asked for, once every job it queued ran to its end, and
/// its DynamoDB units by kind of record.
async fn measure<F: std::future::Future<Output = u64>>(app: &TestApp, meter: &Meter, work: F) -> (Counts, ByRecord) {
    let before = meter.now();
    meter.take_by_record();
    let requests = work.await;
    app.settled().await;
    meter.add(|c| c.http += requests);
    (meter.now() - before, meter.take_by_record())
}

/// `n` units of the same work, per unit.
fn per(c: Counts, n: u64) -> [f64; 8] {
    let n = n as f64;
    [c.http, c.jobs, c.sqs_fifo, c.sqs_standard, c.rru, c.wru, c.s3_put, c.s3_get].map(|v| v as f64 / n)
}

#[tokio::main]
async fn main() {
    let meter = Meter::default();
    // Catch-ups only when this run says: the ticks of a simulated hour below.
    let app = spawn_instrumented(|s| s.catch_up_every = None, &meter).await;
    let token = app.lead_tab().await;
    app.settled().await;
    let svc = &app.app.services;
    const N: u64 = 20;

    // Waited for in the sandbox Telegram, which is not metered: the tab sees each status in
    // its polls, counted below.
    let send = |publication: &'static str, activity: bool| {
        let (app, token) = (&app, &token);
        async move {
            let before = app.telegram_messages().await.len();
            for i in 0..N {
                app.send_published(token, IVAN, &format!("Offer {i} {publication}"), publication, activity).await;
            }
            eventually(Duration::from_secs(30), "the sends delivered", || async { (app.telegram_messages().await.len() >= before + N as usize).then_some(()) }).await;
            N
        }
    };
    let plain = measure(&app, &meter, send("none", false)).await;
    let published = measure(&app, &meter, send("incoming", true)).await;

    // A tab opened: the placement, its card, the first look at the conversation.
    let opens = measure(&app, &meter, async {
        for _ in 0..N {
            let token = app.lead_tab().await;
            let first = app.get(&token, &format!("/api/conversation?connector=sales&recipient={}", urlencode(IVAN))).await;
            assert_eq!(first.status, reqwest::StatusCode::OK, "{}", first.body);
        }
        3 * N
    })
    .await;

    // An open tab with nothing changing: polls answered 304 from the change marker, an hour's
    // worth ([`tab_polls_per_hour`]), one in each 5 minutes saying the manager is watching.
    let looked = app.get(&token, &format!("/api/conversation?connector=sales&recipient={}", urlencode(IVAN))).await.body;
    let (rev, peer) = (looked["rev"].as_str().unwrap().to_owned(), looked["peer"].as_i64().unwrap());
    let polls = tab_polls_per_hour();
    let watch_every = (polls / 12).max(1);
    let poll = measure(&app, &meter, async {
        for i in 0..polls {
            let watching = if i % watch_every == 0 { "&watching=true" } else { "" };
            let path = format!("/api/conversation?connector=sales&recipient={}&rev={rev}&peer={peer}{watching}", urlencode(IVAN));
            let answer = app.http.get(app.url(&path)).bearer_auth(&token).send().await.unwrap();
            assert_eq!(answer.status(), reqwest::StatusCode::NOT_MODIFIED);
        }
        polls
    })
    .await;

    // Client replies, caught up and forwarded into the Open Line.
    let replies = measure(&app, &meter, async {
        for i in 0..N {
            let body = json!({ "from_user_id": 1001, "to_user_id": seed::SALES_ACCOUNT, "text": format!("Thanks {i}") });
            assert_eq!(app.post_json("/sandbox/telegram/reply", body).await.status, reqwest::StatusCode::OK);
            shared::app::catch_up::request_catch_up(svc, seed::DEMO_MEMBER_ID, "sales").await.unwrap();
            app.settled().await;
        }
        0
    })
    .await;

    // An idle account's hour: its quarter-hour catch-ups. The ticks' own work (an invocation,
    // the query of the accounts' index, the hourly keep-alive claim) is the tick's line: taken
    // out of this row, where two accounts would bill a whole index query each minute.
    let accounts = svc.connectors.all().await.unwrap().len() as u64;
    let idle_from = shared::clock::now_millis() + 2 * 3600 * 1000;
    let (mut idle, by_record) = measure(&app, &meter, async {
        for minute in 1..=60 {
            shared::jobs::catch_up::request_all(svc, 1, idle_from + minute * MINUTE, MINUTE).await;
            app.settled().await;
        }
        0
    })
    .await;
    const TICKS_OWN: [&str; 3] = ["connectors/connector", "schedule/keepalive", "portals/"];
    let (ticks_own, by_record): (ByRecord, ByRecord) = by_record.into_iter().partition(|(kind, _)| TICKS_OWN.contains(&kind.as_str()));
    for (rru, wru) in ticks_own.values() {
        idle.rru -= rru;
        idle.wru -= wru;
    }
    let idle = (idle, by_record);

    let rows = [
        ("send (no publication, no activity)", plain, N),
        ("send published into the Open Line, with an activity", published, N),
        ("tab opened (placement, card, first look)", opens, N),
        ("an open tab's poll with nothing new (304)", poll, polls),
        ("client reply (catch-up, Open Line)", replies, N),
        ("idle account, an hour", idle, accounts),
    ];
    print_report(&rows, polls);
    print_by_record(&rows);
}

/// Where each unit's DynamoDB units go, by kind of record, the costliest first.
fn print_by_record(rows: &[(&str, (Counts, ByRecord), u64)]) {
    println!();
    println!("DynamoDB units per unit of work by kind of record (partition/sort key's first word: read units / write units):");
    println!();
    for (name, (_, by_record), n) in rows {
        let mut kinds: Vec<_> = by_record.iter().collect();
        kinds.sort_by_key(|(_, (rru, wru))| std::cmp::Reverse(rru + 5 * wru));
        let kinds: Vec<String> = kinds.iter().map(|(kind, (rru, wru))| format!("{kind} {:.1}/{:.1}", *rru as f64 / *n as f64, *wru as f64 / *n as f64)).collect();
        println!("- {name}: {}", kinds.join(", "));
    }
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// An open tab's polls in an hour with nothing changing, as `assets/tab.js` paces them: 2 s
/// after a change, the backoff ×1.5 each time, the wait never longer than the server's
/// `X-Olchat-Look-Within` (on AWS: until just after the next minute's catch-ups).
fn tab_polls_per_hour() -> u64 {
    let arrivals = Arrivals::AtTicks { every_ms: AWS_TICK_MS };
    let start = 1_800_000_017_000; // a change seen at some moment of a minute
    let (mut t, mut backoff, mut n) = (start, 2_000_i64, 0);
    let mut wait = backoff;
    while t < start + 3_600_000 {
        t += wait;
        n += 1;
        backoff = ((backoff as f64 * 1.5).round() as i64).min(600_000);
        wait = backoff.min(arrivals.look_within_ms(t)).max(2_000);
    }
    n
}

/// The reference load (issue 16): 1,000 portals × 5 accounts × 200 messages a day, 20
/// managers a portal with the tab open 4 hours a day.
fn print_report(rows: &[(&str, (Counts, ByRecord), u64)], polls_per_hour: u64) {
    println!("| unit of work | API GW + Lambda | jobs (Lambda) | SQS FIFO | SQS std | DynamoDB RRU | DynamoDB WRU | S3 PUT | S3 GET |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, (counts, _), n) in rows {
        let v = per(*counts, *n);
        println!("| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |", v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
    }
    let days = 30.0;
    let messages = 1_000.0 * 5.0 * 200.0 * days;
    let tab_hours = 1_000.0 * 20.0 * 4.0 * days;
    let opens = 1_000.0 * 20.0 * 30.0 * days; // 30 cards opened a manager a day
    let idle_hours = 1_000.0 * 5.0 * 24.0 * days;
    let scaled = |row: usize, units: f64| {
        let (_, (counts, _), n) = &rows[row];
        dollars(counts, units / *n as f64)
    };
    // The schedule's tick, once a minute whatever the load: an invocation, and a query of the
    // accounts' index (5,000 entries of about 150 bytes: 184 units at 4 KB; the idle row above
    // already bills two entries' worth per account-hour, a rounding this line leaves alone).
    let ticks = 60.0 * 24.0 * days;
    let tick = Counts { jobs: 1, rru: (5_000u64 * 150).div_ceil(4096), sqs_standard: 3, ..Counts::default() };
    let lines = [
        ("the schedule's tick (a minute, 5,000 accounts)", dollars(&tick, ticks)),
        ("sends, half of them published with an activity", add(scaled(0, messages / 2.0), scaled(1, messages / 2.0))),
        ("tabs opened (30 a manager a day)", scaled(2, opens)),
        (&*format!("open tabs ({polls_per_hour} polls an hour, 4 h a manager a day)"), scaled(3, tab_hours * polls_per_hour as f64)),
        ("client replies (one a message)", scaled(4, messages)),
        ("accounts' hours, all counted as idle (the ticks, the catch-ups)", scaled(5, idle_hours)),
    ];
    println!();
    println!("Monthly bill for the reference load (30 days; us-east-1 list prices, 2026: Lambda $0.20/M requests + 256 MB × 100 ms assumed per invocation at $0.0000133334/GB-s, API Gateway HTTP $1.00/M, SQS FIFO $0.50/M, standard $0.40/M, DynamoDB on demand $0.625/M WRU and $0.125/M RRU, S3 $0.005/1,000 PUT, $0.0004/1,000 GET):");
    println!();
    println!("| item | Lambda | API Gateway | SQS | DynamoDB | S3 | total |");
    println!("|---|---|---|---|---|---|---|");
    let mut total = [0.0; 5];
    for (name, d) in &lines {
        total = add(total, *d);
        println!("| {name} | ${:.0} | ${:.0} | ${:.0} | ${:.0} | ${:.0} | ${:.0} |", d[0], d[1], d[2], d[3], d[4], d.iter().sum::<f64>());
    }
    println!("| **total** | ${:.0} | ${:.0} | ${:.0} | ${:.0} | ${:.0} | **${:.0}** |", total[0], total[1], total[2], total[3], total[4], total.iter().sum::<f64>());
}

fn add(a: [f64; 5], b: [f64; 5]) -> [f64; 5] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4]]
}
