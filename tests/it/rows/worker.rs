//! The real pipeline (the Douyin fixture server, the HTTP downloader, the file validator, a
//! local folder) run by a worker over the SQLite queue.

use std::sync::Arc;
use std::time::Duration;

use douyin_worker::download::{DownloadOptions, HttpDownloader};
use douyin_worker::extract::client::ClientOptions;
use douyin_worker::extract::{DouyinExtractor, ExtractOptions};
use douyin_worker::net::upstream::Upstream;
use douyin_worker::pipeline::Pipeline;
use douyin_worker::queue::{EnqueueOutcome, EnqueueRequest, Queue};
use douyin_worker::storage::local::LocalFolder;
use douyin_worker::storage::{StorageOptions, StorageStage};
use douyin_worker::validate::FileValidator;
use douyin_worker::worker::Worker;
use fakes::douyin::{Behaviour, DouyinServer, video_post};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::backends::{Backend, Kind, wait_for_status};

const ID: &str = "7412345678901234567";

/// The real pipeline against `douyin`, storing into `store`.
pub(crate) fn pipeline(douyin: &DouyinServer, store: &std::path::Path) -> Pipeline {
    pipeline_storing_with(
        douyin,
        StorageStage::new(
            Arc::new(LocalFolder::new(store, "videos")),
            StorageOptions::default(),
        ),
    )
}

/// The real pipeline against `douyin` (extraction, the HTTP downloader, the file validator),
/// storing through `storage`.
pub(crate) fn pipeline_storing_with(douyin: &DouyinServer, storage: StorageStage) -> Pipeline {
    let upstream = Upstream::rewrite_to(douyin.url.parse().unwrap());
    Pipeline::new(
        Arc::new(
            DouyinExtractor::new(ExtractOptions {
                client: ClientOptions {
                    upstream: upstream.clone(),
                    ..Default::default()
                },
                ..Default::default()
            })
            .unwrap(),
        ),
        Arc::new(
            HttpDownloader::new(DownloadOptions {
                upstream,
                ..Default::default()
            })
            .unwrap(),
        ),
        Arc::new(FileValidator),
        Arc::new(storage),
    )
}

/// Runs a worker on `queue` until `job` is completed or failed; returns its record.
pub(crate) async fn run_until_done(
    queue: Arc<dyn Queue>,
    pipeline: Pipeline,
    jobs: &[Uuid],
) -> Vec<douyin_worker::queue::JobRecord> {
    let tmp = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let worker = Worker::new(
        queue.clone(),
        Arc::new(pipeline),
        crate::worker::options("rows-worker", tmp.path().into()),
    );
    let run = tokio::spawn(worker.run(stop.clone()));
    let mut records = Vec::new();
    for job in jobs {
        records.push(
            wait_for_status(
                queue.as_ref(),
                *job,
                &["completed", "failed"],
                Duration::from_secs(30),
            )
            .await,
        );
    }
    stop.cancel();
    run.await.unwrap();
    records
}

/// The cached direct URL of `video` and its meta, straight from the SQLite file.
async fn cache_of(b: &Backend, video: Uuid) -> (Option<String>, Option<String>) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", b.locator.1))
        .await
        .unwrap();
    let row = sqlx::query_as("select video_url_direct, video_url_meta from videos where id = ?1")
        .bind(video.to_string())
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cached_url_whose_file_fails_the_size_check_is_extracted_afresh_next_time() {
    let douyin = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let store = tempfile::tempdir().unwrap();
    let b = Backend::new(Kind::Sqlite).await;
    let first = b
        .enqueue_with(EnqueueRequest {
            url: Some(format!("https://www.douyin.com/video/{ID}")),
            ..Default::default()
        })
        .await;
    let rec = run_until_done(b.queue.clone(), pipeline(&douyin, store.path()), &[first]).await;
    assert_eq!(rec[0].status, "completed", "{rec:?}");
    let (direct, meta) = cache_of(&b, rec[0].video_id).await;
    assert!(direct.is_some(), "the completion caches the direct URL");

    // The cache now promises another size than the CDN sends (a file that changed under
    // the same URL): every download from it fails the size check.
    let mut meta: serde_json::Value = serde_json::from_str(&meta.unwrap()).unwrap();
    let size = meta["candidate"]["data_size"].as_u64().unwrap();
    meta["candidate"]["data_size"] = (size + 1).into();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", b.locator.1))
        .await
        .unwrap();
    sqlx::query("update videos set video_url_meta = ?1 where id = ?2")
        .bind(meta.to_string())
        .bind(rec[0].video_id.to_string())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let again = b
        .queue
        .enqueue(&EnqueueRequest {
            douyin_id: Some(ID.into()),
            force: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(again.outcome, EnqueueOutcome::Queued);
    let rec = run_until_done(
        b.queue.clone(),
        pipeline(&douyin, store.path()),
        &[again.job_id.unwrap()],
    )
    .await;
    // The first attempt used the cache and failed the size check; the second extracted
    // afresh (the cache it wrote holds the true size again).
    assert_eq!(rec[0].status, "completed", "{rec:?}");
    assert_eq!(rec[0].attempts, 2, "{rec:?}");
    let (fresh, meta) = cache_of(&b, rec[0].video_id).await;
    assert!(fresh.is_some());
    let meta: serde_json::Value = serde_json::from_str(&meta.unwrap()).unwrap();
    assert_eq!(meta["candidate"]["data_size"].as_u64(), Some(size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_link_queued_unresolved_and_the_page_link_store_one_video_once() {
    let douyin = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    douyin.add_short_link(
        "iRNBho6u",
        &format!("https://www.iesdouyin.com/share/video/{ID}/?region=CN"),
    );
    let store = tempfile::tempdir().unwrap();
    let b = Backend::new(Kind::Sqlite).await;
    // The short link was queued while Douyin could not be reached: no id, a row of its own.
    let short = b
        .queue
        .enqueue(&EnqueueRequest {
            url: Some("https://v.douyin.com/iRNBho6u/".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let page = b
        .queue
        .enqueue(&EnqueueRequest {
            url: Some(format!("https://www.douyin.com/video/{ID}")),
            douyin_id: Some(ID.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_ne!(short.video_id, page.video_id);
    let jobs = [short.job_id.unwrap(), page.job_id.unwrap()];
    let rec = run_until_done(b.queue.clone(), pipeline(&douyin, store.path()), &jobs).await;
    assert_eq!(rec[0].status, "completed", "{rec:?}");
    assert_eq!(rec[1].status, "completed", "{rec:?}");
    // Whichever job ran first stored the video; the other found it (merged or moved).
    let survivor = page.video_id.unwrap();
    assert_eq!(rec[1].video_id, survivor);
    let state = b
        .queue
        .video(short.video_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        state.id, survivor,
        "the short link's row answers as the page link's"
    );
    assert_eq!(state.status, "ready");
    let files: Vec<_> = walk(store.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let again = b
        .queue
        .enqueue(&EnqueueRequest {
            url: Some("https://v.douyin.com/iRNBho6u/".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (again.outcome, again.video_id),
        (EnqueueOutcome::Ready, Some(survivor)),
        "duplicates are reported, not doubled"
    );
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
