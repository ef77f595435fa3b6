//! `examples/progress.html` in a real headless Chromium: the page, served from a loopback
//! origin of its own (allowed by the API's `API_CORS_ORIGINS`), follows a job a worker
//! process runs through the events stream of this process's API; its progress bar moves and
//! its `<video>` gets the file's link.
#![cfg(feature = "browser")]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::Html;
use chromiumoxide::Browser;
use douyin_worker::extract::browser::launch::find_executable;
use douyin_worker::http::ServerLimits;
use douyin_worker::http::api::ApiOptions;
use douyin_worker::queue::Queue;
use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::storage::ObjectBackend;
use douyin_worker::storage::local::LocalFolder;
use futures::StreamExt;
use serde_json::Value;

use crate::api::serve_with;
use crate::system::Rig;

const PAGE: &str = include_str!("../../examples/progress.html");

/// A headless Chromium in its own process group with a throwaway profile; killed (the whole
/// group) on drop.
struct Chromium {
    child: std::process::Child,
    ws_url: String,
    _profile: tempfile::TempDir,
}

impl Chromium {
    fn start() -> Chromium {
        let path = std::env::var_os("PATH");
        let exe = find_executable(None, path.as_deref()).unwrap_or_else(|e| {
            panic!("{e}: this test needs Chromium (scripts/test.sh installs it)")
        });
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--mute-audio",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.trim().strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let ws_url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("Chromium printed its DevTools address");
        Chromium {
            child,
            ws_url,
            _profile: profile,
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Serves the example page on a loopback origin of its own; returns that origin.
async fn page_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/progress.html",
        axum::routing::get(|| async { Html(PAGE) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    origin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_page_shows_the_progress_and_plays_the_video_when_ready() {
    const ID: &str = "7412345678901239401";
    const SIZE: u64 = 1_000_000;
    // A quarter at once, then four eighths 700 ms apart, then the rest: several bar values.
    let serve = crate::events::crawling(SIZE);
    let rig = Rig::start(&[(ID, SIZE as usize, serve)]).await;
    let origin = page_server().await;
    let queue: Arc<dyn Queue> = Arc::new(PgQueue::from_pool(rig.db.pool.clone()));
    let storage: Arc<dyn ObjectBackend> = Arc::new(LocalFolder::new(rig.store(), "videos"));
    let opts = ApiOptions {
        rate_limit: 0,
        cors_origins: vec![origin.clone()],
        ..Default::default()
    };
    let api = serve_with(queue, storage, Some(opts), ServerLimits::default()).await;
    let job = rig.enqueue(ID).await;
    let video = rig.job(job).await.video_id;

    let chromium = tokio::task::spawn_blocking(Chromium::start).await.unwrap();
    let (browser, mut handler) = Browser::connect(chromium.ws_url.clone()).await.unwrap();
    let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser
        .new_page(format!(
            "{origin}/progress.html?api={}&id={video}",
            api.base
        ))
        .await
        .unwrap();
    let bin = rig.worker(&[]);

    // Read the bar and the video's source until the source is set.
    let mut bars: Vec<f64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let src = loop {
        let now: Value = page
            .evaluate(
                "({bar: document.getElementById('bar').value, \
                  src: document.getElementById('video').src, \
                  status: document.getElementById('status').textContent})",
            )
            .await
            .unwrap()
            .into_value()
            .unwrap();
        let bar = now["bar"].as_f64().unwrap();
        if bars.last() != Some(&bar) {
            bars.push(bar);
        }
        let src = now["src"].as_str().unwrap_or_default().to_string();
        if !src.is_empty() {
            break src;
        }
        assert!(
            Instant::now() < deadline,
            "no video source within 60 s; bar values {bars:?}, now {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        src,
        format!("{}/api/videos/{video}/download?proxy=true", api.base),
        "bar values {bars:?}"
    );
    assert!(
        bars.windows(2).all(|w| w[0] < w[1]),
        "the bar only moves forward: {bars:?}"
    );
    assert!(
        bars.iter().any(|b| *b > 0.0 && *b < 100.0),
        "the bar showed the download on its way: {bars:?}"
    );
    assert_eq!(bars.last(), Some(&100.0), "{bars:?}");

    let (code, _) = bin.stop();
    assert_eq!(code, Some(0));
    drop(browser);
    handler.abort();
    drop(chromium);
}
