//! Job handlers for tests of the worker loop (test tree only): succeed, fail N times, hang
//! until cancelled. Each records what it saw.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use douyin_worker::error::{ErrorClass, JobError};
use douyin_worker::queue::{ClaimedJob, StoredObject, VideoUpdate};
use douyin_worker::stage::{JobContext, JobHandler, JobOutput};
use uuid::Uuid;

/// What the test handlers saw.
#[derive(Default)]
pub struct Log {
    /// When each attempt started, by job.
    pub starts: Mutex<HashMap<Uuid, Vec<Instant>>>,
    /// Temp folders the handlers wrote into.
    pub temp_dirs: Mutex<Vec<PathBuf>>,
}

impl Log {
    fn start(&self, job: &ClaimedJob) {
        self.starts
            .lock()
            .unwrap()
            .entry(job.id())
            .or_default()
            .push(Instant::now());
    }

    pub fn attempts(&self, id: Uuid) -> usize {
        self.starts.lock().unwrap().get(&id).map_or(0, Vec::len)
    }
}

/// The output a successful test job stores.
pub fn output(job: &ClaimedJob) -> JobOutput {
    let id = job
        .video
        .douyin_id
        .clone()
        .unwrap_or_else(|| job.id().to_string());
    JobOutput {
        stored: StoredObject {
            storage_provider: "test".into(),
            bucket: "videos".into(),
            object_key: format!("{id}/{id}.mp4"),
            storage_etag: Some(format!("etag-{id}")),
            filesize: 4096,
            mime_type: "video/mp4".into(),
            storage_metadata: serde_json::json!({"attempt": job.attempts}),
        },
        video: VideoUpdate::default(),
    }
}

/// Succeeds at once.
#[derive(Default)]
pub struct Succeed {
    pub log: Log,
}

#[async_trait]
impl JobHandler for Succeed {
    async fn handle(&self, job: &ClaimedJob, _ctx: &JobContext) -> Result<JobOutput, JobError> {
        self.log.start(job);
        Ok(output(job))
    }
}

/// Reports download progress at each of `steps` (bytes of 1000), `pause` apart, then succeeds.
pub struct Progressing {
    pub steps: Vec<u64>,
    pub pause: std::time::Duration,
}

#[async_trait]
impl JobHandler for Progressing {
    async fn handle(&self, job: &ClaimedJob, ctx: &JobContext) -> Result<JobOutput, JobError> {
        for done in &self.steps {
            ctx.report_progress(*done, Some(1000));
            tokio::time::sleep(self.pause).await;
        }
        Ok(output(job))
    }
}

/// Fails the first `times` attempts of every job with `class`, then succeeds.
pub struct FailTimes {
    pub times: usize,
    pub class: ErrorClass,
    pub log: Log,
}

#[async_trait]
impl JobHandler for FailTimes {
    async fn handle(&self, job: &ClaimedJob, _ctx: &JobContext) -> Result<JobOutput, JobError> {
        self.log.start(job);
        if self.log.attempts(job.id()) <= self.times {
            Err(JobError::new(
                self.class,
                "test-failure",
                format!("planned failure {}", job.attempts),
            ))
        } else {
            Ok(output(job))
        }
    }
}

/// Writes a file into the job's temp folder, then waits until cancelled (or `finish_after`).
#[derive(Default)]
pub struct Hang {
    pub finish_after: Option<std::time::Duration>,
    pub log: Log,
}

#[async_trait]
impl JobHandler for Hang {
    async fn handle(&self, job: &ClaimedJob, ctx: &JobContext) -> Result<JobOutput, JobError> {
        self.log.start(job);
        let dir = ctx
            .temp_dir()
            .map_err(|e| JobError::transient("io", e.to_string()))?;
        std::fs::write(dir.join("partial.mp4"), b"partial").unwrap();
        self.log.temp_dirs.lock().unwrap().push(dir.to_path_buf());
        match self.finish_after {
            Some(d) => {
                tokio::time::sleep(d).await;
                Ok(output(job))
            }
            None => {
                ctx.cancelled().cancelled().await;
                Err(JobError::transient("cancelled", "cancelled"))
            }
        }
    }
}

/// Panics.
pub struct Panic;

#[async_trait]
impl JobHandler for Panic {
    async fn handle(&self, _job: &ClaimedJob, _ctx: &JobContext) -> Result<JobOutput, JobError> {
        panic!("handler exploded")
    }
}
