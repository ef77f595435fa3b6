//! The storage operations `gc` and the download API use (`list`, `delete`, `open`,
//! `signed_url`), the same checks on every backend: the local folder (also what
//! `STORAGE_URL=file:///…` runs on), Supabase Storage (the emulator built from the storage-api
//! contract) and an S3 store (s3s-fs, a real S3 server on loopback).

use std::collections::BTreeMap;
use std::path::Path;

use douyin_worker::stage::DownloadedFile;
use douyin_worker::storage::local::LocalFolder;
use douyin_worker::storage::{ListedObject, ObjectBackend, ObjectStream, PutRequest};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use fakes::cdn::bytes;

/// The objects every backend stores: key, size, content type.
pub const OBJECTS: &[(&str, usize, &str)] = &[
    ("7412/7412.mp4", 300_000, "video/mp4"),
    ("7412/cover.jpg", 1_234, "image/jpeg"),
    ("7413/7413.mp4", 70_001, "video/mp4"),
    ("deep/a/b/c.m4a", 10, "audio/mp4"),
    ("top.webp", 1, "image/webp"),
];

/// Stores `data` under `key` through the backend.
pub async fn put(store: &dyn ObjectBackend, tmp: &Path, key: &str, data: &[u8], ct: &str) {
    let path = tmp.join(format!("upload-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, data).unwrap();
    let file = DownloadedFile {
        path: path.clone(),
        size: data.len() as u64,
        sha256: format!("{:x}", Sha256::digest(data)),
    };
    store
        .put(&PutRequest {
            key,
            file: &file,
            content_type: ct,
            cache_control: "max-age=3600",
            metadata: &BTreeMap::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
    std::fs::remove_file(path).unwrap();
}

/// The data stored under the `i`-th object of [`OBJECTS`].
fn data_of(i: usize) -> Vec<u8> {
    bytes(OBJECTS[i].1, 100 + i as u64)
}

fn sha(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// Reads an opened object to its end, counting chunks, without keeping it.
pub async fn drain(mut stream: ObjectStream) -> (String, u64, usize) {
    let mut hash = Sha256::new();
    let mut len = 0u64;
    let mut chunks = 0;
    while let Some(chunk) = stream.body.next().await {
        let chunk = chunk.unwrap();
        hash.update(&chunk);
        len += chunk.len() as u64;
        chunks += 1;
    }
    (format!("{:x}", hash.finalize()), len, chunks)
}

fn keys_and_sizes(mut listed: Vec<ListedObject>) -> Vec<(String, u64)> {
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    listed.into_iter().map(|o| (o.key, o.size)).collect()
}

fn expected(keys: &[&str]) -> Vec<(String, u64)> {
    let mut want: Vec<(String, u64)> = OBJECTS
        .iter()
        .filter(|(k, ..)| keys.contains(k))
        .map(|(k, n, _)| (k.to_string(), *n as u64))
        .collect();
    want.sort();
    want
}

/// The same checks on any backend: list (all, by folder, by partial name), open (bytes,
/// size, content type), delete (true, then false, then gone everywhere), bad keys refused.
pub async fn exercise(store: &dyn ObjectBackend) {
    let tmp = tempfile::tempdir().unwrap();
    let all: Vec<&str> = OBJECTS.iter().map(|(k, ..)| *k).collect();
    assert_eq!(store.list("").await.unwrap(), vec![], "empty at first");
    for (i, (key, _, ct)) in OBJECTS.iter().enumerate() {
        put(store, tmp.path(), key, &data_of(i), ct).await;
    }

    let listed = store.list("").await.unwrap();
    assert!(
        listed.iter().all(|o| o.last_modified.is_some()),
        "{listed:?}"
    );
    assert_eq!(keys_and_sizes(listed), expected(&all));
    let cases: &[(&str, &[&str])] = &[
        ("7412/", &["7412/7412.mp4", "7412/cover.jpg"]),
        ("7412", &["7412/7412.mp4", "7412/cover.jpg"]),
        ("741", &["7412/7412.mp4", "7412/cover.jpg", "7413/7413.mp4"]),
        ("7412/74", &["7412/7412.mp4"]),
        ("deep/a/", &["deep/a/b/c.m4a"]),
        ("deep/a/b/c.m4a", &["deep/a/b/c.m4a"]),
        ("top", &["top.webp"]),
        ("nothing/", &[]),
        ("7412/x", &[]),
    ];
    for (prefix, keys) in cases {
        assert_eq!(
            keys_and_sizes(store.list(prefix).await.unwrap()),
            expected(keys),
            "list({prefix:?})"
        );
    }

    for (i, (key, size, ct)) in OBJECTS.iter().enumerate() {
        let stream = store.open(key).await.unwrap().expect(key);
        assert_eq!(stream.size, Some(*size as u64), "{key}");
        assert_eq!(stream.content_type.as_deref(), Some(*ct), "{key}");
        let (digest, len, _) = drain(stream).await;
        assert_eq!((digest, len), (sha(&data_of(i)), *size as u64), "{key}");
    }
    assert!(store.open("7412/absent.mp4").await.unwrap().is_none());
    assert!(store.open("absent/absent.mp4").await.unwrap().is_none());

    assert!(store.delete("7412/cover.jpg").await.unwrap());
    assert!(!store.delete("7412/cover.jpg").await.unwrap());
    assert!(!store.delete("never/was.mp4").await.unwrap());
    assert_eq!(store.head("7412/cover.jpg").await.unwrap(), None);
    assert!(store.open("7412/cover.jpg").await.unwrap().is_none());
    let rest: Vec<&str> = all
        .iter()
        .copied()
        .filter(|k| *k != "7412/cover.jpg")
        .collect();
    assert_eq!(
        keys_and_sizes(store.list("").await.unwrap()),
        expected(&rest)
    );
    assert_eq!(
        keys_and_sizes(store.list("7412/").await.unwrap()),
        expected(&["7412/7412.mp4"])
    );
    for key in rest.iter().copied() {
        assert!(store.delete(key).await.unwrap(), "{key}");
    }
    assert_eq!(store.list("").await.unwrap(), vec![], "all gone");

    for bad in ["../x.mp4", "/etc/passwd", "a//b.mp4", ""] {
        let e = store.delete(bad).await.unwrap_err();
        assert_eq!(e.code, "bad-object-key", "delete({bad:?})");
        let e = store.open(bad).await.unwrap_err();
        assert_eq!(e.code, "bad-object-key", "open({bad:?})");
    }
    for bad in ["../", "/", "a/../b"] {
        let e = store.list(bad).await.unwrap_err();
        assert_eq!(e.code, "bad-object-key", "list({bad:?})");
    }
}

#[tokio::test]
async fn local_folder_lists_opens_and_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    exercise(&LocalFolder::new(tmp.path().join("videos"), "videos")).await;
}

#[tokio::test]
async fn a_file_url_store_lists_opens_and_deletes() {
    // STORAGE_URL=file:///PATH runs on the local folder at PATH.
    let tmp = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(tmp.path().join("store")).unwrap();
    assert_eq!(url.scheme(), "file");
    exercise(&LocalFolder::new(url.to_file_path().unwrap(), "videos")).await;
}

#[tokio::test]
async fn local_delete_prunes_empty_folders_up_to_the_root_and_not_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("videos");
    let store = LocalFolder::new(&root, "videos");
    put(&store, tmp.path(), "a/b/c.mp4", b"c", "video/mp4").await;
    put(&store, tmp.path(), "a/d.mp4", b"d", "video/mp4").await;
    put(&store, tmp.path(), "e.mp4", b"e", "video/mp4").await;
    assert!(root.join("a/b/c.mp4.meta.json").exists());

    assert!(store.delete("a/b/c.mp4").await.unwrap());
    assert!(!root.join("a/b").exists(), "a/b was left empty");
    assert!(root.join("a/d.mp4").exists());
    assert!(store.delete("a/d.mp4").await.unwrap());
    assert!(!root.join("a").exists());
    assert!(store.delete("e.mp4").await.unwrap());
    assert!(root.is_dir(), "the root stays");
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "sidecars gone"
    );
    assert!(tmp.path().is_dir());

    // A folder that holds something else is kept.
    put(&store, tmp.path(), "f/g.mp4", b"g", "video/mp4").await;
    std::fs::write(root.join("f/notes.txt.meta.json"), b"{}").unwrap();
    assert!(store.delete("f/g.mp4").await.unwrap());
    assert!(root.join("f").is_dir());
    // A folder is not an object.
    assert!(!store.delete("f").await.unwrap());
    assert!(store.open("f").await.unwrap().is_none());
}

#[tokio::test]
async fn local_list_reports_objects_only_and_stays_inside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("videos");
    let store = LocalFolder::new(&root, "videos");
    put(&store, tmp.path(), "7412/7412.mp4", b"video", "video/mp4").await;
    // An upload in progress (the name `put` gives its temporary file), an orphan sidecar,
    // a symbolic link to a file and one to a folder outside the root.
    std::fs::write(
        root.join(format!("7412/.{}.part", uuid::Uuid::new_v4().simple())),
        b"half",
    )
    .unwrap();
    std::fs::write(root.join("7412/gone.mp4.meta.json"), b"{}").unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.mp4"), b"secret").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.mp4"), root.join("link.mp4")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("linked")).unwrap();

    let listed = store.list("").await.unwrap();
    assert_eq!(keys_and_sizes(listed), vec![("7412/7412.mp4".into(), 5)]);
    assert_eq!(store.list("linked/").await.unwrap(), vec![]);
    assert_eq!(
        keys_and_sizes(store.list("7412/").await.unwrap()),
        vec![("7412/7412.mp4".into(), 5)]
    );
    assert_eq!(store.list("../").await.unwrap_err().code, "bad-object-key");
    for key in ["linked/secret.mp4", "link.mp4"] {
        assert!(store.open(key).await.unwrap().is_none(), "{key}");
        assert!(!store.delete(key).await.unwrap(), "{key}");
    }
    assert!(outside.join("secret.mp4").exists());
    assert!(root.join("link.mp4").is_symlink());

    // A listing of a store that was never written to is empty.
    let fresh = LocalFolder::new(tmp.path().join("never"), "videos");
    assert_eq!(fresh.list("").await.unwrap(), vec![]);
}

