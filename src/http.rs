//! The worker's HTTP server (axum): `/healthz`, `/readyz`, `/metrics`, and, when
//! `API_ENABLED=true`, the UI's download API ([`api`]).
//!
//! It runs beside the worker in the same process, bound to `HTTP_ADDR` (loopback by default).
//! `/healthz` answers while the process serves requests; `/readyz` answers 200 only while the
//! queue and the store answer and the worker is not shutting down (checks are cached for a
//! few seconds so probes cannot hammer the database); `/metrics` renders the Prometheus
//! recorder after refreshing the queue gauges (at most every few seconds).

pub mod api;

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

use crate::queue::JobQueue;
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
    pub queue: Arc<dyn JobQueue>,
    /// The store (readiness, the API's signed URLs and proxying).
    pub storage: Arc<dyn ObjectBackend>,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// Cancelled when the worker begins to shut down: `/readyz` turns 503.
    pub shutting_down: CancellationToken,
    /// The download API's settings, when it is on.
    pub api: Option<api::ApiOptions>,
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
        queue: Arc<dyn JobQueue>,
        storage: Arc<dyn ObjectBackend>,
        prometheus: PrometheusHandle,
        shutting_down: CancellationToken,
        api: Option<api::ApiOptions>,
    ) -> Self {
        Self {
            queue,
            storage,
            prometheus,
            shutting_down,
            api,
            checks: Arc::default(),
        }
    }
}

/// The routes: health and metrics, plus the download API when it is on.
pub fn router(state: HttpState) -> Router {
    let base = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text));
    let router = match &state.api {
        Some(opts) => base.merge(api::router(opts)),
        None => base,
    };
    router.with_state(state)
}

/// Binds `addr`; the error names the setting.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("HTTP_ADDR={addr}: cannot listen ({e}); set another address, or HTTP_ADDR=off")
    })
}

/// Serves until `stop` is cancelled, then lets requests in progress finish for at most
/// `drain` (a proxied download can be long).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    stop: CancellationToken,
    drain: Duration,
) {
    let app = router(state);
    let graceful_stop = stop.clone();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { graceful_stop.cancelled().await })
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => {
            if let Err(e) = r {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        }
        _ = async { stop.cancelled().await; tokio::time::sleep(drain).await } => {
            tracing::warn!("HTTP requests still running after the drain period: closed");
        }
    }
}

async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

async fn readyz(State(state): State<HttpState>) -> Response {
    if state.shutting_down.is_cancelled() {
        return not_ready("shutting down");
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

/// The queue answers the schema check and the store answers a lookup.
async fn check_ready(state: &HttpState) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, state.queue.check_schema()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("queue: {e}")),
        Err(_) => return Err("queue: no answer in time".into()),
    }
    match tokio::time::timeout(CHECK_TIMEOUT, state.storage.head(".douyin-worker-readyz")).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("storage: {e}")),
        Err(_) => Err("storage: no answer in time".into()),
    }
}

async fn metrics_text(State(state): State<HttpState>) -> Response {
    refresh_queue_gauges(&state).await;
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
