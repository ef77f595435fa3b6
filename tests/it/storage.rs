//! The storage stage over the local folder and over Supabase Storage (the emulator built from
//! the storage-api contract): standard and TUS uploads, resume after an interrupted PATCH,
//! retries, typed errors, idempotent keys, metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

use douyin_worker::config::Secret;
use douyin_worker::error::ErrorClass;
use douyin_worker::queue::{ClaimedJob, Lease, VideoRow};
use douyin_worker::stage::{
    DownloadedFile, JobContext, MediaInfo, MediaSource, ProgressBoard, StageJob, Storage,
};
use douyin_worker::storage::local::LocalFolder;
use douyin_worker::storage::supabase::SupabaseStorage;
use douyin_worker::storage::{ObjectBackend, PutRequest, StorageOptions, StorageStage};
use sha2::Digest;

use fakes::cdn::bytes;
use fakes::storage_api::{SERVICE_KEY, StorageApi};

const ID: &str = "7412345678901234567";

pub(crate) fn file_of(dir: &std::path::Path, data: &[u8]) -> DownloadedFile {
    let path = dir.join("media.part");
    std::fs::write(&path, data).unwrap();
    DownloadedFile {
        path,
        size: data.len() as u64,
        sha256: format!("{:x}", sha2::Sha256::digest(data)),
    }
}

fn job() -> ClaimedJob {
    ClaimedJob {
        lease: Lease {
            job_id: uuid::Uuid::new_v4(),
            lease_id: uuid::Uuid::new_v4(),
        },
        video_id: uuid::Uuid::new_v4(),
        lease_expires_at: chrono::Utc::now(),
        attempts: 1,
        max_attempts: 5,
        priority: 0,
        payload: None,
        scheduled_at: chrono::Utc::now(),
        created_at: chrono::Utc::now(),
        video: VideoRow {
            douyin_id: Some(ID.into()),
            video_url: Some(format!("https://www.douyin.com/video/{ID}")),
            ..Default::default()
        },
    }
}

fn info() -> MediaInfo {
    MediaInfo {
        mime_type: "video/mp4".into(),
        extension: "mp4".into(),
        metadata: serde_json::json!({"duration_seconds": 10.0, "width": 720, "height": 1280}),
    }
}

fn source() -> MediaSource {
    MediaSource {
        douyin_id: ID.into(),
        urls: vec!["https://v26-web.douyinvod.com/a/b/video/x/?sig=secret".into()],
        strategy: "h5_iteminfo".into(),
        ..Default::default()
    }
}

fn ctx(root: &std::path::Path, job: &ClaimedJob) -> JobContext {
    JobContext::new(
        job.lease,
        Arc::from("worker-7"),
        tokio_util::sync::CancellationToken::new(),
        root,
        Arc::new(ProgressBoard::default()),
    )
}

fn supabase(api: &StorageApi) -> SupabaseStorage {
    SupabaseStorage::new(
        &api.url.parse().unwrap(),
        Secret::new(SERVICE_KEY),
        "videos",
    )
    .unwrap()
}

fn stage(backend: Arc<dyn ObjectBackend>) -> StorageStage {
    StorageStage::new(
        backend,
        StorageOptions {
            backoff: std::time::Duration::from_millis(20),
            ..Default::default()
        },
    )
}

/// Stores `file` for `job` through `stage`, with the job's temp folder under `root`.
async fn store_in(
    stage: &StorageStage,
    job: &ClaimedJob,
    file: &DownloadedFile,
    root: &std::path::Path,
) -> Result<douyin_worker::stage::StoredObject, douyin_worker::error::JobError> {
    stage
        .store(
            &StageJob::from(job),
            &source(),
            file,
            &info(),
            &ctx(root, job),
        )
        .await
}

