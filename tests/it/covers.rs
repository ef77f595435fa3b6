//! Covers that last (`STORE_COVERS`): through the binary, each video ends `ready` with its best
//! static cover stored beside it on every store (the local folder, the Supabase Storage
//! emulator with a public and a private bucket, a real S3 server), `thumbnail_url` points at it
//! and answers 200; a cover that 404s or is not an image leaves the video `ready` without one;
//! `--force` replaces the cover under its key; `gc` knows covers and image-post parts belong
//! to their video, on every queue backend.

use std::time::Duration;

use douyin_worker::queue::{Completion, EnqueueRequest, QueueAdmin, StoredObject};
use douyin_worker::storage::ObjectBackend;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cli::RunningBinary;
use crate::support::backends::{Backend, Kind, on_every_backend};
use fakes::douyin::{
    Behaviour, COVER_JPEG, CoverFault, DouyinServer, video_post, with_cover_fault,
};
use fakes::servers::free_port;

const ID: &str = "7412345678901237701";

/// An `API_ADDR` on a free loopback port, and its base URL.
fn api_addr() -> (String, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{addr}");
    (addr, base)
}

/// Waits until the binary's API answers `/health`.
async fn wait_for_api(base: &str) {
    for _ in 0..400 {
        if reqwest::get(format!("{base}/health")).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{base} never answered");
}

/// A client that does not follow redirects.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// GETs a thumbnail URL as a browser would (a path is the API's): its status, content type and
/// bytes after redirects; a redirect must be a 302 that the browser may reuse for a while.
async fn fetch_thumbnail(api: &str, thumbnail_url: &str) -> (u16, String, Vec<u8>) {
    let url = if thumbnail_url.starts_with('/') {
        format!("{api}{thumbnail_url}")
    } else {
        thumbnail_url.to_string()
    };
    let first = no_redirects().get(&url).send().await.unwrap();
    let r = if first.status().is_redirection() {
        assert_eq!(first.status(), 302);
        let cache = first.headers()["cache-control"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(cache.starts_with("private, max-age="), "{cache}");
        let to = first.headers()["location"].to_str().unwrap().to_string();
        reqwest::get(to).await.unwrap()
    } else {
        first
    };
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, r.bytes().await.unwrap().to_vec())
}

/// The row's `thumbnail_url` and `storage_metadata` in the embedded default's SQLite file.
async fn sqlite_row(data: &std::path::Path, video: Uuid) -> (Option<String>, Value) {
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        data.join("douyin-worker.db").display()
    ))
    .await
    .unwrap();
    let (thumb, meta): (Option<String>, Option<String>) =
        sqlx::query_as("select thumbnail_url, storage_metadata from videos where id = ?1")
            .bind(video.hyphenated().to_string())
            .fetch_one(&pool)
            .await
            .unwrap();
    (
        thumb,
        serde_json::from_str(&meta.unwrap_or_default()).unwrap_or(Value::Null),
    )
}

/// The row's `thumbnail_url` and `storage_metadata` on PostgreSQL.
async fn pg_row(pool: &sqlx::PgPool, video: Uuid) -> (Option<String>, Value) {
    let (thumb, meta): (Option<String>, Option<Value>) =
        sqlx::query_as("select thumbnail_url, storage_metadata from public.videos where id = $1")
            .bind(video)
            .fetch_one(pool)
            .await
            .unwrap();
    (thumb, meta.unwrap_or(Value::Null))
}

/// What every stored cover's record says: the key beside the video, the JPEG of
/// `origin_cover` (not `cover`'s PNG, not the WebP), the lasting URL, the Douyin one replaced.
fn check_record(meta: &Value, thumbnail: &str) {
    let cover = &meta["cover"];
    assert_eq!(cover["key"], format!("{ID}/{ID}_cover.jpg"), "{meta}");
    assert_eq!(cover["mime_type"], "image/jpeg");
    assert_eq!(cover["size"], COVER_JPEG.len());
    assert_eq!(cover["media"]["width"], 72);
    assert_eq!(cover["url"], thumbnail);
    let replaced = cover["replaced_thumbnail_url"].as_str().unwrap();
    assert!(replaced.contains("douyinpic.com"), "{replaced}");
}

