//! Worker memory while streaming files: `cargo run --release -p olchat-tests --bin media_bench`.
//! Puts a 10 MB and then a 1 GB blob into the local instance's blob store and sends each
//! through the grammers adapter to the sandbox data centre (`upload.saveFilePart`, then
//! `saveBigFilePart` for the big one) over one connection, reading the process's own peak RSS
//! (VmHWM) after each. Flat memory means the second peak is no higher than the first by more
//! than noise. The sandbox DC runs in the same process and keeps the parts on disk.

use std::time::Instant;

use shared::domain::Formatted;
use shared::ports::{Media, MediaKind, Peer};
use shared::sandbox::seed;
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
    let app = olchat_tests::spawn_app().await;
    let svc = &app.app.services;
    let users = app.app.sandbox().telegram.users();
    let ivan = users.iter().find(|u| u.id == 1001).expect("seeded");
    let peer = Peer { user_id: ivan.id, access_hash: ivan.access_hash };
    let sales = svc.connectors.get(seed::DEMO_MEMBER_ID, "sales").await?.expect("the demo connector").account();

    println!("| file | put + send_media | peak RSS after (VmHWM) |\n|---|---|---|");
    println!("| (start) | | {:.1} MiB |", peak_rss_mib());
    let telegram = svc.telegram.connect(&sales).await?;
    for (i, (label, size)) in [("10 MB", 10_000_000u64), ("1 GB", 1_000_000_000u64)].into_iter().enumerate() {
        let started = Instant::now();
        let key = format!("bench/{i}.bin");
        let stored = svc.blobs.put(&key, &mut tokio::io::repeat(0x5a).take(size)).await?;
        assert_eq!(stored, size);
        let (len, body) = svc.blobs.get(&key).await?.expect("just stored");
        let media = Media { kind: MediaKind::Document, file_name: format!("{i}.bin"), mime_type: "application/octet-stream".into(), size: len };
        let sent = telegram.send_media(peer, &media, body, &Formatted::plain(label), 1000 + i as i64).await?;
        assert!(sent.id.is_some());
        svc.blobs.delete(&key).await?;
        println!("| {label} | {:.2} s | {:.1} MiB |", started.elapsed().as_secs_f64(), peak_rss_mib());
    }
    telegram.close().await;
    Ok(())
}
