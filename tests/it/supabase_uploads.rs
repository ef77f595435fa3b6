//! Supabase Storage as projects are really configured (the emulator built from the
//! storage-api contract, with a global upload limit as every server has): the bucket created
//! within the project's upload limit, files above a limit refused before any byte is sent
//! with a message naming the limit and `MAX_VIDEO_BYTES`, and TUS uploads terminated on every
//! path that gives them up (a failure for good, chunks that keep failing, a dropped future).

use std::collections::BTreeMap;
use std::time::Duration;

use douyin_worker::config::{BucketSpec, Secret};
use douyin_worker::error::ErrorClass;
use douyin_worker::stage::DownloadedFile;
use douyin_worker::storage::supabase::{SupabaseStorage, UploadLimits};
use douyin_worker::storage::{BucketOutcome, ObjectBackend, PutRequest, StorageError};

use crate::storage::file_of;
use fakes::cdn::bytes;
use fakes::storage_api::{FREE_PLAN_UPLOAD_SIZE_LIMIT, SERVICE_KEY, StorageApi};

const MIB: usize = 1024 * 1024;
const TUS_PATH: &str = "/storage/v1/upload/resumable";

fn store(api: &StorageApi) -> SupabaseStorage {
    SupabaseStorage::new(
        &api.url.parse().unwrap(),
        Secret::new(SERVICE_KEY),
        "videos",
    )
    .unwrap()
}

async fn put(s: &SupabaseStorage, file: &DownloadedFile) -> Result<(), StorageError> {
    let metadata = BTreeMap::new();
    s.put(&PutRequest {
        key: "74/74.mp4",
        file,
        content_type: "video/mp4",
        cache_control: "max-age=3600",
        metadata: &metadata,
    })
    .await
    .map(drop)
}

/// A permanent size refusal whose message holds each of `parts`.
fn assert_too_large(e: &StorageError, parts: &[String]) {
    assert_eq!(
        (e.code, e.class),
        ("entity-too-large", ErrorClass::Permanent),
        "{e}"
    );
    for part in parts {
        assert!(e.message.contains(part), "{part:?} in {e}");
    }
}

/// Requests that send the file: a standard upload or a TUS creation.
fn uploads(api: &StorageApi) -> Vec<(String, String)> {
    api.requests()
        .into_iter()
        .filter(|(m, p)| {
            (m == "POST" && (p.starts_with("/storage/v1/object/videos/") || p == TUS_PATH))
                || m == "PATCH"
        })
        .collect()
}

fn spec(limit: Option<u64>) -> BucketSpec {
    BucketSpec {
        public: true,
        file_size_limit: limit,
        allowed_mime_types: vec!["video/mp4".into()],
    }
}

#[tokio::test]
async fn a_bucket_limit_above_the_projects_upload_limit_gives_way_to_the_projects() {
    let api = StorageApi::start().await;
    api.set_upload_size_limit(Some(FREE_PLAN_UPLOAD_SIZE_LIMIT));
    let s = store(&api);
    // MAX_VIDEO_BYTES, the default limit, on a Free-plan project.
    let outcome = s.ensure_bucket(&spec(Some(2_147_483_648))).await.unwrap();
    assert_eq!(outcome, BucketOutcome::Created);
    let row = api.bucket("videos").unwrap();
    assert_eq!(row["file_size_limit"], serde_json::Value::Null, "{row}");
    assert_eq!(row["public"], true, "{row}");
    assert_eq!(row["allowed_mime_types"], serde_json::json!(["video/mp4"]));
    let creations = api
        .requests()
        .iter()
        .filter(|(m, p)| m == "POST" && p == "/storage/v1/bucket")
        .count();
    assert_eq!(creations, 2, "refused with the limit, then created without");
    assert_eq!(
        s.upload_limits().await,
        UploadLimits {
            bucket: None,
            project: Some(FREE_PLAN_UPLOAD_SIZE_LIMIT)
        }
    );
    assert_eq!(
        s.ensure_bucket(&spec(Some(2_147_483_648))).await.unwrap(),
        BucketOutcome::Exists
    );

    // A limit within the project's is kept.
    let api = StorageApi::start().await;
    api.set_upload_size_limit(Some(FREE_PLAN_UPLOAD_SIZE_LIMIT));
    store(&api)
        .ensure_bucket(&spec(Some(10_000_000)))
        .await
        .unwrap();
    assert_eq!(api.bucket("videos").unwrap()["file_size_limit"], 10_000_000);
}

#[tokio::test]
async fn a_file_above_the_buckets_limit_is_refused_before_it_is_sent() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, Some(1_000_000), None);
    let tmp = tempfile::tempdir().unwrap();
    for size in [2_000_000, 7 * MIB] {
        let e = put(&store(&api), &file_of(tmp.path(), &bytes(size, 1)))
            .await
            .unwrap_err();
        assert_too_large(
            &e,
            &[
                format!("the file is {size} bytes"),
                "file size limit of bucket videos (1000000 bytes)".into(),
                "MAX_VIDEO_BYTES to at most 1000000".into(),
            ],
        );
    }
    assert_eq!(uploads(&api), Vec::<(String, String)>::new());
    // At the limit it goes.
    put(&store(&api), &file_of(tmp.path(), &bytes(1_000_000, 2)))
        .await
        .unwrap();
    assert_eq!(api.object_count("videos"), 1);
}