/// The record, and the thumbnail answering 200 with the cover as a browser fetches it.
async fn check_lasting(api: &str, meta: &Value, thumbnail: &str) {
    check_record(meta, thumbnail);
    wait_for_api(api).await;
    let (status, content_type, bytes) = fetch_thumbnail(api, thumbnail).await;
    assert_eq!((status, content_type.as_str()), (200, "image/jpeg"));
    assert_eq!(bytes, COVER_JPEG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_local_store_the_cover_is_stored_served_and_replaced_by_force_and_retry() {
    let douyin = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let data = tempfile::tempdir().unwrap();
    let (addr, api) = api_addr();
    let bin = RunningBinary::start(&[
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("DOUYIN_UPSTREAM", &douyin.url),
        ("API_ADDR", &addr),
        ("API_RETRY_COOLDOWN_SECONDS", "0"),
    ]);
    let rec = crate::support::backends::queue_and_complete(data.path(), ID).await;
    assert_eq!(rec.video_status, "ready");
    let cover_path = data.path().join(format!("videos/{ID}/{ID}_cover.jpg"));
    assert_eq!(std::fs::read(&cover_path).unwrap(), COVER_JPEG);
    let sidecar: Value = serde_json::from_slice(
        &std::fs::read(
            data.path()
                .join(format!("videos/{ID}/{ID}_cover.jpg.meta.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar["content_type"], "image/jpeg", "{sidecar}");
    assert_eq!(sidecar["cache_control"], "max-age=3600", "{sidecar}");
    let (thumb, meta) = sqlite_row(data.path(), rec.video_id).await;
    let thumb = thumb.unwrap();
    assert_eq!(thumb, format!("/api/videos/{}/thumbnail", rec.video_id));
    check_lasting(&api, &meta, &thumb).await;

    // A forced download replaces the cover under the same key; the Douyin URL stays recorded.
    let before = std::fs::metadata(&cover_path).unwrap().modified().unwrap();
    let q =
        crate::support::backends::open_sqlite_when_created(&data.path().join("douyin-worker.db"))
            .await;
    let again = q
        .enqueue(&EnqueueRequest {
            video_id: Some(rec.video_id),
            force: true,
            ..Default::default()
        })
        .await
        .unwrap();
    crate::support::backends::wait_for_status(
        &q,
        again.job_id.expect("queued again"),
        &["completed"],
        Duration::from_secs(30),
    )
    .await;
    let after = std::fs::metadata(&cover_path).unwrap().modified().unwrap();
    assert!(after > before, "the cover was written again");
    let mut names: Vec<String> = std::fs::read_dir(data.path().join("videos").join(ID))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".meta.json"))
        .collect();
    names.sort();
    assert_eq!(names, [format!("{ID}.mp4"), format!("{ID}_cover.jpg")]);
    let (thumb_again, meta_again) = sqlite_row(data.path(), rec.video_id).await;
    assert_eq!(thumb_again.as_deref(), Some(thumb.as_str()));
    check_record(&meta_again, &thumb);

    // The file gone from the store, the API's retry downloads the video again, and the cover
    // with it, under the same key.
    let video_path = data.path().join(format!("videos/{ID}/{ID}.mp4"));
    std::fs::remove_file(&video_path).unwrap();
    let retry = format!("{api}/api/videos/{}/retry", rec.video_id);
    let (status, body) = crate::api::post(&retry).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("queued")),
        "{body}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = q.video(rec.video_id).await.unwrap().unwrap();
        if state.status == "ready" && video_path.exists() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never stored again: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let retried = std::fs::metadata(&cover_path).unwrap().modified().unwrap();
    assert!(retried > after, "the cover was written again by the retry");
    assert_eq!(std::fs::read(&cover_path).unwrap(), COVER_JPEG);
    let (thumb_retried, _) = sqlite_row(data.path(), rec.video_id).await;
    assert_eq!(thumb_retried.as_deref(), Some(thumb.as_str()));

    // A cover gone from the store is a 404, not a link that fails in the browser.
    std::fs::remove_file(&cover_path).unwrap();
    let (status, body) = crate::api::call(reqwest::Method::GET, &format!("{api}{thumb}")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "the stored cover is missing");
    let (code, _) = bin.stop();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cover_that_404s_or_is_not_an_image_leaves_the_video_ready_without_one() {
    const MISSING: &str = "7412345678901237702";
    const NOT_IMAGE: &str = "7412345678901237703";
    let douyin = DouyinServer::start(vec![
        with_cover_fault(
            video_post(MISSING, Behaviour::NewSharePage),
            CoverFault::Missing,
        ),
        with_cover_fault(
            video_post(NOT_IMAGE, Behaviour::NewSharePage),
            CoverFault::NotAnImage,
        ),
    ])
    .await;
    let data = tempfile::tempdir().unwrap();
    let (addr, api) = api_addr();
    let http = format!("127.0.0.1:{}", free_port());
    let bin = RunningBinary::start(&[
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("DOUYIN_UPSTREAM", &douyin.url),
        ("API_ADDR", &addr),
        ("HTTP_ADDR", &http),
    ]);
    wait_for_api(&api).await;
    for id in [MISSING, NOT_IMAGE] {
        let rec = crate::support::backends::queue_and_complete(data.path(), id).await;
        assert_eq!(rec.video_status, "ready", "{id}");
        let (thumb, meta) = sqlite_row(data.path(), rec.video_id).await;
        // The Douyin URL extraction gave, as before.
        let thumb = thumb.unwrap();
        assert!(thumb.contains("douyinpic.com"), "{thumb}");
        assert!(meta.get("cover").is_none(), "{meta}");
        let folder = data.path().join("videos").join(id);
        assert!(folder.join(format!("{id}.mp4")).exists());
        assert!(!folder.join(format!("{id}_cover.jpg")).exists());
        let (status, _) = crate::api::call(
            reqwest::Method::GET,
            &format!("{api}/api/videos/{}/thumbnail", rec.video_id),
        )
        .await;
        assert_eq!(status, 404);
    }
    let metrics = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["download-failed", "html-as-video"] {
        let line = format!("douyin_cover_failures_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    let (code, logs) = bin.stop();
    assert_eq!(code, Some(0));
    let warned: Vec<&str> = logs
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("cover not stored")
        })
        .filter_map(|l| l["code"].as_str())
        .collect();
    assert_eq!(warned, ["download-failed", "html-as-video"], "{logs:?}");
}

/// Runs a Supabase-mode binary (PostgREST and Storage emulators behind one gateway) with the
/// `videos` bucket `public` or not, completes the fixture's video and checks its cover.
async fn supabase_case(public: bool) {
    use fakes::postgrest::PostgrestEmulator;
    let douyin = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let db = fakes::pg::fresh_pg().await;
    let key = "sb_secret_covers".to_string();
    let rest = PostgrestEmulator::start_with_keys(db.pool.clone(), &[&key]).await;
    let storage = fakes::storage_api::StorageApi::start_with_keys(&[&key]).await;
    storage.create_bucket("videos", public, None, None);
    let (url, proxy) = crate::supabase::gateway(rest.url.clone(), storage.url.clone()).await;
    let (addr, api) = api_addr();
    let bin = RunningBinary::start(&[
        ("SUPABASE_URL", &url),
        ("SUPABASE_SERVICE_ROLE_KEY", &key),
        ("DOUYIN_UPSTREAM", &douyin.url),
        ("API_ADDR", &addr),
    ]);
    let rec = crate::support::backends::enqueue_link_and_wait(
        &db.pool,
        &format!("https://www.douyin.com/video/{ID}"),
        &["completed"],
        Duration::from_secs(30),
    )
    .await;
    let cover_key = format!("{ID}/{ID}_cover.jpg");
    let (bytes, content_type, cache_control, _) =
        storage.object("videos", &cover_key).expect("cover stored");
    assert_eq!(bytes, COVER_JPEG);
    assert_eq!(
        (content_type.as_str(), cache_control.as_str()),
        ("image/jpeg", "max-age=3600")
    );
    let (thumb, meta) = pg_row(&db.pool, rec.video_id).await;
    let thumb = thumb.unwrap();
    if public {
        assert_eq!(
            thumb,
            format!("{url}/storage/v1/object/public/videos/{cover_key}")
        );
    } else {
        assert_eq!(thumb, format!("/api/videos/{}/thumbnail", rec.video_id));
    }
    check_lasting(&api, &meta, &thumb).await;
    let (code, _) = bin.stop();
    assert_eq!(code, Some(0));
    proxy.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_public_supabase_bucket_the_thumbnail_is_the_covers_public_url() {
    supabase_case(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_private_supabase_bucket_the_thumbnail_redirects_to_a_signed_link() {
    supabase_case(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_an_s3_bucket_the_cover_is_stored_and_the_thumbnail_redirects_to_a_signed_link() {
    use fakes::servers::{S3_SECRET, S3Server};
    use futures::StreamExt;
    let server = S3Server::start("videos");
    let douyin = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let data = tempfile::tempdir().unwrap();
    let (addr, api) = api_addr();
    let mut env = vec![
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("DOUYIN_UPSTREAM", &douyin.url),
        ("API_ADDR", &addr),
    ];
    env.extend(crate::s3::binary_env(&server));
    let bin = RunningBinary::start(&env);
    let rec = crate::support::backends::queue_and_complete(data.path(), ID).await;
    let store = server.store("videos", S3_SECRET);
    let mut object = store
        .open(&format!("{ID}/{ID}_cover.jpg"))
        .await
        .unwrap()
        .expect("cover stored");
    assert_eq!(object.content_type.as_deref(), Some("image/jpeg"));
    let mut bytes = Vec::new();
    while let Some(chunk) = object.body.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(bytes, COVER_JPEG);
    let (thumb, meta) = sqlite_row(data.path(), rec.video_id).await;
    let thumb = thumb.unwrap();
    assert_eq!(thumb, format!("/api/videos/{}/thumbnail", rec.video_id));
    check_lasting(&api, &meta, &thumb).await;
    let (code, _) = bin.stop();
    assert_eq!(code, Some(0));
}

on_every_backend!(gc_keeps_the_covers_and_parts_of_live_videos_and_deletes_orphaned_ones);

/// Two stored videos (one an image post with a part), and the objects a deleted video left:
/// gc finds exactly those orphans, and a video marked for deletion gives up its cover too.
async fn gc_keeps_the_covers_and_parts_of_live_videos_and_deletes_orphaned_ones(kind: Kind) {
    use douyin_worker::admin::gc::{GcOptions, plan};
    let b = Backend::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let store = douyin_worker::storage::local::LocalFolder::new(dir.path(), "videos");
    let files = [
        "1/1.mp4",
        "1/1_cover.jpg",
        "2/2.jpg",
        "2/2_2.jpg",
        "3/3_cover.jpg",
        "3/3.mp4",
    ];
    for f in files {
        let path = dir.path().join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }
    let metas = [
        ("1", "1/1.mp4", json!({"cover": {"key": "1/1_cover.jpg"}})),
        (
            "2",
            "2/2.jpg",
            json!({"cover": {"key": "2/2.jpg"}, "parts": [{"key": "2/2_2.jpg"}]}),
        ),
    ];
    let mut videos = Vec::new();
    for (id, key, meta) in metas {
        b.enqueue(&format!("74000000000000000{id}")).await;
        let job = b
            .queue
            .claim("w", 1, Duration::from_secs(60))
            .await
            .unwrap()
            .remove(0);
        videos.push(job.video_id);
        let c = Completion {
            lease: job.lease,
            stored: StoredObject {
                storage_provider: "local".into(),
                bucket: "videos".into(),
                object_key: key.into(),
                filesize: 1,
                mime_type: "video/mp4".into(),
                storage_metadata: meta,
                ..Default::default()
            },
            video: Default::default(),
        };
        b.queue.complete("w", &[c]).await.unwrap();
    }
    let opts = GcOptions {
        apply: false,
        min_age: Duration::ZERO,
    };
    let orphans = |r: douyin_worker::admin::gc::GcReport| -> Vec<String> {
        r.orphans.into_iter().map(|o| o.key).collect()
    };
    let report = plan(b.queue.as_ref(), &store, opts, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(orphans(report), ["3/3.mp4", "3/3_cover.jpg"]);
    // The cover goes with its video.
    let cover = b.queue.video_cover(videos[0]).await.unwrap().unwrap();
    assert_eq!(cover.cover_key.as_deref(), Some("1/1_cover.jpg"));
    b.mark_for_deletion(videos[0]).await;
    let report = plan(b.queue.as_ref(), &store, opts, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(
        orphans(report),
        ["1/1.mp4", "1/1_cover.jpg", "3/3.mp4", "3/3_cover.jpg"]
    );
}
