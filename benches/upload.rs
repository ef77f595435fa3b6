//! Upload benchmark (figures, not a timed test): a 200 MB file per backend against `curl`
//! uploading the same file to the same server (`cp` for the local folder), as a ratio, and
//! the memory the upload adds (peak RSS above the level before it).
//!
//! `cargo bench --bench upload`; `BENCH_MB` (200) changes the size. Needs s3s-fs (installed
//! by scripts/test.sh). The Supabase Storage emulator of the tests runs in this process and
//! keeps objects in memory, so no memory figure is given for it.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use douyin_worker::config::Secret;
use douyin_worker::stage::DownloadedFile;
use douyin_worker::storage::local::LocalFolder;
use douyin_worker::storage::object::S3Store;
use douyin_worker::storage::supabase::SupabaseStorage;
use douyin_worker::storage::{ObjectBackend, PutRequest};
use object_store::aws::AmazonS3Builder;

const ACCESS: &str = "bench-access";
const SECRET: &str = "bench-secret";

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

/// Times `f`, with the peak RSS it added.
async fn measured<F: std::future::Future<Output = ()>>(f: F) -> (Duration, u64) {
    let base = rss_kib();
    let peak = Arc::new(AtomicU64::new(base));
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
    f.await;
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (took, peak.load(Ordering::Relaxed).saturating_sub(base))
}

fn timed_cmd(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let status = cmd.stdout(Stdio::null()).status().expect("run");
    assert!(status.success(), "{cmd:?}");
    t.elapsed()
}

fn s3s_binary() -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let p = format!("{home}/.cargo/bin/s3s-fs");
    if std::path::Path::new(&p).exists() {
        p
    } else {
        "s3s-fs".into()
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mb: usize = std::env::var("BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.mp4");
    {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut data = Vec::with_capacity(mb * 1024 * 1024);
        while data.len() < mb * 1024 * 1024 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        std::fs::write(&path, &data).unwrap();
    }
    let size = std::fs::metadata(&path).unwrap().len();
    let file = DownloadedFile {
        path: path.clone(),
        size,
        sha256: String::new(),
    };
    let meta = BTreeMap::from([("douyin_id".to_string(), "bench".to_string())]);
    let req = |key: &'static str| PutRequest {
        key,
        file: &file,
        content_type: "video/mp4",
        cache_control: "max-age=3600",
        metadata: &meta,
    };
    let mbps = |d: Duration| mb as f64 / d.as_secs_f64();
    println!("douyin-worker upload benchmark ({mb} MB file, loopback, release build)");
    println!("| backend | ours | curl / cp | ratio | memory added |");
    println!("|---|---|---|---|---|");

    // S3-compatible: s3s-fs.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("videos")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s3s = Command::new(s3s_binary())
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            ACCESS,
            "--secret-key",
            SECRET,
        ])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs (bash scripts/test.sh installs it)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let store = AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_region("us-east-1")
        .with_bucket_name("videos")
        .with_access_key_id(ACCESS)
        .with_secret_access_key(SECRET)
        // As curl below: the payload is not hashed into the signature (AWS_UNSIGNED_PAYLOAD).
        .with_unsigned_payload(true)
        .build()
        .unwrap();
    let s3 = S3Store::new(Arc::new(store), "videos");
    let (ours, mem) = measured(async {
        s3.put(&req("ours.mp4")).await.unwrap();
    })
    .await;
    let curl = timed_cmd(
        Command::new("curl")
            .args([
                "-sSf",
                "--noproxy",
                "*",
                "--aws-sigv4",
                "aws:amz:us-east-1:s3",
            ])
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "--user"])
            .arg(format!("{ACCESS}:{SECRET}"))
            .arg("-T")
            .arg(&path)
            .arg(format!("{endpoint}/videos/curl.mp4")),
    );
    println!(
        "| S3 (s3s-fs) | {:.0} MB/s | {:.0} MB/s | {:.2} | {:.1} MiB |",
        mbps(ours),
        mbps(curl),
        curl.as_secs_f64() / ours.as_secs_f64(),
        mem as f64 / 1024.0
    );
    let _ = s3s.kill();
    let _ = s3s.wait();

    // Supabase Storage: the emulator (TUS above 6 MiB) against one curl POST.
    let api = fakes::storage_api::StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    let sb = SupabaseStorage::new(
        &api.url.parse().unwrap(),
        Secret::new(fakes::storage_api::SERVICE_KEY),
        "videos",
    )
    .unwrap();
    let t = Instant::now();
    sb.put(&req("ours.mp4")).await.unwrap();
    let ours = t.elapsed();
    let url = format!("{}/storage/v1/object/videos/curl.mp4", api.url);
    let curl = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            timed_cmd(
                Command::new("curl")
                    .args(["-sSf", "--noproxy", "*", "-X", "POST"])
                    .args([
                        "-H",
                        &format!("Authorization: Bearer {}", fakes::storage_api::SERVICE_KEY),
                        "-H",
                        &format!("apikey: {}", fakes::storage_api::SERVICE_KEY),
                    ])
                    .args([
                        "-H",
                        "Content-Type: video/mp4",
                        "-H",
                        "x-upsert: true",
                        "--data-binary",
                    ])
                    .arg(format!("@{}", path.display()))
                    .arg(url),
            )
        }
    })
    .await
    .unwrap();
    println!(
        "| Supabase Storage (emulator, TUS) | {:.0} MB/s | {:.0} MB/s | {:.2} | n/a |",
        mbps(ours),
        mbps(curl),
        curl.as_secs_f64() / ours.as_secs_f64()
    );
    drop(api);

    // Local folder against cp.
    let out = tempfile::tempdir().unwrap();
    let local = LocalFolder::new(out.path(), "videos");
    let (ours, mem) = measured(async {
        local.put(&req("ours.mp4")).await.unwrap();
    })
    .await;
    let cp = timed_cmd(Command::new("cp").arg(&path).arg(out.path().join("cp.mp4")));
    println!(
        "| local folder | {:.0} MB/s | {:.0} MB/s (cp) | {:.2} | {:.1} MiB |",
        mbps(ours),
        mbps(cp),
        cp.as_secs_f64() / ours.as_secs_f64(),
        mem as f64 / 1024.0
    );
}
