//! SIGTERM during a run: running jobs finish within the grace period or are released to
//! pending without their attempt counted; the process exits 0 in time.

use std::time::{Duration, Instant};

use super::{Rig, media_path, sha256, wait_until, with_message};
use fakes::cdn::Serve;

const KIB: usize = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_download_finishes_or_releases_running_jobs_and_exits_zero() {
    const STUCK_1: &str = "7412345678901234001";
    const STUCK_2: &str = "7412345678901234002";
    const FINISHES: &str = "7412345678901234003";
    const GRACE: Duration = Duration::from_secs(3);
    // Held back for an hour: an exit within `stop`'s guard of a minute means the grace
    // period ended them.
    let stuck = Serve::StallAfter {
        after: 256 * KIB as u64,
        stall: Duration::from_secs(3600),
    };
    let rig = Rig::start(&[
        (STUCK_1, 1024 * KIB, stuck.clone()),
        (STUCK_2, 1024 * KIB, stuck),
        // Pauses for 1 s mid-file: done well within the grace period.
        (
            FINISHES,
            1024 * KIB,
            Serve::StallAfter {
                after: 256 * KIB as u64,
                stall: Duration::from_secs(1),
            },
        ),
    ])
    .await;
    let w = rig.worker(&[
        ("MAX_CONCURRENT", "3"),
        ("SHUTDOWN_GRACE_SECONDS", "3"),
        ("WORKER_ID", "terminated"),
    ]);
    let ids = [STUCK_1, STUCK_2, FINISHES];
    let mut jobs = Vec::new();
    for id in ids {
        jobs.push(rig.enqueue(id).await);
    }
    // All three are mid-download (each file's first bytes are out, the rest is held back).
    wait_until(
        Duration::from_secs(20),
        "three downloads under way",
        || async {
            let requests = rig.cdn.requests();
            ids.iter()
                .all(|id| {
                    requests
                        .iter()
                        .any(|(m, p, _)| m == "GET" && *p == media_path(id))
                })
                .then_some(())
        },
    )
    .await;
    let sent = Instant::now();
    let (code, lines) = w.stop();
    let took = sent.elapsed();
    assert_eq!(code, Some(0));
    assert!(
        took >= GRACE - Duration::from_millis(500),
        "exited {took:?} after SIGTERM, before the grace period ({GRACE:?}) was over"
    );
    assert_eq!(
        with_message(&lines, "cancelled by shutdown: releasing the job").count(),
        2
    );
    assert_eq!(
        with_message(
            &lines,
            "grace period over: cancelling running jobs and releasing them"
        )
        .count(),
        1
    );

    for job in &jobs[..2] {
        let r = rig.job(*job).await;
        assert_eq!(r.status, "pending", "released: {r:?}");
        assert_eq!(r.attempts, 0, "a released attempt is not counted: {r:?}");
        assert_ne!(r.video_status, "ready");
    }
    let r = rig.job(jobs[2]).await;
    assert_eq!(
        r.status, "completed",
        "finished within the grace period: {r:?}"
    );
    assert_eq!(r.attempts, 1);
    assert_eq!(rig.temp_entries(), Vec::<String>::new());

    // The released jobs are taken at once by the next worker.
    for id in [STUCK_1, STUCK_2] {
        rig.cdn.set(&media_path(id), Serve::Normal);
    }
    let w = rig.worker(&[("MAX_CONCURRENT", "3")]);
    for job in &jobs[..2] {
        let r = rig
            .wait(*job, &["completed", "failed"], Duration::from_secs(20))
            .await;
        assert_eq!(r.status, "completed", "{r:?}");
        assert_eq!(r.attempts, 1, "{r:?}");
    }
    let (code, _) = w.stop();
    assert_eq!(code, Some(0));
    for v in &rig.videos {
        let stored = std::fs::read(rig.store().join(format!("{0}/{0}.mp4", v.id))).unwrap();
        assert_eq!(sha256(&stored), sha256(&v.media), "{}", v.id);
    }
    assert_eq!(rig.temp_entries(), Vec::<String>::new());
}

/// A TUS upload under way when the grace period ends is terminated on the store (`DELETE` on
/// its URL) before the process exits, instead of staying open there with its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_tus_upload_terminates_the_upload_before_exiting() {
    use fakes::storage_api::{SERVICE_KEY, StorageApi};
    const ID: &str = "7412345678901234004";
    const TUS: &str = "/storage/v1/upload/resumable/";
    let api = StorageApi::start().await;
    api.create_bucket("videos", true, None, None);
    // A 7 MiB file goes in two chunks; the first gets no answer.
    let rig = Rig::start(&[(ID, 7 * 1024 * KIB, fakes::cdn::Serve::Normal)]).await;
    api.hang_next(TUS, Duration::from_secs(120), 1);
    let w = rig.worker(&[
        ("SUPABASE_URL", api.url.as_str()),
        ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY),
        ("SHUTDOWN_GRACE_SECONDS", "1"),
    ]);
    let job = rig.enqueue(ID).await;
    wait_until(Duration::from_secs(30), "the first chunk sent", || async {
        api.requests()
            .iter()
            .any(|(m, p)| m == "PATCH" && p.starts_with(TUS))
            .then_some(())
    })
    .await;
    assert_eq!(api.open_uploads(), 1);
    let (code, lines) = w.stop();
    assert_eq!(code, Some(0));
    assert_eq!(
        with_message(&lines, "unfinished TUS upload terminated").count(),
        1
    );
    let deletes = api
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "DELETE" && p.starts_with(TUS))
        .count();
    assert_eq!(deletes, 1, "{:?}", api.requests());
    assert_eq!(api.open_uploads(), 0);
    assert_eq!(api.object_count("videos"), 0);
    let r = rig.job(job).await;
    assert_eq!((r.status.as_str(), r.attempts), ("pending", 0), "{r:?}");
    assert_eq!(rig.temp_entries(), Vec::<String>::new());
}
