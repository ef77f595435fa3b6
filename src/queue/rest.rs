//! The Supabase backend: the same SQL functions as [`super::postgres`], called over the
//! REST API's RPC (`POST {SUPABASE_URL}/rest/v1/rpc/{function}` with a JSON object of named
//! arguments, the key in `apikey` and `Authorization: Bearer`).
//!
//! For users who have only the project URL and the service key (the direct database host
//! can be IPv6-only). Return shapes are PostgREST's: a set is a JSON array, a scalar a bare
//! JSON value. There is no LISTEN over REST: the worker polls every `POLL_INTERVAL` and
//! claims again at once while claims come back full. Errors carry PostgREST's
//! `{code, message, details, hint}`: a missing function (PGRST202) means the migrations are
//! missing, 401/403 a wrong key, 5xx/429/timeouts are transient.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;

use super::wire::{completion_json, failure_json, lease_json};
use super::{
    ClaimedJob, CompleteOutcome, Completion, EnqueueOutcome, EnqueueRequest, EnqueueResult,
    FailOutcome, FailedAttempt, JobFilter, JobQueue, JobRecord, JobSignal, Learned, Lease,
    QueueError, QueueOverview, ReleaseOutcome, Rescued, RetryOutcome, RetryResult, RetryTarget,
    SCHEMA_VERSION, VideoCover, VideoState, WorkerStats,
};
use super::{QueueAdmin, QueueName};
use crate::config::Secret;

mod rows;
use rows::{ClaimRow, EnqueueRow, KeyRow, LeaseRow, OutcomeRow, OverviewRow, RescueRow, RetryRow};

/// The queue behind a Supabase project's REST API.
#[derive(Clone)]
pub struct RestQueue {
    client: reqwest::Client,
    rpc: Url,
    key: Secret,
}

impl std::fmt::Debug for RestQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestQueue")
            .field("rpc", &self.rpc.as_str())
            .finish()
    }
}

/// PostgREST's error body.
#[derive(Debug, Default, Deserialize)]
struct ApiError {
    code: Option<String>,
    message: Option<String>,
    details: Option<String>,
    hint: Option<String>,
}

impl RestQueue {
    /// A queue for the project at `supabase_url` (e.g. `https://abc.supabase.co`).
    pub fn new(supabase_url: &Url, key: Secret) -> Result<Self, QueueError> {
        let mut base = supabase_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let rpc = base
            .join("rest/v1/rpc/")
            .map_err(|e| QueueError::Rejected(format!("SUPABASE_URL: {e}")))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("douyin-worker/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| QueueError::Rejected(format!("HTTP client: {e}")))?;
        Ok(Self { client, rpc, key })
    }

    /// Calls `function` with named `args`; decodes the JSON answer.
    async fn call<T: DeserializeOwned>(
        &self,
        function: &str,
        args: Value,
    ) -> Result<T, QueueError> {
        let url = self
            .rpc
            .join(function)
            .map_err(|e| QueueError::Rejected(format!("function name {function}: {e}")))?;
        let response = self
            .client
            .post(url)
            .header("apikey", self.key.expose())
            .bearer_auth(self.key.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&args)
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(format!("{function}: {}", without_url(&e))))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| QueueError::Unavailable(format!("{function}: {}", without_url(&e))))?;
        if status.is_success() {
            // A void function answers 204 with no body: read it as JSON null.
            let body: &[u8] = if body.is_empty() { b"null" } else { &body };
            return serde_json::from_slice(body)
                .map_err(|e| QueueError::Database(format!("{function}: unexpected answer ({e})")));
        }
        let err: ApiError = serde_json::from_slice(&body).unwrap_or_default();
        Err(api_error(function, status, err, &body))
    }
}