#[tokio::test]
async fn a_file_above_the_projects_upload_limit_is_refused_before_it_is_sent() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    api.set_upload_size_limit(Some(3 * MIB as u64));
    let tmp = tempfile::tempdir().unwrap();
    let e = put(&store(&api), &file_of(tmp.path(), &bytes(7 * MIB, 1)))
        .await
        .unwrap_err();
    assert_too_large(
        &e,
        &[
            "the project's upload limit of 3145728 bytes".into(),
            "Upload file size limit".into(),
            "MAX_VIDEO_BYTES to at most 3145728".into(),
        ],
    );
    assert_eq!(uploads(&api), Vec::<(String, String)>::new());
    // A bucket limit below the project's is the one named.
    api.create_bucket("videos", false, Some(2 * MIB as u64), None);
    let e = put(&store(&api), &file_of(tmp.path(), &bytes(7 * MIB, 1)))
        .await
        .unwrap_err();
    assert!(e.message.contains("bucket videos (2097152 bytes)"), "{e}");
}

#[tokio::test]
async fn an_upload_refused_for_its_size_names_the_limits_and_max_video_bytes() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    let tmp = tempfile::tempdir().unwrap();
    let s = store(&api);
    // The limits were learnt before the project's limit was lowered.
    assert_eq!(s.upload_limits().await.project, Some(524_288_000));
    api.set_upload_size_limit(Some(MIB as u64));
    for size in [2 * MIB, 7 * MIB] {
        let e = put(&s, &file_of(tmp.path(), &bytes(size, 3)))
            .await
            .unwrap_err();
        assert_too_large(
            &e,
            &[
                format!("the file ({size} bytes)"),
                "the project's upload limit".into(),
                "MAX_VIDEO_BYTES".into(),
            ],
        );
    }
    assert_eq!(api.object_count("videos"), 0);
    assert_eq!(api.open_uploads(), 0);
}

/// The `DELETE`s the emulator received on TUS upload URLs.
fn terminations(api: &StorageApi) -> usize {
    api.requests()
        .iter()
        .filter(|(m, p)| m == "DELETE" && p.starts_with(&format!("{TUS_PATH}/")))
        .count()
}

#[tokio::test]
async fn a_tus_upload_that_fails_for_good_is_terminated() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    let tmp = tempfile::tempdir().unwrap();
    let file = file_of(tmp.path(), &bytes(13 * MIB, 4));
    // The first chunk is refused for good.
    api.fail_next(&format!("{TUS_PATH}/"), 415, 1);
    let put_task = {
        let s = store(&api);
        tokio::spawn(async move { put(&s, &file).await })
    };
    let e = put_task.await.unwrap().unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert_eq!(terminations(&api), 1, "{:?}", api.requests());
    assert_eq!(api.open_uploads(), 0);
    assert_eq!(api.object_count("videos"), 0);
}

#[tokio::test]
async fn a_tus_upload_whose_chunks_keep_failing_is_terminated() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    let tmp = tempfile::tempdir().unwrap();
    let file = file_of(tmp.path(), &bytes(7 * MIB, 5));
    let mut s = store(&api);
    s.chunk_attempts = 1;
    // The chunk fails as many times as it may; the DELETE after it goes through.
    api.fail_next(&format!("{TUS_PATH}/"), 503, 1);
    let e = put(&s, &file).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    assert_eq!(terminations(&api), 1, "{:?}", api.requests());
    assert_eq!(api.open_uploads(), 0);
}

#[tokio::test]
async fn a_tus_upload_dropped_mid_chunk_is_terminated_before_drain_returns() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    let tmp = tempfile::tempdir().unwrap();
    let file = file_of(tmp.path(), &bytes(13 * MIB, 6));
    let s = store(&api);
    // The first chunk gets no answer: the job is cancelled meanwhile.
    api.hang_next(&format!("{TUS_PATH}/"), Duration::from_secs(60), 1);
    let put_task = {
        let s = s.clone();
        let file = file.clone();
        tokio::spawn(async move { put(&s, &file).await })
    };
    while !api.requests().iter().any(|(m, _)| m == "PATCH") {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(api.open_uploads(), 1);
    put_task.abort();
    assert!(put_task.await.unwrap_err().is_cancelled());
    s.drain().await;
    assert_eq!(terminations(&api), 1, "{:?}", api.requests());
    assert_eq!(api.open_uploads(), 0);
    assert_eq!(api.object_count("videos"), 0);
}

