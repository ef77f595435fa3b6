//! The download API under an attacker's requests, each reproduced on
//! real rows (a throwaway PostgreSQL, a local folder) over real HTTP: retry storms, a
//! cross-site `text/plain` POST, a link previewer's HEAD, a flood from one client, calls
//! without the token, and failure texts that would leak paths and OS errors.

use std::sync::Arc;
use std::time::Duration;

use douyin_worker::config::Secret;
use douyin_worker::error::ErrorClass;
use douyin_worker::http::ServerLimits;
use douyin_worker::http::api::ApiOptions;
use douyin_worker::queue::EnqueueRequest;
use douyin_worker::queue::Queue;
use douyin_worker::queue::QueueAdmin;
use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::storage::ObjectBackend;
use douyin_worker::storage::local::LocalFolder;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::api::{
    active_jobs, api_options, fail_for_good, fail_for_good_with, insert_video, post, serve_with,
};
use fakes::pg::fresh_pg;

/// Every job of the video, whatever its status.
async fn all_jobs(pool: &PgPool, video: Uuid) -> i64 {
    sqlx::query_scalar("select count(*) from public.download_jobs where video_id = $1")
        .bind(video)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A video with one job that failed for good with `class` (and `code`, `message`).
async fn failed_video(
    pool: &PgPool,
    q: &PgQueue,
    douyin_id: &str,
    class: ErrorClass,
    code: &str,
    message: &str,
) -> Uuid {
    let video = insert_video(pool, douyin_id).await;
    q.enqueue(&EnqueueRequest {
        video_id: Some(video),
        ..Default::default()
    })
    .await
    .unwrap();
    fail_for_good_with(q, class, code, message).await;
    video
}

/// Moves the video's jobs' queued time back by `secs` (past a cooldown).
async fn age_jobs(pool: &PgPool, video: Uuid, secs: i64) {
    sqlx::query(
        "update public.download_jobs set created_at = created_at - make_interval(secs => $2)
          where video_id = $1",
    )
    .bind(video)
    .bind(secs as f64)
    .execute(pool)
    .await
    .unwrap();
}

struct Rig {
    db: fakes::pg::TestDb,
    q: PgQueue,
    store: tempfile::TempDir,
    server: crate::api::Server,
}

async fn rig(opts: ApiOptions) -> Rig {
    let db = fresh_pg().await;
    let store = tempfile::tempdir().unwrap();
    let q = PgQueue::from_pool(db.pool.clone());
    let queue: Arc<dyn Queue> = Arc::new(PgQueue::from_pool(db.pool.clone()));
    let storage: Arc<dyn ObjectBackend> = Arc::new(LocalFolder::new(store.path(), "videos"));
    let server = serve_with(queue, storage, Some(opts), ServerLimits::default()).await;
    Rig {
        db,
        q,
        store,
        server,
    }
}

fn url(rig: &Rig, video: Uuid, tail: &str) -> String {
    format!("{}/api/videos/{video}/{tail}", rig.server.base)
}

#[tokio::test]
async fn fifty_retry_posts_queue_at_most_one_job_and_none_when_a_retry_cannot_help() {
    let opts = ApiOptions {
        retry_cooldown: Duration::from_secs(60),
        rate_limit: 0,
        ..Default::default()
    };
    let rig = rig(opts).await;

    // Deleted on Douyin: retry_available is false, so no POST queues anything.
    let deleted = failed_video(
        &rig.db.pool,
        &rig.q,
        "7400000000000000101",
        ErrorClass::Permanent,
        "video-unavailable",
        "aweme 7400000000000000101: status_deleted",
    )
    .await;
    for _ in 0..50 {
        let (status, body) = post(&url(&rig, deleted, "retry")).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["retry_available"], false);
    }
    assert_eq!(all_jobs(&rig.db.pool, deleted).await, 1, "no job was added");

    // A passing failure whose job was queued two minutes ago: the first POST queues one
    // job; while it runs the next POSTs answer it; once it fails too, the cooldown holds.
    let flaky = failed_video(
        &rig.db.pool,
        &rig.q,
        "7400000000000000102",
        ErrorClass::Transient,
        "download-timeout",
        "the CDN timed out",
    )
    .await;
    age_jobs(&rig.db.pool, flaky, 120).await;
    let mut statuses = Vec::new();
    for i in 0..50 {
        let (status, body) = post(&url(&rig, flaky, "retry")).await;
        statuses.push(status);
        if status == 429 {
            assert_eq!(body["status"], "cooldown", "{body}");
        }
        if i == 10 {
            // The retried job fails for good again.
            assert_eq!(active_jobs(&rig.db.pool, flaky).await, 1);
            fail_for_good(&rig.q, ErrorClass::Transient, "the CDN timed out").await;
        }
    }
    assert_eq!(statuses[0], 202);
    assert!(statuses[1..=10].iter().all(|s| *s == 202), "{statuses:?}");
    assert!(statuses[11..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(
        all_jobs(&rig.db.pool, flaky).await,
        2,
        "the failed job and one retry"
    );
    let r = reqwest::Client::new()
        .post(url(&rig, flaky, "retry"))
        .send()
        .await
        .unwrap();
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");

    // Past the cooldown, a retry queues again.
    age_jobs(&rig.db.pool, flaky, 120).await;
    let (status, body) = post(&url(&rig, flaky, "retry")).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")));
    assert_eq!(all_jobs(&rig.db.pool, flaky).await, 3);
}

#[tokio::test]
async fn a_cross_site_text_plain_or_form_post_is_refused_and_queues_nothing() {
    let rig = rig(api_options(&["https://app.example.com"]).unwrap()).await;
    let video = insert_video(&rig.db.pool, "7400000000000000111").await;
    let client = reqwest::Client::new();
    for (content_type, body) in [
        ("text/plain", "x"),
        ("application/x-www-form-urlencoded", "a=b"),
        ("multipart/form-data; boundary=x", "--x--"),
    ] {
        for tail in ["download", "retry"] {
            // From another site's page: refused for where it comes from.
            let r = client
                .post(url(&rig, video, tail))
                .header("origin", "https://evil.example.net")
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{content_type} {tail}");
            // Without an Origin (not a browser), still no form or text body.
            let r = client
                .post(url(&rig, video, tail))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 415, "{content_type} {tail}");
        }
    }
    // A `no-cors` fetch from another site: a POST with no body and no type, but its Origin.
    for tail in ["download", "retry"] {
        let r = client
            .post(url(&rig, video, tail))
            .header("origin", "https://evil.example.net")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "no-cors {tail}");
    }
    assert_eq!(all_jobs(&rig.db.pool, video).await, 0);

    // The old UI's POST (no body, no type) and a JSON POST still work.
    let r = client
        .post(url(&rig, video, "download"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = client
        .post(url(&rig, video, "download"))
        .header("origin", "https://app.example.com")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "the app's own origin may POST JSON");
    assert_eq!(all_jobs(&rig.db.pool, video).await, 1);
}

#[tokio::test]
async fn a_head_request_answers_without_queueing() {
    let rig = rig(api_options(&[]).unwrap()).await;
    let video = insert_video(&rig.db.pool, "7400000000000000121").await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let r = client
            .head(url(&rig, video, "download"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    assert_eq!(all_jobs(&rig.db.pool, video).await, 0, "HEAD queued a job");

    // A stored file: HEAD on the proxy link gives its headers, no body.
    let stored = insert_video(&rig.db.pool, "7400000000000000122").await;
    let key = "7400000000000000122/7400000000000000122.mp4";
    crate::api::mark_stored(
        &rig.db.pool,
        rig.store.path(),
        stored,
        key,
        Some(&[7u8; 3000]),
    )
    .await;
    let r = client
        .head(format!("{}?proxy=true", url(&rig, stored, "download")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "3000");
    assert_eq!(r.headers()["accept-ranges"], "bytes");
}

#[tokio::test]
async fn one_client_over_its_rate_gets_429_with_retry_after() {
    let opts = ApiOptions {
        rate_limit: 5,
        trust_forwarded_for: true,
        ..api_options(&[]).unwrap()
    };
    let rig = rig(opts).await;
    let video = insert_video(&rig.db.pool, "7400000000000000131").await;
    let client = reqwest::Client::new();
    let get_as = |ip: &'static str| {
        client
            .get(url(&rig, video, "download"))
            .header("x-forwarded-for", format!("203.0.113.250, {ip}"))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(get_as("198.51.100.7").await.unwrap().status(), 202);
    }
    let r = get_as("198.51.100.7").await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=12).contains(&wait), "{wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "rate_limited");
    // Another client (behind the same trusted proxy) has its own allowance.
    assert_eq!(get_as("198.51.100.8").await.unwrap().status(), 202);
    // The old app's health route is not counted.
    let r = client
        .get(format!("{}/health", rig.server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn api_token_closes_the_api_but_not_cors_preflights() {
    let token = "0123456789abcdef0123456789abcdef";
    let opts = ApiOptions {
        token: Some(Secret::new(token)),
        ..api_options(&["https://app.example.com"]).unwrap()
    };
    let rig = rig(opts).await;
    let video = insert_video(&rig.db.pool, "7400000000000000141").await;
    let client = reqwest::Client::new();
    for auth in [None, Some("Bearer wrong-token-wrong-token"), Some(token)] {
        let mut req = client.post(url(&rig, video, "retry"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let body = r.text().await.unwrap();
        assert!(!body.contains(token) && !body.contains("wrong"), "{body}");
    }
    assert_eq!(all_jobs(&rig.db.pool, video).await, 0);

    let preflight = client
        .request(reqwest::Method::OPTIONS, url(&rig, video, "retry"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");

    let r = client
        .post(url(&rig, video, "retry"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(all_jobs(&rig.db.pool, video).await, 1);
}

#[tokio::test]
async fn a_failed_answer_never_carries_last_error() {
    let rig = rig(api_options(&[]).unwrap()).await;
    let leaky = "cannot write /var/lib/douyin-worker/tmp/job-5f1c/media.part: No space left on device (os error 28); upstream said <html>sig=abc</html>";
    let video = failed_video(
        &rig.db.pool,
        &rig.q,
        "7400000000000000151",
        ErrorClass::Transient,
        "storage-io",
        leaky,
    )
    .await;
    let stored: String = sqlx::query_scalar("select last_error from public.videos where id = $1")
        .bind(video)
        .fetch_one(&rig.db.pool)
        .await
        .unwrap();
    assert!(
        stored.contains("/var/lib/douyin-worker"),
        "the row keeps it"
    );
    let (status, body) = crate::api::get(&url(&rig, video, "download")).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        body["error"],
        "the file could not be stored; a retry may work"
    );
    assert_eq!(body["retry_available"], true);
    let text = body.to_string();
    for secret in ["/var/lib", "os error", "No space", "sig=", "html"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }

    // An unknown code: the class's text.
    let other = failed_video(
        &rig.db.pool,
        &rig.q,
        "7400000000000000152",
        ErrorClass::Permanent,
        "brand-new-code",
        "/etc/passwd: Permission denied (os error 13)",
    )
    .await;
    let (_, body) = crate::api::get(&url(&rig, other, "download")).await;
    assert_eq!(body["error"], "the video cannot be downloaded");
}

#[tokio::test]
async fn a_hanging_queue_answers_503_after_the_request_timeout() {
    // A "database" that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            keep.push(s);
        }
    });
    let queue: Arc<dyn Queue> = Arc::new(
        PgQueue::connect_lazy(
            &format!("postgres://postgres:hunter2@127.0.0.1:{port}/postgres"),
            douyin_worker::config::DbPooler::None,
            2,
        )
        .unwrap(),
    );
    let store = tempfile::tempdir().unwrap();
    let storage: Arc<dyn ObjectBackend> = Arc::new(LocalFolder::new(store.path(), "videos"));
    let opts = ApiOptions {
        request_timeout: Duration::from_secs(1),
        ..api_options(&[]).unwrap()
    };
    let metrics = douyin_worker::metrics::install("api-guard-test");
    let server = serve_with(queue, storage, Some(opts), ServerLimits::default()).await;
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/videos/{}/download",
            server.base,
            Uuid::new_v4()
        ))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert!(!body.to_string().contains("hunter2"));
    // Answered by the request timeout, not by the pool giving up later.
    let text = metrics.render();
    assert!(
        crate::api::sample(&text, "douyin_api_refused_total", &["reason=\"timeout\""])
            .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    held.abort();
}
