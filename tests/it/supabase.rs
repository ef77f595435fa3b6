//! Supabase mode: the queue over the REST API's RPC, against the PostgREST emulator on the
//! real throwaway PostgreSQL (so SQL, grants and return shapes are real).

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use douyin_worker::config::Secret;
use douyin_worker::error::ErrorClass;
use douyin_worker::queue::QueueAdmin;
use douyin_worker::queue::rest::RestQueue;
use douyin_worker::queue::{
    Completion, EnqueueRequest, FailedAttempt, JobQueue, QueueError, StoredObject, VideoUpdate,
};
use tokio_util::sync::CancellationToken;

use crate::support::backends::{Backend, Kind};
use crate::support::stages::Succeed;
use fakes::pg::{fresh_pg, fresh_pg_empty};
use fakes::postgrest::{PostgrestEmulator, jwt};

fn rest_queue(emulator: &PostgrestEmulator, key: &str) -> RestQueue {
    RestQueue::new(&emulator.url.parse().unwrap(), Secret::new(key)).unwrap()
}

fn denied<T: std::fmt::Debug>(r: Result<T, QueueError>) {
    match r {
        Err(QueueError::PermissionDenied(m)) => {
            assert!(m.contains("service role key"), "{m}");
        }
        other => panic!("expected permission denied, got {other:?}"),
    }
}

