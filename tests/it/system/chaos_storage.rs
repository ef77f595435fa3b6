//! Supabase Storage answering 5xx, hanging for a while, or down: uploads are retried within
//! the attempt; a store that stays down fails the job transient, to be retried later, with no
//! temp file left; once the store is back the job completes. A store that says it holds
//! another size than was uploaded never lets the job complete.

use std::time::Duration;

use super::{Rig, enqueue, sha256, wait_until};
use fakes::storage_api::{SERVICE_KEY, StorageApi};

const MIB: usize = 1024 * 1024;

fn upload_path(id: &str) -> String {
    format!("/storage/v1/object/videos/{id}/{id}.mp4")
}

/// Standard uploads (POST or PUT) of `path` so far.
fn uploads(api: &StorageApi, path: &str) -> usize {
    api.requests()
        .into_iter()
        .filter(|(m, p)| (m == "POST" || m == "PUT") && p == path)
        .count()
}

async fn storage() -> StorageApi {
    let api = StorageApi::start().await;
    api.create_bucket("videos", true, None, None);
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_answering_5xx_or_hanging_is_retried_and_the_upload_succeeds() {
    const FIVE: &str = "7412345678901233001";
    const STUCK: &str = "7412345678901233002";
    const SLOW: &str = "7412345678901233003";
    let api = storage().await;
    let rig = Rig::start(&[
        (FIVE, MIB, fakes::cdn::Serve::Normal),
        (STUCK, MIB, fakes::cdn::Serve::Normal),
        (SLOW, MIB, fakes::cdn::Serve::Normal),
    ])
    .await;
    // Two 503s, then fine.
    api.fail_next(&upload_path(FIVE), 503, 2);
    // No answer for 2 s, then a gateway timeout, then fine.
    api.hang_next(&upload_path(STUCK), Duration::from_secs(2), 1);
    api.fail_next(&upload_path(STUCK), 504, 1);
    // No answer for 2 s, then fine.
    api.hang_next(&upload_path(SLOW), Duration::from_secs(2), 1);
    let w = rig.worker(&[
        ("SUPABASE_URL", &api.url),
        ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY),
        ("MAX_CONCURRENT", "3"),
    ]);
    let mut jobs = Vec::new();
    for id in [FIVE, STUCK, SLOW] {
        jobs.push(rig.enqueue(id).await);
    }
    for job in jobs {
        let r = rig
            .wait(job, &["completed", "failed"], Duration::from_secs(30))
            .await;
        assert_eq!(r.status, "completed", "{r:?}");
        assert_eq!(r.attempts, 1, "retried within the attempt: {r:?}");
    }
    let (code, _) = w.stop();
    assert_eq!(code, Some(0));
    assert_eq!(
        [FIVE, STUCK, SLOW].map(|id| uploads(&api, &upload_path(id))),
        [3, 2, 1],
        "uploads per video"
    );
    assert_eq!(api.object_count("videos"), 3);
    for v in &rig.videos {
        let (bytes, ..) = api.object("videos", &format!("{0}/{0}.mp4", v.id)).unwrap();
        assert_eq!(sha256(&bytes), sha256(&v.media), "{}", v.id);
    }
    assert_eq!(rig.temp_entries(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_down_fails_jobs_transient_and_they_complete_once_it_is_back() {
    const A: &str = "7412345678901233004";
    const B: &str = "7412345678901233005";
    let api = storage().await;
    let rig = Rig::start(&[
        (A, MIB, fakes::cdn::Serve::Normal),
        (B, MIB, fakes::cdn::Serve::Normal),
    ])
    .await;
    for id in [A, B] {
        api.fail_next(&upload_path(id), 503, u32::MAX);
    }
    let w = rig.worker(&[
        ("SUPABASE_URL", &api.url),
        ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY),
        // The next attempt is far away (up to an hour, full jitter).
        ("RETRY_BASE_SECONDS", "3600"),
        ("RETRY_MAX_SECONDS", "3600"),
    ]);
    let jobs = [rig.enqueue(A).await, rig.enqueue(B).await];
    for job in jobs {
        let r = wait_until(
            Duration::from_secs(30),
            "the attempt failed with the store down",
            || async {
                let r = rig.job(job).await;
                (r.last_error_class.is_some()).then_some(r)
            },
        )
        .await;
        assert_eq!(r.status, "pending", "to be retried: {r:?}");
        assert_eq!(r.attempts, 1, "{r:?}");
        assert_eq!(r.last_error_class.as_deref(), Some("transient"), "{r:?}");
        assert!(r.scheduled_at > chrono::Utc::now(), "retried later: {r:?}");
        assert_ne!(r.video_status, "ready");
    }
    for id in [A, B] {
        assert_eq!(
            uploads(&api, &upload_path(id)),
            3,
            "three tries within the attempt"
        );
    }
    assert_eq!(api.object_count("videos"), 0);
    assert_eq!(
        rig.temp_entries(),
        Vec::<String>::new(),
        "no temp file left"
    );

    // The store is back, and the test moves the clock: the retries are due now.
    api.clear_faults();
    sqlx::query("update download_jobs set scheduled_at = now() where status = 'pending'")
        .execute(&rig.db.pool)
        .await
        .unwrap();
    for job in jobs {
        let r = rig
            .wait(job, &["completed", "failed"], Duration::from_secs(30))
            .await;
        assert_eq!(r.status, "completed", "{r:?}");
        assert_eq!(r.attempts, 2, "{r:?}");
        assert_eq!(r.video_status, "ready");
    }
    let (code, _) = w.stop();
    assert_eq!(code, Some(0));
    assert_eq!(api.object_count("videos"), 2);
    for v in &rig.videos {
        let (bytes, ..) = api.object("videos", &format!("{0}/{0}.mp4", v.id)).unwrap();
        assert_eq!(sha256(&bytes), sha256(&v.media), "{}", v.id);
    }
    assert_eq!(rig.temp_entries(), Vec::<String>::new());
}

/// The stored object's size is read back before the job completes: a store that answers
/// another size (one byte short after a standard upload, seven bytes over after a TUS upload)
/// fails the attempt as transient, `upload-size-mismatch` naming the key and both sizes, and
/// the video is not pointed at the object. Once the store tells the truth the retry completes;
/// while it lies, the job fails for good after its attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_reports_another_size_never_lets_the_job_complete() {
    const SHORT: &str = "7412345678901233006";
    const OVER: &str = "7412345678901233007";
    let api = storage().await;
    let rig = Rig::start(&[
        (SHORT, MIB, fakes::cdn::Serve::Normal),
        (OVER, 7 * MIB, fakes::cdn::Serve::Normal),
    ])
    .await;
    let info = |id: &str| format!("/storage/v1/object/info/videos/{id}/{id}.mp4");
    api.misreport_size(&info(SHORT), -1, 1);
    api.misreport_size(&info(OVER), 7, u32::MAX);
    let w = rig.worker(&[
        ("SUPABASE_URL", &api.url),
        ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY),
        ("RETRY_BASE_SECONDS", "3600"),
        ("RETRY_MAX_SECONDS", "3600"),
    ]);
    let short = rig.enqueue(SHORT).await;
    let over = enqueue(&rig.q, OVER, Some(2)).await;
    for (job, id, size, told) in [
        (short, SHORT, MIB, MIB - 1),
        (over, OVER, 7 * MIB, 7 * MIB + 7),
    ] {
        let r = wait_until(
            Duration::from_secs(60),
            "the first attempt failed",
            || async {
                let r = rig.job(job).await;
                r.last_error_code.is_some().then_some(r)
            },
        )
        .await;
        assert_eq!(r.status, "pending", "{r:?}");
        assert_eq!(
            r.last_error_code.as_deref(),
            Some("upload-size-mismatch"),
            "{r:?}"
        );
        assert_eq!(r.last_error_class.as_deref(), Some("transient"), "{r:?}");
        let error = r.last_error.clone().unwrap_or_default();
        for part in [
            format!("{id}/{id}.mp4"),
            format!("holds {told} bytes"),
            format!("the file has {size}"),
        ] {
            assert!(error.contains(&part), "{part:?} in {error:?}");
        }
        assert_ne!(r.video_status, "ready", "{r:?}");
        assert_eq!(r.video_object_key, None, "{r:?}");
    }
    // The next attempts are due now: the store tells the truth about one, not the other.
    sqlx::query("update download_jobs set scheduled_at = now() where status = 'pending'")
        .execute(&rig.db.pool)
        .await
        .unwrap();
    let r = rig
        .wait(short, &["completed", "failed"], Duration::from_secs(60))
        .await;
    assert_eq!((r.status.as_str(), r.attempts), ("completed", 2), "{r:?}");
    assert_eq!(r.video_status, "ready");
    let r = rig
        .wait(over, &["completed", "failed"], Duration::from_secs(60))
        .await;
    assert_eq!((r.status.as_str(), r.attempts), ("failed", 2), "{r:?}");
    assert_eq!(
        r.last_error_code.as_deref(),
        Some("upload-size-mismatch"),
        "{r:?}"
    );
    assert_ne!(r.video_status, "ready", "{r:?}");
    assert_eq!(r.video_object_key, None, "{r:?}");
    let (code, _) = w.stop();
    assert_eq!(code, Some(0));
    assert_eq!(
        rig.temp_entries(),
        Vec::<String>::new(),
        "no temp file left"
    );
}
