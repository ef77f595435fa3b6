//! The admin side of the queue (`video`, `jobs`, `retry`, `overview`, `wanted_object_keys`)
//! on every backend, and the `stats`, `jobs`, `retry` and `gc` commands through the binary on
//! a real PostgreSQL and on SQLite (`gc` with a local-folder store).
//!
//! - `queue`: the queue methods, on every backend.
//! - `commands`: `stats`, `jobs` and `retry` through the binary.
//! - `gc`: `gc` through the binary, against a local folder.

mod commands;
mod gc;
mod queue;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use douyin_worker::error::ErrorClass;
use douyin_worker::queue::Queue;
use douyin_worker::queue::sqlite::SqliteQueue;
use douyin_worker::queue::{
    ClaimedJob, Completion, EnqueueOutcome, EnqueueRequest, FailedAttempt, StoredObject,
    VideoUpdate,
};
use serde_json::Value;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::support::backends::Backend;

const LEASE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Runs `sql` on the backend's database with `$1` bound to `id` (`?1` on SQLite).
async fn exec(b: &Backend, sql: &str, id: Uuid) {
    exec2(b, sql, &sql.replace("$1", "?1"), id).await;
}

/// Runs `pg` on PostgreSQL or `sqlite` on SQLite, with the first parameter bound to `id`.
async fn exec2(b: &Backend, pg: &str, sqlite: &str, id: Uuid) {
    match &b.pg {
        Some(db) => {
            sqlx::query(AssertSqlSafe(pg.to_string()))
                .bind(id)
                .execute(&db.pool)
                .await
                .unwrap_or_else(|e| panic!("{pg}: {e}"));
        }
        None => {
            let q = SqliteQueue::open(Path::new(&b.locator.1)).await.unwrap();
            sqlx::query(AssertSqlSafe(sqlite.to_string()))
                .bind(id.hyphenated().to_string())
                .execute(q.pool())
                .await
                .unwrap_or_else(|e| panic!("{sqlite}: {e}"));
        }
    }
}

fn stored(bucket: &str, key: &str) -> StoredObject {
    StoredObject {
        storage_provider: "local".into(),
        bucket: bucket.into(),
        object_key: key.into(),
        storage_etag: Some("etag".into()),
        filesize: 2048,
        mime_type: "video/mp4".into(),
        storage_metadata: serde_json::json!({}),
    }
}

/// Claims the one due job, which must be `job`.
async fn claim(q: &dyn Queue, job: Uuid, worker: &str) -> ClaimedJob {
    let mut jobs = q.claim(worker, 1, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 1, "one due job");
    let claimed = jobs.remove(0);
    assert_eq!(claimed.id(), job);
    claimed
}

/// Claims `job` and fails it for good.
pub(crate) async fn fail_for_good(q: &dyn Queue, job: Uuid) {
    let c = claim(q, job, "w").await;
    q.fail(
        "w",
        &[FailedAttempt {
            lease: c.lease,
            error: "video deleted: 作品已删除".into(),
            code: "video-deleted".into(),
            class: ErrorClass::Permanent,
            retry_in: None,
            forget_direct_url: None,
        }],
    )
    .await
    .unwrap();
}

/// Claims `job` and completes it with the object `key` in `bucket`.
pub(crate) async fn complete(q: &dyn Queue, job: Uuid, bucket: &str, key: &str) {
    let c = claim(q, job, "w").await;
    q.complete(
        "w",
        &[Completion {
            lease: c.lease,
            stored: stored(bucket, key),
            video: VideoUpdate::default(),
        }],
    )
    .await
    .unwrap();
}

async fn video_of(q: &dyn Queue, job: Uuid) -> Uuid {
    q.job(job).await.unwrap().expect("job").video_id
}

/// Queues the video again (it must be queued).
async fn enqueue_video(q: &dyn Queue, video_id: Uuid) -> Uuid {
    let r = q
        .enqueue(&EnqueueRequest {
            video_id: Some(video_id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.outcome, EnqueueOutcome::Queued);
    r.job_id.unwrap()
}

// ---------------------------------------------------------------------------------------------
// Running the binary

/// Where the binary finds its queue and store.
pub(crate) struct Place {
    pub(crate) env: Vec<(String, String)>,
    pub(crate) store: PathBuf,
    _dir: tempfile::TempDir,
}

impl Place {
    /// A PostgreSQL database (and a store folder).
    pub(crate) fn postgres(url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        Place {
            env: vec![
                ("DATABASE_URL".into(), url.into()),
                (
                    "DATA_DIR".into(),
                    dir.path().join("data").display().to_string(),
                ),
                ("STORAGE_DIR".into(), store.display().to_string()),
            ],
            store,
            _dir: dir,
        }
    }

    /// The embedded default: a SQLite file in DATA_DIR (and a store folder).
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        Place {
            env: vec![
                (
                    "DATA_DIR".into(),
                    dir.path().join("data").display().to_string(),
                ),
                ("STORAGE_DIR".into(), store.display().to_string()),
            ],
            store,
            _dir: dir,
        }
    }

    /// The SQLite queue the binary uses.
    async fn sqlite_queue(&self) -> SqliteQueue {
        let data = &self.env.iter().find(|(k, _)| k == "DATA_DIR").unwrap().1;
        SqliteQueue::open(&Path::new(data).join("douyin-worker.db"))
            .await
            .unwrap()
    }

    /// Runs the binary with `args`.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        let cwd = tempfile::tempdir().unwrap();
        self.command(args, cwd.path()).output().unwrap()
    }

    /// The binary with `args`, in `cwd`, with this place's settings and no others.
    pub(crate) fn command(&self, args: &[&str], cwd: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_douyin-worker"));
        cmd.args(args).current_dir(cwd);
        for var in [
            "DATABASE_URL",
            "SUPABASE_URL",
            "SUPABASE_SERVICE_ROLE_KEY",
            "DATA_DIR",
            "STORAGE_DIR",
            "STORAGE_URL",
            "STORAGE_BUCKET",
            "LOG_FORMAT",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HTTP_ADDR", "off");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the binary; it must succeed; returns its standard output.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs the binary with `--json`; it must succeed.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The lines of a table whose first cell is `first`.
fn rows_starting<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(first))
        .collect()
}
