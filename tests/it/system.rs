//! System proof: the whole pipeline through worker processes on loopback (the
//! Douyin fixture server, the raw CDN of `fakes::cdn` serving big files and faults, PostgreSQL, a
//! store), at scale and under chaos.
//!
//! - [`scale`]: four processes of sixteen slots on 2,000 jobs.
//! - [`chaos_kill`]: `kill -9` of a worker mid-download and mid-upload.
//! - [`chaos_pg`]: PostgreSQL restarted during a run (a private cluster).
//! - [`chaos_storage`]: Supabase Storage answering 5xx, hanging, or down.
//! - [`chaos_cdn`]: the CDN dropping connections mid-file and lying about the length.
//! - [`chaos_sigterm`]: SIGTERM with jobs mid-download.
//!
//! Every wait has a deadline; every worker process is killed when its handle drops.

mod chaos_cdn;
mod chaos_kill;
mod chaos_pg;
mod chaos_sigterm;
mod chaos_storage;
mod scale;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use douyin_worker::queue::QueueAdmin;
use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::queue::{EnqueueOutcome, EnqueueRequest, JobRecord};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::cli::RunningBinary;
use fakes::cdn::{Cdn, Serve};
use fakes::douyin::{Behaviour, DouyinServer, mp4_of_size, video_post_from};
use fakes::pg::{TestDb, fresh_pg};

/// One video of a rig: its Douyin id, the bytes its CDN path serves, and how.
pub(crate) struct Video {
    pub id: String,
    pub media: Vec<u8>,
}

/// The loopback world of one test: a CDN serving each video at `/media/{id}.mp4`, the Douyin
/// fixture server pointing at it, a database of its own, a data folder (the local store is
/// `data/videos`) and a temp folder for the workers' downloads.
pub(crate) struct Rig {
    pub cdn: Cdn,
    pub server: DouyinServer,
    pub db: TestDb,
    pub q: PgQueue,
    pub data: tempfile::TempDir,
    pub temp: tempfile::TempDir,
    pub videos: Vec<Video>,
}

impl Rig {
    /// `videos`: (Douyin id, size in bytes, how the CDN serves it at first).
    pub async fn start(videos: &[(&str, usize, Serve)]) -> Rig {
        let db = fresh_pg().await;
        Self::start_on(db, videos).await
    }

    /// Like [`Rig::start`] on a given database.
    pub async fn start_on(db: TestDb, videos: &[(&str, usize, Serve)]) -> Rig {
        let cdn = Cdn::start().await;
        let mut posts = Vec::new();
        let mut out = Vec::new();
        for (id, size, serve) in videos {
            let media = mp4_of_size(id, *size);
            let path = media_path(id);
            cdn.add(&path, media.clone(), serve.clone());
            posts.push(video_post_from(
                id,
                Behaviour::NewSharePage,
                &cdn.url(&path),
                media.len() as u64,
            ));
            out.push(Video {
                id: id.to_string(),
                media,
            });
        }
        let server = DouyinServer::start(posts).await;
        let q = PgQueue::from_pool(db.pool.clone());
        Rig {
            cdn,
            server,
            db,
            q,
            data: tempfile::tempdir().unwrap(),
            temp: tempfile::tempdir().unwrap(),
            videos: out,
        }
    }

    /// The settings every worker of the rig gets: this database, the fixture server, the
    /// local store, the temp folder, loopback downloads, immediate retries, no browser, and no
    /// covers (these tests count each job's objects and uploads; `covers` tests the covers).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("DATABASE_URL", self.db.url.as_str()),
            ("DOUYIN_UPSTREAM", self.server.url.as_str()),
            ("DATA_DIR", self.data.path().to_str().unwrap()),
            ("TEMP_DIR", self.temp.path().to_str().unwrap()),
            ("ALLOW_PRIVATE_NETWORKS", "true"),
            ("BROWSER_ENABLED", "false"),
            ("RETRY_BASE_SECONDS", "0"),
            ("RETRY_MAX_SECONDS", "0"),
            ("STORE_COVERS", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// A worker process with the rig's settings, then `extra` (which win).
    pub fn worker(&self, extra: &[(&str, &str)]) -> RunningBinary {
        let mut env = self.env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        RunningBinary::start(&env)
    }

    /// Queues a new job for video `id`.
    pub async fn enqueue(&self, id: &str) -> Uuid {
        enqueue(&self.q, id, None).await
    }

    /// Runs video `id` through a worker process of the rig's: queued, completed (within a
    /// minute), the worker stopped with exit code 0. Returns the job and the time from
    /// queueing to completion.
    pub async fn store_one(&self, id: &str) -> (Uuid, Duration) {
        let bin = self.worker(&[]);
        let started = Instant::now();
        let job = self.enqueue(id).await;
        let rec = self
            .wait(job, &["completed", "failed"], Duration::from_secs(60))
            .await;
        let elapsed = started.elapsed();
        assert_eq!(rec.status, "completed", "{rec:?}");
        let (code, _) = bin.stop();
        assert_eq!(code, Some(0));
        (job, elapsed)
    }

    /// Waits until the job is in one of `statuses`.
    pub async fn wait(&self, job: Uuid, statuses: &[&str], within: Duration) -> JobRecord {
        crate::support::backends::wait_for_status(&self.q, job, statuses, within).await
    }

    /// The job now.
    pub async fn job(&self, job: Uuid) -> JobRecord {
        self.q.job(job).await.unwrap().unwrap()
    }

    /// The local store's folder.
    pub fn store(&self) -> PathBuf {
        self.data.path().join("videos")
    }

    /// Entries left in the temp folder (job folders of downloads in progress or abandoned).
    pub fn temp_entries(&self) -> Vec<String> {
        entries(self.temp.path())
    }
}

/// `/media/{id}.mp4`, the CDN path of a rig's video.
pub(crate) fn media_path(id: &str) -> String {
    format!("/media/{id}.mp4")
}

/// Queues a new job for video `id` (`max_attempts` when given); it must be new.
pub(crate) async fn enqueue(q: &PgQueue, id: &str, max_attempts: Option<i32>) -> Uuid {
    let r = q
        .enqueue(&EnqueueRequest {
            douyin_id: Some(id.into()),
            max_attempts,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.outcome, EnqueueOutcome::Queued, "{id}");
    r.job_id.unwrap()
}

/// Names in a folder (none when it does not exist), sorted.
pub(crate) fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every file under `dir`, as paths relative to it, sorted.
pub(crate) fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Hex SHA-256.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Polls `probe` every 20 ms until it answers `Some`; panics naming `what` after `within`.
pub(crate) async fn wait_until<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The log lines with this `message`.
pub(crate) fn with_message<'a>(
    lines: &'a [serde_json::Value],
    message: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    lines.iter().filter(move |l| l["message"] == message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_megabyte_video_from_the_loopback_cdn_is_stored_whole() {
    const ID: &str = "7412345678901230001";
    let rig = Rig::start(&[(ID, 5 * 1024 * 1024, Serve::Normal)]).await;
    let bin = rig.worker(&[]);
    let job = rig.enqueue(ID).await;
    let rec = rig
        .wait(job, &["completed", "failed"], Duration::from_secs(60))
        .await;
    assert_eq!(rec.status, "completed", "{rec:?}");
    let stored = std::fs::read(rig.store().join(format!("{ID}/{ID}.mp4"))).unwrap();
    assert!(
        stored == rig.videos[0].media,
        "the stored file is the CDN's, byte for byte"
    );
    let (code, _) = bin.stop();
    assert_eq!(code, Some(0));
    assert_eq!(rig.temp_entries(), Vec::<String>::new());
}
