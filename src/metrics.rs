//! Prometheus metrics: the names in one place, and the process-wide recorder.
//!
//! Code records through the `metrics` macros with these names; [`install`] sets up the
//! Prometheus recorder once per process, and the HTTP server's `/metrics` renders it. When
//! no recorder is installed (the CLI's one-shot commands, unit tests) recording costs
//! nothing and goes nowhere. Labels never carry secrets or unbounded values (no URLs, no
//! ids): error codes, classes, strategy names and statuses only.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Jobs claimed (counter).
pub(crate) const JOBS_CLAIMED: &str = "douyin_jobs_claimed_total";
/// Jobs completed (counter).
pub(crate) const JOBS_COMPLETED: &str = "douyin_jobs_completed_total";
/// Failed attempts, by `class` and `code` (counter).
pub(crate) const JOBS_FAILED: &str = "douyin_jobs_failed_total";
/// Failed attempts rescheduled for a later retry (counter).
pub(crate) const JOBS_RETRIED: &str = "douyin_jobs_retried_total";
/// Jobs released unfinished at shutdown (counter).
pub(crate) const JOBS_RELEASED: &str = "douyin_jobs_released_total";
/// Jobs running in this process (gauge).
pub(crate) const JOBS_IN_FLIGHT: &str = "douyin_jobs_in_flight";
/// Jobs in the queue by `status` (gauge, refreshed at each scrape).
pub(crate) const QUEUE_JOBS: &str = "douyin_queue_jobs";
/// Seconds the oldest due job has waited (gauge, refreshed at each scrape).
pub(crate) const QUEUE_OLDEST_DUE_SECONDS: &str = "douyin_queue_oldest_due_seconds";
/// Bytes downloaded (counter).
pub(crate) const BYTES_DOWNLOADED: &str = "douyin_downloaded_bytes_total";
/// Bytes uploaded (counter).
pub(crate) const BYTES_UPLOADED: &str = "douyin_uploaded_bytes_total";
/// Seconds per stage: `stage` = `extract`, `download`, `validate`, `upload` (histogram).
pub(crate) const STAGE_SECONDS: &str = "douyin_stage_seconds";
/// Seconds per job, claim to outcome, by `outcome` (histogram).
pub(crate) const JOB_SECONDS: &str = "douyin_job_seconds";
/// Extraction answers by `strategy` and `result` (counter).
pub(crate) const EXTRACT_STRATEGY_RESULTS: &str = "douyin_extract_strategy_results_total";
/// Jobs whose lease expired and were requeued or failed by this process (counter).
pub(crate) const LEASE_RESCUES: &str = "douyin_lease_rescues_total";
/// Queue calls that failed, by `operation` (counter).
pub(crate) const QUEUE_ERRORS: &str = "douyin_queue_errors_total";
/// Claims that failed, by `error` (`unavailable`, `database`, `schema`, `permission_denied`,
/// `rejected`) (counter).
pub(crate) const CLAIM_FAILURES: &str = "douyin_claim_failures_total";
/// Claims that failed in a row since the last one that worked (gauge); `/readyz` answers 503
/// from 5.
pub(crate) const CLAIM_CONSECUTIVE_FAILURES: &str = "douyin_claim_consecutive_failures";
/// HTTP connections held, by `listener` (`http`, `api`) (gauge).
pub(crate) const HTTP_CONNECTIONS: &str = "douyin_http_connections";
/// HTTP connections closed at once because the listener's cap was reached, by `listener`
/// (counter).
pub(crate) const HTTP_CONNECTIONS_REFUSED: &str = "douyin_http_connections_refused_total";
/// HTTP connections closed by a deadline, by `listener` and `timeout` (`header`, `idle`,
/// `stall`) (counter).
pub(crate) const HTTP_TIMEOUTS: &str = "douyin_http_timeouts_total";
/// Download API requests refused, by `reason` (`rate_limit`, `unauthorized`,
/// `media_type`, `cooldown`, `timeout`) (counter).
pub(crate) const API_REFUSED: &str = "douyin_api_refused_total";
/// Bytes free under `TEMP_DIR` (gauge, measured before each claim and at each scrape).
pub(crate) const TEMP_FREE_BYTES: &str = "douyin_temp_free_bytes";
/// 1 while claiming is paused because less than `MIN_FREE_DISK` is free under `TEMP_DIR`,
/// else 0 (gauge).
pub(crate) const LOW_DISK: &str = "douyin_low_disk";
/// Covers stored beside their videos (counter).
pub(crate) const COVERS_STORED: &str = "douyin_covers_stored_total";
/// Covers that could not be stored, by `reason` (the error code, e.g. `no-cover`,
/// `download-failed`, `too-large`, `not-image`, `html-as-video`, `cover-timeout`); the video
/// completes without one (counter).
pub(crate) const COVER_FAILURES: &str = "douyin_cover_failures_total";
/// Constant 1 with `worker_id` and `version` labels (gauge).
pub(crate) const WORKER_INFO: &str = "douyin_worker_info";

/// Bucket bounds of the seconds histograms: 10 ms to 30 minutes.
const SECONDS_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// An error code as a label: codes are short kebab-case words chosen in this crate, but a
/// code that came from elsewhere (a storage error body) is folded into `other` so the label
/// set stays bounded.
pub(crate) fn code_label(code: &str) -> String {
    if code.len() <= 40
        && !code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        code.to_string()
    } else {
        "other".to_string()
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder for this process (once; later calls return the same
/// handle) and records the worker's info gauge.
pub fn install(worker_id: &str) -> PrometheusHandle {
    let handle = HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .expect("the bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed (an embedding program's); then
            // this handle renders nothing, which is the embedder's choice.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder is already installed; /metrics stays empty");
            }
            handle
        })
        .clone();
    metrics::gauge!(
        WORKER_INFO,
        "worker_id" => worker_id.to_string(),
        "version" => env!("CARGO_PKG_VERSION"),
    )
    .set(1.0);
    handle
}

/// The handle, if [`install`] ran.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE.get().cloned()
}
