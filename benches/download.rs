//! Download benchmark (figures, not a timed test): throughput of the downloader against
//! `curl` fetching the same 200 MB file from the same loopback server into a file, as a
//! ratio, and the memory the downloader adds during 16 concurrent 200 MB downloads.
//!
//! `cargo bench --bench download`; `BENCH_MB` (200) and `BENCH_PARALLEL` (16) change the
//! sizes. The loopback CDN of the tests serves the file from memory, so the process RSS holds
//! that copy: the memory figure is the peak RSS above the level before the downloads.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use douyin_worker::download::{DownloadOptions, HttpDownloader};
use douyin_worker::stage::MediaSource;
use fakes::cdn::{Cdn, Serve, bytes};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mb = env_or("BENCH_MB", 200);
    let parallel = env_or("BENCH_PARALLEL", 16);
    let size = mb * 1024 * 1024;
    let server = Cdn::start().await;
    server.add("/big.mp4", bytes(size, 42), Serve::Normal);
    let url = server.url("/big.mp4");
    let dir = tempfile::tempdir().unwrap();
    let downloader = Arc::new(
        HttpDownloader::new(DownloadOptions {
            allow_private_networks: true,
            max_bytes: u64::MAX / 2,
            ..Default::default()
        })
        .unwrap(),
    );
    let source = MediaSource {
        douyin_id: "bench".into(),
        urls: vec![url.clone()],
        expected_size: Some(size as u64),
        ..Default::default()
    };
    let none = |_: u64, _: Option<u64>| {};

    // Warm up both.
    downloader
        .download_to(&source, dir.path(), &none)
        .await
        .unwrap();
    clean(dir.path());

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        downloader
            .download_to(&source, dir.path(), &none)
            .await
            .unwrap();
        ours.push(t.elapsed());
        clean(dir.path());
        let out = dir.path().join("curl.out");
        let t = Instant::now();
        let status = Command::new("curl")
            .args(["-sS", "--noproxy", "*", "-o"])
            .arg(&out)
            .arg(&url)
            .status()
            .expect("curl");
        theirs.push(t.elapsed());
        assert!(status.success());
        clean(dir.path());
    }
    let best = |v: &[Duration]| v.iter().min().copied().unwrap();
    let mbps = |d: Duration| mb as f64 / d.as_secs_f64();
    let (o, c) = (best(&ours), best(&theirs));

    // Memory during `parallel` concurrent downloads.
    let baseline = rss_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..parallel {
        let d = downloader.clone();
        let s = source.clone();
        let sub = dir.path().join(format!("p{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        tasks.push(tokio::spawn(async move {
            let none = |_: u64, _: Option<u64>| {};
            let f = d.download_to(&s, &sub, &none).await.unwrap();
            std::fs::remove_file(f.path).unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let added = peak.load(Ordering::Relaxed).saturating_sub(baseline);

    println!("douyin-worker download benchmark (loopback, {mb} MB file, release build)");
    println!("| figure | value |");
    println!("|---|---|");
    println!("| downloader, best of 3 | {:.0} MB/s |", mbps(o));
    println!("| curl -o file, best of 3 | {:.0} MB/s |", mbps(c));
    println!(
        "| ratio downloader / curl | {:.2} |",
        c.as_secs_f64() / o.as_secs_f64()
    );
    println!(
        "| {parallel} concurrent downloads | {:.1} s, {:.0} MB/s in all |",
        all.as_secs_f64(),
        (mb * parallel) as f64 / all.as_secs_f64()
    );
    println!(
        "| memory added at peak (RSS) | {:.1} MiB |",
        added as f64 / 1024.0
    );
}

fn clean(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_file() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