#[tokio::test]
async fn an_anon_key_cannot_claim_complete_or_read_jobs() {
    let b = Backend::new(Kind::Rest).await;
    let id = b.enqueue("7400000000000000001").await;
    let emulator = b.rest.as_ref().unwrap();
    for key in [
        jwt("anon"),
        jwt("authenticated"),
        fakes::postgrest::PUBLISHABLE_KEY.into(),
    ] {
        let anon = rest_queue(emulator, &key);
        denied(anon.claim("intruder", 10, Duration::from_secs(60)).await);
        denied(anon.job(id).await);
        denied(anon.stats().await);
        denied(
            anon.enqueue(&EnqueueRequest {
                douyin_id: Some("7400000000000000002".into()),
                ..Default::default()
            })
            .await,
        );
    }
    // The real worker's claim, then the intruder tries to finish or fail it.
    let job = b
        .queue
        .claim("w", 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    let anon = rest_queue(emulator, &jwt("anon"));
    denied(
        anon.complete(
            "w",
            &[Completion {
                lease: job.lease,
                stored: StoredObject {
                    bucket: "videos".into(),
                    object_key: "x.mp4".into(),
                    ..Default::default()
                },
                video: VideoUpdate::default(),
            }],
        )
        .await,
    );
    denied(
        anon.fail(
            "w",
            &[FailedAttempt {
                lease: job.lease,
                error: "x".into(),
                code: "x".into(),
                class: ErrorClass::Permanent,
                retry_in: None,
                forget_direct_url: None,
            }],
        )
        .await,
    );
    denied(anon.release("w", &[job.lease]).await);
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!(
        (rec.status.as_str(), rec.worker_id.as_deref()),
        ("running", Some("w"))
    );
    assert_eq!(b.queue.stats().await.unwrap().total_jobs, 1);
}

#[tokio::test]
async fn missing_migrations_are_named_at_start_up() {
    let db = fresh_pg_empty().await;
    let emulator = PostgrestEmulator::start(db.pool.clone()).await;
    let q = rest_queue(&emulator, &jwt("service_role"));
    match q.check_schema().await {
        Err(QueueError::Schema(m)) => {
            assert!(m.contains("migrations have not been applied"), "{m}");
            assert!(m.contains("0001_schema.sql"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // A wrong key is not retried into a storm: it is a permanent, explained error.
    let db = fresh_pg().await;
    let emulator = PostgrestEmulator::start(db.pool.clone()).await;
    let bad = rest_queue(&emulator, "not-a-jwt-at-all");
    match bad.check_schema().await {
        Err(e @ QueueError::PermissionDenied(_)) => assert!(!e.is_transient()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_down_api_is_a_transient_error() {
    let q = RestQueue::new(
        &"http://127.0.0.1:1".parse().unwrap(),
        Secret::new(jwt("service_role")),
    )
    .unwrap();
    match q.stats().await {
        Err(e @ QueueError::Unavailable(_)) => assert!(e.is_transient()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worker_polls_and_claims_again_at_once_while_work_remains() {
    let b = Backend::new(Kind::Rest).await;
    let tmp = tempfile::tempdir().unwrap();
    let handler = Arc::new(Succeed::default());
    let mut opts = crate::worker::options("w1", tmp.path().into());
    opts.poll_interval = Duration::from_millis(400);
    let stop = CancellationToken::new();
    let worker = douyin_worker::worker::Worker::new(b.queue.clone(), handler.clone(), opts);
    let counters = worker.counters();
    let run = tokio::spawn(worker.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Idle: one claim per poll interval, not a storm.
    let requests = b.rest.as_ref().unwrap().requests();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let idle_requests = b.rest.as_ref().unwrap().requests() - requests;
    assert!(
        idle_requests <= 12,
        "{idle_requests} requests in 2 s while idle"
    );

    // A job is picked up by polling, without a storm: the claim that finds it, one that was
    // under way when it was queued, one more if the completion is slow to be reported.
    let emulator = b.rest.as_ref().unwrap();
    let claims = emulator.calls("claim_download_jobs");
    b.enqueue("7500000000000000001").await;
    wait_until(|| counters.snapshot().completed >= 1).await;
    let polls = emulator.calls("claim_download_jobs") - claims;
    assert!((1..=3).contains(&polls), "{polls} claims to find one job");
    stop.cancel();
    assert_eq!(run.await.unwrap().completed, 1);

    // 40 jobs, 4 slots, a poll interval of an hour: a full claim is followed at once by the
    // next, never by a poll wait, so they all finish.
    b.enqueue_many(40).await;
    let mut opts = crate::worker::options("w2", tmp.path().into());
    opts.poll_interval = Duration::from_secs(3600);
    let stop = CancellationToken::new();
    let worker = douyin_worker::worker::Worker::new(b.queue.clone(), handler.clone(), opts);
    let counters = worker.counters();
    let run = tokio::spawn(worker.run(stop.clone()));
    wait_until(|| counters.snapshot().completed >= 40).await;
    stop.cancel();
    let summary = run.await.unwrap();
    assert_eq!(summary.completed, 40);
}

/// Waits for `done`, checking every 10 ms; a guard of a minute against a hang (a poll wait
/// in these tests is an hour).
async fn wait_until(done: impl Fn() -> bool) {
    let guard = Instant::now();
    while !done() {
        assert!(guard.elapsed() < Duration::from_secs(60), "never happened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn worker_bin(env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_douyin-worker"));
    cmd.arg("run").current_dir(dir.path());
    for var in [
        "DATABASE_URL",
        "SUPABASE_URL",
        "SUPABASE_SERVICE_ROLE_KEY",
        "DATA_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HTTP_ADDR", "off");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_in_supabase_mode_and_refuses_keys_that_are_not_service_keys() {
    let db = fresh_pg().await;
    let emulator = PostgrestEmulator::start(db.pool.clone()).await;
    let key = jwt("service_role");
    let storage = fakes::storage_api::StorageApi::start_with_key(&key).await;
    let (url, proxy) = gateway(emulator.url.clone(), storage.url.clone()).await;
    let run = |key: String| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            worker_bin(&[("SUPABASE_URL", &url), ("SUPABASE_SERVICE_ROLE_KEY", &key)])
        })
    };
    for key in [jwt("anon"), "sb_publishable_abc".to_string()] {
        let o = run(key.clone()).await.unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("SUPABASE_SERVICE_ROLE_KEY"), "{err}");
        assert!(!err.contains(&key), "the key leaked: {err}");
    }
    // With the service key it runs: queue over REST, videos to Supabase Storage, whose
    // bucket it creates at start-up.
    let bin = crate::cli::RunningBinary::start(&[
        ("SUPABASE_URL", &url),
        ("SUPABASE_SERVICE_ROLE_KEY", &key),
    ]);
    // Start-up (four storage requests through the gateway) may be slow on a busy machine: a
    // SIGTERM before the signal handlers are in place would kill the process.
    crate::system::wait_until(Duration::from_secs(30), "storage ready", || async {
        bin.logs()
            .iter()
            .any(|l| l["message"] == "storage ready")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, lines) = bin.stop();
    assert_eq!(code, Some(0), "{lines:?}");
    let text = serde_json::to_string(&lines).unwrap();
    assert!(text.contains("\"backend\":\"supabase\""), "{text}");
    assert!(text.contains("storage ready"), "{text}");
    assert!(text.contains("\"provider\":\"supabase\""), "{text}");
    assert!(text.contains("\"created\":true"), "{text}");
    // MAX_VIDEO_BYTES (2 GiB) is above the emulated server's upload limit: the bucket has none
    // of its own, and one line says so.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.to_string().contains("no file size limit of its own"))
            .count(),
        1,
        "{text}"
    );
    assert!(!text.contains(&key), "the key leaked: {text}");
    proxy.abort();
}

/// One SUPABASE_URL for two emulators: `/rest/...` to the PostgREST emulator, `/storage/...`
/// to the Storage emulator, as Supabase's gateway routes them.
pub(crate) async fn gateway(
    rest: String,
    storage: String,
) -> (String, tokio::task::JoinHandle<()>) {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::Response;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let app = axum::Router::new().fallback(move |req: Request| {
        let client = client.clone();
        let (rest, storage) = (rest.clone(), storage.clone());
        async move {
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            let base = if path.starts_with("/rest/") {
                rest
            } else {
                storage
            };
            let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
            let mut upstream = client.request(method, format!("{base}{path}"));
            for (name, value) in req.headers() {
                if name != "host" {
                    upstream = upstream.header(name.as_str(), value.as_bytes());
                }
            }
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap();
            let answer = upstream.body(body).send().await.unwrap();
            let mut out = Response::builder().status(answer.status().as_u16());
            for (name, value) in answer.headers() {
                out = out.header(name.as_str(), value.as_bytes());
            }
            out.body(Body::from(answer.bytes().await.unwrap())).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_the_url_and_key_a_job_goes_from_pending_to_ready_in_supabase_storage() {
    use fakes::douyin::{Behaviour, DouyinServer, video_post};
    use sha2::Digest;
    const ID: &str = "7412345678901234567";
    let douyin = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let db = fresh_pg().await;
    let key = "sb_secret_end_to_end".to_string();
    let rest = PostgrestEmulator::start_with_keys(db.pool.clone(), &[&key]).await;
    let storage = fakes::storage_api::StorageApi::start().await;
    storage.create_bucket("videos", false, None, None);
    let (url, proxy) = gateway(rest.url.clone(), storage.url.clone()).await;
    let bin = crate::cli::RunningBinary::start(&[
        ("SUPABASE_URL", &url),
        ("SUPABASE_SERVICE_ROLE_KEY", &key),
        ("DOUYIN_UPSTREAM", &douyin.url),
    ]);
    let q = rest_queue(&rest, &key);
    let r = q
        .enqueue(&EnqueueRequest {
            url: Some(format!("https://www.douyin.com/video/{ID}")),
            ..Default::default()
        })
        .await
        .unwrap();
    let id = r.job_id.unwrap();
    let rec =
        crate::support::backends::wait_for_status(&q, id, &["completed"], Duration::from_secs(30))
            .await;
    let (code, _lines) = bin.stop();
    assert_eq!(code, Some(0));
    let key_path = format!("{ID}/{ID}.mp4");
    assert_eq!(rec.video_object_key.as_deref(), Some(key_path.as_str()));
    let (bytes, content_type, cache_control, meta) =
        storage.object("videos", &key_path).expect("stored");
    assert_eq!(content_type, "video/mp4");
    assert_eq!(cache_control, "max-age=3600");
    assert_eq!(meta["douyin_id"], ID);
    assert_eq!(
        meta["sha256"],
        format!("{:x}", sha2::Sha256::digest(&bytes))
    );
    let row: (String, String, i64) = sqlx::query_as(
        "select storage_provider, bucket, filesize from public.videos where id = $1",
    )
    .bind(rec.video_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "supabase".to_string(),
            "videos".to_string(),
            bytes.len() as i64
        )
    );
    assert_eq!(storage.object_count("videos"), 1);
    proxy.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_storage_creates_the_bucket_once_and_calls_ensure_videos_bucket() {
    let db = fresh_pg().await;
    let rest = PostgrestEmulator::start_with_keys(db.pool.clone(), &["sb_secret_setup"]).await;
    let storage = fakes::storage_api::StorageApi::start().await;
    let (url, proxy) = gateway(rest.url.clone(), storage.url.clone()).await;
    let run = |key: &str, extra: &[(&str, &str)]| {
        let mut env = vec![
            ("SUPABASE_URL".to_string(), url.clone()),
            ("SUPABASE_SERVICE_ROLE_KEY".to_string(), key.to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        tokio::task::spawn_blocking(move || {
            let dir = tempfile::tempdir().unwrap();
            Command::new(env!("CARGO_BIN_EXE_douyin-worker"))
                .arg("setup-storage")
                .current_dir(dir.path())
                .env_remove("DATABASE_URL")
                .envs(env)
                .output()
                .unwrap()
        })
    };
    let o = run(
        "sb_secret_setup",
        &[
            ("STORAGE_PUBLIC", "false"),
            ("STORAGE_FILE_SIZE_LIMIT", "1048576"),
        ],
    )
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("bucket videos (supabase): created"), "{out}");
    assert!(out.contains("ensure_videos_bucket(): called"), "{out}");
    let o = run("sb_secret_setup", &[]).await.unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("bucket videos (supabase): exists"));
    // The bucket has the settings' limit: a 2 MB file is refused.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big");
    std::fs::write(&path, vec![0u8; 2_000_000]).unwrap();
    let s = douyin_worker::storage::supabase::SupabaseStorage::new(
        &url.parse().unwrap(),
        Secret::new("sb_secret_setup"),
        "videos",
    )
    .unwrap();
    let file = douyin_worker::stage::DownloadedFile {
        path,
        size: 2_000_000,
        sha256: "x".into(),
    };
    let meta = std::collections::BTreeMap::new();
    let e = douyin_worker::storage::ObjectBackend::put(
        &s,
        &douyin_worker::storage::PutRequest {
            key: "a.mp4",
            file: &file,
            content_type: "video/mp4",
            cache_control: "max-age=3600",
            metadata: &meta,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "entity-too-large", "{e}");
    // A key that may not create buckets is told what to do.
    let o = run("not-the-service-key", &[("STORAGE_BUCKET", "other")])
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("service role key") && err.contains("dashboard"),
        "{err}"
    );
    proxy.abort();
}

/// A legacy service-role key of another project (signed with another secret): it looks right,
/// and the servers refuse it.
fn foreign_service_key() -> String {
    let key = jwt("service_role");
    let (unsigned, _) = key.rsplit_once('.').unwrap();
    format!("{unsigned}.c2lnbmVkLWJ5LWFub3RoZXItcHJvamVjdA")
}

/// Runs the binary with `args` against `url` with `key`, without any other queue or store.
fn command(args: &[&str], url: &str, key: &str, extra: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_douyin-worker"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("STORAGE_URL")
        .env("SUPABASE_URL", url)
        .env("SUPABASE_SERVICE_ROLE_KEY", key)
        .env("HTTP_ADDR", "off")
        .envs(extra.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_servers_refuse_exits_2_from_every_command() {
    let db = fresh_pg().await;
    let rest = PostgrestEmulator::start(db.pool.clone()).await;
    let storage = fakes::storage_api::StorageApi::start_with_key(&jwt("service_role")).await;
    let (url, proxy) = gateway(rest.url.clone(), storage.url.clone()).await;
    let key = foreign_service_key();
    let commands: [&[&str]; 7] = [
        &["run"],
        &["setup-storage"],
        &["stats"],
        &["jobs"],
        &["retry", "--all-failed"],
        &["gc"],
        &["enqueue", "7412345678901234567"],
    ];
    for args in commands {
        let (url, k) = (url.clone(), key.clone());
        let o = tokio::task::spawn_blocking(move || command(args, &url, &k, &[]))
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("SUPABASE_SERVICE_ROLE_KEY"), "{args:?}: {err}");
        assert!(!err.contains(&key), "{args:?}: the key leaked: {err}");
    }
    // Nothing was created with it.
    assert_eq!(storage.object_count("videos"), 0);
    assert!(
        !storage
            .requests()
            .iter()
            .any(|(m, p)| m == "POST" && p == "/storage/v1/bucket")
    );
    proxy.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_free_plan_project_setup_storage_creates_the_bucket_within_the_projects_limit() {
    let db = fresh_pg().await;
    let rest = PostgrestEmulator::start_with_keys(db.pool.clone(), &["sb_secret_setup"]).await;
    let storage = fakes::storage_api::StorageApi::start().await;
    storage.set_upload_size_limit(Some(fakes::storage_api::FREE_PLAN_UPLOAD_SIZE_LIMIT));
    let (url, proxy) = gateway(rest.url.clone(), storage.url.clone()).await;
    // The defaults: the bucket's limit would be MAX_VIDEO_BYTES (2 GiB).
    let o = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            command(&["setup-storage"], &url, "sb_secret_setup", &[])
        })
        .await
        .unwrap()
    };
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("bucket videos (supabase): created"), "{out}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("no file size limit of its own"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    for part in [
        "2147483648 bytes",
        "the project's upload limit of 52428800 bytes",
        "STORAGE_FILE_SIZE_LIMIT",
    ] {
        assert!(warnings[0].contains(part), "{part:?} in {}", warnings[0]);
    }
    let row = storage.bucket("videos").unwrap();
    assert_eq!(row["file_size_limit"], serde_json::Value::Null, "{row}");
    proxy.abort();
}
