//! A crash in the middle of a burst: the local runner (sandbox mode, one process) is killed
//! with SIGKILL while its worker sends, then started again on the same data directory. Every
//! accepted message reaches Telegram exactly once, as the sandbox data centre's persistent log
//! counts them (it outlives the process, as Telegram would).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use olchat_tests::deployed::{answering, free_port, lead_tab, local_runner};
use olchat_tests::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BURST: usize = 300;
/// Long enough for the restarted worker to wait out what the killed one held (the queue's
/// visibility, the account's lease) and send the rest.
const RECOVERY: Duration = Duration::from_secs(240);

/// Every message the sandbox Telegram holds from the sales account, counted by text.
async fn delivered(http: &reqwest::Client, url: &str) -> HashMap<String, usize> {
    let body: Value = http.get(format!("{url}/sandbox/telegram/messages")).send().await.unwrap().json().await.unwrap();
    let mut counts = HashMap::new();
    for m in body["messages"].as_array().unwrap() {
        *counts.entry(m["text"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn a_runner_killed_mid_burst_loses_no_accepted_message_and_sends_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let http = reqwest::Client::new();
    let first = local_runner(&url, dir.path());
    answering(&http, &url).await;
    let token = lead_tab(&http, &url).await;
    // The demo connectors are stored right after the install.
    eventually(Duration::from_secs(30), "the sales connector", || async {
        let card = http.get(format!("{url}/api/card?connector=sales")).bearer_auth(&token).send().await.ok()?;
        (card.status() == StatusCode::OK).then_some(())
    })
    .await;

    let accepted: Vec<(String, String)> = futures_util::stream::iter(0..BURST)
        .map(|i| {
            let (http, url, token) = (&http, &url, &token);
            async move {
                let text = format!("burst {i}");
                let body = json!({ "connector_id": "sales", "recipient": "phone:+79161234567", "text": text, "idempotency_key": format!("burst-{i}") });
                let answer = http.post(format!("{url}/api/send")).bearer_auth(token).json(&body).send().await.unwrap();
                assert_eq!(answer.status(), StatusCode::ACCEPTED);
                let id = answer.json::<Value>().await.unwrap()["message_id"].as_str().unwrap().to_owned();
                (id, text)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    // Killed while sending: some went out, not all.
    let before = eventually(Duration::from_secs(60), "the first sends", || async {
        let sent: usize = delivered(&http, &url).await.values().sum();
        (sent >= BURST / 10).then_some(sent)
    })
    .await;
    first.kill();
    assert!(before < BURST, "the burst was over before the kill ({before} sent): nothing was cut short");

    let _second = local_runner(&url, dir.path());
    answering(&http, &url).await;
    let token = lead_tab(&http, &url).await;
    // Every accepted message ends sent; only then are the counts final.
    for (id, text) in &accepted {
        eventually(RECOVERY, &format!("{text} sent"), || async {
            let view: Value = http.get(format!("{url}/api/messages/{id}")).bearer_auth(&token).send().await.ok()?.json().await.ok()?;
            (view["status"] == "sent").then_some(())
        })
        .await;
    }
    let counts = delivered(&http, &url).await;
    let lost: Vec<&String> = accepted.iter().map(|(_, t)| t).filter(|t| !counts.contains_key(*t)).collect();
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert_eq!(counts.values().sum::<usize>(), BURST, "{before} before the kill, the rest after");
}