/// A reqwest error without its URL (it holds nothing secret, but is long and repeats).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Maps an error answer to a queue error that says what to do.
fn api_error(function: &str, status: StatusCode, e: ApiError, raw: &[u8]) -> QueueError {
    // The answer's text may echo the request (a proxy's error page echoing the headers):
    // one line, the key scrubbed.
    let safe = |t: &str| crate::redact::excerpt(t, 300);
    let code = safe(e.code.as_deref().unwrap_or_default());
    let mut message = match e.message.as_deref() {
        Some(m) => safe(m),
        None => safe(&String::from_utf8_lossy(raw)),
    };
    if let Some(d) = e.details.as_deref().filter(|d| !d.is_empty()) {
        message = format!("{message} ({})", safe(d));
    }
    if let Some(h) = e.hint.as_deref().filter(|h| !h.is_empty()) {
        message = format!("{message}; hint: {}", safe(h));
    }
    if code == "PGRST202" {
        return QueueError::Schema(format!(
            "the function public.{function} is missing from the database: apply the \
             migrations (paste {} in order into the SQL editor, or \
             run `douyin-worker migrate` with DATABASE_URL); a function created a moment ago \
             may also need the API's schema cache reloaded ({message})",
            crate::queue::migrate::postgres_files_in_order()
        ));
    }
    match status.as_u16() {
        401 | 403 => QueueError::PermissionDenied(format!(
            "SUPABASE_SERVICE_ROLE_KEY may not call {function}: {message} (HTTP {status}, \
             code {code}); use the project's service role key (sb_secret_… or the legacy \
             service_role JWT)"
        )),
        408 | 429 | 500..=599 => {
            QueueError::Unavailable(format!("{function}: HTTP {status} {code} {message}"))
        }
        400 if code == "P0001" => QueueError::Rejected(format!("{function}: {message}")),
        _ => QueueError::Database(format!("{function}: HTTP {status} {code} {message}")),
    }
}

/// Keys asked for per `list_wanted_object_keys` call. The API may cap an answer at fewer
/// rows (Supabase's `max_rows`, 1000 by default); paging by key until an empty page stays
/// correct either way.
const KEY_PAGE: u32 = 1000;

fn secs(d: Duration) -> i64 {
    d.as_secs().clamp(1, i32::MAX as u64) as i64
}

impl QueueName for RestQueue {
    fn backend(&self) -> &'static str {
        "supabase"
    }
}

#[async_trait]
impl JobQueue for RestQueue {
    async fn claim(
        &self,
        worker_id: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        let rows: Vec<ClaimRow> = self
            .call(
                "claim_download_jobs",
                json!({"p_worker_id": worker_id, "p_limit": limit, "p_lease_seconds": secs(lease)}),
            )
            .await?;
        Ok(rows.into_iter().map(ClaimedJob::from).collect())
    }

    async fn heartbeat(
        &self,
        worker_id: &str,
        leases: &[Lease],
        lease: Duration,
    ) -> Result<Vec<Lease>, QueueError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<LeaseRow> = self
            .call(
                "heartbeat_download_jobs",
                json!({"p_worker_id": worker_id, "p_leases": lease_json(leases),
                       "p_lease_seconds": secs(lease)}),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Lease {
                job_id: r.job_id,
                lease_id: r.lease_id,
            })
            .collect())
    }

    async fn complete(
        &self,
        worker_id: &str,
        items: &[Completion],
    ) -> Result<Vec<(Uuid, CompleteOutcome)>, QueueError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<Value> = items.iter().map(completion_json).collect();
        let rows: Vec<OutcomeRow> = self
            .call(
                "complete_download_jobs",
                json!({"p_worker_id": worker_id, "p_results": body}),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.job_id, CompleteOutcome::from_sql(&r.outcome)))
            .collect())
    }

    async fn fail(
        &self,
        worker_id: &str,
        items: &[FailedAttempt],
    ) -> Result<Vec<(Uuid, FailOutcome)>, QueueError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<Value> = items.iter().map(failure_json).collect();
        let rows: Vec<OutcomeRow> = self
            .call(
                "fail_download_jobs",
                json!({"p_worker_id": worker_id, "p_failures": body}),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.job_id, FailOutcome::from_sql(&r.outcome, r.scheduled_at)))
            .collect())
    }

    async fn release(
        &self,
        worker_id: &str,
        leases: &[Lease],
    ) -> Result<Vec<(Uuid, ReleaseOutcome)>, QueueError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<OutcomeRow> = self
            .call(
                "release_download_jobs",
                json!({"p_worker_id": worker_id, "p_leases": lease_json(leases)}),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.job_id, ReleaseOutcome::from_sql(&r.outcome)))
            .collect())
    }

    async fn rescue(&self, limit: u32) -> Result<Vec<Rescued>, QueueError> {
        let rows: Vec<RescueRow> = self
            .call("rescue_download_jobs", json!({"p_limit": limit}))
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Rescued {
                job_id: r.job_id,
                video_id: r.video_id,
                douyin_id: r.douyin_id,
                requeued: r.outcome == "requeued",
                worker_id: r.worker_id,
            })
            .collect())
    }

    async fn progress(
        &self,
        worker_id: &str,
        lease: &Lease,
        done: u64,
        total: Option<u64>,
    ) -> Result<bool, QueueError> {
        self.call(
            "report_download_progress",
            json!({"p_worker_id": worker_id, "p_job_id": lease.job_id,
                   "p_lease_id": lease.lease_id, "p_bytes_done": done, "p_bytes_total": total}),
        )
        .await
    }

    async fn learn_douyin_id(
        &self,
        worker_id: &str,
        lease: &Lease,
        douyin_id: &str,
    ) -> Result<Learned, QueueError> {
        #[derive(Deserialize)]
        struct Row {
            outcome: String,
            video_id: Option<Uuid>,
        }
        let rows: Vec<Row> = self
            .call(
                "learn_douyin_id",
                json!({"p_worker_id": worker_id, "p_job_id": lease.job_id,
                       "p_lease_id": lease.lease_id, "p_douyin_id": douyin_id}),
            )
            .await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| QueueError::Database("learn_douyin_id answered no row".into()))?;
        Ok(Learned::from_sql(&row.outcome, row.video_id))
    }

    async fn subscribe(
        &self,
        _signal: Arc<JobSignal>,
        _shutdown: CancellationToken,
    ) -> Result<(), QueueError> {
        // No LISTEN over REST: the worker polls.
        Ok(())
    }
}

