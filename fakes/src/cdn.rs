//! A loopback CDN for the download tests: serves registered files on `127.0.0.1` in the ways a
//! real media CDN fails.
//!
//! # Design
//!
//! The whole server is a raw [`tokio::net::TcpListener`] with a tiny hand-written HTTP/1.1
//! parser (request line + headers; `GET` and `HEAD`; anything else answers 405). Every answer
//! carries `Connection: close` and the server closes the connection after it (one request per
//! connection), so each failure mode is exact on the wire: the status line, the headers, how
//! many body bytes go out, when the server stalls and when it closes are all under control
//! (hyper would refuse to send a body shorter than its `Content-Length`). Sockets use
//! `TCP_NODELAY`, so partial bodies reach the client at once. The accept loop runs in a
//! background task that owns every connection task (a [`JoinSet`]); dropping the [`Cdn`]
//! aborts it, which closes every open connection, stalled ones included.
//!
//! Files are registered by path ([`Cdn::add`]); a path given with a query is matched on its
//! path part only. A request for an unregistered path answers 404. Every request is recorded
//! ([`Cdn::requests`], [`Cdn::last_headers`]) before it is answered.
//!
//! # On the wire, per [`Serve`] mode
//!
//! - [`Serve::Normal`]: `200` with `Content-Length`, `Accept-Ranges: bytes` and a
//!   `Content-Type` from the extension (`.mp4` → `video/mp4`, `.mp3` → `audio/mpeg`, `.webp`,
//!   `.jpg`/`.jpeg`, else `application/octet-stream`). A single `Range` (`bytes=N-`,
//!   `bytes=N-M`, `bytes=-S`) answers `206` with `Content-Range: bytes N-M/LEN`; a range
//!   starting at or past the end answers `416` with `Content-Range: bytes */LEN`; a range that
//!   cannot be parsed, or a multi-range, is ignored (`200`), as RFC 9110 allows.
//! - [`Serve::IgnoresRange`]: always `200` with the whole file, no `Accept-Ranges`.
//! - [`Serve::MisplacedRange`]: like `Normal`, but a range `bytes=N-…` is answered `206`
//!   from `N - back` to the end, with `Content-Range: bytes {N-back}-{LEN-1}/LEN` (truthful
//!   about what it sends, not what was asked); without a range, `200`.
//! - [`Serve::DropAfter`]: like `Normal` (Range honoured, the full `Content-Length` of the
//!   answer announced) but only `after` body bytes are sent, then the server closes the
//!   connection cleanly (FIN). The client reads exactly `after` bytes, then a body error
//!   (hyper: connection closed before the message completed). Each `GET` while `times > 0`
//!   decrements `times`; at 0 the file is served like `Normal`. `HEAD` does not count.
//! - [`Serve::StallAfter`]: like `Normal`, but after `after` body bytes the server sends
//!   nothing for `stall` (connection kept open), then sends the rest and closes. A client
//!   read (idle) timeout shorter than `stall` fires; a longer one sees a complete, slow file.
//!   Every `GET` stalls (use [`Cdn::set`] to change the mode).
//! - [`Serve::Trickle`]: like `Normal`, but after `after` body bytes the server sends `count`
//!   pieces of `piece` bytes, `every` apart, then the rest at once and closes: a download that
//!   crawls for a while (or, with `after: 0`, a paced one). Range is honoured.
//! - [`Serve::LyingLength`]: `200` announcing `Content-Length: content_length` (Range ignored),
//!   then the real bytes, then close. Real bytes shorter than announced: the client gets them,
//!   then a body error. Longer: the client reads exactly `content_length` bytes and sees a
//!   complete body (the extra bytes are discarded), so only a size check can catch it.
//! - [`Serve::NoLength`]: `200` with no `Content-Length` (Range ignored); the body ends when
//!   the server closes the connection. For "refuse once the stream passes the limit".
//! - [`Serve::WrongBody`]: `200`, `Content-Type: video/mp4`, `Content-Length`, the given body
//!   (e.g. the captcha page; Range ignored).
//! - [`Serve::Status`]: that status with a small `text/html` page and `Server: openresty`;
//!   `403` is the openresty page of the CDN fixture (`403 Forbidden`, `Forbid_code: 020200`...).
//! - [`Serve::RetryAfter`]: that status with the small page and a `Retry-After` header.
//! - [`Serve::Redirect`]: `302` with `Location` (as given, absolute or relative) and an empty
//!   body. [`METADATA_URL`] and [`PRIVATE_URL`] are private targets for the SSRF guard: a
//!   correct client refuses them before connecting; nothing listens there in tests.
//!
//! `HEAD` answers the same status and headers as `GET` (for files: the whole file's
//! `Content-Length`, Range ignored), with no body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

