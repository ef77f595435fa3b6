//! The storage operations `gc` and the download API use (`list`, `delete`, `open`,
//! `signed_url`), the same checks on every backend: the local folder (also what
//! `STORAGE_URL=file:///…` runs on), Supabase Storage (the emulator built from the storage-api
//! contract) and an S3 store (s3s-fs, a real S3 server on loopback).

use std::collections::BTreeMap;
use std::path::Path;

use douyin_worker::pipeline::DownloadedFile;
use douyin_worker::storage::local::LocalFolder;
use douyin_worker::storage::{ListedObject, ObjectBackend, ObjectStream, PutRequest};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::cdn::bytes;

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