#[async_trait]
impl QueueAdmin for RestQueue {
    async fn check_schema(&self) -> Result<(), QueueError> {
        let version: i32 = self
            .call("douyin_worker_schema_version", json!({}))
            .await
            .map_err(|e| match e {
                QueueError::Schema(_) => QueueError::Schema(format!(
                    "the douyin-worker functions are missing from the database (the migrations \
                     have not been applied): paste {} in order into the Supabase \
                     SQL editor, or run `douyin-worker migrate` once with DATABASE_URL",
                    crate::queue::migrate::postgres_files_in_order()
                )),
                other => other,
            })?;
        if version < SCHEMA_VERSION {
            return Err(QueueError::Schema(format!(
                "the database schema is at version {version}, this worker needs {SCHEMA_VERSION}: \
                 paste the newer of {} in order into the SQL editor",
                crate::queue::migrate::postgres_files_in_order()
            )));
        }
        Ok(())
    }

    async fn enqueue(&self, req: &EnqueueRequest) -> Result<EnqueueResult, QueueError> {
        // Only the arguments given, so the function's defaults apply to the rest.
        let mut args = serde_json::Map::new();
        let mut put = |k: &str, v: Value| {
            if !v.is_null() {
                args.insert(k.to_string(), v);
            }
        };
        put("p_video_id", json!(req.video_id));
        put("p_url", json!(req.url));
        put("p_douyin_id", json!(req.douyin_id));
        put("p_payload", json!(req.payload));
        put("p_priority", json!(req.priority));
        put("p_max_attempts", json!(req.max_attempts));
        if req.force {
            put("p_force", json!(true));
        }
        let rows: Vec<EnqueueRow> = self
            .call("enqueue_download_job", Value::Object(args))
            .await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| QueueError::Database("enqueue_download_job returned no row".into()))?;
        let outcome = EnqueueOutcome::parse(&row.outcome).ok_or_else(|| {
            QueueError::Database(format!("unknown enqueue outcome {:?}", row.outcome))
        })?;
        Ok(EnqueueResult {
            job_id: row.job_id,
            video_id: row.video_id,
            outcome,
        })
    }

    async fn stats(&self) -> Result<WorkerStats, QueueError> {
        let rows: Vec<WorkerStats> = self.call("get_worker_stats", json!({})).await?;
        rows.into_iter()
            .next()
            .ok_or_else(|| QueueError::Database("get_worker_stats returned no row".into()))
    }

    async fn ensure_videos_bucket(&self) -> Result<bool, QueueError> {
        match self.call::<Value>("ensure_videos_bucket", json!({})).await {
            Ok(_) => Ok(true),
            Err(QueueError::Schema(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn job(&self, id: Uuid) -> Result<Option<JobRecord>, QueueError> {
        let rows: Vec<JobRecord> = self
            .call("list_download_jobs", json!({"p_job_id": id}))
            .await?;
        Ok(rows.into_iter().next())
    }

    /// One RPC for every watched video (`get_download_video_marks`, migration 0007).
    async fn video_marks(
        &self,
        ids: &[Uuid],
    ) -> Result<Vec<super::changes::VideoMark>, QueueError> {
        self.call("get_download_video_marks", json!({"p_video_ids": ids}))
            .await
    }

    async fn video(&self, id: Uuid) -> Result<Option<VideoState>, QueueError> {
        let rows: Vec<VideoState> = self
            .call("get_download_video", json!({"p_video_id": id}))
            .await?;
        Ok(rows.into_iter().next())
    }

    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, QueueError> {
        self.call(
            "list_download_jobs",
            json!({"p_status": filter.status.map(|s| s.as_str()), "p_limit": filter.limit}),
        )
        .await
    }

    async fn retry(&self, target: &RetryTarget) -> Result<Vec<RetryResult>, QueueError> {
        let args = match target {
            RetryTarget::Jobs(ids) => json!({"p_job_ids": ids}),
            RetryTarget::AllFailed => json!({"p_all_failed": true}),
        };
        let rows: Vec<RetryRow> = self.call("retry_download_jobs", args).await?;
        rows.into_iter()
            .map(|r| {
                let outcome = RetryOutcome::parse(&r.outcome).ok_or_else(|| {
                    QueueError::Database(format!("unknown retry outcome {:?}", r.outcome))
                })?;
                Ok(RetryResult {
                    job_id: r.job_id,
                    video_id: r.video_id,
                    new_job_id: r.new_job_id,
                    outcome,
                })
            })
            .collect()
    }

    async fn overview(&self) -> Result<QueueOverview, QueueError> {
        let rows: Vec<OverviewRow> = self.call("get_download_queue_overview", json!({})).await?;
        let row = rows.into_iter().next().ok_or_else(|| {
            QueueError::Database("get_download_queue_overview returned no row".into())
        })?;
        Ok(QueueOverview {
            stats: row.stats,
            due_jobs: row.due_jobs,
            oldest_due_seconds: row.oldest_due_seconds,
            workers: row.workers,
        })
    }

    async fn wanted_object_keys(&self, bucket: &str) -> Result<HashSet<String>, QueueError> {
        let mut keys = HashSet::new();
        let mut after: Option<String> = None;
        loop {
            let page: Vec<KeyRow> = self
                .call(
                    "list_wanted_object_keys",
                    json!({"p_bucket": bucket, "p_after": after, "p_limit": KEY_PAGE}),
                )
                .await?;
            let Some(last) = page.last() else {
                return Ok(keys);
            };
            // Keys come in increasing byte order; anything else would page forever.
            if after.as_ref().is_some_and(|a| last.object_key <= *a) {
                return Err(QueueError::Database(
                    "list_wanted_object_keys: pages are not in key order".into(),
                ));
            }
            after = Some(last.object_key.clone());
            keys.extend(page.into_iter().map(|r| r.object_key));
        }
    }

    async fn video_cover(&self, id: Uuid) -> Result<Option<VideoCover>, QueueError> {
        let rows: Vec<VideoCover> = self
            .call("get_video_cover", json!({"p_video_id": id}))
            .await?;
        Ok(rows.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_url_keeps_a_path_prefix() {
        let q = RestQueue::new(
            &Url::parse("https://abc.supabase.co").unwrap(),
            Secret::new("k"),
        )
        .unwrap();
        assert_eq!(q.rpc.as_str(), "https://abc.supabase.co/rest/v1/rpc/");
        let q = RestQueue::new(
            &Url::parse("http://127.0.0.1:8000/proxy").unwrap(),
            Secret::new("topsecret"),
        )
        .unwrap();
        assert_eq!(q.rpc.as_str(), "http://127.0.0.1:8000/proxy/rest/v1/rpc/");
        assert!(!format!("{q:?}").contains("topsecret"));
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = api_error(
            "claim_download_jobs",
            StatusCode::NOT_FOUND,
            ApiError {
                code: Some("PGRST202".into()),
                message: Some("Could not find the function".into()),
                ..Default::default()
            },
            b"",
        );
        assert!(
            matches!(&e, QueueError::Schema(m) if m.contains("migrations")),
            "{e}"
        );
        let e = api_error(
            "claim_download_jobs",
            StatusCode::UNAUTHORIZED,
            ApiError {
                code: Some("42501".into()),
                message: Some("permission denied for function claim_download_jobs".into()),
                ..Default::default()
            },
            b"",
        );
        assert!(matches!(&e, QueueError::PermissionDenied(m) if m.contains("service role key")));
        assert!(!e.is_transient());
        for status in [429, 500, 502, 503, 504] {
            let e = api_error(
                "f",
                StatusCode::from_u16(status).unwrap(),
                ApiError::default(),
                b"upstream down",
            );
            assert!(e.is_transient(), "{status}");
        }
    }
}