/// A gateway in front of the emulator that answers TUS `Location`s on a host the client
/// cannot reach (a self-hosted server that builds them from its own address): `127.0.0.1:1`.
async fn gateway_with_unreachable_locations(
    api: &StorageApi,
) -> (String, tokio::task::JoinHandle<()>) {
    use axum::body::Body;
    use axum::extract::Request;
    let upstream = api.url.clone();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let app = axum::Router::new().fallback(move |req: Request| {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            let path = req.uri().path().to_string();
            let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
            let mut out = client.request(method, format!("{upstream}{path}"));
            for (name, value) in req.headers().iter().filter(|(n, _)| *n != "host") {
                out = out.header(name.as_str(), value.as_bytes());
            }
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap();
            let answer = out.body(body).send().await.unwrap();
            let mut response = axum::response::Response::builder().status(answer.status().as_u16());
            for (name, value) in answer.headers() {
                let value = value
                    .to_str()
                    .unwrap()
                    .replace(&upstream, "http://127.0.0.1:1");
                response = response.header(name.as_str(), value);
            }
            response
                .body(Body::from(answer.bytes().await.unwrap()))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (
        url,
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }),
    )
}

#[tokio::test]
async fn a_tus_upload_at_an_unreachable_location_is_terminated_through_the_storage_root() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    let (url, gateway) = gateway_with_unreachable_locations(&api).await;
    let tmp = tempfile::tempdir().unwrap();
    let file = file_of(tmp.path(), &bytes(7 * MIB, 7));
    let s =
        SupabaseStorage::new(&url.parse().unwrap(), Secret::new(SERVICE_KEY), "videos").unwrap();
    let e = put(&s, &file).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    assert!(e.message.contains("cannot connect"), "{e}");
    assert_eq!(terminations(&api), 1, "{:?}", api.requests());
    assert_eq!(api.open_uploads(), 0);
    gateway.abort();
}

#[tokio::test]
async fn every_tus_request_carries_x_upsert_and_both_auth_headers() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    let tmp = tempfile::tempdir().unwrap();
    let file = file_of(tmp.path(), &bytes(7 * MIB, 6));
    // A chunk cut off mid-body: the worker asks where to resume (HEAD) and goes on.
    api.interrupt_next_patch(MIB as u64);
    put(&store(&api), &file).await.unwrap();
    let tus: Vec<_> = api
        .requests_with_headers()
        .into_iter()
        .filter(|(m, path, _)| path.starts_with(TUS_PATH) && m != "OPTIONS")
        .collect();
    for method in ["POST", "PATCH", "HEAD"] {
        assert!(
            tus.iter().any(|(m, _, _)| m == method),
            "no {method}: {:?}",
            api.requests()
        );
    }
    let bearer = format!("Bearer {SERVICE_KEY}");
    for (method, path, headers) in &tus {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-upsert"), Some("true"), "{method} {path}");
        assert_eq!(get("apikey"), Some(SERVICE_KEY), "{method} {path}");
        assert_eq!(
            get("authorization"),
            Some(bearer.as_str()),
            "{method} {path}"
        );
    }
}

/// Contract §7: "Upload URLs expire after `TUS_URL_EXPIRY_MS` (default 1 h)" from their
/// creation. A chunk that reaches the server after that is answered 410: the upload's bytes
/// are gone, so the try fails at once (`tus-upload-expired`, transient, naming the lifetime),
/// without asking the dead URL where to resume or terminating it, and the next try starts a
/// new upload from byte 0.
#[tokio::test]
async fn an_upload_whose_url_expired_is_not_resumed_and_the_next_try_starts_over() {
    let api = StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    api.set_tus_url_lifetime(Duration::from_secs(1));
    // The first chunk reaches the server after the URL's lifetime.
    api.hang_next(&format!("{TUS_PATH}/"), Duration::from_millis(1500), 1);
    let tmp = tempfile::tempdir().unwrap();
    let data = bytes(7 * MIB, 8);
    let file = file_of(tmp.path(), &data);
    let e = put(&store(&api), &file).await.unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("tus-upload-expired", ErrorClass::Transient),
        "{e}"
    );
    assert!(e.message.contains("TUS_URL_EXPIRY_MS"), "{e}");
    let methods: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|(m, p)| p.starts_with(TUS_PATH) && m != "OPTIONS")
        .map(|(m, _)| m)
        .collect();
    assert_eq!(
        methods,
        ["POST", "PATCH"],
        "no HEAD, no DELETE on the dead URL"
    );
    assert_eq!(api.open_uploads(), 0);
    assert_eq!(api.object_count("videos"), 0);

    api.set_tus_url_lifetime(fakes::storage_api::DEFAULT_TUS_URL_LIFETIME);
    put(&store(&api), &file).await.unwrap();
    let (stored, ..) = api.object("videos", "74/74.mp4").unwrap();
    assert!(stored == data, "the new upload holds the whole file");
    assert_eq!(api.open_uploads(), 0);
}
