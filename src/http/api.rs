//! The UI's download API, compatible with the old Express app (`EXISTING-SYSTEM.md`):
//!
//! - `GET` or `POST /api/videos/{id}/download`: `404` unknown video; `410` marked for
//!   deletion; waiting → queued (`202 {"status":"queued"}`); in progress →
//!   `202 {"status":"downloading","progress":N}`; stored → `200 {"status":"ready",
//!   "download_url","expires_at","filename","filesize","mime_type"}`, or with `?proxy=true`
//!   the file itself; failed for good → `500 {"status":"failed","error","retry_available"}`.
//! - `POST /api/videos/{id}/retry`: queues the video again (`202 {"status":"queued"}`).
//! - `GET /health`.
//!
//! The API may face the internet: ids must be UUIDs, request bodies are capped, CORS allows
//! only the configured origins, and answers never carry a key or an internal error text
//! (details go to the log). A store that cannot sign URLs (the local folder) hands out this
//! API's own `?proxy=true` link instead.

// A helper that ends a request early returns the answer as its error; it is built once per
// request, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use uuid::Uuid;

use super::HttpState;
use crate::queue::{EnqueueOutcome, EnqueueRequest, VideoState};

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
}

impl ApiOptions {
    /// The options from the validated configuration, if the API is on.
    pub fn from_config(cfg: &crate::config::Config) -> Option<Self> {
        cfg.api_enabled.then(|| Self {
            signed_url_ttl: cfg.signed_url_ttl,
            cors_origins: cfg.api_cors_origins.clone(),
        })
    }
}

/// The API's routes, with the body limit and CORS layers.
pub fn router(opts: &ApiOptions) -> Router<HttpState> {
    let routes = Router::new()
        .route("/api/videos/{id}/download", get(download).post(download))
        .route("/api/videos/{id}/retry", post(retry))
        .route("/health", get(health))
        .layer(RequestBodyLimitLayer::new(MAX_BODY));
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
            .allow_headers([header::CONTENT_TYPE])
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
            stream_object(&state, &video).await
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
        return failed(&video);
    }
    enqueue(&state, &video, json!({"source": "api"})).await
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
    if video.active_job_id.is_some() {
        return in_progress(&video);
    }
    if is_stored(&video) {
        return ready(&state, &video).await;
    }
    enqueue(&state, &video, json!({"source": "api", "retry": true})).await
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

fn unavailable() -> Response {
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

fn failed(v: &VideoState) -> Response {
    answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({
            "status": "failed",
            "error": v.last_error.clone().unwrap_or_else(|| "the download failed".into()),
            "retry_available": v.latest_error_class.as_deref() != Some("permanent"),
        }),
    )
}

async fn enqueue(state: &HttpState, v: &VideoState, payload: Value) -> Response {
    let req = EnqueueRequest {
        video_id: Some(v.id),
        payload: Some(payload),
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
            // Some stores answer a missing object with an error that looks transient.
            if let Ok(None) = state.storage.head(key).await {
                return missing(v, key);
            }
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

async fn stream_object(state: &HttpState, v: &VideoState) -> Response {
    let key = match key_in_our_bucket(state, v) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let object = match state.storage.open(key).await {
        Ok(Some(o)) => o,
        Ok(None) => return missing(v, key),
        Err(e) => {
            tracing::error!(video_id = %v.id, key, error = %e, "download API: cannot read the object");
            return unavailable();
        }
    };
    let content_type = object
        .content_type
        .clone()
        .or_else(|| v.mime_type.clone())
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut response = Response::new(Body::from_stream(object.body));
    let headers = response.headers_mut();
    if let Ok(ct) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    if let Some(size) = object.size {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    // Keys hold only letters, digits, `.`, `_`, `-` and `/`: the name needs no escaping.
    if let Ok(cd) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", filename(key))) {
        headers.insert(header::CONTENT_DISPOSITION, cd);
    }
    response
}

/// The row says stored, but the store has no such object.
fn missing(v: &VideoState, key: &str) -> Response {
    tracing::error!(video_id = %v.id, key, "download API: the video is marked stored but its object is missing");
    answer(
        StatusCode::NOT_FOUND,
        json!({"status": "missing", "error": "the stored file is missing"}),
    )
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}
