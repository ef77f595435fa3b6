//! The worker's HTTP server (axum on hyper): `/healthz`, `/readyz`, `/metrics`, and, when
//! the API is on, the UI's download API ([`api`]).
//!
//! It runs beside the worker in the same process. `HTTP_ADDR` (loopback by default) serves
//! health and metrics; `API_ADDR` serves the download API on a listener of its own, so
//! publishing the API publishes neither the metrics nor the readiness reasons, and a flood of
//! API connections cannot make the probes unreachable. (`API_ENABLED=true` without
//! `API_ADDR` serves the API on `HTTP_ADDR` as before.) Every listener runs [`server`]'s
//! accept loop: a connection cap, header, idle and stall timeouts.
//!
//! `/healthz` answers while the process serves requests; `/readyz` answers 200 only while the
//! queue and the store answer, the temp folder has `MIN_FREE_DISK` free, the worker is not
//! shutting down and no part of the process has a reason set in its `readiness` (claims
//! failing in a row) (checks are cached for a few seconds so probes cannot hammer the
//! database; a 503 names the part or reason that is not ready, the details go to the log);
//! `/metrics` renders the Prometheus recorder after refreshing
//! the queue gauges (at most every few seconds).

pub mod api;
pub mod fdlimit;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

pub use server::{ServerLimits, serve};

use crate::queue::QueueAdmin;
use crate::readiness::Readiness;
use crate::storage::ObjectBackend;

/// How long a readiness answer is reused.
const READY_CACHE: Duration = Duration::from_secs(2);
/// How long the queue gauges are reused.
const GAUGE_CACHE: Duration = Duration::from_secs(1);
/// Time each readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What the server needs.
#[derive(Clone)]
pub struct HttpState {
    /// The queue (readiness, queue gauges, the API).
    pub queue: Arc<dyn QueueAdmin>,
    /// The store (readiness, the API's signed URLs and proxying).
    pub storage: Arc<dyn ObjectBackend>,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// Cancelled when the worker begins to shut down: `/readyz` turns 503.
    pub shutting_down: CancellationToken,
    /// The download API's settings, when it is on.
    pub api: Option<api::ApiOptions>,
    /// Reasons the process's own parts set when they cannot work (claims failing): `/readyz`
    /// answers 503 naming them.
    pub readiness: Arc<Readiness>,
    /// The temp folder's free-space rule (`MIN_FREE_DISK`), when there is a worker.
    pub disk: Option<crate::disk::FreeSpace>,
    /// The process's hub of video changes the events streams wait on.
    pub changes: Arc<crate::queue::changes::VideoChanges>,
    checks: Arc<Checks>,
}

/// Cached probe results.
#[derive(Default)]
struct Checks {
    ready: Mutex<Option<(Instant, Result<(), String>)>>,
    gauges: Mutex<Option<Instant>>,
}

impl HttpState {
    /// The state for a server over these parts.
    pub fn new(
        queue: Arc<dyn QueueAdmin>,
        storage: Arc<dyn ObjectBackend>,
        prometheus: PrometheusHandle,
        shutting_down: CancellationToken,
        api: Option<api::ApiOptions>,
    ) -> Self {
        let poll = api
            .as_ref()
            .map_or(Duration::from_secs(1), |o| o.events.poll_interval);
        Self {
            changes: Arc::new(crate::queue::changes::VideoChanges::new(poll)),
            queue,
            storage,
            prometheus,
            shutting_down,
            api,
            readiness: Arc::default(),
            disk: None,
            checks: Arc::default(),
        }
    }

    /// The same, reporting the reasons set in `readiness` (the worker's).
    pub fn with_readiness(mut self, readiness: Arc<Readiness>) -> Self {
        self.readiness = readiness;
        self
    }

    /// `/readyz` also answers 503 (`disk`) while the temp folder has less room than the rule,
    /// as the worker then claims nothing; `/metrics` measures it at each scrape.
    pub(crate) fn with_disk(mut self, disk: crate::disk::FreeSpace) -> Self {
        self.disk = Some(disk);
        self
    }
}

/// The routes of `HTTP_ADDR`: health and metrics, plus the download API when `state` has API
/// options (`API_ENABLED=true` without `API_ADDR`: the API shares the port).
pub fn router(state: HttpState) -> Router {
    let router = match &state.api {
        Some(opts) => health_routes().merge(api::router(opts)),
        None => health_routes(),
    };
    router.with_state(state)
}

/// The routes of `HTTP_ADDR` when the API has its own listener: health and metrics only.
pub(crate) fn health_router(state: HttpState) -> Router {
    health_routes().with_state(state)
}

/// The routes of `API_ADDR`: the download API and its `/health`, nothing else (no metrics,
/// no readiness reasons). Without API options in `state`, only `/health`.
pub(crate) fn api_router(state: HttpState) -> Router {
    let routes = match &state.api {
        Some(opts) => api::router(opts),
        None => Router::new().route("/health", get(healthz)),
    };
    routes.with_state(state)
}

fn health_routes() -> Router<HttpState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
}

/// Binds `addr`; the error names `setting` (`HTTP_ADDR`, `API_ADDR`).
pub async fn bind(
    addr: SocketAddr,
    setting: &'static str,
) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("{setting}={addr}: cannot listen ({e}); set another address, or {setting}=off")
    })
}

