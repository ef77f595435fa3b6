//! The download stage: streams the media into the job's temp folder.
//!
//! - Streamed to an owner-only file with a unique name in the job's private temp folder,
//!   hashing (SHA-256) and counting on the fly in a writer thread (`sink`), so the network
//!   task never waits on the disk; memory stays at a few chunks plus a 256 KiB write buffer
//!   whatever the file size. The folder goes when the job ends, on every path.
//! - Timeouts: connect, idle (no byte for a while) and total.
//! - Resume: a dropped connection continues with `Range: bytes=N-`; only a 206 whose
//!   `Content-Range` starts at N is accepted, a 200 starts over; a bounded number of times.
//! - Mirrors: 403, 404, 410 and 5xx move on to the next mirror; when every mirror answered
//!   403 (an expired URL) the error says so ([`CDN_FORBIDDEN`], a
//!   [`crate::stage::DownloadError::Expired`] to the pipeline) and the pipeline extracts
//!   again once.
//! - A full disk (`ENOSPC`) stops the download at the first failed write ([`DISK_FULL`],
//!   transient).
//! - Limits: `MAX_VIDEO_BYTES`, at `Content-Length` or as soon as the stream passes it; the
//!   size must match `Content-Length` and the record's `data_size`.
//! - Every URL and redirect hop passes the SSRF [`crate::net::guard`]; redirects are bounded.
//! - Progress goes to the job row through the job context (throttled there).
//! - `probe`: the first bytes of the file, for `doctor` (`HttpDownloader::first_bytes`).

mod probe;
mod sink;

pub use probe::FirstBytes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;
use url::Url;

use crate::config::{DownloadSettings, NetSettings};
use crate::error::JobError;
use crate::net::upstream::{Upstream, is_douyin_host};
use crate::stage::{DownloadError, DownloadedFile, Downloader, JobContext, MediaSource};

/// The error code when every mirror refused with 403: the signed URL expired.
pub const CDN_FORBIDDEN: &str = "cdn-forbidden";

/// The error code when the temp folder's disk is full (`ENOSPC`); the download stops at the
/// first failed write.
pub const DISK_FULL: &str = "disk-full";

/// How downloads behave.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes.
    pub idle_timeout: Duration,
    /// Longest time for one whole download.
    pub total_timeout: Duration,
    /// Largest file accepted (`MAX_VIDEO_BYTES`).
    pub max_bytes: u64,
    /// Resumes after dropped connections, per mirror.
    pub max_resumes: u32,
    /// Redirect hops followed per request.
    pub max_redirects: u32,
    /// Lift the SSRF guard (`ALLOW_PRIVATE_NETWORKS`, tests only).
    pub allow_private_networks: bool,
    /// Where Douyin requests go (`DOUYIN_UPSTREAM`, tests): CDN hosts are Douyin's too.
    pub upstream: Upstream,
}

impl DownloadOptions {
    /// The downloader of the download and network settings; at most five redirect hops.
    pub fn new(download: &DownloadSettings, net: &NetSettings) -> Self {
        Self {
            connect_timeout: download.connect_timeout,
            idle_timeout: download.idle_timeout,
            total_timeout: download.total_timeout,
            max_bytes: download.max_video_bytes,
            max_resumes: download.max_resumes,
            max_redirects: 5,
            allow_private_networks: net.allow_private_networks,
            upstream: Upstream::from_setting(net.douyin_upstream.as_ref()),
        }
    }
}

impl Default for DownloadOptions {
    /// The settings' declared defaults.
    fn default() -> Self {
        Self::new(&DownloadSettings::default(), &NetSettings::default())
    }
}

/// The HTTP downloader.
#[derive(Clone, Debug)]
pub struct HttpDownloader {
    client: reqwest::Client,
    opts: DownloadOptions,
}

/// How one mirror ended without a file.
enum MirrorEnd {
    /// Try the next mirror (status that says "not here").
    Next(String, Option<StatusCode>),
    /// Try the next mirror; this one said when to come back (429 or 503 with `Retry-After`).
    Throttled {
        why: String,
        status: StatusCode,
        retry_after: Duration,
    },
    /// Stop: the error applies to the file, not the mirror.
    Stop(JobError),
}

