//! `?proxy=true` serves byte ranges (206) from every store that can read part of an object:
//! the local folder, an S3 server (s3s-fs) and Supabase Storage (the emulator), so a
//! `<video>` element can seek.

use std::collections::BTreeMap;
use std::sync::Arc;

use douyin_worker::config::Secret;
use douyin_worker::http::ServerLimits;
use douyin_worker::queue::Queue;
use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::stage::DownloadedFile;
use douyin_worker::storage::local::LocalFolder;
use douyin_worker::storage::supabase::SupabaseStorage;
use douyin_worker::storage::{ObjectBackend, PutRequest};
use sha2::Digest;

use crate::api::{api_options, insert_video, mark_stored, serve_with};
use fakes::pg::fresh_pg;

const KEY: &str = "7400000000000000201/7400000000000000201.mp4";

/// Bytes that differ at every offset (so a wrong range shows).
fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 251) as u8)
        .collect()
}

async fn put(store: &dyn ObjectBackend, data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("media.part");
    std::fs::write(&path, data).unwrap();
    let file = DownloadedFile {
        path,
        size: data.len() as u64,
        sha256: format!("{:x}", sha2::Sha256::digest(data)),
    };
    store
        .put(&PutRequest {
            key: KEY,
            file: &file,
            content_type: "video/mp4",
            cache_control: "max-age=3600",
            metadata: &BTreeMap::new(),
        })
        .await
        .unwrap();
}

/// Serves the stored file from `store` and checks every kind of range against `data`.
async fn check_ranges(store: Arc<dyn ObjectBackend>, data: &[u8], which: &str) {
    let db = fresh_pg().await;
    let queue: Arc<dyn Queue> = Arc::new(PgQueue::from_pool(db.pool.clone()));
    let video = insert_video(&db.pool, "7400000000000000201").await;
    let unused = tempfile::tempdir().unwrap();
    mark_stored(&db.pool, unused.path(), video, KEY, None).await;
    sqlx::query("update public.videos set filesize = $2 where id = $1")
        .bind(video)
        .bind(data.len() as i64)
        .execute(&db.pool)
        .await
        .unwrap();
    let server = serve_with(queue, store, api_options(&[]), ServerLimits::default()).await;
    let link = format!("{}/api/videos/{video}/download?proxy=true", server.base);
    let client = reqwest::Client::new();
    let len = data.len();
    let ranged = |range: &'static str| client.get(&link).header("range", range).send();

    let whole = client.get(&link).send().await.unwrap();
    assert_eq!(whole.status(), 200, "{which}");
    assert_eq!(whole.headers()["accept-ranges"], "bytes", "{which}");
    assert_eq!(whole.bytes().await.unwrap().as_ref(), data, "{which}");

    for (range, start, end) in [
        ("bytes=100-199", 100, 199),
        ("bytes=-10", len - 10, len - 1),
        ("bytes=65000-", 65_000, len - 1),
        ("bytes=5-999999999", 5, len - 1),
    ] {
        let r = ranged(range).await.unwrap();
        assert_eq!(r.status(), 206, "{which} {range}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes {start}-{end}/{len}").as_str(),
            "{which} {range}"
        );
        assert_eq!(
            r.headers()["content-length"],
            (end - start + 1).to_string().as_str()
        );
        assert_eq!(r.headers()["content-type"], "video/mp4", "{which}");
        let got = r.bytes().await.unwrap();
        assert!(
            got.as_ref() == &data[start..=end],
            "{which} {range}: wrong bytes"
        );
    }

    let r = ranged("bytes=999999-").await.unwrap();
    assert_eq!(r.status(), 416, "{which}");
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{len}").as_str()
    );
    // Several ranges: the whole file, as HTTP allows.
    let r = ranged("bytes=0-1,5-6").await.unwrap();
    assert_eq!(r.status(), 200, "{which}");
    assert_eq!(r.bytes().await.unwrap().len(), len);
}

#[tokio::test]
async fn ranges_from_the_local_folder() {
    let data = content(100_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFolder::new(dir.path(), "videos"));
    put(store.as_ref(), &data).await;
    check_ranges(store, &data, "local").await;
}

#[tokio::test]
async fn ranges_from_an_s3_store() {
    let data = content(100_000);
    let server = fakes::servers::S3Server::start("videos");
    let store = Arc::new(server.store("videos", "test-secret-key"));
    put(store.as_ref(), &data).await;
    check_ranges(store, &data, "s3").await;
}

#[tokio::test]
async fn ranges_from_supabase_storage() {
    let data = content(100_000);
    let api = fakes::storage_api::StorageApi::start().await;
    api.create_bucket("videos", false, None, None);
    let store = Arc::new(
        SupabaseStorage::new(
            &api.url.parse().unwrap(),
            Secret::new(fakes::storage_api::SERVICE_KEY),
            "videos",
        )
        .unwrap(),
    );
    put(store.as_ref(), &data).await;
    check_ranges(store, &data, "supabase").await;
}
