//! Supabase mode: the queue over the REST API's RPC, against the PostgREST emulator on the
//! real throwaway PostgreSQL (so SQL, grants and return shapes are real).

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use douyin_worker::config::Secret;
use douyin_worker::error::ErrorClass;
use douyin_worker::queue::rest::RestQueue;
use douyin_worker::queue::{
    Completion, EnqueueRequest, Failure, JobQueue, QueueError, StoredObject, VideoUpdate,
};
use tokio_util::sync::CancellationToken;

use crate::backends::{Backend, Kind};
use crate::helpers::{fresh_pg, fresh_pg_empty};
use crate::postgrest::{PostgrestEmulator, jwt};
use crate::stages::Succeed;

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
        "sb_publishable_test".into(),
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
            &[Failure {
                lease: job.lease,
                error: "x".into(),
                code: "x".into(),
                class: ErrorClass::Permanent,
                retry_in: None,
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

    // A job is picked up by the next poll.
    let t = Instant::now();
    b.enqueue("7500000000000000001").await;
    while counters.snapshot().completed < 1 {
        assert!(t.elapsed() < Duration::from_secs(5), "not picked up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // 40 jobs, 4 slots: full claims are followed at once by the next, not by a poll wait.
    b.enqueue_many(40).await;
    let t = Instant::now();
    while counters.snapshot().completed < 41 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{:?}",
            counters.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Ten waits of a poll interval would take 4 s.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    stop.cancel();
    let summary = run.await.unwrap();
    assert_eq!(summary.completed, 41);
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
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_in_supabase_mode_and_refuses_keys_that_are_not_service_keys() {
    let db = fresh_pg().await;
    let emulator = PostgrestEmulator::start(db.pool.clone()).await;
    let url = emulator.url.clone();
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
    let key = jwt("service_role");
    let o = run(key.clone()).await.unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("backend=\"supabase\""), "{err}");
    assert!(err.contains("cannot process jobs yet"), "{err}");
    assert!(!err.contains(&key), "the key leaked: {err}");
}
