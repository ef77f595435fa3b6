//! `douyin-worker doctor`: what works, with the same configuration as `run`. Each check is
//! timed, bounded in time and reported as passed, failed (with one line of advice), a warning
//! or skipped; the exit code is 0 when everything `run` needs works, 1 otherwise, 2 for a bad
//! configuration. No secret reaches the output: every line is scrubbed of the configured ones.
//!
//! - [`report`]: the checks' lines, as text and JSON, and the exit code.
//! - `settings`: the configuration, and which mode it selects.
//! - `queue`: reachable, schema current, the worker's functions callable with this key.
//! - `grants`: what the public anon key may not do (row-level security and grants, live).
//! - `storage`: the bucket, and a small object written, read back, signed and deleted.
//! - `disk`: the temp folder writable, its free space against `MIN_FREE_DISK`.
//! - `douyin`: each extraction strategy on its own against a known public video, then the
//!   chosen file's first bytes from the CDN.
//! - `browser`: found, launched, its version, one extraction through it.
//! - `listeners`: the HTTP listeners' addresses free or already in use.

pub mod report;

mod browser;
mod disk;
mod douyin;
mod grants;
mod listeners;
mod queue;
mod settings;
mod storage;

use std::time::Duration;

use crate::config::{Config, ConfigError};
pub use report::{Check, Outcome, Report, Status};

/// The name of the configuration's check (a failure there exits as bad usage).
pub(crate) const CONFIGURATION: &str = "configuration";

/// The video checked by default: a public post recorded in 2023, whose record is one of the
/// test fixtures (`tests/fixtures/douyin/web_aweme_post_video_2023.json`). Any link,
/// share text or id can be given instead with `--video`.
pub const DEFAULT_VIDEO: &str = "7188795449468259623";

/// What `doctor` checks with.
#[derive(Clone, Debug)]
pub struct DoctorOptions {
    /// The video extraction is tried on (a link, share text or id).
    pub video: String,
    /// Longest time one check may take (Douyin's strategies and the browser each get it too).
    pub timeout: Duration,
}

/// Runs every check with `config` and returns the report. Nothing `run` keeps is changed: a
/// missing bucket is created as `run` would, and the test object is deleted.
pub async fn run(config: &Config, opts: &DoctorOptions) -> Report {
    let mut report = Report::new(settings::mode(config));
    let budget = opts.timeout;
    // A rule only `run` checks (the key template, the store's URL) that fails still leaves
    // the rest worth checking: the exit code says bad usage all the same.
    report.extend([settings::check(config)]);
    report.extend(queue::checks(config, budget).await);
    let grants = if report.failed("queue") {
        Check::new(grants::NAME, 0, Outcome::skip("the queue cannot be used"))
    } else {
        grants::check(config, budget).await
    };
    report.extend([grants]);
    report.extend(storage::checks(config, budget).await);
    report.extend(disk::checks(&config.worker));
    let douyin = douyin::checks(config, &opts.video, budget).await;
    report.extend(douyin.checks);
    report.extend([browser::check(config, douyin.aweme_id.as_deref(), &opts.video, budget).await]);
    report.extend(listeners::checks(&config.http).await);
    report
}

/// The report of a configuration that does not resolve: its one failed check, so that
/// scripts reading `--json` get the same shape.
pub(crate) fn bad_configuration(e: &ConfigError) -> Report {
    let mut report = Report::new("unknown");
    report.extend([Check::new(
        CONFIGURATION,
        0,
        Outcome::fail(
            e.to_string(),
            "fix the setting named (see `douyin-worker --help` and the README's Configuration)",
        ),
    )]);
    report
}
