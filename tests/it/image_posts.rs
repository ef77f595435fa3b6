//! Image posts through the binary: refused by default, stored with `IMAGE_POSTS=store` (every
//! picture, the live photo's motion and the soundtrack, each validated, beside the first).

use std::time::Duration;

use douyin_worker::queue::JobRecord;

use crate::cli::RunningBinary;
use fakes::douyin::{Behaviour, DouyinServer, image_post};
use fakes::pg::fresh_pg;

const ID: &str = "7412345678901239901";

/// Runs one worker over one queued image post with `policy`; the job record and the store.
async fn run(policy: &str) -> (JobRecord, tempfile::TempDir, sqlx::PgPool) {
    let server = DouyinServer::start(vec![image_post(ID, Behaviour::NewSharePage)]).await;
    let db = fresh_pg().await;
    let data = tempfile::tempdir().unwrap();
    let bin = RunningBinary::start(&[
        ("DATABASE_URL", &db.url),
        ("DOUYIN_UPSTREAM", &server.url),
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("IMAGE_POSTS", policy),
        ("BROWSER_ENABLED", "false"),
    ]);
    let rec = crate::support::backends::enqueue_link_and_wait(
        &db.pool,
        &format!("https://www.douyin.com/note/{ID}"),
        &["completed", "failed"],
        Duration::from_secs(30),
    )
    .await;
    let (code, _) = bin.stop();
    assert_eq!(code, Some(0));
    (rec, data, db.pool.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_posts_are_refused_by_default_naming_the_pictures() {
    let (rec, data, _) = run("refuse").await;
    assert_eq!(rec.status, "failed");
    assert_eq!(rec.last_error_class.as_deref(), Some("permanent"));
    assert!(
        rec.last_error
            .as_deref()
            .unwrap()
            .contains("image post (3 images)"),
        "{rec:?}"
    );
    assert!(
        !data.path().join("videos").join(ID).exists(),
        "nothing stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_image_posts_keep_every_picture_the_live_motion_and_the_soundtrack() {
    let (rec, data, pool) = run("store").await;
    assert_eq!(rec.status, "completed", "{rec:?}");
    assert_eq!(rec.video_status, "ready");
    let main = format!("{ID}/{ID}.jpg");
    assert_eq!(rec.video_object_key.as_deref(), Some(main.as_str()));
    let folder = data.path().join("videos").join(ID);
    let mut files: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".meta.json"))
        .collect();
    files.sort();
    let expected: Vec<String> = ["", "_2", "_2_live", "_3", "_music"]
        .iter()
        .zip(["jpg", "jpg", "mp4", "jpg", "mp3"])
        .map(|(suffix, ext)| format!("{ID}{suffix}.{ext}"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(files, expected);
    let (mime, meta, thumbnail): (String, serde_json::Value, String) = sqlx::query_as(
        "select mime_type, storage_metadata, thumbnail_url from public.videos where id = $1",
    )
    .bind(rec.video_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(mime, "image/jpeg");
    // The first picture is the cover (no second copy, see the file list above): the lasting
    // thumbnail is the download API's route to it.
    assert_eq!(thumbnail, format!("/api/videos/{}/thumbnail", rec.video_id));
    assert_eq!(meta["cover"]["key"], main.as_str());
    assert_eq!(meta["cover"]["first_picture"], true);
    assert!(
        meta["cover"]["replaced_thumbnail_url"]
            .as_str()
            .unwrap()
            .contains("douyinpic.com"),
        "{meta}"
    );
    assert_eq!(meta["media"]["width"], 1080);
    let parts = meta["parts"].as_array().unwrap();
    let described: Vec<(&str, &str)> = parts
        .iter()
        .map(|p| (p["key"].as_str().unwrap(), p["mime_type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        described,
        [
            (format!("{ID}/{ID}_2.jpg").as_str(), "image/jpeg"),
            (format!("{ID}/{ID}_2_live.mp4").as_str(), "video/mp4"),
            (format!("{ID}/{ID}_3.jpg").as_str(), "image/jpeg"),
            (format!("{ID}/{ID}_music.mp3").as_str(), "audio/mpeg"),
        ]
    );
    for p in parts {
        let bytes =
            std::fs::read(data.path().join("videos").join(p["key"].as_str().unwrap())).unwrap();
        assert_eq!(p["size"], bytes.len());
        use sha2::Digest;
        assert_eq!(p["sha256"], format!("{:x}", sha2::Sha256::digest(&bytes)));
    }
}