/// The running listeners of the process.
pub struct Servers {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Servers {
    /// Stops accepting, lets requests in progress finish for the drain period, and waits.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Binds `HTTP_ADDR` and `API_ADDR` (those set) and serves them: health and metrics on the
/// first, the download API on the second (or on the first when it has none). Each listener
/// holds at most `HTTP_MAX_CONNECTIONS`, lowered to its part of the descriptor limit
/// `nofile` (`fdlimit::connection_cap`). A busy port is an error naming the setting.
pub async fn start(
    config: &crate::config::HttpSettings,
    state: HttpState,
    nofile: Option<u64>,
    drain: Duration,
) -> Result<Servers, String> {
    let mut bound = Vec::new();
    if let Some(addr) = config.http_addr {
        bound.push(("http", bind(addr, "HTTP_ADDR").await?));
    }
    if let Some(addr) = config.api_addr {
        bound.push(("api", bind(addr, "API_ADDR").await?));
    }
    let cap = fdlimit::connection_cap(config.max_connections, nofile, bound.len());
    if cap < config.max_connections {
        tracing::warn!(
            setting = config.max_connections,
            cap,
            nofile,
            listeners = bound.len(),
            "HTTP_MAX_CONNECTIONS lowered: the HTTP server keeps to a quarter of the descriptor limit, the rest is for the jobs"
        );
    }
    if config.api_enabled && config.api_addr.is_none() {
        tracing::warn!(
            "the download API shares HTTP_ADDR with /metrics and /readyz: publishing it publishes them; set API_ADDR to serve the API on a listener of its own"
        );
    }
    let limits = ServerLimits::new(config, cap);
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for (name, listener) in bound {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let app = match name {
            "api" => {
                tracing::info!(%addr, max_connections = cap, "download API listening");
                api_router(state.clone())
            }
            _ if config.api_addr.is_some() => {
                tracing::info!(%addr, max_connections = cap, api = false, "HTTP server listening (/healthz, /readyz, /metrics)");
                health_router(state.clone())
            }
            _ => {
                tracing::info!(%addr, max_connections = cap, api = config.api_enabled, "HTTP server listening (/healthz, /readyz, /metrics)");
                router(state.clone())
            }
        };
        tasks.push(tokio::spawn(serve(
            listener,
            app,
            name,
            limits,
            stop.clone(),
            drain,
        )));
    }
    Ok(Servers { stop, tasks })
}

async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

async fn readyz(State(state): State<HttpState>) -> Response {
    if state.shutting_down.is_cancelled() {
        return not_ready("shutting down");
    }
    let reasons = state.readiness.reasons();
    if let Some(first) = reasons.first() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not_ready", "reason": first, "reasons": reasons})),
        )
            .into_response();
    }
    let mut cached = state.checks.ready.lock().await;
    let result = match &*cached {
        Some((at, r)) if at.elapsed() < READY_CACHE => r.clone(),
        _ => {
            let r = check_ready(&state).await;
            *cached = Some((Instant::now(), r.clone()));
            r
        }
    };
    drop(cached);
    match result {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({"status": "ready", "queue": state.queue.backend(), "storage": state.storage.provider()})),
        )
            .into_response(),
        Err(why) => not_ready(&why),
    }
}

fn not_ready(why: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"status": "not_ready", "reason": why})),
    )
        .into_response()
}

/// The temp folder has room, the queue answers the schema check and the store answers a
/// lookup. The error is the part that is not ready (`disk`, `queue`, `storage`): the answer
/// is public, the details go to the log.
async fn check_ready(state: &HttpState) -> Result<(), String> {
    if let Some(low) = state.disk.as_ref().and_then(|d| d.low()) {
        tracing::warn!(
            free_bytes = low.free,
            min_free_disk = low.min_free,
            "not ready: {low}"
        );
        return Err("disk".into());
    }
    match tokio::time::timeout(CHECK_TIMEOUT, state.queue.check_schema()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: the queue does not answer");
            return Err("queue".into());
        }
        Err(_) => {
            tracing::warn!("not ready: the queue does not answer in time");
            return Err("queue".into());
        }
    }
    match tokio::time::timeout(CHECK_TIMEOUT, state.storage.head(".douyin-worker-readyz")).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            Err("storage".into())
        }
        Err(_) => {
            tracing::warn!("not ready: the store does not answer in time");
            Err("storage".into())
        }
    }
}

async fn metrics_text(State(state): State<HttpState>) -> Response {
    refresh_queue_gauges(&state).await;
    if let Some(disk) = &state.disk {
        // Measures the free space for its gauge.
        let _ = disk.low();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.prometheus.render(),
    )
        .into_response()
}

/// Sets the queue-depth gauges from the queue, at most every [`GAUGE_CACHE`]. A queue that
/// does not answer leaves the last values (and counts an error).
async fn refresh_queue_gauges(state: &HttpState) {
    let mut last = state.checks.gauges.lock().await;
    if last.is_some_and(|at| at.elapsed() < GAUGE_CACHE) {
        return;
    }
    *last = Some(Instant::now());
    let overview = tokio::time::timeout(CHECK_TIMEOUT, state.queue.overview()).await;
    let (stats, oldest) = match overview {
        Ok(Ok(o)) => (o.stats, o.oldest_due_seconds),
        // A backend without the overview still has the old stats function.
        _ => match tokio::time::timeout(CHECK_TIMEOUT, state.queue.stats()).await {
            Ok(Ok(s)) => (s, None),
            _ => {
                metrics::counter!(crate::metrics::QUEUE_ERRORS, "operation" => "stats")
                    .increment(1);
                return;
            }
        },
    };
    for (status, n) in [
        ("pending", stats.pending_jobs),
        ("running", stats.running_jobs),
        ("completed", stats.completed_jobs),
        ("failed", stats.failed_jobs),
    ] {
        metrics::gauge!(crate::metrics::QUEUE_JOBS, "status" => status).set(n as f64);
    }
    metrics::gauge!(crate::metrics::QUEUE_OLDEST_DUE_SECONDS).set(oldest.unwrap_or(0.0));
}
