//! Worker memory while streaming files: `cargo run --release -p olchat-tests --bin media_bench`.
//! Puts a 10 MB and then a 1 GB blob into the directory blob store and sends each through
//! `send_media` of the sandbox Telegram, reading the process's own peak RSS (VmHWM) after
//! each. Flat memory means the second peak is no higher than the first by more than noise.

use std::time::Instant;

use shared::adapters::DirBlobs;
use shared::domain::Formatted;
use shared::ports::{Blobs, Media, MediaKind, Peer, Telegram};
use shared::repo::connectors::Connector;
use shared::sandbox::seed;
use shared::sandbox::telegram::SandboxTelegram;
use tokio::io::AsyncReadExt;

/// The process's peak resident set so far, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib / 1024.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let blobs = DirBlobs::new(dir.path(), "http://127.0.0.1:1", [9; 32])?;
    let telegram = SandboxTelegram::new(seed::telegram_users());
    let users = telegram.users();
    let ivan = users.iter().find(|u| u.id == 1001).expect("seeded");
    let peer = Peer { user_id: ivan.id, access_hash: ivan.access_hash };
    let sales = Connector {
        id: "sales".into(),
        member_id: seed::DEMO_MEMBER_ID.into(),
        name: "Sales".into(),
        phone: String::new(),
        username: None,
        telegram_user_id: seed::SALES_ACCOUNT,
        status: shared::repo::connectors::ConnectorStatus::Connected,
        line: None,
        budgets: None,
        accept_all: false,
        access: Default::default(),
    }
    .account();

    println!("| file | put + send_media | peak RSS after (VmHWM) |\n|---|---|---|");
    println!("| (start) | | {:.1} MiB |", peak_rss_mib());
    for (i, (label, size)) in [("10 MB", 10_000_000u64), ("1 GB", 1_000_000_000u64)].into_iter().enumerate() {
        let started = Instant::now();
        let key = format!("bench/{i}.bin");
        let stored = blobs.put(&key, &mut tokio::io::repeat(0x5a).take(size)).await?;
        assert_eq!(stored, size);
        let (len, body) = blobs.get(&key).await?.expect("just stored");
        let media = Media { kind: MediaKind::Document, file_name: format!("{i}.bin"), mime_type: "application/octet-stream".into(), size: len };
        let sent = telegram.send_media(&sales, peer, &media, body, &Formatted::plain(label), 1000 + i as i64).await?;
        assert!(sent.id.is_some());
        blobs.delete(&key).await?;
        println!("| {label} | {:.2} s | {:.1} MiB |", started.elapsed().as_secs_f64(), peak_rss_mib());
    }
    Ok(())
}