#[tokio::test]
async fn local_folder_stores_under_a_deterministic_key_and_a_retry_replaces() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("videos");
    let folder = Arc::new(LocalFolder::new(&root, "videos"));
    let stage = stage(folder.clone());
    let j = job();
    let data = bytes(100_000, 1);
    let file = file_of(tmp.path(), &data);
    let stored = store_in(&stage, &j, &file, tmp.path()).await.unwrap();
    assert_eq!(stored.object_key, format!("{ID}/{ID}.mp4"));
    assert_eq!(stored.storage_provider, "local");
    assert_eq!(stored.bucket, "videos");
    assert_eq!(stored.filesize, data.len() as i64);
    assert_eq!(stored.storage_etag.as_deref(), Some(file.sha256.as_str()));
    assert_eq!(stored.storage_metadata["sha256"], file.sha256);
    assert_eq!(
        stored.storage_metadata["user_metadata"]["worker_id"],
        "worker-7"
    );
    // The signed URL's query never reaches the metadata.
    assert!(!stored.storage_metadata.to_string().contains("secret"));
    // Again (a retried job): same key, replaced, one object.
    let data2 = bytes(120_000, 2);
    let file2 = file_of(tmp.path(), &data2);
    stage
        .store(
            &StageJob::from(&j),
            &source(),
            &file2,
            &info(),
            &ctx(tmp.path(), &j),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(root.join(format!("{ID}/{ID}.mp4"))).unwrap(),
        data2
    );
    let entries: Vec<_> = std::fs::read_dir(root.join(ID))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "the object and its metadata sidecar: {entries:?}"
    );
}

#[tokio::test]
async fn supabase_standard_upload_with_metadata_and_verification() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", true, None, Some(vec!["video/mp4".into()]));
    let tmp = tempfile::tempdir().unwrap();
    let j = job();
    let data = bytes(1_000_000, 3);
    let file = file_of(tmp.path(), &data);
    let stored = stage(Arc::new(supabase(&api)))
        .store(
            &StageJob::from(&j),
            &source(),
            &file,
            &info(),
            &ctx(tmp.path(), &j),
        )
        .await
        .unwrap();
    assert_eq!(stored.storage_provider, "supabase");
    assert!(stored.storage_etag.is_some());
    let (got, ct, cc, meta) = api.object("videos", &stored.object_key).unwrap();
    assert_eq!(got, data);
    assert_eq!((ct.as_str(), cc.as_str()), ("video/mp4", "max-age=3600"));
    assert_eq!(meta["douyin_id"], ID);
    assert_eq!(meta["sha256"], file.sha256);
    let headers = api.last_headers("/object/videos/").unwrap();
    let h = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(h("apikey").as_deref(), Some(SERVICE_KEY));
    assert_eq!(h("authorization"), Some(format!("Bearer {SERVICE_KEY}")));
    assert_eq!(h("x-upsert").as_deref(), Some("true"));
    // A retry overwrites the same key.
    stage(Arc::new(supabase(&api)))
        .store(
            &StageJob::from(&j),
            &source(),
            &file,
            &info(),
            &ctx(tmp.path(), &j),
        )
        .await
        .unwrap();
    assert_eq!(api.object_count("videos"), 1);
}

#[tokio::test]
async fn supabase_large_files_go_through_tus_and_resume_after_an_interrupted_patch() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    let tmp = tempfile::tempdir().unwrap();
    let data = bytes(13 * 1024 * 1024, 4);
    let file = file_of(tmp.path(), &data);
    let s = supabase(&api);
    let metadata = BTreeMap::from([("douyin_id".to_string(), ID.to_string())]);
    let req = PutRequest {
        key: "tus/big.mp4",
        file: &file,
        content_type: "video/mp4",
        cache_control: "max-age=600",
        metadata: &metadata,
    };
    api.interrupt_next_patch(1024 * 1024 + 17);
    s.put(&req).await.unwrap();
    let (got, _, cc, meta) = api.object("videos", "tus/big.mp4").unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "byte-identical after the resume");
    assert_eq!(cc, "max-age=600");
    assert_eq!(meta["douyin_id"], ID);
    let methods: Vec<String> = api.requests().into_iter().map(|(m, _)| m).collect();
    assert!(
        methods.contains(&"HEAD".to_string()),
        "the offset was asked after the interruption: {methods:?}"
    );
    let head = s.head("tus/big.mp4").await.unwrap().unwrap();
    assert_eq!(head.size, data.len() as u64);
}

