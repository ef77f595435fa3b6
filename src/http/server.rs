//! The accept loop of one listener, written for hostile clients.
//!
//! `axum::serve` holds a connection for as long as the client keeps it open: a client that
//! sends half a request and stops keeps its socket (and a file descriptor) forever, and
//! nothing caps their number. Enough of them exhaust the process's descriptors, and then
//! the worker's own database and download connections fail with `EMFILE`. This loop:
//!
//! - caps the connections it holds at once ([`ServerLimits::max_connections`], per
//!   listener). At the cap, a new connection is accepted and closed at once, and counted in
//!   `crate::metrics::HTTP_CONNECTIONS_REFUSED`: the kernel's backlog is emptied, the
//!   client learns at once, and a listener of its own (health and metrics apart from the
//!   API, `API_ADDR`) keeps answering probes whatever happens on the other;
//! - gives a client [`ServerLimits::header_timeout`] to send a request's headers, counted
//!   from the connection (first request) or from the first byte of the next request;
//! - closes a keep-alive connection that stays idle for [`ServerLimits::idle_timeout`]
//!   (hyper's own header-read timer also runs while an idle connection waits, so idle time
//!   would be cut at the header timeout; both limits are kept here instead);
//! - closes a connection whose request is in progress but on which no byte moved in either
//!   direction for [`ServerLimits::stall_timeout`] (a client that stops reading its answer,
//!   or an answer whose source stalls);
//! - on stop, closes idle connections, lets requests in progress finish for the drain
//!   period, then closes what is left.
//!
//! The gauge `crate::metrics::HTTP_CONNECTIONS` counts the connections held, and
//! `crate::metrics::HTTP_TIMEOUTS` the connections closed by each limit.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{HTTP_CONNECTIONS, HTTP_CONNECTIONS_REFUSED, HTTP_TIMEOUTS};

/// The limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections held at once (`HTTP_MAX_CONNECTIONS`, after [`super::fdlimit`]).
    pub max_connections: usize,
    /// Time to send a request's headers (`HTTP_HEADER_TIMEOUT_SECONDS`).
    pub header_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request
    /// (`HTTP_IDLE_TIMEOUT_SECONDS`).
    pub idle_timeout: Duration,
    /// Time a request in progress may go without a byte moving: the larger of the idle
    /// timeout and `HTTP_REQUEST_TIMEOUT_SECONDS`, so a handler within its own limit is
    /// never cut.
    pub stall_timeout: Duration,
}

impl Default for ServerLimits {
    /// The settings' declared defaults: 512 connections, 10 s for headers, 60 s idle.
    fn default() -> Self {
        let http = crate::config::HttpSettings::default();
        Self::new(&http, http.max_connections)
    }
}

impl ServerLimits {
    /// The limits the configuration sets, with the connection cap as given (it depends on
    /// the descriptor limit and the number of listeners: see [`super::fdlimit`]).
    pub fn new(http: &crate::config::HttpSettings, max_connections: usize) -> Self {
        Self {
            max_connections: max_connections.max(1),
            header_timeout: http.header_timeout,
            idle_timeout: http.idle_timeout,
            stall_timeout: http.idle_timeout.max(http.request_timeout),
        }
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, then lets requests in progress
/// finish for at most `drain` and closes the rest. `name` labels the metrics (`http`,
/// `api`). The handlers see the peer's address as [`ConnectInfo<SocketAddr>`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    name: &'static str,
    limits: ServerLimits,
    stop: CancellationToken,
    drain: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let force = CancellationToken::new();
    metrics::gauge!(HTTP_CONNECTIONS, "listener" => name).set(0.0);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                if !is_per_connection(&e) {
                    // Out of descriptors (or memory): wait instead of spinning; the
                    // connections held are closed by their timeouts meanwhile.
                    tracing::warn!(listener = name, error = %e, "HTTP: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!(HTTP_CONNECTIONS_REFUSED, "listener" => name).increment(1);
            tracing::debug!(listener = name, %peer, "HTTP: connection cap reached, connection closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        metrics::gauge!(HTTP_CONNECTIONS, "listener" => name).increment(1.0);
        let app = app.clone();
        let (stop, force) = (stop.clone(), force.clone());
        tracker.spawn(async move {
            connection(stream, peer, app, name, limits, stop, force).await;
            metrics::gauge!(HTTP_CONNECTIONS, "listener" => name).decrement(1.0);
            drop(permit);
        });
    }
    // No new connections: the socket closes, so clients are refused by the kernel.
    drop(listener);
    tracker.close();
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!(
            listener = name,
            open = tracker.len(),
            "HTTP requests still running after the drain period: closed"
        );
        force.cancel();
        tracker.wait().await;
    }
}

/// Accept errors that concern only the connection being accepted (it was reset before it
/// was taken): the next accept can succeed at once.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Why a connection was closed by its deadline (the `timeout` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    /// The request's headers did not arrive in time.
    Header,
    /// The keep-alive connection waited too long for its next request.
    Idle,
    /// A request in progress moved no byte for too long.
    Stall,
}

impl Expiry {
    fn label(self) -> &'static str {
        match self {
            Expiry::Header => "header",
            Expiry::Idle => "idle",
            Expiry::Stall => "stall",
        }
    }
}

