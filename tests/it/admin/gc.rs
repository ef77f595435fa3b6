//! `gc` through the binary with a local-folder store: exactly the orphans go.

use std::path::Path;
use std::time::{Duration, SystemTime};

use douyin_worker::queue::EnqueueRequest;
use douyin_worker::queue::Queue;
use douyin_worker::queue::QueueAdmin;
use douyin_worker::queue::postgres::PgQueue;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{Place, complete, stderr};

/// Writes an object file of `size` bytes last modified `age` ago.
fn put_file(store: &Path, key: &str, size: usize, age: Duration) {
    let path = store.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![7u8; size]).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

const TWO_DAYS: Duration = Duration::from_secs(2 * 86_400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_exactly_the_orphans_on_postgres() {
    let db = fakes::pg::fresh_pg().await;
    let q = PgQueue::from_pool(db.pool.clone());
    let place = Place::postgres(&db.url);
    gc_deletes_exactly_the_orphans(&q, &place, |sql, id| {
        let pool = db.pool.clone();
        async move {
            sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_exactly_the_orphans_on_sqlite() {
    fakes::pg::init_tracing();
    let place = Place::sqlite();
    let q = place.sqlite_queue().await;
    let pool = q.pool().clone();
    gc_deletes_exactly_the_orphans(&q, &place, |sql, id| {
        let pool = pool.clone();
        async move {
            sqlx::query(AssertSqlSafe(sql.replace("$1", "?1")))
                .bind(id.hyphenated().to_string())
                .execute(&pool)
                .await
                .unwrap();
        }
    })
    .await;
}

async fn gc_deletes_exactly_the_orphans<F, Fut>(q: &dyn Queue, place: &Place, exec: F)
where
    F: Fn(String, Uuid) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let store = &place.store;
    // A store whose queue wants nothing is not emptied by mistake.
    put_file(store, "0/0.mp4", 10, TWO_DAYS);
    let o = place.run(&["gc", "--apply"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refusing to delete all 1 objects"),
        "{}",
        stderr(&o)
    );
    assert!(store.join("0/0.mp4").exists());
    std::fs::remove_file(store.join("0/0.mp4")).unwrap();

    let mut videos = Vec::new();
    for (i, key) in [
        (1, "1/1.mp4"),
        (2, "2/2.mp4"),
        (3, "3/3.mp4"),
        (4, "4/4.mp4"),
    ] {
        let r = q
            .enqueue(&EnqueueRequest {
                douyin_id: Some(format!("740000000000000000{i}")),
                ..Default::default()
            })
            .await
            .unwrap();
        complete(q, r.job_id.unwrap(), "videos", key).await;
        videos.push(r.video_id.unwrap());
    }
    put_file(store, "1/1.mp4", 1000, TWO_DAYS); // wanted
    put_file(store, "2/2.mp4", 2000, TWO_DAYS); // its video is deleted
    exec("delete from videos where id = $1".into(), videos[1]).await;
    put_file(store, "3/3.mp4", 3000, TWO_DAYS); // its video is marked for deletion
    exec(
        "update videos set marked_for_deletion = true where id = $1".into(),
        videos[2],
    )
    .await;
    put_file(store, "4/4.mp4", 4000, TWO_DAYS); // wanted
    put_file(store, "4/4_1700000000000.mp4", 5000, TWO_DAYS); // the old worker's copy
    put_file(store, "5/5.mp4", 6000, Duration::from_secs(60)); // an upload not recorded yet
    // Supabase Studio's empty-folder marker: not counted, never deleted.
    put_file(store, "6/.emptyFolderPlaceholder", 0, TWO_DAYS);
    let orphans = ["2/2.mp4", "3/3.mp4", "4/4_1700000000000.mp4"];
    let all = [
        "1/1.mp4",
        "2/2.mp4",
        "3/3.mp4",
        "4/4.mp4",
        "4/4_1700000000000.mp4",
        "5/5.mp4",
        "6/.emptyFolderPlaceholder",
    ];
    let present = || -> Vec<&str> {
        all.iter()
            .copied()
            .filter(|k| store.join(k).exists())
            .collect()
    };

    // Dry runs: listed, nothing deleted.
    let table = place.ok(&["gc"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(
        lines[0].starts_with("KEY") && lines[0].contains("SIZE"),
        "{table}"
    );
    for (line, key) in lines[1..4].iter().zip(orphans) {
        assert!(
            line.starts_with(key) && line.ends_with("would delete"),
            "{table}"
        );
    }
    assert!(
        lines[1].contains("2.0 KiB") && lines[1].contains("2d"),
        "{table}"
    );
    assert_eq!(
        lines[4],
        "dry run: would delete 3 orphans (9.8 KiB) from bucket videos (local) \
         (6 objects, 2 wanted); kept 1 orphan younger than 1d; run with --apply to delete"
    );
    let report = place.json(&["gc", "--json"]);
    let keys: Vec<&str> = report["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, orphans);
    assert_eq!(report["orphans"][0]["size"], 2000);
    assert_eq!(report["orphans"][0]["result"], "would_delete");
    assert_eq!(report["orphan_bytes"], 10_000);
    assert_eq!(report["apply"], false);
    assert_eq!(
        (report["objects"].as_u64(), report["wanted"].as_u64()),
        (Some(6), Some(2))
    );
    assert_eq!(report["kept_young"], 1);
    assert_eq!(report["min_age_seconds"], 86_400);
    assert_eq!(present(), all);

    // Apply: exactly the orphans go.
    let report = place.json(&["gc", "--apply", "--json"]);
    assert_eq!(report["deleted"], 3);
    assert_eq!(report["failed"], 0);
    assert!(
        report["orphans"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["result"] == "deleted")
    );
    assert_eq!(
        present(),
        ["1/1.mp4", "4/4.mp4", "5/5.mp4", "6/.emptyFolderPlaceholder"]
    );
    assert_eq!(
        place.ok(&["gc", "--apply"]),
        "no orphans to delete in bucket videos (local) (3 objects, 2 wanted); \
         kept 1 orphan younger than 1d\n"
    );

    // A shorter --min-age takes the young orphan too; the table reports each deletion.
    let table = place.ok(&["gc", "--apply", "--min-age", "30s"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("5/5.mp4") && l.ends_with("deleted")),
        "{table}"
    );
    assert!(
        table.ends_with(
            "deleted 1 of 1 orphan (5.9 KiB) from bucket videos (local) (3 objects, 2 wanted)\n"
        ),
        "{table}"
    );
    assert_eq!(
        present(),
        ["1/1.mp4", "4/4.mp4", "6/.emptyFolderPlaceholder"]
    );

    let o = place.run(&["gc", "--min-age", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("\"soon\": expected a duration"),
        "{}",
        stderr(&o)
    );
}

/// Makes `file` impossible to delete for a process without capabilities: its folder
/// read-only. Returns what undoes it.
fn lock(file: &Path) -> impl Fn() + use<> {
    use std::os::unix::fs::PermissionsExt;
    let dir = file.parent().unwrap().to_path_buf();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    move || std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap()
}

/// The embedded default whose one video is stored under `1/1.mp4` (the file is not written).
async fn sqlite_place_wanting_1_mp4() -> Place {
    fakes::pg::init_tracing();
    let place = Place::sqlite();
    let q = place.sqlite_queue().await;
    let r = q
        .enqueue(&EnqueueRequest {
            douyin_id: Some("7400000000000000001".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    complete(&q, r.job_id.unwrap(), "videos", "1/1.mp4").await;
    place
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deletion_is_reported_and_the_others_still_go() {
    let place = sqlite_place_wanting_1_mp4().await;
    let store = &place.store;
    for key in ["1/1.mp4", "a/a.mp4", "b/b.mp4"] {
        put_file(store, key, 100, TWO_DAYS);
    }
    let unlock = lock(&store.join("a/a.mp4"));
    let cwd = tempfile::tempdir().unwrap();
    let mut gc = place.command(&["gc", "--apply"], cwd.path());
    crate::support::privileges::without_capabilities(&mut gc);
    let o = gc.output().unwrap();
    unlock();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1 of 2 deletions failed"),
        "{}",
        stderr(&o)
    );
    let out = String::from_utf8(o.stdout).unwrap();
    let row = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no row for {key}: {out}"))
            .to_string()
    };
    assert!(row("a/a.mp4").contains("failed: "), "{out}");
    assert!(row("b/b.mp4").ends_with("deleted"), "{out}");
    assert!(out.contains("deleted 1 of 2 orphans"), "{out}");
    assert!(out.contains("; 1 failed"), "{out}");
    assert!(store.join("a/a.mp4").exists() && store.join("1/1.mp4").exists());
    assert!(!store.join("b/b.mp4").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_uploads_older_than_min_age_are_swept() {
    let place = sqlite_place_wanting_1_mp4().await;
    let store = &place.store;
    put_file(store, "1/1.mp4", 100, TWO_DAYS);
    // What `kill -9` mid-upload leaves: a hidden `.part` beside the target, in a folder of
    // its own when the video was never stored.
    let stale = "1/.0123456789abcdef0123456789abcdef.part";
    let stale_alone = "2/.fedcba9876543210fedcba9876543210.part";
    let in_flight = "1/.00000000000000000000000000000000.part";
    put_file(store, stale, 700, TWO_DAYS);
    put_file(store, stale_alone, 300, TWO_DAYS);
    put_file(store, in_flight, 50, Duration::from_secs(60));

    let report = place.json(&["gc", "--json"]);
    let swept: Vec<(&str, bool)> = report["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["key"].as_str().unwrap(), o["partial_upload"] == true))
        .collect();
    assert_eq!(swept, [(stale, true), (stale_alone, true)]);
    assert_eq!(report["objects"], 1, "unfinished uploads are not objects");
    let table = place.ok(&["gc", "--apply"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(stale) && l.ends_with("deleted (unfinished upload)")),
        "{table}"
    );
    assert!(!store.join(stale).exists());
    assert!(!store.join("2").exists(), "the folder it leaves empty goes");
    assert!(store.join(in_flight).exists(), "an upload in flight stays");
    assert!(store.join("1/1.mp4").exists());
}