#[tokio::test]
async fn transient_storage_errors_are_retried_within_the_attempt() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    api.fail_next("/object/videos/", 503, 2);
    let tmp = tempfile::tempdir().unwrap();
    let j = job();
    let file = file_of(tmp.path(), &bytes(50_000, 5));
    let stored = stage(Arc::new(supabase(&api)))
        .store(
            &StageJob::from(&j),
            &source(),
            &file,
            &info(),
            &ctx(tmp.path(), &j),
        )
        .await
        .unwrap();
    assert!(api.object("videos", &stored.object_key).is_some());
    // Still down after the retries: the attempt fails as transient.
    api.fail_next("/object/videos/", 500, 10);
    let e = stage(Arc::new(supabase(&api)))
        .store(
            &StageJob::from(&j),
            &source(),
            &file,
            &info(),
            &ctx(tmp.path(), &j),
        )
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
}

#[tokio::test]
async fn a_hanging_store_times_the_upload_out_and_the_retry_succeeds() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    let tmp = tempfile::tempdir().unwrap();
    let j = job();
    let data = bytes(50_000, 6);
    let file = file_of(tmp.path(), &data);
    let mut store = supabase(&api);
    store.upload_timeout = std::time::Duration::from_millis(500);
    // The first upload hangs for an hour: only the timeout, cutting it off for a second try,
    // finishes the store within the guard.
    api.hang_next("/object/videos/", std::time::Duration::from_secs(3600), 1);
    let stage = stage(Arc::new(store));
    let stored = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        stage.store(
            &StageJob::from(&j),
            &source(),
            &file,
            &info(),
            &ctx(tmp.path(), &j),
        ),
    )
    .await
    .expect("the hanging upload was not cut off")
    .unwrap();
    assert_eq!(api.object("videos", &stored.object_key).unwrap().0, data);
}

#[tokio::test]
async fn storage_errors_are_typed() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, Some(10_000), Some(vec!["image/*".into()]));
    let tmp = tempfile::tempdir().unwrap();
    let file = file_of(tmp.path(), &bytes(5_000, 6));
    let metadata = BTreeMap::new();
    let put = |s: SupabaseStorage, content_type: &'static str| {
        let file = file.clone();
        let metadata = metadata.clone();
        async move {
            s.put(&PutRequest {
                key: "k.mp4",
                file: &file,
                content_type,
                cache_control: "max-age=3600",
                metadata: &metadata,
            })
            .await
        }
    };
    let e = put(supabase(&api), "video/mp4").await.unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("invalid-mime-type", ErrorClass::Permanent),
        "{e}"
    );
    let missing =
        SupabaseStorage::new(&api.url.parse().unwrap(), Secret::new(SERVICE_KEY), "nope").unwrap();
    let e = put(missing, "image/png").await.unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("no-such-bucket", ErrorClass::Permanent),
        "{e}"
    );
    // The project's own publishable key: past the gateway, refused by row-level security.
    let anon = SupabaseStorage::new(
        &api.url.parse().unwrap(),
        Secret::new(fakes::postgrest::PUBLISHABLE_KEY),
        "videos",
    )
    .unwrap();
    let e = put(anon, "image/png").await.unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("storage-access-denied", ErrorClass::Permanent),
        "{e}"
    );
    // A secret key the project never issued: the gateway's 401, before storage-api, is a
    // refusal for good that names the setting, never a failure to retry.
    let stranger = SupabaseStorage::new(
        &api.url.parse().unwrap(),
        Secret::new("sb_secret_of_another_project_0123"),
        "videos",
    )
    .unwrap();
    let e = put(stranger, "image/png").await.unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("storage-access-denied", ErrorClass::Permanent),
        "{e}"
    );
    assert!(e.message.contains("Invalid API key"), "{e}");
    assert!(e.message.contains("SUPABASE_SERVICE_ROLE_KEY"), "{e}");
    assert!(!e.message.contains("sb_secret_of_another"), "{e}");
    let big = file_of(tmp.path(), &bytes(20_000, 7));
    let e = supabase(&api)
        .put(&PutRequest {
            key: "big.png",
            file: &big,
            content_type: "image/png",
            cache_control: "max-age=3600",
            metadata: &metadata,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("entity-too-large", ErrorClass::Permanent),
        "{e}"
    );
    assert_eq!(supabase(&api).head("absent.mp4").await.unwrap(), None);
}

