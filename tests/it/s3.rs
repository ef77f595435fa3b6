//! S3-compatible storage through `object_store` against a real S3 server on loopback:
//! s3s-fs, installed by scripts/test.sh, which checks SigV4 signatures.

use std::collections::BTreeMap;
use std::time::Duration;

use douyin_worker::error::ErrorClass;
use douyin_worker::stage::DownloadedFile;
use douyin_worker::storage::cloud::s3_from_builder;
use douyin_worker::storage::object::S3Store;
use douyin_worker::storage::{ObjectBackend, PutRequest};
use fakes::servers::{S3_ACCESS, S3_SECRET, S3Server};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{Attribute, ObjectStoreExt};
use sha2::Digest;

use fakes::cdn::bytes;

fn file_of(dir: &std::path::Path, data: &[u8]) -> DownloadedFile {
    let path = dir.join("media.part");
    std::fs::write(&path, data).unwrap();
    DownloadedFile {
        path,
        size: data.len() as u64,
        sha256: format!("{:x}", sha2::Sha256::digest(data)),
    }
}

#[tokio::test]
async fn multipart_uploads_of_large_files_arrive_whole_with_their_attributes() {
    let server = S3Server::start("videos");
    let s3 = server.store("videos", S3_SECRET);
    assert_eq!(
        s3.ensure_bucket(&Default::default()).await.unwrap(),
        douyin_worker::storage::BucketOutcome::Exists
    );
    let tmp = tempfile::tempdir().unwrap();
    for (key, len) in [
        ("small/a.mp4", 300_000usize),
        ("large/b.mp4", 20 * 1024 * 1024 + 7),
    ] {
        let data = bytes(len, len as u64);
        let file = file_of(tmp.path(), &data);
        let meta = BTreeMap::from([("douyin_id".to_string(), "7412345678901234567".to_string())]);
        s3.put(&PutRequest {
            key,
            file: &file,
            content_type: "video/mp4",
            cache_control: "max-age=3600",
            metadata: &meta,
        })
        .await
        .unwrap();
        let head = s3.head(key).await.unwrap().expect("stored");
        assert_eq!(head.size, len as u64);
        if len > douyin_worker::storage::object::PART_SIZE {
            assert!(
                head.etag.as_deref().is_some_and(|t| t.ends_with("-3")),
                "{head:?}"
            );
        }
        // Read it back through a plain client.
        let raw = AmazonS3Builder::new()
            .with_endpoint(&server.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name("videos")
            .with_access_key_id(S3_ACCESS)
            .with_secret_access_key(S3_SECRET)
            .build()
            .unwrap();
        let got = raw.get(&StorePath::from(key)).await.unwrap();
        let attrs = got.attributes.clone();
        let body = got.bytes().await.unwrap();
        assert!(body.as_ref() == data.as_slice(), "{key} differs");
        assert_eq!(
            attrs.get(&Attribute::ContentType).map(|v| v.as_ref()),
            Some("video/mp4")
        );
    }
    assert_eq!(s3.head("absent.mp4").await.unwrap(), None);
}

#[tokio::test]
async fn a_wrong_secret_is_a_permanent_error_that_says_what_to_check() {
    let server = S3Server::start("videos");
    let s3 = server.store("videos", "not-the-secret");
    let tmp = tempfile::tempdir().unwrap();
    let file = file_of(tmp.path(), &bytes(1000, 1));
    let meta = BTreeMap::new();
    let e = s3
        .put(&PutRequest {
            key: "x.mp4",
            file: &file,
            content_type: "video/mp4",
            cache_control: "max-age=3600",
            metadata: &meta,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("storage-access-denied", ErrorClass::Permanent),
        "{e}"
    );
    assert!(e.message.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
}

/// What a worker process needs to store into the bucket `videos` of `server`.
pub(crate) fn binary_env(server: &S3Server) -> [(&'static str, &str); 7] {
    [
        ("STORAGE_URL", "s3://videos"),
        ("AWS_ENDPOINT", &server.endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
        ("AWS_ACCESS_KEY_ID", S3_ACCESS),
        ("AWS_SECRET_ACCESS_KEY", S3_SECRET),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_storage_url_the_binary_stores_jobs_in_the_s3_bucket() {
    use fakes::douyin::{Behaviour, DouyinServer, video_post};
    const ID: &str = "7412345678901234567";
    // The `videos` bucket does not exist yet: the binary creates it at start-up.
    let server = S3Server::start("other");
    let douyin = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let data = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("DOUYIN_UPSTREAM", &douyin.url),
    ];
    env.extend(binary_env(&server));
    let bin = crate::cli::RunningBinary::start(&env);
    let rec = crate::support::backends::queue_and_complete(data.path(), ID).await;
    let (code, lines) = bin.stop();
    assert_eq!(code, Some(0));
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains(S3_SECRET), "the secret leaked");
    let key = format!("{ID}/{ID}.mp4");
    assert_eq!(rec.video_object_key.as_deref(), Some(key.as_str()));
    let head = server
        .store("videos", S3_SECRET)
        .head(&key)
        .await
        .unwrap()
        .expect("in the bucket");
    assert!(head.size > 1000);
}

#[tokio::test]
async fn a_missing_bucket_is_created_once_in_its_region() {
    let server = S3Server::start("videos");
    let tmp = tempfile::tempdir().unwrap();
    let public = douyin_worker::storage::BucketSpec {
        public: true,
        ..Default::default()
    };
    for (bucket, region) in [("fresh", "us-east-1"), ("paris", "eu-west-3")] {
        let s3 = server.store_in(bucket, S3_SECRET, region);
        // Before: a missing bucket, not an empty one.
        assert_eq!(
            s3.list("").await.unwrap_err().code,
            "no-such-bucket",
            "{bucket}"
        );
        assert_eq!(
            s3.ensure_bucket(&public).await.unwrap(),
            douyin_worker::storage::BucketOutcome::Created,
            "{bucket}"
        );
        assert_eq!(
            s3.ensure_bucket(&public).await.unwrap(),
            douyin_worker::storage::BucketOutcome::Exists,
            "{bucket}"
        );
        let data = bytes(2000, 5);
        crate::storage_admin::put(&s3, tmp.path(), "a/a.mp4", &data, "video/mp4").await;
        let listed = s3.list("").await.unwrap();
        assert_eq!(listed.len(), 1, "{bucket}: {listed:?}");
    }
    // A wrong secret creates nothing and says which settings to check.
    let bad = server.store_in("other", "not-the-secret", "us-east-1");
    let e = bad.ensure_bucket(&public).await.unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("storage-access-denied", ErrorClass::Permanent),
        "{e}"
    );
    assert!(e.message.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    assert!(!e.message.contains("not-the-secret"), "{e}");
    assert_eq!(
        server
            .store("other", S3_SECRET)
            .list("")
            .await
            .unwrap_err()
            .code,
        "no-such-bucket"
    );
}

#[tokio::test]
async fn s3_store_lists_opens_and_deletes() {
    let server = S3Server::start("videos");
    crate::storage_admin::exercise(&server.store("videos", S3_SECRET)).await;
}

#[tokio::test]
async fn s3_signed_urls_download_with_a_plain_get_and_no_credentials() {
    let server = S3Server::start("videos");
    let s3 = server.store("videos", S3_SECRET);
    let tmp = tempfile::tempdir().unwrap();
    let data = bytes(500_000, 9);
    crate::storage_admin::put(&s3, tmp.path(), "7412/7412.mp4", &data, "video/mp4").await;
    let url = s3
        .signed_url("7412/7412.mp4", Duration::from_secs(600))
        .await
        .unwrap();
    assert!(url.starts_with(&server.endpoint), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(!url.contains(S3_SECRET), "the secret leaked into the URL");
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("video/mp4")
    );
    let body = got.bytes().await.unwrap();
    assert!(
        body.as_ref() == data.as_slice(),
        "the signed URL's bytes differ"
    );

    // The signature covers the key: another key with the same query is refused.
    let other = url.replacen("7412/7412.mp4", "7412/other.mp4", 1);
    assert_eq!(reqwest::get(&other).await.unwrap().status(), 403);
    // Signing makes no request: a missing object's URL answers 404.
    let missing = s3
        .signed_url("absent.mp4", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(reqwest::get(&missing).await.unwrap().status(), 404);
    // A store that is not S3 cannot sign.
    let plain = AmazonS3Builder::new()
        .with_endpoint(&server.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name("videos")
        .with_access_key_id(S3_ACCESS)
        .with_secret_access_key(S3_SECRET)
        .build()
        .unwrap();
    let unsigned = S3Store::new(std::sync::Arc::new(plain), "videos");
    assert_eq!(
        unsigned
            .signed_url("7412/7412.mp4", Duration::from_secs(60))
            .await
            .unwrap_err()
            .code,
        "no-signed-urls"
    );
}

#[tokio::test]
async fn s3_operation_errors_are_classified_without_the_secret() {
    let server = S3Server::start("videos");
    let bad = server.store("videos", "not-the-secret");
    for e in [
        bad.list("").await.unwrap_err(),
        bad.delete("a.mp4").await.unwrap_err(),
        bad.open("a.mp4").await.unwrap_err(),
    ] {
        assert_eq!(
            (e.code, e.class),
            ("storage-access-denied", ErrorClass::Permanent),
            "{e}"
        );
        assert!(!e.message.contains("not-the-secret"), "{e}");
    }
    let missing = server.store("no-such-bucket", S3_SECRET);
    let e = missing.list("").await.unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("no-such-bucket", ErrorClass::Permanent),
        "{e}"
    );
    // s3s-fs answers a GET in a missing bucket with NoSuchKey, so `open` sees a missing
    // object; AWS answers NoSuchBucket, which `open` reports as this permanent error.
    assert!(missing.open("a.mp4").await.unwrap().is_none());
    // Nothing listens there: transient.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name("videos")
        .with_access_key_id(S3_ACCESS)
        .with_secret_access_key(S3_SECRET)
        .with_retry(object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        });
    let (gone, bucket) = s3_from_builder(gone).unwrap();
    let gone = S3Store::amazon(gone, bucket);
    assert_eq!(
        gone.list("").await.unwrap_err().class,
        ErrorClass::Transient
    );
}

/// `/readyz` answers 200 while the store answers (README: "200 while the queue answers, the
/// store answers, ..."; "503 with a `reason` otherwise: ... `storage`"): the S3 server killed
/// under a running worker turns it to 503 `storage`, naming nothing else (no endpoint, no
/// error text), with the error in the log; the server back on its port turns it to 200 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_storage_while_the_s3_server_is_down_and_200_once_it_is_back() {
    let mut server = S3Server::start("videos");
    let data = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", fakes::servers::free_port());
    let mut env = binary_env(&server).to_vec();
    env.extend([
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("HTTP_ADDR", &addr),
    ]);
    let bin = crate::cli::RunningBinary::start(&env);
    let base = format!("http://{addr}");
    let body = crate::db_health::wait_for_readyz(&base, 200).await;
    assert_eq!(body["storage"], "s3", "{body}");

    server.stop();
    let body = crate::db_health::wait_for_readyz(&base, 503).await;
    assert_eq!(
        body,
        serde_json::json!({"status": "not_ready", "reason": "storage"}),
        "only the part that is not ready"
    );

    server.restart();
    let body = crate::db_health::wait_for_readyz(&base, 200).await;
    assert_eq!(body["status"], "ready", "{body}");
    let (code, lines) = bin.stop();
    assert_eq!(code, Some(0));
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("not ready: the store does not answer"))),
        "the log says why: {lines:?}"
    );
    assert!(!serde_json::to_string(&lines).unwrap().contains(S3_SECRET));
}