/// Serves one connection under its deadlines.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    name: &'static str,
    limits: ServerLimits,
    stop: CancellationToken,
    force: CancellationToken,
) {
    let clock = Arc::new(Clock::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        clock: clock.clone(),
    });
    let service_clock = clock.clone();
    let app = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let guard = InFlight::begin(&service_clock);
        req.extensions_mut().insert(ConnectInfo(peer));
        let call = hyper::service::Service::call(&app, req);
        async move {
            let response = call
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            Ok::<_, Infallible>(response.map(|inner| TrackedBody {
                inner,
                _guard: guard,
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The deadlines are kept below (hyper's header timer would also cut idle connections).
    builder.keep_alive(true).header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let (deadline, _) = clock.deadline(&limits);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(listener = name, %peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline) => {
                // The state may have moved the deadline since it was read.
                let (now_deadline, expiry) = clock.deadline(&limits);
                if now_deadline <= Instant::now() {
                    metrics::counter!(HTTP_TIMEOUTS, "listener" => name, "timeout" => expiry.label()).increment(1);
                    tracing::debug!(listener = name, %peer, timeout = expiry.label(), "HTTP connection closed by its deadline");
                    return;
                }
            }
            _ = clock.changed.notified() => {}
            _ = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = force.cancelled() => return,
        }
    }
}

/// What a connection is doing, for its deadline.
struct Clock {
    state: Mutex<ClockState>,
    /// Signalled when a request begins or ends (the deadline changes kind).
    changed: Notify,
}

struct ClockState {
    /// Requests whose answer has not been sent in full.
    in_flight: usize,
    /// An answer was sent: waiting for the next request is idle time.
    answered: bool,
    /// The connection's start, or the end of the last answer.
    idle_since: Instant,
    /// The first byte read since the connection went idle: a request's head is arriving.
    head_since: Option<Instant>,
    /// The last byte read or written.
    last_progress: Instant,
}

impl Clock {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            state: Mutex::new(ClockState {
                in_flight: 0,
                answered: false,
                idle_since: now,
                head_since: None,
                last_progress: now,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the connection is to be closed if nothing changes, and why.
    fn deadline(&self, limits: &ServerLimits) -> (Instant, Expiry) {
        deadline_of(&self.lock(), limits)
    }

    fn read(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        s.last_progress = now;
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(now);
        }
    }

    fn wrote(&self) {
        self.lock().last_progress = Instant::now();
    }
}

/// The deadline of a connection in `s` (pure, for the tests).
fn deadline_of(s: &ClockState, limits: &ServerLimits) -> (Instant, Expiry) {
    if s.in_flight > 0 {
        (s.last_progress + limits.stall_timeout, Expiry::Stall)
    } else if let Some(head) = s.head_since {
        (head + limits.header_timeout, Expiry::Header)
    } else if !s.answered {
        (s.idle_since + limits.header_timeout, Expiry::Header)
    } else {
        (s.idle_since + limits.idle_timeout, Expiry::Idle)
    }
}

/// A request in progress: from the moment hyper has read its headers until its answer's
/// body is done (or dropped).
struct InFlight(Arc<Clock>);

impl InFlight {
    fn begin(clock: &Arc<Clock>) -> Self {
        {
            let mut s = clock.lock();
            s.in_flight += 1;
            s.head_since = None;
            s.last_progress = Instant::now();
        }
        clock.changed.notify_one();
        Self(clock.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut s = self.0.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                let now = Instant::now();
                s.answered = true;
                s.idle_since = now;
                s.last_progress = now;
                s.head_since = None;
            }
        }
        self.0.changed.notify_one();
    }
}

/// An answer's body that ends its request's [`InFlight`] when it is done.
struct TrackedBody {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, telling the clock when bytes move.
struct Watched {
    inner: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits {
            max_connections: 8,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(90),
        }
    }

    fn state(at: Instant) -> ClockState {
        ClockState {
            in_flight: 0,
            answered: false,
            idle_since: at,
            head_since: None,
            last_progress: at,
        }
    }

    #[test]
    fn a_new_connection_has_the_header_timeout_from_its_start() {
        let t = Instant::now();
        let s = state(t);
        assert_eq!(
            deadline_of(&s, &limits()),
            (t + Duration::from_secs(10), Expiry::Header)
        );
    }

    #[test]
    fn an_idle_keep_alive_connection_has_the_idle_timeout_until_a_byte_arrives() {
        let t = Instant::now();
        let mut s = state(t);
        s.answered = true;
        assert_eq!(
            deadline_of(&s, &limits()),
            (t + Duration::from_secs(60), Expiry::Idle)
        );
        let first_byte = t + Duration::from_secs(30);
        s.head_since = Some(first_byte);
        assert_eq!(
            deadline_of(&s, &limits()),
            (first_byte + Duration::from_secs(10), Expiry::Header)
        );
    }

    #[test]
    fn a_request_in_progress_has_the_stall_timeout_from_the_last_byte() {
        let t = Instant::now();
        let mut s = state(t);
        s.in_flight = 1;
        s.last_progress = t + Duration::from_secs(5);
        assert_eq!(
            deadline_of(&s, &limits()),
            (t + Duration::from_secs(95), Expiry::Stall)
        );
    }

    #[tokio::test]
    async fn a_request_ends_in_the_idle_state() {
        let clock = Arc::new(Clock::new());
        clock.read();
        assert_eq!(clock.deadline(&limits()).1, Expiry::Header);
        let guard = InFlight::begin(&clock);
        assert_eq!(clock.deadline(&limits()).1, Expiry::Stall);
        // Bytes of the request's body do not start a head.
        clock.read();
        drop(guard);
        assert_eq!(clock.deadline(&limits()).1, Expiry::Idle);
        clock.read();
        assert_eq!(clock.deadline(&limits()).1, Expiry::Header);
    }
}