impl HttpDownloader {
    /// A downloader with these options.
    pub fn new(opts: DownloadOptions) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(opts.connect_timeout)
            .dns_resolver(crate::net::guard::GuardedResolver::new(
                opts.allow_private_networks,
            ))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self { client, opts })
    }

    /// Downloads `source` into `dir` (created by the caller); the file name is unique.
    /// `progress` gets (bytes done, total if known).
    pub async fn download_to(
        &self,
        source: &MediaSource,
        dir: &Path,
        progress: &(dyn Fn(u64, Option<u64>) + Send + Sync),
    ) -> Result<DownloadedFile, JobError> {
        if source.urls.is_empty() {
            return Err(JobError::permanent(
                "no-media-url",
                "no media URL to download",
            ));
        }
        let deadline = Instant::now() + self.opts.total_timeout;
        let mut ends = Vec::new();
        // The latest time a throttling mirror asked us to come back.
        let mut come_back: Option<Duration> = None;
        for (i, raw) in source.urls.iter().enumerate() {
            // A file per mirror: the writer of a failed mirror may still be draining its
            // queue, and must not write into the next mirror's file.
            let path = dir.join(format!("{}.part", uuid::Uuid::new_v4().simple()));
            let url = Url::parse(raw).map_err(|e| {
                JobError::permanent(
                    "bad-media-url",
                    format!("mirror {} is not a URL: {e}", i + 1),
                )
            })?;
            let (why, status) = match self.mirror(&url, source, &path, deadline, progress).await {
                Ok(file) => return Ok(file),
                Err(MirrorEnd::Stop(e)) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(e);
                }
                Err(MirrorEnd::Next(why, status)) => (why, status),
                Err(MirrorEnd::Throttled {
                    why,
                    status,
                    retry_after,
                }) => {
                    come_back = come_back.max(Some(retry_after));
                    (why, Some(status))
                }
            };
            let _ = std::fs::remove_file(&path);
            tracing::info!(mirror = i + 1, host = url.host_str().unwrap_or("?"), why = %why, "mirror failed; trying the next");
            ends.push((why, status));
        }
        let summary = ends
            .iter()
            .enumerate()
            .map(|(i, (why, _))| format!("mirror {}: {why}", i + 1))
            .collect::<Vec<_>>()
            .join("; ");
        if ends.iter().all(|(_, s)| *s == Some(StatusCode::FORBIDDEN)) {
            Err(JobError::transient(
                CDN_FORBIDDEN,
                format!("every mirror answered 403 (the signed URL expired?): {summary}"),
            ))
        } else {
            let e = JobError::transient("download-failed", summary);
            Err(match come_back {
                Some(after) => e.with_retry_after(after),
                None => e,
            })
        }
    }

    /// One mirror, with resumes.
    async fn mirror(
        &self,
        url: &Url,
        source: &MediaSource,
        path: &Path,
        deadline: Instant,
        progress: &(dyn Fn(u64, Option<u64>) + Send + Sync),
    ) -> Result<DownloadedFile, MirrorEnd> {
        let io = |e| MirrorEnd::Stop(temp_file_error(e));
        let mut sink = sink::Sink::start(sink::open_private(path).map_err(io)?);
        let mut written: u64 = 0;
        let mut resumes: u32 = 0;
        loop {
            let mut response = self.request(url, source, (written, None), deadline).await?;
            let status = response.status();
            let (total, restart) = match status {
                StatusCode::OK => (response.content_length(), written > 0),
                StatusCode::PARTIAL_CONTENT => match content_range(response.headers()) {
                    Some((start, total)) if start == written => (total, false),
                    // A range that does not continue the file: start over without one.
                    _ => {
                        sink.reset().await.map_err(io)?;
                        written = 0;
                        continue;
                    }
                },
                s => return Err(not_here(s, response.headers())),
            };
            if restart {
                sink.reset().await.map_err(io)?;
                written = 0;
            }
            if let Some(total) = total
                && total > self.opts.max_bytes
            {
                return Err(MirrorEnd::Stop(too_large(total, self.opts.max_bytes)));
            }
            let dropped = self
                .read_body(
                    &mut response,
                    &mut sink,
                    &mut written,
                    total,
                    deadline,
                    progress,
                )
                .await?;
            let short_of_total = total.is_some_and(|t| written < t);
            match dropped {
                None if !short_of_total => break,
                _ => {
                    let why = dropped.unwrap_or_else(|| {
                        format!(
                            "the body ended at {written} of {} bytes",
                            total.unwrap_or(0)
                        )
                    });
                    if resumes >= self.opts.max_resumes {
                        return Err(MirrorEnd::Next(
                            format!("{why}; gave up after {resumes} resumes"),
                            None,
                        ));
                    }
                    resumes += 1;
                    tracing::info!(bytes = written, resume = resumes, why = %why, "resuming the download");
                }
            }
        }
        let sha256 = sink.finish().await.map_err(io)?;
        if written == 0 {
            return Err(MirrorEnd::Next("empty body".into(), None));
        }
        if let Some(expected) = source.expected_size
            && expected != written
        {
            return Err(MirrorEnd::Stop(JobError::transient(
                "size-mismatch",
                format!("Douyin announced {expected} bytes, the CDN sent {written}"),
            )));
        }
        Ok(DownloadedFile {
            path: path.to_path_buf(),
            size: written,
            sha256,
        })
    }

    /// Reads the body of one response into `sink`, counting `written` and checking the
    /// limits; returns why it stopped early (`None`: the body ended), or the error that ends
    /// the mirror or the download.
    async fn read_body(
        &self,
        response: &mut reqwest::Response,
        sink: &mut sink::Sink,
        written: &mut u64,
        total: Option<u64>,
        deadline: Instant,
        progress: &(dyn Fn(u64, Option<u64>) + Send + Sync),
    ) -> Result<Option<String>, MirrorEnd> {
        let io = |e| MirrorEnd::Stop(temp_file_error(e));
        loop {
            let wait = self
                .opts
                .idle_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let chunk = match tokio::time::timeout(wait, response.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(e)) => return Ok(Some(format!("connection dropped: {}", short(&e)))),
                Err(_) if Instant::now() >= deadline => {
                    return Err(MirrorEnd::Stop(JobError::transient(
                        "download-timeout",
                        format!("download took longer than {:?}", self.opts.total_timeout),
                    )));
                }
                Err(_) => return Ok(Some(format!("no data for {:?}", self.opts.idle_timeout))),
            };
            *written += chunk.len() as u64;
            if *written > self.opts.max_bytes {
                return Err(MirrorEnd::Stop(too_large(*written, self.opts.max_bytes)));
            }
            if let Some(total) = total
                && *written > total
            {
                return Err(MirrorEnd::Stop(JobError::transient(
                    "size-mismatch",
                    format!("the server sent more than the {total} bytes it announced"),
                )));
            }
            sink.write(chunk).await.map_err(io)?;
            progress(*written, total);
        }
    }

    /// Sends a GET (with `Range: bytes=FROM-` when resuming, `bytes=FROM-TO` when a part is
    /// asked for), following redirects by hand so that each hop passes the guard.
    async fn request(
        &self,
        url: &Url,
        source: &MediaSource,
        (from, to): (u64, Option<u64>),
        deadline: Instant,
    ) -> Result<reqwest::Response, MirrorEnd> {
        let mut current = url.clone();
        for _ in 0..=self.opts.max_redirects {
            crate::net::guard::check_url(&current, self.opts.allow_private_networks)
                .map_err(|why| MirrorEnd::Next(why, None))?;
            let target = self.opts.upstream.apply(&current);
            let mut req = self.client.get(target.clone());
            let douyin = current.host_str().is_some_and(is_douyin_host);
            for (name, value) in &source.headers {
                // Cookies go to Douyin hosts only.
                if name.eq_ignore_ascii_case("cookie") && !douyin {
                    continue;
                }
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    req = req.header(n, v);
                }
            }
            if let Some(to) = to {
                req = req.header(header::RANGE, format!("bytes={from}-{to}"));
            } else if from > 0 {
                req = req.header(header::RANGE, format!("bytes={from}-"));
            }
            let wait = self
                .opts
                .idle_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let response = match tokio::time::timeout(wait, req.send()).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    return Err(MirrorEnd::Next(short(&e), None));
                }
                Err(_) => return Err(MirrorEnd::Next(format!("no answer within {wait:?}"), None)),
            };
            if response.status().is_redirection()
                && let Some(location) = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| target.join(l).ok())
            {
                current = self.opts.upstream.original(&location);
                continue;
            }
            return Ok(response);
        }
        Err(MirrorEnd::Next(
            format!("more than {} redirects", self.opts.max_redirects),
            None,
        ))
    }
}