#[tokio::test]
async fn local_open_streams_in_chunks_with_the_uploaded_content_type() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("videos");
    let store = LocalFolder::new(&root, "videos");
    let data = bytes(1_000_000, 5);
    put(&store, tmp.path(), "x/clip.mp4", &data, "video/quicktime").await;
    let stream = store.open("x/clip.mp4").await.unwrap().unwrap();
    assert_eq!(stream.content_type.as_deref(), Some("video/quicktime"));
    let (digest, len, chunks) = drain(stream).await;
    assert_eq!((digest, len), (sha(&data), 1_000_000));
    assert!(chunks > 1, "read in chunks, not whole: {chunks}");

    // Without a sidecar the extension decides.
    for (name, ct) in [
        ("a.MP4", Some("video/mp4")),
        ("a.m4a", Some("audio/mp4")),
        ("a.jpeg", Some("image/jpeg")),
        ("a.jpg", Some("image/jpeg")),
        ("a.png", Some("image/png")),
        ("a.webp", Some("image/webp")),
        ("a.heic", Some("image/heic")),
        ("a.bin", None),
        ("noext", None),
    ] {
        std::fs::write(root.join(name), b"z").unwrap();
        let stream = store.open(name).await.unwrap().unwrap();
        assert_eq!(stream.content_type.as_deref(), ct, "{name}");
        assert_eq!(stream.size, Some(1));
    }
    // Signing stays unsupported: the API proxies instead.
    assert_eq!(
        store
            .signed_url("x/clip.mp4", std::time::Duration::from_secs(60))
            .await
            .unwrap_err()
            .code,
        "no-signed-urls"
    );
}