const CDN_403: &str = include_str!("../../tests/fixtures/douyin/cdn_403_forbidden_2024-11.json");

/// A link-local metadata URL (a redirect target the SSRF guard must refuse).
pub const METADATA_URL: &str = "http://169.254.169.254/latest/meta-data/";
/// A private-network URL (a redirect target the SSRF guard must refuse).
pub const PRIVATE_URL: &str = "http://10.0.0.1/x";

/// Largest request head accepted (request line + headers).
const MAX_HEAD: usize = 64 * 1024;
/// Size of one body write.
const CHUNK: usize = 16 * 1024;

/// How one file is served.
#[derive(Clone, Debug)]
pub enum Serve {
    /// 200 with the bytes, Range honoured (206 + Content-Range; 416 when out of range).
    Normal,
    /// Like Normal, but Range is ignored (always 200 from byte 0).
    IgnoresRange,
    /// A `Range` starting at N is answered `206` from `N - back` (saturating) with a
    /// `Content-Range` that says so: a partial answer at another offset than asked.
    MisplacedRange { back: u64 },
    /// Sends `after` bytes of the body then closes the connection, the first `times` requests;
    /// then Normal. Range is honoured (`after` counts bytes of that answer's body).
    DropAfter { after: u64, times: u32 },
    /// Sends `after` bytes then stalls (keeps the connection open, sends nothing) for `stall`,
    /// then sends the rest. Range is honoured.
    StallAfter { after: u64, stall: Duration },
    /// Sends `after` bytes, then `count` pieces of `piece` bytes `every` apart, then the rest.
    /// Range is honoured.
    Trickle {
        after: u64,
        piece: u64,
        every: Duration,
        count: u32,
    },
    /// Announces `content_length` but sends the real bytes (shorter or longer), then closes.
    LyingLength { content_length: u64 },
    /// 200 without `Content-Length`; the body ends when the connection closes.
    NoLength,
    /// Sends `body` with `Content-Type: video/mp4` (e.g. the captcha HTML page).
    WrongBody { body: Vec<u8> },
    /// Answers this status with a small HTML body (403: the openresty page of the CDN fixture).
    Status(u16),
    /// Answers this status (429 or 503) with a small HTML body and `Retry-After: <value>`, as a
    /// CDN that throttles does.
    RetryAfter { status: u16, value: String },
    /// 302 to `location`.
    Redirect { location: String },
}

/// One registered path.
struct File {
    bytes: Arc<Vec<u8>>,
    serve: Serve,
}

/// One recorded request: method, path with query, Range header.
type Logged = (String, String, Option<String>);

#[derive(Default)]
struct Inner {
    files: HashMap<String, File>,
    requests: Vec<Logged>,
    headers: HashMap<String, Vec<(String, String)>>,
}

type Shared = Arc<Mutex<Inner>>;

/// The running server. Dropping it stops the server and closes every connection.
pub struct Cdn {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    state: Shared,
    task: JoinHandle<()>,
}

impl Cdn {
    /// Binds `127.0.0.1:0` and serves in a background task (aborted on drop).
    pub async fn start() -> Cdn {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback CDN");
        let addr = listener.local_addr().expect("CDN address");
        let state: Shared = Arc::default();
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Cdn {
            url: format!("http://{addr}"),
            state,
            task,
        }
    }

