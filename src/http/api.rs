//! The UI's download API, compatible with the old Express app (`EXISTING-SYSTEM.md`):
//!
//! - `GET` or `POST /api/videos/{id}/download`: `404` unknown video; `410` marked for
//!   deletion; waiting → queued (`202 {"status":"queued"}`); in progress →
//!   `202 {"status":"downloading","progress":N}`; stored → `200 {"status":"ready",
//!   "download_url","expires_at","filename","filesize","mime_type"}`, or with `?proxy=true`
//!   the file itself (one `Range` served as 206); stored but its object missing →
//!   `404 {"status":"missing","error","retry_available"}`; failed for good →
//!   `500 {"status":"failed","error","retry_available"}`. `HEAD` answers the same status
//!   and never queues anything (link previewers send it).
//! - `POST /api/videos/{id}/retry`: queues the video again (`202 {"status":"queued"}`),
//!   also a stored one whose object has gone missing, only when its last failure can be
//!   retried (else `409`, the failed answer), it has no active
//!   job (else that job's state) and its last job was queued at least
//!   `API_RETRY_COOLDOWN_SECONDS` ago (else `429` with `Retry-After`).
//! - `GET /api/videos/{id}/thumbnail`: the video's stored cover, the lasting thumbnail
//!   (`thumbnail`).
//! - `GET /api/videos/{id}/events`: the video's state as Server-Sent Events, one event per
//!   change until it is stored or failed ([`events`]).
//! - `GET /health`.
//!
//! The API may face the internet ([`guard`]): a per-client rate limit, an optional bearer
//! token, POST bodies other than JSON refused, a time limit per request; ids must be UUIDs,
//! request bodies are capped, CORS allows only the configured origins, and answers never
//! carry a key or an internal error text: a failure's message is chosen by its class and
//! code ([`public`]), the details go to the log.

// A helper that ends a request early returns the answer as its error; it is built once per
// request, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod events;
pub mod guard;
pub mod public;
pub mod range;
pub mod rate;
mod stream;
mod thumbnail;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use uuid::Uuid;

use super::HttpState;
use crate::config::Secret;
use crate::queue::{EnqueueOutcome, EnqueueRequest, VideoState};
use range::Ranged;
use stream::stream_object;

/// Largest request body accepted (the API reads none; this only bounds what a client sends).
const MAX_BODY: usize = 16 * 1024;

/// Video statuses that mean "stored" (with `bucket` and `object_key` set).
const DONE: &[&str] = &["uploaded", "processed", "ready"];
/// Video statuses that mean "in progress".
const IN_PROGRESS: &[&str] = &["downloading", "running"];

/// Settings of the download API.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// Lifetime of signed URLs (`SIGNED_URL_TTL`).
    pub signed_url_ttl: Duration,
    /// Origins allowed by CORS (`API_CORS_ORIGINS`; `*` for any, empty for none).
    pub cors_origins: Vec<String>,
    /// The bearer token every request must carry (`API_TOKEN`), if any.
    pub token: Option<Secret>,
    /// Requests per minute per client (`API_RATE_LIMIT`; 0: no limit).
    pub rate_limit: u32,
    /// The client is the last `X-Forwarded-For` entry (`API_TRUST_FORWARDED_FOR`).
    pub trust_forwarded_for: bool,
    /// No new job for a video within this time of its last one
    /// (`API_RETRY_COOLDOWN_SECONDS`).
    pub retry_cooldown: Duration,
    /// Time a request may take before its answer starts, and a proxied file between two
    /// chunks (`HTTP_REQUEST_TIMEOUT_SECONDS`).
    pub request_timeout: Duration,
    /// The events streams' heartbeat, lifetime and caps (`API_EVENTS_*`).
    pub events: crate::config::EventsSettings,
}

