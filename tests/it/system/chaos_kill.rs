//! `kill -9` of a worker mid-download and mid-upload: the job's lease expires, another worker
//! rescues it, and it still ends stored exactly once and whole.

use std::time::{Duration, Instant};

use super::{Rig, entries, files_under, media_path, sha256, wait_until, with_message};
use fakes::cdn::Serve;
use fakes::storage_api::{SERVICE_KEY, StorageApi};

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_download_again_and_again_still_stores_each_job_once_and_whole() {
    const A: &str = "7412345678901231001";
    const B: &str = "7412345678901231002";
    // Each file stalls after 1 MiB: a worker holding it is provably mid-download.
    let stall = Serve::StallAfter {
        after: MIB as u64,
        stall: Duration::from_secs(120),
    };
    let rig = Rig::start(&[(A, 8 * MIB, stall.clone()), (B, 8 * MIB, stall)]).await;
    let jobs = [rig.enqueue(A).await, rig.enqueue(B).await];
    let slots = [("LEASE_SECONDS", "3"), ("MAX_CONCURRENT", "2")];

    for round in 1..=2 {
        let name = format!("doomed-{round}");
        let w = rig.worker(&[slots[0], slots[1], ("WORKER_ID", name.as_str())]);
        for job in jobs {
            wait_until(
                Duration::from_secs(20),
                &format!("round {round}: job {job} 1 MiB into its download"),
                || async {
                    let r = rig.job(job).await;
                    (r.status == "running"
                        && r.worker_id.as_deref() == Some(name.as_str())
                        && r.progress_bytes >= Some(MIB as i64))
                    .then_some(r)
                },
            )
            .await;
        }
        let pid = w.pid();
        let lines = w.kill9();
        assert_eq!(with_message(&lines, "job picked up").count(), 2);
        // SIGKILL leaves the job folders behind (nothing runs to remove them).
        let left = rig.temp_entries();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(
            left.iter()
                .all(|e| e.starts_with(&format!("douyin-worker-{pid}-"))),
            "{left:?}"
        );
    }

    // The CDN behaves again; a third worker rescues both jobs once their leases expire.
    for id in [A, B] {
        rig.cdn.set(&media_path(id), Serve::Normal);
    }
    let w = rig.worker(&[slots[0], slots[1], ("WORKER_ID", "survivor")]);
    for job in jobs {
        let r = rig
            .wait(job, &["completed", "failed"], Duration::from_secs(30))
            .await;
        assert_eq!(r.status, "completed", "{r:?}");
        assert_eq!(
            r.attempts, 3,
            "two killed attempts, then the one that stored it"
        );
        assert_eq!(r.worker_id.as_deref(), Some("survivor"));
        assert_eq!(r.video_status, "ready");
    }
    let (code, lines) = w.stop();
    assert_eq!(code, Some(0));
    assert_eq!(
        with_message(&lines, "removed temp folders of dead worker processes")
            .map(|l| l["removed"].as_u64().unwrap())
            .sum::<u64>(),
        2,
        "the survivor swept the killed worker's job folders at start-up"
    );
    for v in &rig.videos {
        let stored = std::fs::read(rig.store().join(format!("{0}/{0}.mp4", v.id))).unwrap();
        assert_eq!(sha256(&stored), sha256(&v.media), "{} stored whole", v.id);
    }
    assert_eq!(
        files_under(&rig.store()),
        [
            format!("{A}/{A}.mp4"),
            format!("{A}/{A}.mp4.meta.json"),
            format!("{B}/{B}.mp4"),
            format!("{B}/{B}.mp4.meta.json"),
        ],
        "one object each, nothing half-written"
    );
    assert_eq!(rig.temp_entries(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_upload_is_rescued_and_the_object_is_stored_once() {
    kill_9_mid_upload("7412345678901231003", Upload::Standard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_tus_upload_is_rescued_and_the_object_is_stored_once() {
    kill_9_mid_upload("7412345678901231004", Upload::Tus).await;
}

/// How the file goes to Supabase Storage.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Upload {
    /// One request (a 2 MiB file).
    Standard,
    /// TUS, in 6 MiB chunks (a 7 MiB file): the first PATCH hangs.
    Tus,
}

/// The first upload request hangs; the worker is killed meanwhile; a second worker rescues
/// the job once its lease expires and stores the object.
async fn kill_9_mid_upload(id: &str, upload: Upload) {
    const HANG: Duration = Duration::from_secs(4);
    let api = StorageApi::start().await;
    api.create_bucket("videos", true, None, None);
    let size = match upload {
        Upload::Standard => 2 * MIB,
        Upload::Tus => 7 * MIB,
    };
    let rig = Rig::start(&[(id, size, Serve::Normal)]).await;
    let key = format!("{id}/{id}.mp4");
    let object_path = format!("/storage/v1/object/videos/{key}");
    // An upload starts with this request (a TUS upload: its creation).
    let is_upload = |(m, p): &(String, String)| match upload {
        Upload::Standard => (m == "POST" || m == "PUT") && *p == object_path,
        Upload::Tus => m == "POST" && p == "/storage/v1/upload/resumable",
    };
    // The first upload request gets no answer for a while (the storage is stuck).
    let hang_needle = match upload {
        Upload::Standard => object_path.clone(),
        Upload::Tus => "/storage/v1/upload/resumable/".to_string(),
    };
    let hung = |api: &StorageApi| {
        api.requests()
            .iter()
            .filter(|(_, p)| p.contains(&hang_needle))
            .count()
    };
    api.hang_next(&hang_needle, HANG, 1);
    let store = [
        ("SUPABASE_URL", api.url.as_str()),
        ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY),
        ("LEASE_SECONDS", "3"),
    ];
    let job = rig.enqueue(id).await;

    let w = rig.worker(&[store[0], store[1], store[2], ("WORKER_ID", "doomed")]);
    wait_until(
        Duration::from_secs(20),
        "the hung upload request",
        || async { (hung(&api) == 1).then_some(()) },
    )
    .await;
    let hung_at = Instant::now();
    let r = rig.job(job).await;
    assert_eq!(
        (r.status.as_str(), r.worker_id.as_deref()),
        ("running", Some("doomed"))
    );
    w.kill9();
    assert_eq!(api.object_count("videos"), 0, "nothing stored yet");
    assert_eq!(rig.temp_entries().len(), 1, "the killed job's folder");

    let w = rig.worker(&[store[0], store[1], store[2], ("WORKER_ID", "survivor")]);
    let r = rig
        .wait(job, &["completed", "failed"], Duration::from_secs(30))
        .await;
    assert_eq!(r.status, "completed", "{r:?}");
    assert_eq!(r.attempts, 2);
    assert_eq!(r.video_status, "ready");
    // The dead worker's request may still land once the hang is over (its body was sent):
    // the same bytes under the same key, so still one whole object.
    tokio::time::sleep(
        (hung_at + HANG + Duration::from_millis(500)).saturating_duration_since(Instant::now()),
    )
    .await;
    let (code, _) = w.stop();
    assert_eq!(code, Some(0));
    assert_eq!(api.object_count("videos"), 1);
    let (bytes, content_type, _, meta) = api.object("videos", &key).unwrap();
    assert_eq!(sha256(&bytes), sha256(&rig.videos[0].media));
    assert_eq!(content_type, "video/mp4");
    assert_eq!(meta["sha256"], sha256(&rig.videos[0].media));
    assert_eq!(
        api.requests().iter().filter(|r| is_upload(r)).count(),
        2,
        "the killed worker's upload and the survivor's"
    );
    // The killed worker's TUS upload is never finished nor terminated: it stays open in the
    // store until the store expires it (hosted Supabase: after 24 h); the survivor's is done.
    let abandoned = usize::from(upload == Upload::Tus);
    assert_eq!(api.open_uploads(), abandoned);
    assert_eq!(entries(rig.temp.path()), Vec::<String>::new());
}