mod supabase {
    //! Supabase Storage through the emulator built from the storage-api contract.

    use douyin_worker::config::Secret;
    use douyin_worker::error::ErrorClass;
    use douyin_worker::storage::ObjectBackend;
    use douyin_worker::storage::supabase::SupabaseStorage;

    use super::{drain, exercise, put, sha};
    use fakes::cdn::bytes;
    use fakes::storage_api::{SERVICE_KEY, StorageApi};

    fn store(api: &StorageApi, key: &str) -> SupabaseStorage {
        SupabaseStorage::new(&api.url.parse().unwrap(), Secret::new(key), "videos").unwrap()
    }

    #[tokio::test]
    async fn supabase_storage_lists_opens_and_deletes() {
        let api = StorageApi::start().await;
        api.create_bucket("videos", false, None, None);
        exercise(&store(&api, SERVICE_KEY)).await;
        assert_eq!(api.object_count("videos"), 0);
        // Opened through the authenticated download route, deleted through the batch route.
        let paths: Vec<String> = api.requests().into_iter().map(|(_, p)| p).collect();
        assert!(
            paths
                .iter()
                .any(|p| p == "/storage/v1/object/authenticated/videos/7412/7412.mp4"),
            "{paths:?}"
        );
        assert!(paths.iter().any(|p| p == "/storage/v1/object/videos"));
    }