impl Default for ApiOptions {
    /// The settings' declared defaults: links for an hour, no CORS origin, no token, 120
    /// requests a minute per client, a minute between two jobs of a video, 30 s per request.
    fn default() -> Self {
        Self::new(&crate::config::HttpSettings::default())
    }
}

impl ApiOptions {
    /// The options from the validated configuration, if the API is on.
    pub fn new(http: &crate::config::HttpSettings) -> Self {
        Self {
            signed_url_ttl: http.signed_url_ttl,
            cors_origins: http.api_cors_origins.clone(),
            token: http.api_token.clone(),
            rate_limit: http.api_rate_limit,
            trust_forwarded_for: http.api_trust_forwarded_for,
            retry_cooldown: http.api_retry_cooldown,
            request_timeout: http.request_timeout,
            events: crate::config::EventsSettings::default(),
        }
    }

    /// The same with the events streams' settings.
    pub fn with_events(mut self, events: crate::config::EventsSettings) -> Self {
        self.events = events;
        self
    }
}

/// The API's routes behind the gate ([`guard`]), the body limit and CORS (outermost, so
/// preflights are answered and refusals carry CORS headers).
pub fn router(opts: &ApiOptions) -> Router<HttpState> {
    let gate = guard::Gate::new(opts);
    let api = Router::new()
        .route("/api/videos/{id}/download", get(download).post(download))
        .route("/api/videos/{id}/retry", post(retry))
        .route("/api/videos/{id}/thumbnail", get(thumbnail::thumbnail))
        .route("/api/videos/{id}/events", get(events::events))
        .layer(axum::Extension(events::Streams::new(
            opts.events.clone(),
            opts.trust_forwarded_for,
        )))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(gate, guard::gate));
    let routes = api.route("/health", get(health));
    match cors(&opts.cors_origins) {
        Some(layer) => routes.layer(layer),
        None => routes,
    }
}

/// The CORS layer for the configured origins (none: browsers on other origins are refused).
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .max_age(Duration::from_secs(3600)),
    )
}

#[derive(Debug, Default, Deserialize)]
struct DownloadQuery {
    proxy: Option<String>,
}

async fn health() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