/// A status that is not the file: 403, 404, 410, 429 and 5xx say "not here, try the next
/// mirror"; anything else is unexpected, and the next mirror is tried too.
/// A 429 or 503 with `Retry-After` (delta-seconds, at most [`MAX_RETRY_AFTER`]) also says
/// when to come back.
fn not_here(s: StatusCode, headers: &reqwest::header::HeaderMap) -> MirrorEnd {
    let expected = s == StatusCode::FORBIDDEN
        || s == StatusCode::NOT_FOUND
        || s == StatusCode::GONE
        || s.is_server_error()
        || s == StatusCode::TOO_MANY_REQUESTS;
    let why = if expected {
        format!("HTTP {}", s.as_u16())
    } else {
        format!("unexpected HTTP {}", s.as_u16())
    };
    let throttled = s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::SERVICE_UNAVAILABLE;
    match retry_after(headers) {
        Some(retry_after) if throttled => MirrorEnd::Throttled {
            why: format!("{why} (retry after {}s)", retry_after.as_secs()),
            status: s,
            retry_after,
        },
        _ => MirrorEnd::Next(why, Some(s)),
    }
}

/// The longest `Retry-After` honoured: a CDN asking for more is asked again after this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After` in delta-seconds (the form CDNs send), capped at [`MAX_RETRY_AFTER`];
/// `None` when absent or another form.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// The temp file could not be written: a full disk (`disk-full`) or another I/O error
/// (`temp-file`); transient either way (the next attempt may find room).
fn temp_file_error(e: std::io::Error) -> JobError {
    if crate::disk::is_full(&e) {
        JobError::transient(
            DISK_FULL,
            format!("temp file: the disk of TEMP_DIR is full ({e})"),
        )
    } else {
        JobError::transient("temp-file", format!("temp file: {e}"))
    }
}

