//! The HTTP server under hostile clients: half-open connections
//! by the hundred against a process whose descriptor limit is 256, idle keep-alive
//! connections, the connection cap and its metrics, and the API apart from health and
//! metrics (`API_ADDR`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use douyin_worker::http::{self, HttpState, ServerLimits};
use douyin_worker::queue::Queue;
use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::storage::ObjectBackend;
use douyin_worker::storage::local::LocalFolder;
use tokio_util::sync::CancellationToken;

use crate::api::{get, sample};
use fakes::douyin::{Behaviour, DouyinServer, video_post};
use fakes::pg::fresh_pg;
use fakes::servers::free_port;

/// What the attack sends on each socket: half a request, then nothing.
const HALF_REQUEST: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n";

/// `n` connections to `addr` that each send half a request and stop (a connection that
/// cannot be made within 2 s is left out: a server out of descriptors stops accepting).
fn half_open(addr: &str, n: usize) -> Vec<TcpStream> {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            // Refused connections are closed at once: the write may find them gone.
            let _ = s.write_all(HALF_REQUEST);
            Some(s)
        })
        .collect()
}

/// Half requests, `per_round` new ones every half second, until stopped: the attack goes
/// on for as long as the test looks. The sockets of the last [`KEEP_ROUNDS`] rounds stay
/// open on this side (4 s: longer than the header timeout of the tests), so the server must
/// close them itself.
struct Flood {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<TcpStream>>,
}

const KEEP_ROUNDS: usize = 8;

