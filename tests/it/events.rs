//! `GET /api/videos/{id}/events` over real HTTP: a stream served by this process follows a job
//! run by a worker process (PostgreSQL: LISTEN/NOTIFY from migration 0007's triggers; SQLite:
//! the file's change counter) or written by another connection (Supabase REST: one poll for
//! every watched video); it ends with `ready` and the link, or with the failure and
//! `retry_available`; `Last-Event-ID` resumes; the caps refuse; the lifetime ends a stream;
//! heartbeats are sent; an unknown video answers 404 like the download API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use douyin_worker::config::EventsSettings;
use douyin_worker::error::ErrorClass;
use douyin_worker::http::ServerLimits;
use douyin_worker::http::api::ApiOptions;
use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::queue::{EnqueueRequest, JobQueue, Queue, QueueAdmin};
use douyin_worker::storage::ObjectBackend;
use douyin_worker::storage::local::LocalFolder;
use futures::StreamExt;
use serde_json::Value;
use uuid::Uuid;

use crate::api::{Server, fail_for_good, insert_video, mark_stored, serve_with};
use crate::support::backends::{Backend, Kind, open_sqlite_when_created};
use crate::system::Rig;
use fakes::cdn::Serve;

/// One event: its id and its JSON data.
type Ev = (u64, Value);

/// API options with these events settings (no rate limit, no retry cooldown).
fn options(events: EventsSettings) -> ApiOptions {
    ApiOptions {
        rate_limit: 0,
        retry_cooldown: Duration::ZERO,
        ..Default::default()
    }
    .with_events(events)
}

fn settings() -> EventsSettings {
    EventsSettings {
        poll_interval: Duration::from_millis(100),
        ..Default::default()
    }
}

async fn server_over(
    queue: Arc<dyn Queue>,
    store: &std::path::Path,
    events: EventsSettings,
) -> Server {
    let storage: Arc<dyn ObjectBackend> = Arc::new(LocalFolder::new(store, "videos"));
    serve_with(
        queue,
        storage,
        Some(options(events)),
        ServerLimits::default(),
    )
    .await
}

/// Opens the stream (with `Last-Event-ID` when given).
async fn open(server: &Server, video: Uuid, last_id: Option<u64>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}/api/videos/{video}/events", server.base));
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    req.send().await.unwrap()
}

/// Reads the stream until it ends (panics after `within`): its events and whether a
/// heartbeat comment came.
async fn read_all(r: reqwest::Response, within: Duration) -> (Vec<Ev>, bool) {
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, body.next()).await {
            Ok(Some(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk.unwrap())),
            Ok(None) => break,
            Err(_) => panic!("the stream did not end within {within:?}; so far:\n{text}"),
        }
    }
    parse(&text)
}

fn parse(text: &str) -> (Vec<Ev>, bool) {
    let mut events = Vec::new();
    let mut heartbeat = false;
    for block in text.split("\n\n") {
        let (mut id, mut data) = (None, None);
        for line in block.lines() {
            if line.starts_with(':') {
                heartbeat = true;
            } else if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().parse::<u64>().unwrap());
            } else if let Some(v) = line.strip_prefix("data:") {
                data = Some(serde_json::from_str::<Value>(v.trim()).unwrap());
            }
        }
        if let (Some(id), Some(data)) = (id, data) {
            events.push((id, data));
        }
    }
    (events, heartbeat)
}

/// Ids one apart from `first`; progress never goes back; the last is `ready` with the link.
fn assert_followed_to_ready(events: &[Ev], first: u64) {
    for (i, (id, _)) in events.iter().enumerate() {
        assert_eq!(*id, first + i as u64, "{events:?}");
    }
    let progress: Vec<i64> = events
        .iter()
        .filter(|(_, e)| e["status"] == "downloading")
        .map(|(_, e)| e["progress"].as_i64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|p| p[0] < p[1]), "{events:?}");
    assert!(
        progress.iter().any(|p| *p > 0 && *p < 100),
        "a progress event on the way: {events:?}"
    );
    let (_, last) = events.last().unwrap();
    assert_eq!(last["status"], "ready", "{events:?}");
    assert!(
        last["download_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/download?proxy=true")),
        "{last}"
    );
    for (_, e) in &events[..events.len() - 1] {
        assert_ne!(e["status"], "ready", "ready only at the end: {events:?}");
    }
}

