//! System proof: the whole pipeline through worker processes on loopback (the Douyin fixture
//! server, the raw CDN of `cdn.rs` serving big files and faults, PostgreSQL, a store).

use std::time::Duration;

use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::queue::{EnqueueRequest, JobQueue};

use crate::cdn::{Cdn, Serve};
use crate::cli::RunningBinary;
use crate::douyin_server::{Behaviour, DouyinServer, mp4_of_size, video_post_from};
use crate::helpers::fresh_pg;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_megabyte_video_from_the_loopback_cdn_is_stored_whole() {
    const ID: &str = "7412345678901230001";
    let media = mp4_of_size(ID, 5 * 1024 * 1024);
    let cdn = Cdn::start().await;
    cdn.add("/media/a.mp4", media.clone(), Serve::Normal);
    let server = DouyinServer::start(vec![video_post_from(
        ID,
        Behaviour::NewSharePage,
        &cdn.url("/media/a.mp4"),
        media.len() as u64,
    )])
    .await;
    let db = fresh_pg().await;
    let data = tempfile::tempdir().unwrap();
    let bin = RunningBinary::start(&[
        ("DATABASE_URL", &db.url),
        ("DOUYIN_UPSTREAM", &server.url),
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("ALLOW_PRIVATE_NETWORKS", "true"),
    ]);
    let q = PgQueue::from_pool(db.pool.clone());
    let r = q
        .enqueue(&EnqueueRequest {
            douyin_id: Some(ID.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let rec = crate::backends::wait_for_status(
        &q,
        r.job_id.unwrap(),
        &["completed", "failed"],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(rec.status, "completed", "{rec:?}");
    let stored = std::fs::read(data.path().join("videos").join(format!("{ID}/{ID}.mp4"))).unwrap();
    assert!(
        stored == media,
        "the stored file is the CDN's, byte for byte"
    );
    let (code, _) = bin.stop();
    assert_eq!(code, Some(0));
}
