//! The CDN dropping connections mid-file and lying about the length: the download resumes
//! where it stopped, or the file is rejected; a broken file is never stored.

use std::time::Duration;

use super::{Rig, enqueue, files_under, media_path, sha256};
use fakes::cdn::Serve;

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdn_dropping_the_connection_mid_file_is_resumed_and_the_file_stored_whole() {
    const ID: &str = "7412345678901232001";
    // Every answer breaks off after 1 MiB, three times over.
    let rig = Rig::start(&[(
        ID,
        4 * MIB,
        Serve::DropAfter {
            after: MIB as u64,
            times: 3,
        },
    )])
    .await;
    let w = rig.worker(&[]);
    let job = rig.enqueue(ID).await;
    let r = rig
        .wait(job, &["completed", "failed"], Duration::from_secs(30))
        .await;
    assert_eq!(r.status, "completed", "{r:?}");
    assert_eq!(r.attempts, 1, "resumed within the attempt");
    let (code, _) = w.stop();
    assert_eq!(code, Some(0));

    let gets: Vec<Option<String>> = rig
        .cdn
        .requests()
        .into_iter()
        .filter(|(m, p, _)| m == "GET" && *p == media_path(ID))
        .map(|(_, _, range)| range)
        .collect();
    assert_eq!(
        gets,
        [
            None,
            Some(format!("bytes={}-", MIB)),
            Some(format!("bytes={}-", 2 * MIB)),
            Some(format!("bytes={}-", 3 * MIB)),
        ],
        "each resume asks for the rest"
    );
    let stored = std::fs::read(rig.store().join(format!("{ID}/{ID}.mp4"))).unwrap();
    assert_eq!(sha256(&stored), sha256(&rig.videos[0].media));
    assert_eq!(rig.temp_entries(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdn_lying_about_the_length_is_rejected_and_nothing_is_stored() {
    const SHORT: &str = "7412345678901232002";
    const LONG: &str = "7412345678901232003";
    const SIZE: usize = 2 * MIB;
    let rig = Rig::start(&[
        // Announces more than it sends, then closes.
        (
            SHORT,
            SIZE,
            Serve::LyingLength {
                content_length: (SIZE + 64 * 1024) as u64,
            },
        ),
        // Announces less than the file: the body looks complete at the announced length.
        (
            LONG,
            SIZE,
            Serve::LyingLength {
                content_length: (SIZE - 64 * 1024) as u64,
            },
        ),
    ])
    .await;
    let w = rig.worker(&[]);
    // Two attempts each (the retry is immediate), then failed for good.
    let jobs = [
        enqueue(&rig.q, SHORT, Some(2)).await,
        enqueue(&rig.q, LONG, Some(2)).await,
    ];
    for job in jobs {
        let r = rig
            .wait(job, &["completed", "failed"], Duration::from_secs(60))
            .await;
        eprintln!(
            "{}: {:?} {:?} {:?}",
            r.id, r.last_error_class, r.last_error_code, r.last_error
        );
        assert_eq!(r.status, "failed", "{r:?}");
        assert_eq!(r.attempts, 2, "{r:?}");
        assert_eq!(r.last_error_class.as_deref(), Some("transient"), "{r:?}");
        assert_ne!(r.video_status, "ready");
    }
    let (code, _) = w.stop();
    assert_eq!(code, Some(0));
    let videos: Vec<(String, Option<String>)> =
        sqlx::query_as("select status, object_key from videos")
            .fetch_all(&rig.db.pool)
            .await
            .unwrap();
    assert!(videos.iter().all(|(_, key)| key.is_none()), "{videos:?}");
    assert_eq!(files_under(&rig.store()), Vec::<String>::new());
    assert_eq!(rig.temp_entries(), Vec::<String>::new());
}