#[tokio::test]
async fn signed_urls_download_without_a_key_until_they_expire() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    let tmp = tempfile::tempdir().unwrap();
    let data = bytes(30_000, 8);
    let file = file_of(tmp.path(), &data);
    let s = supabase(&api);
    let meta = BTreeMap::new();
    s.put(&PutRequest {
        key: "a/b.mp4",
        file: &file,
        content_type: "video/mp4",
        cache_control: "max-age=3600",
        metadata: &meta,
    })
    .await
    .unwrap();
    let url = s
        .signed_url("a/b.mp4", std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(
        url.starts_with(&format!(
            "{}/storage/v1/object/sign/videos/a/b.mp4?token=",
            api.url
        )),
        "{url}"
    );
    let got = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), data);
    api.expire_signed_urls();
    let expired = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(expired.status(), 400);
    let e = s
        .signed_url("absent.mp4", std::time::Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    let local = LocalFolder::new(tmp.path(), "videos");
    assert_eq!(
        local
            .signed_url("a", std::time::Duration::from_secs(1))
            .await
            .unwrap_err()
            .code,
        "no-signed-urls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_retried_after_an_upload_failure_leaves_exactly_one_object() {
    use douyin_worker::queue::EnqueueRequest;
    use douyin_worker::worker::Worker;

    use fakes::douyin::{Behaviour, DouyinServer, video_post};

    let douyin = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let api = StorageApi::start().await;
    api.create_bucket("videos", true, None, None);
    // The store fails every upload of the first attempt (3 tries within it).
    api.fail_next("/object/videos/", 503, 3);
    let pipeline =
        crate::rows::worker::pipeline_storing_with(&douyin, stage(Arc::new(supabase(&api))));
    let b = crate::support::backends::Backend::new(crate::support::backends::Kind::Sqlite).await;
    let id = b
        .enqueue_with(EnqueueRequest {
            url: Some(format!("https://www.douyin.com/video/{ID}")),
            ..Default::default()
        })
        .await;
    let tmp = tempfile::tempdir().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = Worker::new(
        b.queue.clone(),
        Arc::new(pipeline),
        crate::worker::options("w1", tmp.path().into()),
    );
    let run = tokio::spawn(worker.run(stop.clone()));
    let rec = crate::support::backends::wait_for_status(
        b.queue.as_ref(),
        id,
        &["completed", "failed"],
        std::time::Duration::from_secs(30),
    )
    .await;
    stop.cancel();
    let summary = run.await.unwrap();
    assert_eq!(rec.status, "completed", "{rec:?}");
    assert_eq!(
        rec.attempts, 2,
        "the first attempt failed on the upload: {rec:?}"
    );
    assert_eq!(summary.retried, 1);
    assert_eq!(api.object_count("videos"), 1);
    let (stored, ..) = api.object("videos", &format!("{ID}/{ID}.mp4")).unwrap();
    assert_eq!(&stored[4..8], b"ftyp");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "no temp files left"
    );
}

#[tokio::test]
async fn local_objects_honour_the_umask_not_the_download_s_private_mode() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("videos");
    let stage = stage(Arc::new(LocalFolder::new(&root, "videos")));
    let j = job();
    let file = file_of(tmp.path(), &bytes(10_000, 3));
    // The download is owner-only, as the downloader writes it.
    std::fs::set_permissions(&file.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let object = root.join(format!("{ID}/{ID}.mp4"));
    // Each test runs in its own process (nextest), so the umask is this test's to set.
    for (umask, expected) in [(0o022, 0o644), (0o027, 0o640)] {
        let before = unsafe { libc::umask(umask) };
        let stored = store_in(&stage, &j, &file, tmp.path()).await;
        unsafe { libc::umask(before) };
        stored.unwrap();
        assert_eq!(mode(&object), expected, "umask {umask:o}");
    }
    assert_eq!(mode(&file.path), 0o600, "the download stays private");
}
