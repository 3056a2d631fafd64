//! The benchmark: `cargo build --release -p local && cargo run --release -p olchat-tests --bin bench`
//! (the local binary runs the portal and the app as two processes). Prints ratios against
//! floors measured in the same run; targets are DESIGN.md §5.

mod fan_out;

use std::time::{Duration, Instant};

use axum::routing::get;
use futures_util::StreamExt;
use olchat_tests::deployed::{Deployed, Process, free_port};
use olchat_tests::{eventually, portal_wait_ms, spawn_app_with};
use shared::bitrix::pacer::PortalRate;
use serde_json::json;
use shared::jobs::catch_up::FAN_OUT;
use shared::work::Job;
use shared::sandbox::seed;

const ROUNDS: usize = 2000;
const PIPELINE: usize = 5000;
/// Client replies caught up from Telegram and forwarded into the Open Line.
const REPLIES: usize = 500;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn timed<F: std::future::Future<Output = ()>>(rounds: usize, mut f: impl FnMut() -> F) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    samples.sort();
    samples
}

/// The address the copy of this benchmark that serves the floor route in a process of its own binds.
const FLOOR_PROCESS: &str = "OLCHAT_BENCH_FLOOR_ADDR";

fn bare_router() -> axum::Router {
    axum::Router::new().route("/", get(|| async { "ok" }))
}

