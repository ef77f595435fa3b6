//! `GET /api/videos/{id}/events`: a video's state as Server-Sent Events.
//!
//! The first event is the current state, with the fields the download API answers (without
//! its side effect: nothing is queued); then one event per change of status or progress, until
//! the video is `ready` (with the link the download API gives), failed (`retry_available`),
//! missing, or marked for deletion; then the stream ends. A video no job is queued for is
//! `{"status":"not_queued"}` (queue it with the download API; the stream follows the job).
//! Each event's `id` is one more than the last, continuing from `Last-Event-ID` when the
//! browser reconnects (it then gets the current state at once). A comment every
//! `API_EVENTS_HEARTBEAT_SECONDS` keeps proxies from closing an idle stream; a stream ends
//! after `API_EVENTS_MAX_SECONDS` (the browser reconnects) and when the process shuts down.
//!
//! The streams wait on the process's hub of video changes (`queue::changes`: one LISTEN, one
//! file watch or one poll per process, whatever the number of streams) and re-read their
//! video on a wake-up. The gate applies as to every API request; on top of it, a client holds
//! at most `API_EVENTS_PER_CLIENT` streams (429) and the process `API_EVENTS_MAX_STREAMS`
//! (503).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use super::rate::ClientKey;
use super::{HttpState, answer, gone, in_progress, is_stored, load, parse_id, ready};
use crate::config::EventsSettings;
use crate::queue::VideoState;
use crate::queue::changes::VideoWatcher;

/// Largest answer read back as an event (the download API's answers are a few hundred bytes).
const MAX_EVENT: usize = 64 * 1024;

/// The open streams, per client and in all.
#[derive(Debug)]
pub(crate) struct Streams {
    settings: EventsSettings,
    trust_forwarded_for: bool,
    open: Mutex<(usize, HashMap<Option<ClientKey>, usize>)>,
}

impl Streams {
    /// No stream open yet.
    pub fn new(settings: EventsSettings, trust_forwarded_for: bool) -> Arc<Self> {
        Arc::new(Self {
            settings,
            trust_forwarded_for,
            open: Mutex::default(),
        })
    }

    /// A slot for one more stream of `client`, or the refusal.
    fn acquire(self: &Arc<Self>, client: Option<ClientKey>) -> Result<Slot, Response> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= self.settings.max_streams {
            metrics::counter!(crate::metrics::API_REFUSED, "reason" => "streams").increment(1);
            return Err(answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "unavailable", "error": "too many open event streams; try again shortly"}),
            ));
        }
        let mine = open.1.entry(client).or_insert(0);
        if *mine >= self.settings.per_client {
            metrics::counter!(crate::metrics::API_REFUSED, "reason" => "client_streams")
                .increment(1);
            return Err(super::guard::too_many(
                "too_many_streams",
                "this client has too many open event streams; close one",
                self.settings.heartbeat,
            ));
        }
        *mine += 1;
        open.0 += 1;
        Ok(Slot {
            streams: self.clone(),
            client,
        })
    }
}

/// One open stream's place; given back on drop.
struct Slot {
    streams: Arc<Streams>,
    client: Option<ClientKey>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.client);
            }
        }
    }
}

/// The handler.
pub async fn events(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let Some(streams) = req.extensions().get::<Arc<Streams>>().cloned() else {
        return super::unavailable();
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let client = super::guard::client_ip(peer, req.headers(), streams.trust_forwarded_for)
        .map(ClientKey::from);
    let last_id: u64 = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let slot = match streams.acquire(client) {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Watch before the first read, so a change between the two is not lost.
    let watcher = state.changes.watch(id, &state.queue);
    let (first, done) = match snapshot(&state, id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let follow = Follow {
        deadline: Instant::now() + streams.settings.max_lifetime,
        state,
        id,
        watcher,
        next_id: last_id.saturating_add(1),
        pending: Some(first.clone()),
        last: first,
        done,
        _slot: slot,
    };
    let mut r = Sse::new(stream(follow))
        .keep_alive(KeepAlive::new().interval(streams.settings.heartbeat))
        .into_response();
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// One stream's state.
struct Follow {
    state: HttpState,
    id: Uuid,
    watcher: VideoWatcher,
    next_id: u64,
    /// The event to send before waiting.
    pending: Option<Value>,
    /// The last state sent.
    last: Value,
    /// The last state sent ends the stream.
    done: bool,
    deadline: Instant,
    _slot: Slot,
}

fn stream(follow: Follow) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(follow, |mut f| async move {
        if let Some(state) = f.pending.take() {
            let event = Event::default()
                .id(f.next_id.to_string())
                .data(state.to_string());
            f.next_id += 1;
            return Some((Ok(event), f));
        }
        if f.done {
            return None;
        }
        loop {
            tokio::select! {
                _ = f.watcher.changed() => {}
                _ = tokio::time::sleep_until(f.deadline) => return None,
                _ = f.state.shutting_down.cancelled() => return None,
            }
            let (now, done) = match snapshot(&f.state, f.id).await {
                Ok(s) => s,
                // The video went away, or the queue cannot answer: the browser reconnects.
                Err(_) => return None,
            };
            if now != f.last || done {
                f.last = now.clone();
                f.done = done;
                let event = Event::default()
                    .id(f.next_id.to_string())
                    .data(now.to_string());
                f.next_id += 1;
                return Some((Ok(event), f));
            }
        }
    })
}

/// The video's state as the download API shows it (nothing queued), and whether it is final.
async fn snapshot(state: &HttpState, id: Uuid) -> Result<(Value, bool), Response> {
    let video = load(state, id).await?;
    let (answer, done) = state_answer(state, &video).await;
    let body = axum::body::to_bytes(answer.into_body(), MAX_EVENT)
        .await
        .map_err(|_| super::unavailable())?;
    let value = serde_json::from_slice(&body).map_err(|_| super::unavailable())?;
    Ok((value, done))
}

/// The download API's answer without its side effect; true when no later change is followed
/// (stored, failed, missing, marked for deletion).
async fn state_answer(state: &HttpState, v: &VideoState) -> (Response, bool) {
    if v.marked_for_deletion {
        return (gone(), true);
    }
    if is_stored(v) {
        let r = ready(state, v).await;
        // A store that cannot answer now (503) is not an end, nor a missing object already
        // downloading again (202): the next change asks again.
        let done = ![StatusCode::SERVICE_UNAVAILABLE, StatusCode::ACCEPTED].contains(&r.status());
        return (r, done);
    }
    if v.active_job_id.is_some() {
        return (in_progress(v), false);
    }
    if v.status == "failed" {
        return (super::failed(v, StatusCode::INTERNAL_SERVER_ERROR), true);
    }
    (
        answer(
            StatusCode::ACCEPTED,
            json!({"status": "not_queued", "error": "no download is queued for this video; queue it with the download API"}),
        ),
        false,
    )
}