async fn download(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    Query(query): Query<DownloadQuery>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let proxy = matches!(
        query
            .proxy
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("true" | "1" | "yes")
    );
    let video = match load(&state, id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if video.marked_for_deletion {
        return gone();
    }
    if is_stored(&video) {
        return if proxy {
            let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
            stream_object(&state, &video, method == Method::HEAD, range).await
        } else {
            ready(&state, &video).await
        };
    }
    if proxy {
        return answer(
            StatusCode::CONFLICT,
            json!({"status": "not_ready", "error": "the video is not stored yet"}),
        );
    }
    if video.active_job_id.is_some() {
        return in_progress(&video);
    }
    if video.status == "failed" {
        return failed(&video, StatusCode::INTERNAL_SERVER_ERROR);
    }
    if let Err(r) = cooled_down(&state, &video) {
        return r;
    }
    if method == Method::HEAD {
        // The status a GET would answer, without its side effect: a link previewer's HEAD
        // never starts a download.
        return answer(StatusCode::ACCEPTED, json!({"status": "queued"}));
    }
    enqueue(&state, &video, json!({"source": "api"}), false).await
}

async fn retry(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let video = match load(&state, id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if video.marked_for_deletion {
        return gone();
    }
    // A second retry answers the job the first one queued.
    if video.active_job_id.is_some() {
        return in_progress(&video);
    }
    // Stored, unless its object has gone missing: then it is downloaded again.
    let stored = is_stored(&video);
    if stored && !object_missing(&state, &video).await {
        return ready(&state, &video).await;
    }
    if !retry_available(&video) {
        return if stored {
            missing(
                &video,
                video.object_key.as_deref().unwrap_or_default(),
                StatusCode::CONFLICT,
            )
        } else {
            failed(&video, StatusCode::CONFLICT)
        };
    }
    if let Err(r) = cooled_down(&state, &video) {
        return r;
    }
    enqueue(
        &state,
        &video,
        json!({"source": "api", "retry": true}),
        stored,
    )
    .await
}

/// Whether the store says a stored video's object is gone (not when it cannot tell).
async fn object_missing(state: &HttpState, v: &VideoState) -> bool {
    let Ok(key) = key_in_our_bucket(state, v) else {
        return false;
    };
    match state.storage.head(key).await {
        Ok(found) => found.is_none(),
        Err(e) => {
            tracing::warn!(video_id = %v.id, key, error = %e, "download API: cannot check the stored object");
            false
        }
    }
}

/// Whether a retry can help: the last failure was not permanent.
fn retry_available(v: &VideoState) -> bool {
    v.latest_error_class.as_deref() != Some("permanent")
}

/// `Err(429)` while the video's last job was queued less than `API_RETRY_COOLDOWN_SECONDS`
/// ago (every process shares the job's time, so the limit holds across processes).
fn cooled_down(state: &HttpState, v: &VideoState) -> Result<(), Response> {
    let cooldown = state
        .api
        .as_ref()
        .map_or(Duration::ZERO, |o| o.retry_cooldown);
    let Some(queued_at) = v.latest_job_created_at else {
        return Ok(());
    };
    let since = (chrono::Utc::now() - queued_at)
        .to_std()
        .unwrap_or_default();
    match cooldown.checked_sub(since) {
        Some(wait) if !wait.is_zero() => {
            metrics::counter!(crate::metrics::API_REFUSED, "reason" => "cooldown").increment(1);
            Err(guard::too_many(
                "cooldown",
                "the video was queued a moment ago; try again later",
                wait,
            ))
        }
        _ => Ok(()),
    }
}

fn parse_id(raw: &str) -> Result<Uuid, Response> {
    Uuid::parse_str(raw).map_err(|_| {
        answer(
            StatusCode::BAD_REQUEST,
            json!({"status": "invalid", "error": "the video id must be a UUID"}),
        )
    })
}

/// The video, or the answer when there is none or the queue fails.
async fn load(state: &HttpState, id: Uuid) -> Result<VideoState, Response> {
    match state.queue.video(id).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(answer(
            StatusCode::NOT_FOUND,
            json!({"status": "not_found", "error": "no video has this id"}),
        )),
        Err(e) => {
            tracing::error!(video_id = %id, error = %e, "download API: cannot read the video");
            Err(unavailable())
        }
    }
}

fn is_stored(v: &VideoState) -> bool {
    DONE.contains(&v.status.as_str()) && v.object_key.as_deref().is_some_and(|k| !k.is_empty())
}

fn gone() -> Response {
    answer(
        StatusCode::GONE,
        json!({"status": "marked_for_deletion", "error": "the video is marked for deletion"}),
    )
}

/// 503 without detail (the queue or the store failed, or the request took too long).
pub(crate) fn unavailable() -> Response {
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"status": "unavailable", "error": "the service is unavailable; try again shortly"}),
    )
}

fn in_progress(v: &VideoState) -> Response {
    let running = v.latest_job_status.as_deref() == Some("running")
        || IN_PROGRESS.contains(&v.status.as_str());
    if running {
        answer(
            StatusCode::ACCEPTED,
            json!({"status": "downloading", "progress": v.download_progress.unwrap_or(0)}),
        )
    } else {
        answer(StatusCode::ACCEPTED, json!({"status": "queued"}))
    }
}

/// The failed answer with `status`: a public message chosen by the failure's class and
/// code, never `videos.last_error` itself (paths, OS errors, upstream excerpts).
fn failed(v: &VideoState, status: StatusCode) -> Response {
    answer(
        status,
        json!({
            "status": "failed",
            "error": public::failure_message(
                v.latest_error_class.as_deref(),
                v.latest_error_code.as_deref(),
            ),
            "retry_available": retry_available(v),
        }),
    )
}

