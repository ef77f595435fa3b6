//! The HTTP server: health, readiness and metrics, and the UI's download API on real rows
//! (a throwaway PostgreSQL, a local-folder store, real HTTP over loopback). The last test
//! runs the binary on a real job and reads its `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use douyin_worker::error::ErrorClass;
use douyin_worker::http::api::ApiOptions;
use douyin_worker::http::{self, HttpState, ServerLimits};
use douyin_worker::queue::Queue;
use douyin_worker::queue::QueueAdmin;
use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::queue::{EnqueueRequest, FailedAttempt, JobQueue};
use douyin_worker::storage::ObjectBackend;
use douyin_worker::storage::local::LocalFolder;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use fakes::pg::fresh_pg;

/// A server on a loopback port over a queue and a store; stopped on drop.
pub(crate) struct Server {
    pub(crate) base: String,
    stop: CancellationToken,
    shutting_down: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(
    queue: Arc<dyn Queue>,
    storage: Arc<dyn ObjectBackend>,
    api: Option<ApiOptions>,
) -> Server {
    serve_with(queue, storage, api, ServerLimits::default()).await
}

/// A server with health, metrics and (when `api`) the download API on one port, under
/// `limits`.
pub(crate) async fn serve_with(
    queue: Arc<dyn Queue>,
    storage: Arc<dyn ObjectBackend>,
    api: Option<ApiOptions>,
    limits: ServerLimits,
) -> Server {
    let listener = http::bind("127.0.0.1:0".parse().unwrap(), "HTTP_ADDR")
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let shutting_down = CancellationToken::new();
    let state = HttpState::new(queue, storage, prometheus, shutting_down.clone(), api);
    let stop = CancellationToken::new();
    tokio::spawn(http::serve(
        listener,
        http::router(state),
        "http",
        limits,
        stop.clone(),
        Duration::from_secs(1),
    ));
    Server {
        base,
        stop,
        shutting_down,
    }
}

/// API options for the tests: links for ten minutes, these CORS origins, no retry
/// cooldown (the guard tests set their own).
pub(crate) fn api_options(origins: &[&str]) -> Option<ApiOptions> {
    Some(ApiOptions {
        signed_url_ttl: Duration::from_secs(600),
        cors_origins: origins.iter().map(|s| s.to_string()).collect(),
        retry_cooldown: Duration::ZERO,
        ..Default::default()
    })
}

/// The status and JSON body of a request.
pub(crate) async fn call(method: reqwest::Method, url: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, url)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub(crate) async fn get(url: &str) -> (u16, Value) {
    call(reqwest::Method::GET, url).await
}

pub(crate) async fn post(url: &str) -> (u16, Value) {
    call(reqwest::Method::POST, url).await
}

/// A video row of the crawler's shape, with no job.
pub(crate) async fn insert_video(pool: &PgPool, douyin_id: &str) -> Uuid {
    sqlx::query_scalar(
        "insert into public.videos (douyin_id, video_url, title)
         values ($1, 'https://www.douyin.com/video/' || $1, 'a title') returning id",
    )
    .bind(douyin_id)
    .fetch_one(pool)
    .await
    .unwrap()
}

pub(crate) async fn active_jobs(pool: &PgPool, video: Uuid) -> i64 {
    sqlx::query_scalar(
        "select count(*) from public.download_jobs
          where video_id = $1 and status in ('pending', 'running')",
    )
    .bind(video)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Marks the video stored under `key` (and writes the object when `bytes` is given).
pub(crate) async fn mark_stored(
    pool: &PgPool,
    store: &std::path::Path,
    video: Uuid,
    key: &str,
    bytes: Option<&[u8]>,
) {
    if let Some(bytes) = bytes {
        let path = store.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    sqlx::query(
        "update public.videos set status = 'ready', bucket = 'videos', object_key = $2,
                filesize = $3, mime_type = 'video/mp4', storage_provider = 'local'
          where id = $1",
    )
    .bind(video)
    .bind(key)
    .bind(bytes.map_or(1234, |b| b.len() as i64))
    .execute(pool)
    .await
    .unwrap();
}

/// Claims the video's job and fails it for good with `class`.
pub(crate) async fn fail_for_good(q: &PgQueue, class: ErrorClass, message: &str) {
    fail_for_good_with(q, class, "test", message).await;
}

/// The same with an error code.
pub(crate) async fn fail_for_good_with(q: &PgQueue, class: ErrorClass, code: &str, message: &str) {
    let jobs = q
        .claim("api-test", 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    q.fail(
        "api-test",
        &[FailedAttempt {
            lease: jobs[0].lease,
            error: message.into(),
            code: code.into(),
            class,
            retry_in: None,
            forget_direct_url: None,
        }],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn the_download_api_answers_every_state_of_a_real_video_row() {
    let db = fresh_pg().await;
    let store = tempfile::tempdir().unwrap();
    let q = PgQueue::from_pool(db.pool.clone());
    let queue: Arc<dyn Queue> = Arc::new(PgQueue::from_pool(db.pool.clone()));
    let storage: Arc<dyn ObjectBackend> = Arc::new(LocalFolder::new(store.path(), "videos"));
    let server = serve(queue, storage, api_options(&[])).await;
    let url = |id: &str, tail: &str| format!("{}/api/videos/{id}/{tail}", server.base);

    // Bad ids and unknown videos.
    let (status, body) = get(&url("not-a-uuid", "download")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "the video id must be a UUID");
    let (status, body) = get(&url(&Uuid::new_v4().to_string(), "download")).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = post(&url(&Uuid::new_v4().to_string(), "retry")).await;
    assert_eq!(status, 404);

    // A new video: queued once, however often the UI polls.
    let fresh = insert_video(&db.pool, "7400000000000000001").await;
    let (status, body) = get(&url(&fresh.to_string(), "download")).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")));
    let (status, body) = post(&url(&fresh.to_string(), "download")).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")));
    assert_eq!(active_jobs(&db.pool, fresh).await, 1);

    // Claimed and downloading: the progress the worker reports.
    let jobs = q
        .claim("api-test", 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(jobs[0].video_id, fresh);
    assert!(
        q.progress("api-test", &jobs[0].lease, 50, Some(200))
            .await
            .unwrap()
    );
    let (status, body) = get(&url(&fresh.to_string(), "download")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("downloading")),
        "{body}"
    );
    assert_eq!(body["progress"], 25);
    let (status, body) = post(&url(&fresh.to_string(), "retry")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("downloading")),
        "retry while running adds nothing"
    );
    assert_eq!(active_jobs(&db.pool, fresh).await, 1);

    // Stored: a link this API serves (the local folder signs nothing), and the file itself.
    let key = "7400000000000000002/7400000000000000002.mp4";
    let stored = insert_video(&db.pool, "7400000000000000002").await;
    let bytes = b"\0\0\0\x18ftypisom not really a video but bytes".repeat(100);
    mark_stored(&db.pool, store.path(), stored, key, Some(&bytes)).await;
    let (status, body) = get(&url(&stored.to_string(), "download")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["filename"], "7400000000000000002.mp4");
    assert_eq!(body["filesize"], bytes.len());
    assert_eq!(body["mime_type"], "video/mp4");
    let expires: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires - chrono::Utc::now();
    assert!(
        ttl > chrono::Duration::seconds(590) && ttl <= chrono::Duration::seconds(600),
        "{ttl}"
    );
    let link = body["download_url"].as_str().unwrap();
    assert_eq!(link, format!("/api/videos/{stored}/download?proxy=true"));
    let r = reqwest::get(format!("{}{link}", server.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"7400000000000000002.mp4\""
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
    // Retrying a stored video does not download it again.
    let (status, body) = post(&url(&stored.to_string(), "retry")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    assert_eq!(active_jobs(&db.pool, stored).await, 0);

    // Marked stored, but the object is gone; and not stored yet.
    let missing = insert_video(&db.pool, "7400000000000000003").await;
    mark_stored(
        &db.pool,
        store.path(),
        missing,
        "7400000000000000003/x.mp4",
        None,
    )
    .await;
    let (status, body) = get(&format!(
        "{}?proxy=true",
        url(&missing.to_string(), "download")
    ))
    .await;
    assert_eq!((status, body["status"].as_str()), (404, Some("missing")));
    let (status, _) = get(&format!(
        "{}?proxy=true",
        url(&fresh.to_string(), "download")
    ))
    .await;
    assert_eq!(status, 409);

    // Marked for deletion.
    let doomed = insert_video(&db.pool, "7400000000000000004").await;
    sqlx::query("update public.videos set marked_for_deletion = true where id = $1")
        .bind(doomed)
        .execute(&db.pool)
        .await
        .unwrap();
    let (status, body) = get(&url(&doomed.to_string(), "download")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (410, Some("marked_for_deletion"))
    );
    let (status, _) = post(&url(&doomed.to_string(), "retry")).await;
    assert_eq!(status, 410);
    assert_eq!(active_jobs(&db.pool, doomed).await, 0);

    // Failed for good: permanent (a retry cannot help) and transient (it may).
    let gone = insert_video(&db.pool, "7400000000000000005").await;
    q.enqueue(&EnqueueRequest {
        video_id: Some(gone),
        ..Default::default()
    })
    .await
    .unwrap();
    // The running job above is still claimed: this claim takes the new one.
    fail_for_good(&q, ErrorClass::Permanent, "the video was deleted on Douyin").await;
    let (status, body) = get(&url(&gone.to_string(), "download")).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["status"], "failed");
    // A public text by class and code, not `last_error` (see api_guard for the leak test).
    assert_eq!(body["error"], "the video cannot be downloaded");
    assert_eq!(body["retry_available"], false);
    assert_eq!(
        active_jobs(&db.pool, gone).await,
        0,
        "a GET never requeues a failed video"
    );

    let flaky = insert_video(&db.pool, "7400000000000000006").await;
    q.enqueue(&EnqueueRequest {
        video_id: Some(flaky),
        ..Default::default()
    })
    .await
    .unwrap();
    fail_for_good(&q, ErrorClass::Transient, "the CDN timed out").await;
    let (status, body) = get(&url(&flaky.to_string(), "download")).await;
    assert_eq!(
        (status, body["retry_available"].as_bool()),
        (500, Some(true)),
        "{body}"
    );
    let (status, body) = post(&url(&flaky.to_string(), "retry")).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")));
    assert_eq!(active_jobs(&db.pool, flaky).await, 1);
    let payload: Value = sqlx::query_scalar(
        "select payload from public.download_jobs where video_id = $1 and status = 'pending'",
    )
    .bind(flaky)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(payload["retry"], true);
    let (status, body) = get(&url(&flaky.to_string(), "download")).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")));

    // The old app's health route.
    let (status, body) = get(&format!("{}/health", server.base)).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn the_api_is_off_unless_enabled_and_guards_its_inputs() {
    let db = fresh_pg().await;
    let store = tempfile::tempdir().unwrap();
    let queue: Arc<dyn Queue> = Arc::new(PgQueue::from_pool(db.pool.clone()));
    let storage: Arc<dyn ObjectBackend> = Arc::new(LocalFolder::new(store.path(), "videos"));
    let video = insert_video(&db.pool, "7400000000000000011").await;

    let off = serve(queue.clone(), storage.clone(), None).await;
    let (status, _) = get(&format!("{}/api/videos/{video}/download", off.base)).await;
    assert_eq!(status, 404, "no API routes without API_ENABLED");
    assert_eq!(active_jobs(&db.pool, video).await, 0);

    let on = serve(queue, storage, api_options(&["https://app.example.com"])).await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/videos/{video}/download", on.base),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://app.example.com")
    );
    let other = preflight("https://evil.example.net").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let big = client
        .post(format!("{}/api/videos/{video}/download", on.base))
        .header("content-type", "application/json")
        .body(vec![b'x'; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413, "request bodies are capped");
}

#[tokio::test]
async fn readiness_follows_the_queue_the_store_and_shutdown() {
    let db = fresh_pg().await;
    let store = tempfile::tempdir().unwrap();
    let storage: Arc<dyn ObjectBackend> = Arc::new(LocalFolder::new(store.path(), "videos"));
    let good = serve(
        Arc::new(PgQueue::from_pool(db.pool.clone())),
        storage.clone(),
        None,
    )
    .await;
    let (status, body) = get(&format!("{}/readyz", good.base)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["queue"], "postgres");
    let (status, _) = get(&format!("{}/healthz", good.base)).await;
    assert_eq!(status, 200);
    good.shutting_down.cancel();
    let (status, body) = get(&format!("{}/readyz", good.base)).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("shutting down"))
    );
    let (status, _) = get(&format!("{}/healthz", good.base)).await;
    assert_eq!(status, 200, "alive while draining");

    // A database nobody answers on, behind a password that must not leak.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dead = PgQueue::connect_lazy(
        &format!("postgres://postgres:hunter2-secret@127.0.0.1:{port}/postgres?connect_timeout=1"),
        douyin_worker::config::DbPooler::None,
        2,
    )
    .unwrap();
    let bad = serve(Arc::new(dead), storage, None).await;
    let (status, body) = get(&format!("{}/readyz", bad.base)).await;
    assert_eq!(status, 503, "{body}");
    // Only the part that is not ready: the error text goes to the log, not the answer.
    assert_eq!(body["reason"], "queue", "{body}");
    assert!(!body.to_string().contains("hunter2"), "{body}");
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
}

/// The value of the first sample of `name` whose labels contain every `label`.
pub(crate) fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_appear_and_move_after_a_real_job_through_the_binary() {
    use fakes::douyin::{Behaviour, DouyinServer, video_post};
    const ID: &str = "7412345678901234599";
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let db = fresh_pg().await;
    let data = tempfile::tempdir().unwrap();
    let port = fakes::servers::free_port();
    let addr = format!("127.0.0.1:{port}");
    let bin = crate::cli::RunningBinary::start(&[
        ("DATABASE_URL", &db.url),
        ("DOUYIN_UPSTREAM", &server.url),
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("WORKER_ID", "metrics-worker"),
        ("HTTP_ADDR", &addr),
        ("API_ENABLED", "true"),
    ]);
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let scrape = || async {
        client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    let mut before = None;
    for _ in 0..200 {
        if let Some(text) = scrape().await {
            before = Some(text);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = before.expect("the worker's /metrics answers");
    assert_eq!(
        sample(
            &before,
            "douyin_worker_info",
            &["worker_id=\"metrics-worker\"", "version=\""]
        ),
        Some(1.0),
        "{before}"
    );
    assert_eq!(
        sample(&before, "douyin_queue_jobs", &["status=\"completed\""]),
        Some(0.0)
    );
    let (status, _) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200);

    let rec = crate::support::backends::enqueue_link_and_wait(
        &db.pool,
        &format!("https://www.douyin.com/video/{ID}"),
        &["completed"],
        Duration::from_secs(30),
    )
    .await;
    let size = std::fs::metadata(data.path().join("videos").join(format!("{ID}/{ID}.mp4")))
        .unwrap()
        .len() as f64;
    // Past the gauge cache, so the queue gauges are read again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = scrape().await.unwrap();
    assert_eq!(
        sample(&after, "douyin_jobs_claimed_total", &[]),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "douyin_jobs_completed_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "douyin_downloaded_bytes_total", &[]),
        Some(size)
    );
    assert_eq!(
        sample(&after, "douyin_uploaded_bytes_total", &[]),
        Some(size)
    );
    assert_eq!(sample(&after, "douyin_jobs_in_flight", &[]), Some(0.0));
    for stage in ["extract", "download", "validate", "upload"] {
        let label = format!("stage=\"{stage}\"");
        assert_eq!(
            sample(&after, "douyin_stage_seconds_count", &[&label]),
            Some(1.0),
            "{stage}"
        );
    }
    assert_eq!(
        sample(&after, "douyin_job_seconds_count", &["result=\"done\""]),
        Some(1.0)
    );
    assert!(
        sample(
            &after,
            "douyin_extract_strategy_results_total",
            &["result=\"ok\""]
        )
        .is_some()
    );
    assert_eq!(
        sample(&after, "douyin_queue_jobs", &["status=\"completed\""]),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "douyin_queue_jobs", &["status=\"pending\""]),
        Some(0.0)
    );
    assert!(
        !after.contains(&db.url),
        "no connection string in the metrics"
    );

    // The same process serves the download API for the stored video.
    let (status, body) = get(&format!("{base}/api/videos/{}/download", rec.video_id)).await;
    assert_eq!(status, 200, "{body}");
    let file = reqwest::get(format!("{base}{}", body["download_url"].as_str().unwrap()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(file.len() as f64, size);

    let (code, lines) = bin.stop();
    assert_eq!(code, Some(0));
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "HTTP server listening (/healthz, /readyz, /metrics)"),
        "{lines:?}"
    );
}