/// The floor route served by this executable again, as its own process (killed when dropped): its URL.
async fn floor_in_its_own_process(http: &reqwest::Client) -> anyhow::Result<(Process, String)> {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.env(FLOOR_PROCESS, &addr);
    let (process, url) = (Process::spawn(command), format!("http://{addr}/"));
    eventually(Duration::from_secs(10), "the floor process", || async { http.get(&url).send().await.ok() }).await;
    Ok((process, url))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Ok(addr) = std::env::var(FLOOR_PROCESS) {
        return Ok(axum::serve(tokio::net::TcpListener::bind(addr).await?, bare_router()).await?);
    }
    // Thousands of tab opens: unpaced, as the sandbox portal has no plan limits.
    let app = spawn_app_with(|s| {
        s.portal_rate = PortalRate { per_sec: 1e6, burst: 1e6 };
        s.check_rate = PortalRate { per_sec: 1e6, burst: 1e6 };
        s.catch_up_every = None;
    })
    .await;
    let http = reqwest::Client::new();

    // Floor: a bare axum route on the same machine, same client.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, bare_router()).await });
    let bare = timed(ROUNDS, || async { http.get(&bare_url).send().await.unwrap().bytes().await.unwrap(); }).await;

    let query = format!("DOMAIN={}&PROTOCOL=0&LANG=en", seed::DEMO_DOMAIN);
    let forms: Vec<_> = (0..ROUNDS).map(|_| app.placement_form(1, "CRM_LEAD_DETAIL_TAB", 1)).collect();
    // The tab's open time minus the portal round trip the server reports in Server-Timing.
    let (mut placement, mut own) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    for form in forms {
        let started = Instant::now();
        let (status, portal_ms, _) = app.post_placement_timed(&query, &form).await;
        let elapsed = started.elapsed();
        assert_eq!(status, 200);
        placement.push(elapsed);
        own.push(elapsed.saturating_sub(Duration::from_secs_f64(portal_ms.expect("Server-Timing") / 1000.0)));
    }
    placement.sort();
    own.sort();
    let apart = placement_with_the_portal_apart().await?;

    let token = app.open_card("lead", 1, "en").await?;
    for connector in ["sales", "support"] {
        assert_eq!(app.get(&token, &format!("/api/card?connector={connector}")).await.status, 200);
    }
    let mut n = 0;
    let send = timed(ROUNDS, || {
        n += 1;
        let body = json!({ "connector_id": "sales", "recipient": "phone:+79161234567", "text": "bench", "idempotency_key": format!("send-{n}") });
        let (app, token) = (&app, &token);
        async move { assert_eq!(app.send(token, body).await.status, 202) }
    })
    .await;
    // Let the worker drain the sends before the pipeline run.
    while app.app.sandbox().telegram.message_count() < ROUNDS {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = Instant::now();
    futures_util::stream::iter(0..PIPELINE)
        .for_each_concurrent(32, |i| {
            let body = json!({ "connector_id": if i % 2 == 0 { "sales" } else { "support" }, "recipient": "phone:+79161234567",
                               "text": "pipeline", "idempotency_key": format!("pipe-{i}") });
            let (app, token) = (&app, &token);
            async move {
                let answer = app.send(token, body).await;
                assert_eq!(answer.status, 202, "{}", answer.body);
            }
        })
        .await;
    let accepted = started.elapsed();
    while app.app.sandbox().telegram.message_count() < ROUNDS + PIPELINE {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = started.elapsed();

    // The other direction: replies written in Telegram, then one catch-up job (it reads the
    // difference in slices and hands the rest on), until all are in the Open Line. Queued, as
    // production runs it: called outside the queue, a "retry later" (the account busy with the
    // sends' own catch-ups, say) was dropped, and this loop waited for ever in 2 runs of ~40.
    let services = &app.app.services;
    for i in 0..REPLIES {
        app.app.sandbox().telegram.reply(1001, seed::SALES_ACCOUNT, &format!("reply {i}"), None).map_err(anyhow::Error::msg)?;
    }
    let started = Instant::now();
    let catch_up = Job::CatchUp { member_id: seed::DEMO_MEMBER_ID.into(), connector_id: "sales".into() };
    catch_up.enqueue(services.queue.as_ref(), Duration::ZERO).await?;
    let forwarded = || async { app.app.sandbox().portal.ol_messages().iter().filter(|m| m.text.starts_with("reply ")).count() };
    while forwarded().await < REPLIES {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let replies = started.elapsed();
    let fan_out = fan_out::measure().await?;

    let (bare50, place50, own) = (percentile(&bare, 0.5), percentile(&placement, 0.5), percentile(&own, 0.5));
    println!("## Benchmark ({} rounds each, release build, loopback; one process unless said)\n", ROUNDS);
    println!("| measure | value | ratio | target |\n|---|---|---|---|");
    println!("| bare axum route p50 (floor) | {} | 1.00 | |", ms(bare50));
    println!("| placement p50, all | {} | {:.2} × floor | |", ms(place50), place50.as_secs_f64() / bare50.as_secs_f64());
    println!("| placement p50 without the portal round trip (Server-Timing) | {} | {:.2} × floor | ≤ 2 × |", ms(own), own.as_secs_f64() / bare50.as_secs_f64());
    // The app as deployed serves from a process of its own, so its floor is a route served so.
    let (apart50, apart_own, floor_apart) = (percentile(&apart.all, 0.5), percentile(&apart.own, 0.5), percentile(&apart.floor, 0.5));
    let ratios = |d: Duration| format!("{:.2} × floor apart ({:.2} × floor)", d.as_secs_f64() / floor_apart.as_secs_f64(), d.as_secs_f64() / bare50.as_secs_f64());
    println!("| bare axum route p50, served by a process of its own, in the same rounds (floor apart) | {} | {:.2} × floor | |", ms(floor_apart), floor_apart.as_secs_f64() / bare50.as_secs_f64());
    println!("| placement p50, all, the sandbox portal and the app (real mode) each in its own process | {} | {} | |", ms(apart50), ratios(apart50));
    println!("| placement p50 without the portal round trip, each in its own process | {} | {} | ≤ 2 × floor apart |", ms(apart_own), ratios(apart_own));
    println!("| POST /api/send p50 | {} | {:.2} × floor | |", ms(percentile(&send, 0.5)), percentile(&send, 0.5).as_secs_f64() / bare50.as_secs_f64());
    println!("| POST /api/send p99 | {} | | ≤ 10 ms |", ms(percentile(&send, 0.99)));
    println!(
        "| pipeline: {PIPELINE} sends (32 concurrent, 2 connectors) → queue → worker → grammers → sandbox DC over MTProto | {:.0} msg/s (accepted in {:.2} s, delivered in {:.2} s) | | ≥ 1000 msg/s |",
        PIPELINE as f64 / delivered.as_secs_f64(),
        accepted.as_secs_f64(),
        delivered.as_secs_f64()
    );
    let (sends_per_sec, replies_per_sec) = (PIPELINE as f64 / delivered.as_secs_f64(), REPLIES as f64 / replies.as_secs_f64());
    println!(
        "| catch-up: {REPLIES} client replies → getDifference (slices) → stored once → Open Line | {replies_per_sec:.0} msg/s | {:.2} × the send pipeline | |",
        replies_per_sec / sends_per_sec
    );
    println!(
        "| the schedule's tick: {} accounts all due → a marker and a queued catch-up each (SQLite, {FAN_OUT} accounts at once) | {:.2} s | {:.2} × the same requests bare through the ports ({:.2} s) | ≤ 60 s (its minute) |",
        fan_out::ACCOUNTS,
        fan_out.tick.as_secs_f64(),
        fan_out.tick.as_secs_f64() / fan_out.floor.as_secs_f64(),
        fan_out.floor.as_secs_f64()
    );
    connection_cost(&app).await?;
    Ok(())
}

/// What a job's own connection costs: a connect (lease, session, TCP, initConnection, the salt
/// exchange) with one `updates.getState` and the close, against one more `updates.getState` on
/// a connection already open; in time and in encrypted messages the DC received.
async fn connection_cost(app: &olchat_tests::TestApp) -> anyhow::Result<()> {
    let (telegram, world) = (&app.app.services.telegram, &app.app.sandbox().telegram);
    let sales = app.app.services.connectors.get(seed::DEMO_MEMBER_ID, "sales").await?.expect("the demo connector").account();
    let frames_before = world.stats().frames;
    let (mut per_job, mut connect, mut first, mut close) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let session = telegram.connect(&sales).await?;
        connect.push(started.elapsed());
        let asked = Instant::now();
        session.updates_state().await?;
        first.push(asked.elapsed());
        let closing = Instant::now();
        session.close().await;
        close.push(closing.elapsed());
        per_job.push(started.elapsed());
    }
    for samples in [&mut per_job, &mut connect, &mut first, &mut close] {
        samples.sort();
    }
    let job_frames = (world.stats().frames - frames_before) as f64 / ROUNDS as f64;
    let session = telegram.connect(&sales).await?;
    session.updates_state().await?;
    let frames_before = world.stats().frames;
    let open = timed(ROUNDS, || async { session.updates_state().await.unwrap(); }).await;
    let open_frames = (world.stats().frames - frames_before) as f64 / ROUNDS as f64;
    session.close().await;
    let (job50, open50) = (percentile(&per_job, 0.5), percentile(&open, 0.5));
    println!("| one RPC on an open MTProto connection p50 (floor) | {} ({open_frames:.1} messages) | 1.00 | |", ms(open50));
    println!(
        "| a job's connection: connect + one RPC + close p50 | {} ({job_frames:.1} messages) | {:.2} × one RPC | |",
        ms(job50),
        job50.as_secs_f64() / open50.as_secs_f64()
    );
    let part = |samples: &[Duration]| format!("{} | {:.2} × one RPC", ms(percentile(samples, 0.5)), percentile(samples, 0.5).as_secs_f64() / open50.as_secs_f64());
    println!("| — of which the lease, the sealed session and the sender pool p50 | {} | |", part(&connect));
    println!("| — of which the first RPC (TCP, initConnection, bad_server_salt, future salts) p50 | {} | |", part(&first));
    println!("| — of which the close (disconnect, session written back if changed, lease released) p50 | {} | |", part(&close));
    Ok(())
}

/// A placement's times as deployed, and the floor's in the same rounds.
struct Apart {
    all: Vec<Duration>,
    own: Vec<Duration>,
    /// The floor route served by a process of its own, timed in the same rounds.
    floor: Vec<Duration>,
}

/// The tab's open time as deployed: the sandbox portal in its own process, the app in real
/// mode in another (the release `local` binary); all, and without the portal round trips.
async fn placement_with_the_portal_apart() -> anyhow::Result<Apart> {
    let unpaced = [("OLCHAT_PORTAL_RATE", "1000000"), ("OLCHAT_PORTAL_BURST", "1000000"), ("OLCHAT_PORTAL_CHECK_RATE", "1000000"), ("OLCHAT_PORTAL_CHECK_BURST", "1000000")];
    let deployed = Deployed::start_with(&[&unpaced[..], &[("OLCHAT_CATCH_UP_SECS", "0")]].concat()).await;
    let (status, page) = deployed.install(seed::DEMO_MEMBER_ID).await;
    anyhow::ensure!(status == 200, "install answered {status}: {page}");
    let (_floor_process, floor_url) = floor_in_its_own_process(&deployed.http).await?;
    let mut apart = Apart { all: Vec::with_capacity(ROUNDS), own: Vec::with_capacity(ROUNDS), floor: Vec::with_capacity(ROUNDS) };
    for round in 0..ROUNDS {
        let (action, form) = deployed.launcher("/sandbox/open?entity=lead&id=1&lang=en").await;
        // The floor in every round, after the same launcher: both see the machine alike.
        let started = Instant::now();
        deployed.http.get(&floor_url).send().await?.bytes().await?;
        apart.floor.push(started.elapsed());
        let started = Instant::now();
        let response = deployed.http.post(action).form(&form).send().await?;
        if response.status() != 200 {
            let (status, headers) = (response.status(), response.headers().clone());
            anyhow::bail!("placement {round} answered {status} {headers:?}: {}", response.text().await?);
        }
        let portal_ms = portal_wait_ms(&response).expect("Server-Timing");
        response.bytes().await?;
        let elapsed = started.elapsed();
        apart.all.push(elapsed);
        apart.own.push(elapsed.saturating_sub(Duration::from_secs_f64(portal_ms / 1000.0)));
    }
    for samples in [&mut apart.all, &mut apart.own, &mut apart.floor] {
        samples.sort();
    }
    Ok(apart)
}