/// A video that crawls through the middle of its download for two seconds.
pub(crate) fn crawling(size: u64) -> Serve {
    Serve::Trickle {
        after: size / 4,
        piece: size / 8,
        every: Duration::from_millis(700),
        count: 4,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_stream_follows_a_job_run_by_a_worker_process_to_ready() {
    const ID: &str = "7412345678901239201";
    const SIZE: u64 = 1_000_000;
    let rig = Rig::start(&[(ID, SIZE as usize, crawling(SIZE))]).await;
    let queue: Arc<dyn Queue> = Arc::new(PgQueue::from_pool(rig.db.pool.clone()));
    let server = server_over(queue, &rig.store(), settings()).await;
    let job = rig.enqueue(ID).await;
    let video = rig.job(job).await.video_id;
    let stream = open(&server, video, None).await;
    let bin = rig.worker(&[]);
    let (events, _) = read_all(stream, Duration::from_secs(60)).await;
    assert_followed_to_ready(&events, 1);
    assert_eq!(events[0].1["status"], "queued", "{events:?}");
    let (code, _) = bin.stop();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_stream_follows_a_job_run_by_a_worker_process_to_ready() {
    const ID: &str = "7412345678901239202";
    const SIZE: u64 = 1_000_000;
    let rig = Rig::start(&[(ID, SIZE as usize, crawling(SIZE))]).await;
    // The rig's settings without its PostgreSQL: the worker runs on the embedded default.
    let env: Vec<(String, String)> = rig
        .env()
        .into_iter()
        .filter(|(k, _)| k != "DATABASE_URL")
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let bin = crate::cli::RunningBinary::start(&env);
    let sqlite = open_sqlite_when_created(&rig.data.path().join("douyin-worker.db")).await;
    let sqlite = Arc::new(sqlite);
    let server = server_over(sqlite.clone(), &rig.store(), settings()).await;
    // Queued by this process; the worker process runs it while the stream follows.
    let r = sqlite
        .enqueue(&EnqueueRequest {
            douyin_id: Some(ID.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let video = r.video_id.unwrap();
    let (events, _) = read_all(
        open(&server, video, Some(41)).await,
        Duration::from_secs(60),
    )
    .await;
    assert_followed_to_ready(&events, 42);
    let (code, _) = bin.stop();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_with_the_failure_and_whether_a_retry_can_help() {
    let db = fakes::pg::fresh_pg().await;
    let store = tempfile::tempdir().unwrap();
    let q = PgQueue::from_pool(db.pool.clone());
    let queue: Arc<dyn Queue> = Arc::new(PgQueue::from_pool(db.pool.clone()));
    let server = server_over(queue, store.path(), settings()).await;
    for (n, class, retry_available) in [
        (1, ErrorClass::Permanent, false),
        (2, ErrorClass::Transient, true),
    ] {
        let video = insert_video(&db.pool, &format!("740000000000000930{n}")).await;
        q.enqueue(&EnqueueRequest {
            video_id: Some(video),
            max_attempts: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
        let stream = open(&server, video, None).await;
        fail_for_good(&q, class, "gone").await;
        let (events, _) = read_all(stream, Duration::from_secs(30)).await;
        let (_, last) = events.last().unwrap();
        assert_eq!(last["status"], "failed", "{events:?}");
        assert_eq!(last["retry_available"], retry_available, "{events:?}");
        assert!(last["error"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_with_the_current_state_and_unknown_videos_are_404() {
    let db = fakes::pg::fresh_pg().await;
    let store = tempfile::tempdir().unwrap();
    let queue: Arc<dyn Queue> = Arc::new(PgQueue::from_pool(db.pool.clone()));
    let server = server_over(queue, store.path(), settings()).await;
    let video = insert_video(&db.pool, "7400000000000009401").await;
    mark_stored(&db.pool, store.path(), video, "a/a.mp4", Some(b"0123")).await;
    let (events, _) = read_all(open(&server, video, Some(7)).await, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, 8);
    assert_eq!(events[0].1["status"], "ready");
    assert_eq!(events[0].1["filename"], "a.mp4");

    let unknown = open(&server, Uuid::new_v4(), None).await;
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["status"], "not_found");
    let bad = reqwest::get(format!("{}/api/videos/nope/events", server.base))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caps_refuse_streams_past_them_and_a_stream_ends_at_its_lifetime_with_heartbeats() {
    let db = fakes::pg::fresh_pg().await;
    let store = tempfile::tempdir().unwrap();
    let queue: Arc<dyn Queue> = Arc::new(PgQueue::from_pool(db.pool.clone()));
    let video = insert_video(&db.pool, "7400000000000009501").await;

    // One stream per client.
    let per_client = EventsSettings {
        per_client: 1,
        max_streams: 10,
        heartbeat: Duration::from_secs(1),
        max_lifetime: Duration::from_secs(3),
        ..settings()
    };
    let server = server_over(queue.clone(), store.path(), per_client).await;
    let first = open(&server, video, None).await;
    assert_eq!(first.status(), 200);
    let second = open(&server, video, None).await;
    assert_eq!(second.status(), 429);
    assert!(second.headers().contains_key("retry-after"));
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["status"], "too_many_streams");
    // Nothing happens to the video: heartbeats, then the end of its lifetime.
    let (events, heartbeat) = read_all(first, Duration::from_secs(30)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].1["status"], "not_queued");
    assert!(heartbeat, "a heartbeat comment in three seconds");
    // The slot is free again.
    let again = open(&server, video, None).await;
    assert_eq!(again.status(), 200);
    drop(again);

    // One stream in all.
    let in_all = EventsSettings {
        per_client: 5,
        max_streams: 1,
        ..settings()
    };
    let server = server_over(queue, store.path(), in_all).await;
    let first = open(&server, video, None).await;
    assert_eq!(first.status(), 200);
    let second = open(&server, video, None).await;
    assert_eq!(second.status(), 503);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_supabase_rest_one_poll_serves_every_stream() {
    let b = Backend::new(Kind::Rest).await;
    let store = tempfile::tempdir().unwrap();
    let rest = b.rest.as_ref().unwrap();
    let pool = b.pg.as_ref().unwrap().pool.clone();
    let server = server_over(b.queue.clone(), store.path(), settings()).await;
    let job = b.enqueue("7400000000000009601").await;
    let video = b.queue.job(job).await.unwrap().unwrap().video_id;
    // Three streams on one video.
    let streams = futures::future::join_all((0..3).map(|_| open(&server, video, None))).await;
    let before = rest.calls("get_download_video_marks");
    let started = Instant::now();
    // Another connection runs the job: claim, progress, then stored.
    let q = PgQueue::from_pool(pool.clone());
    let claimed = q
        .claim("rest-test", 1, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        q.progress("rest-test", &claimed[0].lease, 50, Some(100))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    mark_stored(&pool, store.path(), video, "b/b.mp4", Some(b"0123")).await;
    let all = futures::future::join_all(
        streams
            .into_iter()
            .map(|s| read_all(s, Duration::from_secs(30))),
    )
    .await;
    let polls = rest.calls("get_download_video_marks") - before;
    let elapsed = started.elapsed();
    for (events, _) in &all {
        let statuses: Vec<&str> = events
            .iter()
            .map(|(_, e)| e["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses.first(), Some(&"queued"), "{events:?}");
        assert!(
            events
                .iter()
                .any(|(_, e)| e["status"] == "downloading" && e["progress"] == 50),
            "{events:?}"
        );
        assert_eq!(statuses.last(), Some(&"ready"), "{events:?}");
    }
    // One call per interval (100 ms) for the three streams, not one per stream.
    assert!(
        polls as u128 <= elapsed.as_millis() / 100 + 2,
        "{polls} polls in {elapsed:?}"
    );
    assert!(polls >= 1);
}