    /// Serves `bytes` at `path` (e.g. "/video/a.mp4") the given way. A query in `path` is
    /// ignored: requests match on the path only.
    pub fn add(&self, path: &str, bytes: Vec<u8>, serve: Serve) {
        self.lock().files.insert(
            path_only(path).to_owned(),
            File {
                bytes: Arc::new(bytes),
                serve,
            },
        );
    }

    /// Changes how a path is served (an unregistered path is added with no bytes, which suits
    /// `Status` and `Redirect`).
    pub fn set(&self, path: &str, serve: Serve) {
        let mut inner = self.lock();
        match inner.files.get_mut(path_only(path)) {
            Some(file) => file.serve = serve,
            None => {
                inner.files.insert(
                    path_only(path).to_owned(),
                    File {
                        bytes: Arc::default(),
                        serve,
                    },
                );
            }
        }
    }

    /// Requests received: (method, path with query, Range header if any), in order.
    pub fn requests(&self) -> Vec<(String, String, Option<String>)> {
        self.lock().requests.clone()
    }

    /// Headers of the last request for `path` (query ignored), names lowercased, in order.
    pub fn last_headers(&self, path: &str) -> Option<Vec<(String, String)>> {
        self.lock().headers.get(path_only(path)).cloned()
    }

    /// The value of header `name` (any case) in the last request for `path`.
    pub fn last_header(&self, path: &str, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.last_headers(path)?
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The URL of a path: `format!("{url}{path}")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Cdn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Deterministic pseudo-random bytes of `len` (xorshift64*), so content and SHA-256 are
/// checkable. Seed 0 is replaced by a fixed non-zero seed.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = if seed == 0 {
        0x9E37_79B9_7F4A_7C15
    } else {
        seed
    };
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn path_only(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or(target)
}

// ---------------------------------------------------------------------------------------------
// Server

async fn accept_loop(listener: TcpListener, state: Shared) {
    // Owns the connection tasks: aborting this task drops the set, which aborts them all.
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        conns.spawn(handle(stream, state.clone()));
    }
}

/// A parsed request head.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads up to the end of the head; `None` on EOF, error or an oversized head.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Some(buf);
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    if !parts.next()?.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return None;
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Some(Request {
        method,
        target,
        headers,
    })
}

/// What to do with the body once the head is sent.
#[derive(Clone, Copy)]
enum Cut {
    /// Send it all.
    None,
    /// Send this many bytes, then close.
    Drop(u64),
    /// Send this many bytes, wait, then send the rest.
    Stall(u64, Duration),
    /// Send `after` bytes, then `count` pieces of `piece` bytes `every` apart, then the rest.
    Trickle {
        after: u64,
        piece: u64,
        every: Duration,
        count: u32,
    },
}

/// One answer.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Arc<Vec<u8>>,
    /// Byte range of `body` to send.
    start: usize,
    end: usize,
    /// `Content-Length` to announce; `None` sends none (close-delimited body).
    content_length: Option<u64>,
    cut: Cut,
}

impl Reply {
    fn new(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        let len = body.len();
        Reply {
            status,
            headers: vec![("Content-Type", content_type.to_owned())],
            body: Arc::new(body),
            start: 0,
            end: len,
            content_length: Some(len as u64),
            cut: Cut::None,
        }
    }

    fn file(status: u16, path: &str, body: Arc<Vec<u8>>, start: usize, end: usize) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", content_type(path).to_owned())],
            body,
            start,
            end,
            content_length: Some((end - start) as u64),
            cut: Cut::None,
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

async fn handle(mut stream: TcpStream, state: Shared) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let Some(req) = parse_head(&head) else {
        let reply = Reply::new(400, "text/html", status_page(400));
        let _ = send(&mut stream, reply, false).await;
        return;
    };
    let path = path_only(&req.target).to_owned();
    let is_head = req.method == "HEAD";
    let file = {
        let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
        inner.requests.push((
            req.method.clone(),
            req.target.clone(),
            req.header("range").map(str::to_owned),
        ));
        inner.headers.insert(path.clone(), req.headers.clone());
        inner.files.get_mut(&path).map(|file| {
            let serve = file.serve.clone();
            if let Serve::DropAfter { after, times } = serve {
                if times == 0 {
                    (file.bytes.clone(), Serve::Normal)
                } else {
                    if !is_head {
                        file.serve = Serve::DropAfter {
                            after,
                            times: times - 1,
                        };
                    }
                    (file.bytes.clone(), serve)
                }
            } else {
                (file.bytes.clone(), serve)
            }
        })
    };
    let reply = if req.method != "GET" && !is_head {
        Reply::new(405, "text/html", status_page(405)).header("Allow", "GET, HEAD")
    } else {
        match file {
            None => Reply::new(404, "text/html", status_page(404)),
            Some((bytes, serve)) => {
                let range = if is_head { None } else { req.header("range") };
                answer(&path, bytes, serve, range)
            }
        }
    };
    let _ = send(&mut stream, reply, is_head).await;
}

/// The answer for a registered file.
fn answer(path: &str, bytes: Arc<Vec<u8>>, serve: Serve, range: Option<&str>) -> Reply {
    let len = bytes.len();
    let ranged = |cut: Cut| -> Reply {
        match range.map(|r| parse_range(r, len as u64)) {
            None | Some(Range::Ignore) => Reply {
                cut,
                ..Reply::file(200, path, bytes.clone(), 0, len)
            }
            .header("Accept-Ranges", "bytes"),
            Some(Range::Unsatisfiable) => Reply::new(416, "text/html", status_page(416))
                .header("Content-Range", format!("bytes */{len}")),
            Some(Range::Bytes(start, end)) => Reply {
                cut,
                ..Reply::file(206, path, bytes.clone(), start as usize, end as usize + 1)
            }
            .header("Accept-Ranges", "bytes")
            .header("Content-Range", format!("bytes {start}-{end}/{len}")),
        }
    };
    match serve {
        Serve::Normal => ranged(Cut::None),
        Serve::DropAfter { after, .. } => ranged(Cut::Drop(after)),
        Serve::StallAfter { after, stall } => ranged(Cut::Stall(after, stall)),
        Serve::Trickle {
            after,
            piece,
            every,
            count,
        } => ranged(Cut::Trickle {
            after,
            piece,
            every,
            count,
        }),
        Serve::IgnoresRange => Reply::file(200, path, bytes, 0, len),
        Serve::MisplacedRange { back } => match range.map(|r| parse_range(r, len as u64)) {
            Some(Range::Bytes(start, _)) => {
                let from = start.saturating_sub(back);
                Reply::file(206, path, bytes, from as usize, len)
                    .header("Accept-Ranges", "bytes")
                    .header("Content-Range", format!("bytes {from}-{}/{len}", len - 1))
            }
            _ => ranged(Cut::None),
        },
        Serve::LyingLength { content_length } => Reply {
            content_length: Some(content_length),
            ..Reply::file(200, path, bytes, 0, len)
        },
        Serve::NoLength => Reply {
            content_length: None,
            ..Reply::file(200, path, bytes, 0, len)
        },
        Serve::WrongBody { body } => Reply::new(200, "video/mp4", body),
        Serve::Status(403) => Reply::new(403, "text/html", forbidden_page()),
        Serve::Status(code) => Reply::new(code, "text/html", status_page(code)),
        Serve::RetryAfter { status, value } => {
            Reply::new(status, "text/html", status_page(status)).header("Retry-After", value)
        }
        Serve::Redirect { location } => {
            Reply::new(302, "text/html", Vec::new()).header("Location", location)
        }
    }
}

/// Writes the head, then the body as `reply.cut` says, then closes (FIN).
async fn send(stream: &mut TcpStream, reply: Reply, is_head: bool) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(len) = reply.content_length {
        head.push_str(&format!("Content-Length: {len}\r\n"));
    }
    head.push_str("Server: openresty\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    if !is_head {
        let body = &reply.body[reply.start..reply.end];
        match reply.cut {
            Cut::None => write_chunks(stream, body).await?,
            Cut::Drop(after) => {
                let after = (after as usize).min(body.len());
                write_chunks(stream, &body[..after]).await?;
            }
            Cut::Stall(after, stall) => {
                let after = (after as usize).min(body.len());
                write_chunks(stream, &body[..after]).await?;
                stream.flush().await?;
                tokio::time::sleep(stall).await;
                write_chunks(stream, &body[after..]).await?;
            }
            Cut::Trickle {
                after,
                piece,
                every,
                count,
            } => {
                let mut at = (after as usize).min(body.len());
                write_chunks(stream, &body[..at]).await?;
                for _ in 0..count {
                    stream.flush().await?;
                    tokio::time::sleep(every).await;
                    let next = (at + piece as usize).min(body.len());
                    stream.write_all(&body[at..next]).await?;
                    at = next;
                }
                stream.flush().await?;
                write_chunks(stream, &body[at..]).await?;
            }
        }
    }
    stream.flush().await?;
    stream.shutdown().await
}

async fn write_chunks(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    for chunk in body.chunks(CHUNK) {
        stream.write_all(chunk).await?;
    }
    Ok(())
}

enum Range {
    /// No usable range: answer the whole file.
    Ignore,
    /// Inclusive byte range within the file.
    Bytes(u64, u64),
    /// Starts at or past the end: 416.
    Unsatisfiable,
}

/// A single `bytes=` range against a file of `len` bytes.
fn parse_range(header: &str, len: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Range::Ignore;
    };
    if spec.contains(',') {
        return Range::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix: the last N bytes.
        return match last.parse::<u64>() {
            Ok(0) => Range::Unsatisfiable,
            Ok(_) if len == 0 => Range::Unsatisfiable,
            Ok(n) => Range::Bytes(len.saturating_sub(n), len - 1),
            Err(_) => Range::Ignore,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return Range::Ignore;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return Range::Ignore,
        }
    };
    if start >= len {
        return Range::Unsatisfiable;
    }
    Range::Bytes(start, end.min(len - 1))
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("mp4") => "video/mp4",
        Some("mp3") => "audio/mpeg",
        Some("m4a") => "audio/mp4",
        Some("webp") => "image/webp",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A small nginx/openresty-style error page.
fn status_page(status: u16) -> Vec<u8> {
    let title = format!("{status} {}", reason(status));
    format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n"
    )
    .into_bytes()
}

/// The CDN's 403 page (openresty), from the fixture's `body_lines`.
fn forbidden_page() -> Vec<u8> {
    let fixture: Value = serde_json::from_str(CDN_403).expect("CDN 403 fixture");
    let lines: Vec<&str> = fixture["body_lines"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let title = lines.first().copied().unwrap_or("403 Forbidden");
    let server = lines.get(1).copied().unwrap_or("openresty");
    let details = lines.get(2..).unwrap_or(&[]).join("<br>\r\n");
    format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>{server}</center>\r\n<center>{details}</center>\r\n</body>\r\n</html>\r\n"
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTCHA_PAGE: &str = include_str!("../../tests/fixtures/douyin/captcha-middle-page.html");

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("client")
    }

    fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_owned())
    }

    /// Reads the body chunk by chunk: the bytes received and the error that ended it, if any.
    async fn read_all(mut resp: reqwest::Response) -> (Vec<u8>, Option<reqwest::Error>) {
        let mut got = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => got.extend_from_slice(&chunk),
                Ok(None) => return (got, None),
                Err(e) => return (got, Some(e)),
            }
        }
    }

    #[tokio::test]
    async fn normal_serves_200_and_ranges() {
        let cdn = Cdn::start().await;
        let data = bytes(100_000, 7);
        cdn.add("/video/a.mp4", data.clone(), Serve::Normal);
        let c = client();

        let resp = c.get(cdn.url("/video/a.mp4")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-type").as_deref(), Some("video/mp4"));
        assert_eq!(header(&resp, "content-length").as_deref(), Some("100000"));
        assert_eq!(header(&resp, "accept-ranges").as_deref(), Some("bytes"));
        assert_eq!(header(&resp, "connection").as_deref(), Some("close"));
        assert_eq!(resp.bytes().await.unwrap(), data);

        let resp = c
            .get(cdn.url("/video/a.mp4?x=1"))
            .header("Range", "bytes=1000-")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206);
        assert_eq!(
            header(&resp, "content-range").as_deref(),
            Some("bytes 1000-99999/100000")
        );
        assert_eq!(header(&resp, "content-length").as_deref(), Some("99000"));
        assert_eq!(resp.bytes().await.unwrap(), data[1000..]);

        let resp = c
            .get(cdn.url("/video/a.mp4"))
            .header("Range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206);
        assert_eq!(
            header(&resp, "content-range").as_deref(),
            Some("bytes 10-19/100000")
        );
        assert_eq!(resp.bytes().await.unwrap(), data[10..20]);

        let resp = c
            .get(cdn.url("/video/a.mp4"))
            .header("Range", "bytes=-100")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206);
        assert_eq!(resp.bytes().await.unwrap(), data[99_900..]);

        let resp = c
            .get(cdn.url("/video/a.mp4"))
            .header("Range", "bytes=100000-")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 416);
        assert_eq!(
            header(&resp, "content-range").as_deref(),
            Some("bytes */100000")
        );

        let resp = c.head(cdn.url("/video/a.mp4")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-length").as_deref(), Some("100000"));
        assert!(resp.bytes().await.unwrap().is_empty());

        let resp = c.get(cdn.url("/video/missing.mp4")).send().await.unwrap();
        assert_eq!(resp.status(), 404);
    }

    #[tokio::test]
    async fn ignores_range_answers_200() {
        let cdn = Cdn::start().await;
        let data = bytes(50_000, 1);
        cdn.add("/v.mp4", data.clone(), Serve::IgnoresRange);
        let resp = client()
            .get(cdn.url("/v.mp4"))
            .header("Range", "bytes=1000-")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-range"), None);
        assert_eq!(resp.bytes().await.unwrap(), data);
    }

    #[tokio::test]
    async fn misplaced_range_answers_206_at_another_offset() {
        let cdn = Cdn::start().await;
        let data = bytes(50_000, 1);
        cdn.add("/v.mp4", data.clone(), Serve::MisplacedRange { back: 1000 });
        let resp = client()
            .get(cdn.url("/v.mp4"))
            .header("Range", "bytes=3000-")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206);
        assert_eq!(
            header(&resp, "content-range").as_deref(),
            Some("bytes 2000-49999/50000")
        );
        assert_eq!(resp.bytes().await.unwrap(), data[2000..]);
        let resp = client().get(cdn.url("/v.mp4")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().await.unwrap(), data);
    }

    #[tokio::test]
    async fn drop_after_fails_then_recovers() {
        let cdn = Cdn::start().await;
        let data = bytes(200_000, 2);
        cdn.add(
            "/v.mp4",
            data.clone(),
            Serve::DropAfter {
                after: 30_000,
                times: 2,
            },
        );
        let c = client();
        for _ in 0..2 {
            let resp = c.get(cdn.url("/v.mp4")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(header(&resp, "content-length").as_deref(), Some("200000"));
            let (got, err) = read_all(resp).await;
            assert!(err.is_some(), "a dropped body must end in an error");
            assert_eq!(got, data[..30_000]);
        }
        // A resume now gets the rest.
        let resp = c
            .get(cdn.url("/v.mp4"))
            .header("Range", "bytes=30000-")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206);
        let (got, err) = read_all(resp).await;
        assert!(err.is_none());
        assert_eq!(got, data[30_000..]);
        // A HEAD does not use up a drop.
        cdn.set(
            "/v.mp4",
            Serve::DropAfter {
                after: 10,
                times: 1,
            },
        );
        let resp = c.head(cdn.url("/v.mp4")).send().await.unwrap();
        assert_eq!(header(&resp, "content-length").as_deref(), Some("200000"));
        let (got, err) = read_all(c.get(cdn.url("/v.mp4")).send().await.unwrap()).await;
        assert!(err.is_some());
        assert_eq!(got.len(), 10);
        let (got, err) = read_all(c.get(cdn.url("/v.mp4")).send().await.unwrap()).await;
        assert!(err.is_none());
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn stall_after_trips_a_read_timeout() {
        let cdn = Cdn::start().await;
        let data = bytes(100_000, 3);
        cdn.add(
            "/v.mp4",
            data.clone(),
            Serve::StallAfter {
                after: 20_000,
                stall: Duration::from_secs(3600),
            },
        );
        let c = reqwest::Client::builder()
            .no_proxy()
            .read_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let resp = c.get(cdn.url("/v.mp4")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        // The stall is an hour: only the read timeout ends the read within the guard.
        let (got, err) = tokio::time::timeout(Duration::from_secs(60), read_all(resp))
            .await
            .expect("the read timeout never fired");
        let err = err.expect("a stalled body must time out");
        assert!(err.is_timeout(), "{err:?}");
        assert_eq!(got, data[..20_000]);

        // A stall shorter than the timeout is only slow.
        cdn.set(
            "/v.mp4",
            Serve::StallAfter {
                after: 20_000,
                stall: Duration::from_millis(50),
            },
        );
        let (got, err) = read_all(c.get(cdn.url("/v.mp4")).send().await.unwrap()).await;
        assert!(err.is_none());
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn lying_length_short_and_long() {
        let cdn = Cdn::start().await;
        let data = bytes(4_000, 4);
        cdn.add(
            "/short.mp4",
            data.clone(),
            Serve::LyingLength {
                content_length: 10_000,
            },
        );
        cdn.add(
            "/long.mp4",
            data.clone(),
            Serve::LyingLength {
                content_length: 1_000,
            },
        );
        let c = client();
        let resp = c.get(cdn.url("/short.mp4")).send().await.unwrap();
        assert_eq!(header(&resp, "content-length").as_deref(), Some("10000"));
        let (got, err) = read_all(resp).await;
        assert!(err.is_some(), "a body shorter than announced is an error");
        assert_eq!(got, data);

        let resp = c.get(cdn.url("/long.mp4")).send().await.unwrap();
        assert_eq!(header(&resp, "content-length").as_deref(), Some("1000"));
        let (got, err) = read_all(resp).await;
        assert!(err.is_none());
        assert_eq!(got, data[..1_000]);
    }

    #[tokio::test]
    async fn no_length_is_close_delimited() {
        let cdn = Cdn::start().await;
        let data = bytes(300_000, 5);
        cdn.add("/v.mp4", data.clone(), Serve::NoLength);
        let resp = client().get(cdn.url("/v.mp4")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-length"), None);
        assert_eq!(resp.content_length(), None);
        let (got, err) = read_all(resp).await;
        assert!(err.is_none());
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn wrong_body_is_labelled_video() {
        let cdn = Cdn::start().await;
        cdn.add(
            "/v.mp4",
            Vec::new(),
            Serve::WrongBody {
                body: CAPTCHA_PAGE.as_bytes().to_vec(),
            },
        );
        let resp = client().get(cdn.url("/v.mp4")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-type").as_deref(), Some("video/mp4"));
        let body = resp.text().await.unwrap();
        assert_eq!(body, CAPTCHA_PAGE);
    }

    #[tokio::test]
    async fn status_pages() {
        let cdn = Cdn::start().await;
        cdn.add("/v.mp4", bytes(10, 1), Serve::Status(403));
        let c = client();
        let resp = c.get(cdn.url("/v.mp4")).send().await.unwrap();
        assert_eq!(resp.status(), 403);
        assert_eq!(header(&resp, "server").as_deref(), Some("openresty"));
        assert_eq!(header(&resp, "content-type").as_deref(), Some("text/html"));
        let body = resp.text().await.unwrap();
        assert!(body.contains("403 Forbidden"), "{body}");
        assert!(body.contains("Forbid_code: 020200"), "{body}");

        for code in [404u16, 410, 500, 503] {
            cdn.set("/v.mp4", Serve::Status(code));
            let resp = c.get(cdn.url("/v.mp4")).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), code);
            assert!(resp.text().await.unwrap().contains(&code.to_string()));
        }
        // `set` on an unknown path registers it.
        cdn.set("/gone.mp4", Serve::Status(410));
        let resp = c.head(cdn.url("/gone.mp4")).send().await.unwrap();
        assert_eq!(resp.status(), 410);
    }

    #[tokio::test]
    async fn redirects_are_not_followed_here() {
        let cdn = Cdn::start().await;
        cdn.add(
            "/meta.mp4",
            Vec::new(),
            Serve::Redirect {
                location: METADATA_URL.into(),
            },
        );
        cdn.add(
            "/private.mp4",
            Vec::new(),
            Serve::Redirect {
                location: PRIVATE_URL.into(),
            },
        );
        let c = client();
        let resp = c.get(cdn.url("/meta.mp4")).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        assert_eq!(header(&resp, "location").as_deref(), Some(METADATA_URL));
        let resp = c.get(cdn.url("/private.mp4")).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        assert_eq!(header(&resp, "location").as_deref(), Some(PRIVATE_URL));
    }

    #[tokio::test]
    async fn records_requests_and_headers() {
        let cdn = Cdn::start().await;
        cdn.add("/v.mp4?ignored=1", bytes(1_000, 9), Serve::Normal);
        let c = client();
        c.get(cdn.url("/v.mp4?a=1&b=2"))
            .header("User-Agent", "test-agent/1.0")
            .header("Referer", "https://www.douyin.com/")
            .header("Cookie", "ttwid=abc")
            .header("Range", "bytes=5-")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        c.head(cdn.url("/other")).send().await.unwrap();
        assert_eq!(
            cdn.requests(),
            vec![
                (
                    "GET".to_owned(),
                    "/v.mp4?a=1&b=2".to_owned(),
                    Some("bytes=5-".to_owned())
                ),
                ("HEAD".to_owned(), "/other".to_owned(), None),
            ]
        );
        let headers = cdn.last_headers("/v.mp4?whatever").expect("recorded");
        assert!(headers.contains(&("user-agent".to_owned(), "test-agent/1.0".to_owned())));
        assert!(headers.contains(&("referer".to_owned(), "https://www.douyin.com/".to_owned())));
        assert!(headers.contains(&("cookie".to_owned(), "ttwid=abc".to_owned())));
        assert_eq!(
            cdn.last_header("/v.mp4", "Cookie").as_deref(),
            Some("ttwid=abc")
        );
        assert!(cdn.last_headers("/never").is_none());
    }

    #[tokio::test]
    async fn bytes_are_deterministic() {
        assert_eq!(bytes(1_001, 42), bytes(1_001, 42));
        assert_ne!(bytes(64, 42), bytes(64, 43));
        assert_eq!(bytes(1_001, 42).len(), 1_001);
        assert_eq!(bytes(10, 42), bytes(1_001, 42)[..10]);
        assert!(bytes(0, 1).is_empty());
        assert_ne!(bytes(64, 0), vec![0u8; 64]);
    }

    #[tokio::test]
    async fn drop_stops_the_server_and_stalled_connections() {
        let cdn = Cdn::start().await;
        cdn.add(
            "/v.mp4",
            bytes(10_000, 1),
            Serve::StallAfter {
                after: 100,
                stall: Duration::from_secs(3600),
            },
        );
        let url = cdn.url("/v.mp4");
        let resp = client().get(&url).send().await.unwrap();
        drop(cdn);
        // The stall is an hour: the body ends within the guard only because the drop cut it.
        let (got, err) = tokio::time::timeout(Duration::from_secs(60), read_all(resp))
            .await
            .expect("the dropped server left the connection open");
        assert!(err.is_some());
        assert_eq!(got.len(), 100);
        assert!(client().get(&url).send().await.is_err());
    }
}