    #[tokio::test]
    async fn supabase_listing_walks_folders_page_by_page() {
        let api = StorageApi::start().await;
        api.create_bucket("videos", false, None, None);
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(&api, SERVICE_KEY);
        s.list_page_size = 2;
        let mut want = Vec::new();
        for i in 0..5 {
            for key in [
                format!("{i}/{i}.mp4"),
                format!("f/{i}.mp4"),
                format!("f/g/{i}.mp4"),
            ] {
                put(&s, tmp.path(), &key, &bytes(10 + i, i as u64), "video/mp4").await;
                want.push((key, 10 + i as u64));
            }
        }
        want.sort();
        let before = api.requests().len();
        let got: Vec<(String, u64)> = s
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        assert_eq!(got, want);
        let lists = api.requests()[before..]
            .iter()
            .filter(|(_, p)| p == "/storage/v1/object/list/videos")
            .count();
        // Root: 6 entries (0..4, f) in pages of 2 → 4 requests (the last one empty);
        // each of 0..4 → 1; f: 6 entries → 4; f/g: 5 → 3.
        assert_eq!(lists, 4 + 5 + 4 + 3);
        let f: Vec<String> = s
            .list("f/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(f.len(), 10, "{f:?}");
    }

    #[tokio::test]
    async fn supabase_operation_errors_are_classified_without_the_key() {
        let api = StorageApi::start().await;
        let s = store(&api, SERVICE_KEY);
        // No bucket: permanent.
        for e in [
            s.list("").await.unwrap_err(),
            s.delete("a.mp4").await.unwrap_err(),
        ] {
            assert_eq!(
                (e.code, e.class),
                ("no-such-bucket", ErrorClass::Permanent),
                "{e}"
            );
        }
        api.create_bucket("videos", false, None, None);
        let tmp = tempfile::tempdir().unwrap();
        let data = bytes(200_000, 3);
        put(&s, tmp.path(), "a/b.mp4", &data, "video/mp4").await;
        // Overload and outages: transient.
        api.fail_next("/object/list/", 503, 1);
        let e = s.list("").await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient, "{e}");
        api.fail_next("/object/authenticated/", 429, 1);
        let e = s.open("a/b.mp4").await.unwrap_err();
        assert_eq!(
            (e.code, e.class),
            ("slow-down", ErrorClass::Transient),
            "{e}"
        );
        api.fail_next("/object/videos", 500, 1);
        let e = s.delete("a/b.mp4").await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient, "{e}");
        // A wrong key: permanent, and never in the message.
        let wrong = "not-the-service-key-0123456789";
        let bad = store(&api, wrong);
        for e in [
            bad.list("").await.unwrap_err(),
            bad.delete("a/b.mp4").await.unwrap_err(),
            bad.open("a/b.mp4").await.unwrap_err(),
        ] {
            assert_eq!(
                (e.code, e.class),
                ("storage-access-denied", ErrorClass::Permanent),
                "{e}"
            );
            assert!(!e.message.contains(wrong), "{e}");
        }
        // Still there after all that.
        let (digest, len, _) = drain(s.open("a/b.mp4").await.unwrap().unwrap()).await;
        assert_eq!((digest, len), (sha(&data), 200_000));
        // Unreachable: transient.
        let gone = SupabaseStorage::new(
            &"http://127.0.0.1:9".parse().unwrap(),
            Secret::new(SERVICE_KEY),
            "videos",
        )
        .unwrap();
        assert_eq!(
            gone.list("").await.unwrap_err().class,
            ErrorClass::Transient
        );
        assert_eq!(
            gone.open("a").await.unwrap_err().class,
            ErrorClass::Transient
        );
    }

    #[tokio::test]
    async fn supabase_keys_with_url_characters_round_trip() {
        let api = StorageApi::start().await;
        api.create_bucket("videos", false, None, None);
        let tmp = tempfile::tempdir().unwrap();
        let s = store(&api, SERVICE_KEY);
        let key = "old worker/clip #1?.mp4";
        put(&s, tmp.path(), key, b"legacy", "video/mp4").await;
        assert!(
            api.object("videos", key).is_some(),
            "stored under the exact key"
        );
        assert_eq!(s.head(key).await.unwrap().map(|i| i.size), Some(6));
        let listed = s.list("old worker/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, key);
        let (digest, ..) = drain(s.open(key).await.unwrap().unwrap()).await;
        assert_eq!(digest, sha(b"legacy"));
        let url = s
            .signed_url(key, std::time::Duration::from_secs(60))
            .await
            .unwrap();
        let got = reqwest::get(&url).await.unwrap();
        assert_eq!(got.status(), 200, "{url}");
        assert_eq!(got.bytes().await.unwrap().as_ref(), b"legacy");
        assert!(s.delete(key).await.unwrap());
        assert_eq!(api.object_count("videos"), 0);
    }
}