/// Queues the video (`force`: although the row says stored, its object is missing).
async fn enqueue(state: &HttpState, v: &VideoState, payload: Value, force: bool) -> Response {
    let req = EnqueueRequest {
        video_id: Some(v.id),
        payload: Some(payload),
        force,
        ..Default::default()
    };
    match state.queue.enqueue(&req).await {
        Ok(r) => match r.outcome {
            EnqueueOutcome::Queued | EnqueueOutcome::Duplicate => {
                answer(StatusCode::ACCEPTED, json!({"status": "queued"}))
            }
            EnqueueOutcome::MarkedForDeletion => gone(),
            EnqueueOutcome::NotFound => answer(
                StatusCode::NOT_FOUND,
                json!({"status": "not_found", "error": "no video has this id"}),
            ),
            // Stored between the read and the enqueue.
            EnqueueOutcome::Ready => match state.queue.video(v.id).await {
                Ok(Some(fresh)) if is_stored(&fresh) => ready(state, &fresh).await,
                _ => answer(StatusCode::ACCEPTED, json!({"status": "queued"})),
            },
        },
        Err(e) => {
            tracing::error!(video_id = %v.id, error = %e, "download API: cannot queue the video");
            unavailable()
        }
    }
}

/// The object's key, if the video is stored in the bucket this server serves.
fn key_in_our_bucket<'v>(state: &HttpState, v: &'v VideoState) -> Result<&'v str, Response> {
    let key = v.object_key.as_deref().unwrap_or_default();
    match v.bucket.as_deref() {
        Some(b) if !b.is_empty() && b != state.storage.bucket() => {
            tracing::error!(video_id = %v.id, bucket = b, served = state.storage.bucket(), "download API: the video is stored in a bucket this server does not serve");
            Err(answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"status": "failed", "error": "the stored file is in a bucket this server does not serve", "retry_available": false}),
            ))
        }
        _ => Ok(key),
    }
}

/// The file name a browser should save the object under: the key's last segment.
fn filename(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

async fn ready(state: &HttpState, v: &VideoState) -> Response {
    let key = match key_in_our_bucket(state, v) {
        Ok(k) => k,
        Err(r) => return r,
    };
    // A signed URL (or this API's own link) to an object that is gone would only fail later,
    // in the browser: say so now.
    if object_missing(state, v).await {
        return missing(v, key, StatusCode::NOT_FOUND);
    }
    let ttl = state
        .api
        .as_ref()
        .map_or(Duration::from_secs(3600), |o| o.signed_url_ttl);
    let expires_at = chrono::Utc::now() + ttl;
    let url = match state.storage.signed_url(key, ttl).await {
        Ok(url) => url,
        // The local folder signs nothing: this API serves the file itself.
        Err(e) if e.code == "no-signed-urls" => format!("/api/videos/{}/download?proxy=true", v.id),
        Err(e) => {
            tracing::error!(video_id = %v.id, key, error = %e, "download API: cannot sign a URL");
            return unavailable();
        }
    };
    answer(
        StatusCode::OK,
        json!({
            "status": "ready",
            "download_url": url,
            "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "filename": filename(key),
            "filesize": v.filesize,
            "mime_type": v.mime_type,
        }),
    )
}

/// The row says stored, but the store has no such object: `status` (404, or 409 for a retry
/// that cannot help) with `retry_available`, or the state of the job already downloading it
/// again.
fn missing(v: &VideoState, key: &str, status: StatusCode) -> Response {
    if v.active_job_id.is_some() {
        return in_progress(v);
    }
    tracing::error!(video_id = %v.id, key, "download API: the video is marked stored but its object is missing");
    answer(
        status,
        json!({
            "status": "missing",
            "error": "the stored file is missing",
            "retry_available": retry_available(v),
        }),
    )
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}