impl Flood {
    fn start(addr: &str, per_round: usize) -> Flood {
        // This process holds up to KEEP_ROUNDS * per_round sockets.
        let _ = douyin_worker::http::fdlimit::raise_nofile();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, addr) = (stop.clone(), addr.to_string());
        let thread = std::thread::spawn(move || {
            let mut rounds = std::collections::VecDeque::new();
            loop {
                rounds.push_back(half_open(&addr, per_round));
                if rounds.len() > KEEP_ROUNDS {
                    rounds.pop_front();
                }
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    return rounds.into_iter().flatten().collect();
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Flood { stop, thread }
    }

    /// Stops the attack; returns the sockets still held on this side.
    fn stop(self) -> Vec<TcpStream> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Whether the server closed `s` (end of file or reset), waiting up to `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or another answer before the close is fine; keep reading to the end.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Waits until every socket is closed by the server (panics after `deadline`, so a server
/// that holds them forever fails the test instead of hanging it).
fn all_closed(mut socks: Vec<TcpStream>, deadline: Duration) {
    let until = Instant::now() + deadline;
    for (i, s) in socks.iter_mut().enumerate() {
        let left = until.saturating_duration_since(Instant::now());
        assert!(
            closed_within(s, left.max(Duration::from_millis(10))),
            "connection {i} still open after {deadline:?}"
        );
    }
}

/// Runs the binary with a descriptor limit of 256 on a job fixture; returns it with what
/// the test needs.
async fn worker_at_256(
    extra: &[(&str, &str)],
    id: &str,
) -> (
    crate::cli::RunningBinary,
    fakes::pg::TestDb,
    DouyinServer,
    tempfile::TempDir,
) {
    let server = DouyinServer::start(vec![video_post(id, Behaviour::NewSharePage)]).await;
    let db = fresh_pg().await;
    let data = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("DOUYIN_UPSTREAM", server.url.as_str()),
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("HTTP_HEADER_TIMEOUT_SECONDS", "2"),
    ];
    env.extend_from_slice(extra);
    let bin = crate::cli::RunningBinary::start_with_nofile(&env, Some(256));
    (bin, db, server, data)
}

async fn wait_until_answers(url: &str) {
    for _ in 0..400 {
        if reqwest::get(url).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{url} never answered");
}

/// Queues the fixture's video and waits for the job's end: completed, or the failure text.
async fn run_job(db: &fakes::pg::TestDb, id: &str) -> Result<(), String> {
    let rec = crate::support::backends::enqueue_link_and_wait(
        &db.pool,
        &format!("https://www.douyin.com/video/{id}"),
        &["completed", "failed"],
        Duration::from_secs(60),
    )
    .await;
    match rec.status.as_str() {
        "completed" => Ok(()),
        _ => Err(rec.last_error.unwrap_or_default()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_requests_on_the_api_port_leaves_readyz_and_jobs_alone() {
    const ID: &str = "7412345678901234301";
    let (http_addr, api_addr) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let (bin, db, _douyin, _data) =
        worker_at_256(&[("HTTP_ADDR", &http_addr), ("API_ADDR", &api_addr)], ID).await;
    wait_until_answers(&format!("http://{api_addr}/health")).await;

    let flood = Flood::start(&api_addr, 300);
    // Meanwhile: the probes answer on their own listener, and a job completes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, body) = get(&format!("http://{http_addr}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    run_job(&db, ID)
        .await
        .expect("the job completes during the flood");
    let (status, body) = get(&format!("http://{http_addr}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let held = flood.stop();
    assert!(held.len() >= 300, "{} connections made", held.len());
    all_closed(held, Duration::from_secs(60));

    // Each listener serves only its own routes.
    let metrics = reqwest::get(format!("http://{http_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sample(
            &metrics,
            "douyin_http_connections_refused_total",
            &["listener=\"api\""]
        )
        .is_some_and(|n| n > 0.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "douyin_http_timeouts_total",
            &["listener=\"api\"", "timeout=\"header\""]
        )
        .is_some_and(|n| n > 0.0),
        "{metrics}"
    );
    for path in ["/metrics", "/readyz", "/healthz"] {
        let (status, _) = get(&format!("http://{api_addr}{path}")).await;
        assert_eq!(status, 404, "{path} on API_ADDR");
    }
    let (status, _) = get(&format!(
        "http://{http_addr}/api/videos/{}/download",
        uuid::Uuid::new_v4()
    ))
    .await;
    assert_eq!(status, 404, "the API on HTTP_ADDR");
    let (code, lines) = bin.stop();
    assert_eq!(code, Some(0));
    let cap = lines
        .iter()
        .find(|l| l["message"] == "download API listening")
        .expect("the API's listener is logged");
    assert_eq!(cap["max_connections"], 32, "a quarter of 256, per listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_s_attack_on_one_shared_port_no_longer_starves_jobs() {
    // As reported: the API on HTTP_ADDR, a descriptor limit of 256, 400 half requests.
    const ID: &str = "7412345678901234302";
    let addr = format!("127.0.0.1:{}", free_port());
    let (bin, db, _douyin, _data) =
        worker_at_256(&[("HTTP_ADDR", &addr), ("API_ENABLED", "true")], ID).await;
    wait_until_answers(&format!("http://{addr}/healthz")).await;

    let flood = Flood::start(&addr, 400);
    tokio::time::sleep(Duration::from_secs(1)).await;
    run_job(&db, ID)
        .await
        .expect("the job completes during the flood (it failed with EMFILE before)");
    all_closed(flood.stop(), Duration::from_secs(60));
    let (status, body) = get(&format!("http://{addr}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let (code, lines) = bin.stop();
    assert_eq!(code, Some(0));
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("set API_ADDR"))),
        "the shared port is warned about"
    );
}

/// An in-process server (health and metrics) under `limits`; stopped on drop.
async fn serve_health(limits: ServerLimits) -> (String, CancellationToken) {
    let db = fresh_pg().await;
    let store = tempfile::tempdir().unwrap();
    let queue: Arc<dyn Queue> = Arc::new(PgQueue::from_pool(db.pool.clone()));
    let storage: Arc<dyn ObjectBackend> = Arc::new(LocalFolder::new(store.path(), "videos"));
    let listener = http::bind("127.0.0.1:0".parse().unwrap(), "HTTP_ADDR")
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let prometheus = douyin_worker::metrics::install("http-server-test");
    let state = HttpState::new(queue, storage, prometheus, CancellationToken::new(), None);
    let stop = CancellationToken::new();
    let app = http::router(state);
    let s = stop.clone();
    tokio::spawn(async move {
        http::serve(listener, app, "http", limits, s, Duration::from_secs(1)).await;
        drop((db, store));
    });
    (addr, stop)
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_not_the_header_one() {
    let limits = ServerLimits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(4),
        ..Default::default()
    };
    let (addr, stop) = serve_health(limits).await;
    let probe = |mut s: TcpStream| {
        tokio::task::spawn_blocking(move || {
            let ask = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
            s.write_all(ask).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
            // Idle past the header timeout, within the idle one: still served.
            std::thread::sleep(Duration::from_secs(2));
            s.write_all(ask).unwrap();
            let n = s.read(&mut buf).unwrap();
            assert!(
                buf[..n].starts_with(b"HTTP/1.1 200"),
                "kept past the header timeout"
            );
            // Then idle for good: closed by the idle timeout.
            assert!(
                closed_within(&mut s, Duration::from_secs(30)),
                "never closed"
            );
        })
    };
    probe(TcpStream::connect(&addr).unwrap()).await.unwrap();
    stop.cancel();
}

#[tokio::test]
async fn at_the_connection_cap_new_connections_are_closed_and_counted() {
    let limits = ServerLimits {
        max_connections: 3,
        header_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let (addr, stop) = serve_health(limits).await;
    let a = addr.clone();
    let held = tokio::task::spawn_blocking(move || {
        let held = half_open(&a, 3);
        // Past the cap: closed at once (the held ones have 30 s left).
        for mut s in half_open(&a, 7) {
            assert!(closed_within(&mut s, Duration::from_secs(10)));
        }
        held
    })
    .await
    .unwrap();
    let text = douyin_worker::metrics::handle().unwrap().render();
    assert_eq!(
        sample(&text, "douyin_http_connections", &["listener=\"http\""]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "douyin_http_connections_refused_total",
            &["listener=\"http\""]
        ),
        Some(7.0),
        "{text}"
    );
    drop(held);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_proxied_file_is_cut_off_after_the_stall_timeout() {
    let db = fresh_pg().await;
    let store = tempfile::tempdir().unwrap();
    let queue: Arc<dyn Queue> = Arc::new(PgQueue::from_pool(db.pool.clone()));
    let storage: Arc<dyn ObjectBackend> = Arc::new(LocalFolder::new(store.path(), "videos"));
    let video = crate::api::insert_video(&db.pool, "7400000000000000401").await;
    let key = "7400000000000000401/7400000000000000401.mp4";
    let size = 64 << 20;
    crate::api::mark_stored(&db.pool, store.path(), video, key, Some(&vec![1u8; size])).await;
    let limits = ServerLimits {
        stall_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let server = crate::api::serve_with(queue, storage, crate::api::api_options(&[]), limits).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let got = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        let ask =
            format!("GET /api/videos/{video}/download?proxy=true HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(ask.as_bytes()).unwrap();
        // Read the first bytes, then stop reading long past the stall timeout.
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = s.read(&mut buf).unwrap();
        std::thread::sleep(Duration::from_secs(5));
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return got,
                Ok(n) => got += n,
            }
        }
    })
    .await
    .unwrap();
    assert!(
        got < size,
        "the whole file arrived: the connection was never cut"
    );
}
