//! The worker loop: its name, how many jobs at once, polling, leases, retries, shutdown, and
//! where downloads in progress live.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::ConfigError;
use super::field::{Fields, field};

/// `WORKER_ID`, `MAX_CONCURRENT`, `POLL_INTERVAL`, `LEASE_SECONDS`, `MAX_ATTEMPTS`,
/// `RETRY_BASE_SECONDS`, `RETRY_MAX_SECONDS`, `SHUTDOWN_GRACE_SECONDS`, `TEMP_DIR`,
/// `MIN_FREE_DISK`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Shared settings: Worker")]
pub struct WorkerArgs {
    /// This worker's name in the queue [default: host name plus a short random suffix].
    #[arg(long, env = "WORKER_ID", global = true, value_name = "ID")]
    pub worker_id: Option<String>,

    /// Jobs processed at once by this process.
    #[arg(
        long,
        env = "MAX_CONCURRENT",
        global = true,
        value_name = "N",
        default_value = "2"
    )]
    pub max_concurrent: Option<String>,

    /// Fallback poll interval in milliseconds when no wake-up arrives.
    #[arg(
        long,
        env = "POLL_INTERVAL",
        global = true,
        value_name = "MS",
        default_value = "10000"
    )]
    pub poll_interval: Option<String>,

    /// Lease of a running job in seconds, renewed by heartbeats every third of it.
    #[arg(
        long,
        env = "LEASE_SECONDS",
        global = true,
        value_name = "S",
        default_value = "60"
    )]
    pub lease_seconds: Option<String>,

    /// Attempts per job before it fails for good.
    #[arg(
        long,
        env = "MAX_ATTEMPTS",
        global = true,
        value_name = "N",
        default_value = "5"
    )]
    pub max_attempts: Option<String>,

    /// Base of the exponential retry backoff, in seconds.
    #[arg(
        long,
        env = "RETRY_BASE_SECONDS",
        global = true,
        value_name = "S",
        default_value = "30"
    )]
    pub retry_base_seconds: Option<String>,

    /// Cap of the retry backoff, in seconds.
    #[arg(
        long,
        env = "RETRY_MAX_SECONDS",
        global = true,
        value_name = "S",
        default_value = "3600"
    )]
    pub retry_max_seconds: Option<String>,

    /// On SIGINT/SIGTERM, how long running jobs may finish before they are released, in
    /// seconds.
    #[arg(
        long,
        env = "SHUTDOWN_GRACE_SECONDS",
        global = true,
        value_name = "S",
        default_value = "30"
    )]
    pub shutdown_grace_seconds: Option<String>,

    /// Folder for downloads in progress [default: the system temp folder].
    #[arg(long, env = "TEMP_DIR", global = true, value_name = "DIR")]
    pub temp_dir: Option<String>,

    /// No new job is claimed while less than this is free under the temp folder: bytes, or
    /// with a unit (`512M`, `2G`); `0` turns the check off.
    #[arg(
        long,
        env = "MIN_FREE_DISK",
        global = true,
        value_name = "SIZE",
        default_value = "1G"
    )]
    pub min_free_disk: Option<String>,
}

/// The worker loop's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSettings {
    /// This worker's name.
    pub worker_id: String,
    /// Jobs at once.
    pub max_concurrent: usize,
    /// Fallback poll interval.
    pub poll_interval: Duration,
    /// Lease length.
    pub lease: Duration,
    /// Attempts per job.
    pub max_attempts: i32,
    /// Backoff base.
    pub retry_base: Duration,
    /// Backoff cap.
    pub retry_max: Duration,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Temp folder.
    pub temp_dir: PathBuf,
    /// Free bytes under the temp folder below which no job is claimed (0: no check).
    pub min_free_disk: u64,
}

impl WorkerArgs {
    /// The worker's settings; the backoff base may not exceed its cap.
    pub(crate) fn resolve(&self, f: &Fields) -> Result<WorkerSettings, ConfigError> {
        let worker_f = field!(f, self.worker_id);
        let worker_id = match worker_f.given() {
            Some(id) if id.len() > 200 || id.chars().any(char::is_control) => {
                return Err(worker_f.fail("expected at most 200 printable characters"));
            }
            Some(id) => id.to_string(),
            None => default_worker_id(),
        };
        let base_f = field!(f, self.retry_base_seconds);
        let retry_base_s: u64 = base_f.number(0, 86_400)?;
        let retry_max_s: u64 = field!(f, self.retry_max_seconds).number(0, 7 * 86_400)?;
        if retry_base_s > retry_max_s {
            return Err(base_f.fail(format_args!(
                "the backoff base is above its cap RETRY_MAX_SECONDS={retry_max_s}"
            )));
        }
        Ok(WorkerSettings {
            worker_id,
            max_concurrent: field!(f, self.max_concurrent).number(1, 1000)?,
            poll_interval: Duration::from_millis(
                field!(f, self.poll_interval).number(10, 3_600_000)?,
            ),
            lease: field!(f, self.lease_seconds).seconds(3, 86_400)?,
            max_attempts: field!(f, self.max_attempts).number(1, 1000)?,
            retry_base: Duration::from_secs(retry_base_s),
            retry_max: Duration::from_secs(retry_max_s),
            shutdown_grace: field!(f, self.shutdown_grace_seconds).seconds(0, 86_400)?,
            temp_dir: field!(f, self.temp_dir)
                .given()
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
            min_free_disk: field!(f, self.min_free_disk).bytes()?,
        })
    }
}

/// Host name plus a short random suffix: unique per process, readable in the queue.
pub fn default_worker_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host = if host.is_empty() {
        "worker".into()
    } else {
        host
    };
    let suffix: u32 = rand::random::<u32>() & 0xff_ffff;
    format!("{host}-{suffix:06x}")
}

impl Default for WorkerSettings {
    /// The declared defaults (what an empty command line and environment give).
    fn default() -> Self {
        WorkerArgs::default()
            .resolve(&Fields::default())
            .expect("the declared defaults are valid")
    }
}