fn too_large(size: u64, max: u64) -> JobError {
    JobError::permanent(
        "too-large",
        format!("the file is {size} bytes, more than MAX_VIDEO_BYTES={max}"),
    )
}

/// A reqwest error without its URL (signed media URLs carry tokens).
fn short(e: &reqwest::Error) -> String {
    let mut detail = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    detail
}

/// `Content-Range: bytes START-END/TOTAL` → (START, TOTAL if known).
fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

#[async_trait]
impl Downloader for HttpDownloader {
    async fn download(
        &self,
        source: &MediaSource,
        ctx: &JobContext,
    ) -> Result<DownloadedFile, DownloadError> {
        let dir: PathBuf = ctx
            .temp_dir()
            .map_err(|e| {
                let at = ctx.temp_location().display();
                JobError::transient("temp-file", format!("temp folder {at} (TEMP_DIR): {e}"))
            })?
            .to_path_buf();
        let progress = |done: u64, total: Option<u64>| ctx.report_progress(done, total);
        self.download_to(source, &dir, &progress)
            .await
            .map_err(|e| {
                if e.code == CDN_FORBIDDEN {
                    DownloadError::Expired(e)
                } else {
                    DownloadError::Failed(e)
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/1000"),
        );
        assert_eq!(content_range(&h), Some((100, Some(1000))));
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-9/*"),
        );
        assert_eq!(content_range(&h), Some((0, None)));
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("items 0-9/10"),
        );
        assert_eq!(content_range(&h), None);
    }
}
