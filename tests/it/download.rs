//! The downloader against the loopback CDN: resume, mirrors, limits, timeouts, the SSRF
//! guard, headers, and no temp file left behind.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use douyin_worker::download::{CDN_FORBIDDEN, DownloadOptions, HttpDownloader};
use douyin_worker::error::ErrorClass;
use douyin_worker::net::upstream::Upstream;
use douyin_worker::stage::{DownloadedFile, MediaSource};
use sha2::{Digest, Sha256};

use fakes::cdn::{Cdn, Serve, bytes};

fn opts() -> DownloadOptions {
    DownloadOptions {
        idle_timeout: Duration::from_millis(500),
        allow_private_networks: true,
        ..Default::default()
    }
}

fn source(urls: Vec<String>) -> MediaSource {
    MediaSource {
        douyin_id: "7412345678901234567".into(),
        urls,
        headers: vec![
            ("User-Agent".into(), "test-agent/1".into()),
            ("Referer".into(), "https://www.douyin.com/".into()),
            ("Cookie".into(), "ttwid=secret-cookie".into()),
        ],
        ..Default::default()
    }
}

fn sha(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

async fn get(
    opts: DownloadOptions,
    source: &MediaSource,
    dir: &Path,
) -> (
    Result<DownloadedFile, douyin_worker::error::JobError>,
    Vec<(u64, Option<u64>)>,
) {
    let d = HttpDownloader::new(opts).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let progress = move |done: u64, total: Option<u64>| s2.lock().unwrap().push((done, total));
    let r = d.download_to(source, dir, &progress).await;
    let seen = seen.lock().unwrap().clone();
    (r, seen)
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[tokio::test]
async fn streams_to_a_private_file_with_its_checksum_and_progress() {
    use std::os::unix::fs::PermissionsExt;
    let cdn = Cdn::start().await;
    let body = bytes(1_500_000, 1);
    cdn.add("/video/a.mp4", body.clone(), Serve::Normal);
    let dir = tempfile::tempdir().unwrap();
    let mut src = source(vec![cdn.url("/video/a.mp4")]);
    src.expected_size = Some(body.len() as u64);
    let (r, progress) = get(opts(), &src, dir.path()).await;
    let file = r.unwrap();
    assert_eq!(file.size, body.len() as u64);
    assert_eq!(file.sha256, sha(&body));
    assert_eq!(std::fs::read(&file.path).unwrap(), body);
    let mode = std::fs::metadata(&file.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        progress.last(),
        Some(&(body.len() as u64, Some(body.len() as u64)))
    );
    // Cookies go to Douyin hosts only; this CDN is 127.0.0.1.
    let headers = cdn.last_headers("/video/a.mp4").unwrap();
    let get_h = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(get_h("user-agent").as_deref(), Some("test-agent/1"));
    assert_eq!(get_h("referer").as_deref(), Some("https://www.douyin.com/"));
    assert_eq!(get_h("cookie"), None);
}

#[tokio::test]
async fn a_dropped_connection_resumes_from_what_is_on_disk() {
    let cdn = Cdn::start().await;
    let body = bytes(1_000_000, 2);
    cdn.add(
        "/v.mp4",
        body.clone(),
        Serve::DropAfter {
            after: 300_000,
            times: 2,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = get(opts(), &source(vec![cdn.url("/v.mp4")]), dir.path()).await;
    let file = r.unwrap();
    assert_eq!(file.sha256, sha(&body));
    let ranges: Vec<_> = cdn
        .requests()
        .into_iter()
        .map(|(_, _, range)| range)
        .collect();
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    assert_eq!(ranges[0], None);
    assert!(
        ranges[1]
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-"),
        "{ranges:?}"
    );
}

/// Downloads an 800,000-byte file whose first answer drops after 200,000 bytes and whose
/// server turns to `then` once bytes arrive; checks the file is whole and returns the
/// `Range` of each request.
async fn resume_against(then: Serve) -> Vec<Option<String>> {
    let cdn = Cdn::start().await;
    let body = bytes(800_000, 3);
    cdn.add(
        "/v.mp4",
        body.clone(),
        Serve::DropAfter {
            after: 200_000,
            times: 1,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let d = HttpDownloader::new(opts()).unwrap();
    let switched = std::sync::atomic::AtomicBool::new(false);
    let progress = |_: u64, _: Option<u64>| {
        if !switched.swap(true, std::sync::atomic::Ordering::SeqCst) {
            cdn.set("/v.mp4", then.clone());
        }
    };
    let file = d
        .download_to(&source(vec![cdn.url("/v.mp4")]), dir.path(), &progress)
        .await
        .unwrap();
    assert_eq!(file.size, body.len() as u64);
    assert_eq!(file.sha256, sha(&body));
    assert_eq!(std::fs::read(&file.path).unwrap(), body);
    cdn.requests().into_iter().map(|(_, _, r)| r).collect()
}

#[tokio::test]
async fn a_200_to_a_resume_starts_the_file_over() {
    // The resume after the drop gets a 200 with the whole file (Range ignored).
    let ranges = resume_against(Serve::IgnoresRange).await;
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert!(
        ranges[1].is_some(),
        "the second request asked for a range: {ranges:?}"
    );
}

#[tokio::test]
async fn a_206_at_another_offset_than_asked_starts_the_file_over() {
    // The resume is answered from 1,000 bytes before the offset asked: appended, those
    // bytes would be a copy inside the file.
    let ranges = resume_against(Serve::MisplacedRange { back: 1000 }).await;
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    assert_eq!(ranges[0], None);
    assert!(
        ranges[1].is_some(),
        "the resume asked for a range: {ranges:?}"
    );
    assert_eq!(ranges[2], None, "started over without a range: {ranges:?}");
}

#[tokio::test]
async fn a_stalled_transfer_is_given_up_after_bounded_resumes_and_leaves_nothing() {
    let cdn = Cdn::start().await;
    cdn.add(
        "/v.mp4",
        bytes(500_000, 4),
        Serve::StallAfter {
            after: 100_000,
            stall: Duration::from_secs(30),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.idle_timeout = Duration::from_millis(200);
    o.max_resumes = 2;
    let (r, _) = get(o, &source(vec![cdn.url("/v.mp4")]), dir.path()).await;
    let e = r.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(e.message.contains("gave up after 2 resumes"), "{e}");
    assert_eq!(files_in(dir.path()), 0);
}

#[tokio::test]
async fn a_lying_content_length_is_never_stored() {
    let cdn = Cdn::start().await;
    let body = bytes(300_000, 5);
    cdn.add(
        "/short.mp4",
        body.clone(),
        Serve::LyingLength {
            content_length: 400_000,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.max_resumes = 1;
    let (r, _) = get(o, &source(vec![cdn.url("/short.mp4")]), dir.path()).await;
    assert!(r.is_err(), "a short body must not pass");
    assert_eq!(files_in(dir.path()), 0);

    // The record's data_size must match too.
    cdn.add("/ok.mp4", body.clone(), Serve::Normal);
    let mut src = source(vec![cdn.url("/ok.mp4")]);
    src.expected_size = Some(body.len() as u64 + 1);
    let (r, _) = get(opts(), &src, dir.path()).await;
    let e = r.unwrap_err();
    assert_eq!(e.code, "size-mismatch");
    assert_eq!(files_in(dir.path()), 0);
}

#[tokio::test]
async fn forbidden_and_missing_mirrors_fall_through_to_the_next() {
    let cdn = Cdn::start().await;
    let body = bytes(200_000, 6);
    cdn.add("/m1.mp4", body.clone(), Serve::Status(403));
    cdn.add("/m2.mp4", body.clone(), Serve::Status(503));
    cdn.add("/m3.mp4", body.clone(), Serve::Normal);
    let dir = tempfile::tempdir().unwrap();
    let urls = vec![cdn.url("/m1.mp4"), cdn.url("/m2.mp4"), cdn.url("/m3.mp4")];
    let (r, _) = get(opts(), &source(urls), dir.path()).await;
    assert_eq!(r.unwrap().sha256, sha(&body));

    // Every mirror 403: the URL expired, and the error says so.
    cdn.set("/m2.mp4", Serve::Status(403));
    cdn.set("/m3.mp4", Serve::Status(403));
    let urls = vec![cdn.url("/m1.mp4"), cdn.url("/m2.mp4"), cdn.url("/m3.mp4")];
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = get(opts(), &source(urls), dir.path()).await;
    let e = r.unwrap_err();
    assert_eq!(e.code, CDN_FORBIDDEN);
    assert_eq!(e.class, ErrorClass::Transient);
    assert_eq!(files_in(dir.path()), 0);
}

/// A CDN that throttles (429 or 503 with `Retry-After` in seconds) says when to come back: the
/// failure asks for the latest of those times (capped at an hour), so the retry waits for it.
#[tokio::test]
async fn a_throttling_cdn_sets_the_earliest_retry() {
    let cdn = Cdn::start().await;
    let body = bytes(1_000, 7);
    let throttled = |status: u16, value: &str| Serve::RetryAfter {
        status,
        value: value.into(),
    };
    cdn.add("/m1.mp4", body.clone(), throttled(429, "120"));
    cdn.add("/m2.mp4", body.clone(), throttled(503, "30"));
    cdn.add("/m3.mp4", body.clone(), Serve::Status(503));
    let urls = vec![cdn.url("/m1.mp4"), cdn.url("/m2.mp4"), cdn.url("/m3.mp4")];
    let dir = tempfile::tempdir().unwrap();
    let e = get(opts(), &source(urls), dir.path()).await.0.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    assert_eq!(e.retry_after, Some(Duration::from_secs(120)));
    assert!(
        e.message.contains("HTTP 429 (retry after 120s)"),
        "{}",
        e.message
    );

    // Capped at an hour; an HTTP-date, a 404's header or no header set nothing.
    cdn.set("/m1.mp4", throttled(429, "86400"));
    let e = get(opts(), &source(vec![cdn.url("/m1.mp4")]), dir.path())
        .await
        .0
        .unwrap_err();
    assert_eq!(e.retry_after, Some(Duration::from_secs(3600)));
    for serve in [
        throttled(429, "Wed, 21 Oct 2026 07:28:00 GMT"),
        throttled(404, "60"),
        Serve::Status(429),
    ] {
        cdn.set("/m1.mp4", serve);
        let e = get(opts(), &source(vec![cdn.url("/m1.mp4")]), dir.path())
            .await
            .0
            .unwrap_err();
        assert_eq!(e.retry_after, None, "{}", e.message);
    }
    assert_eq!(files_in(dir.path()), 0);
}

#[tokio::test]
async fn files_over_the_limit_are_refused_at_the_header_or_in_the_stream() {
    let cdn = Cdn::start().await;
    cdn.add("/big.mp4", bytes(2 * 1024 * 1024, 7), Serve::Normal);
    // No Content-Length: the limit trips while streaming.
    cdn.add(
        "/big-unannounced.mp4",
        bytes(2 * 1024 * 1024, 7),
        Serve::NoLength,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.max_bytes = 1024 * 1024;
    let (r, _) = get(o.clone(), &source(vec![cdn.url("/big.mp4")]), dir.path()).await;
    let e = r.unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("too-large", ErrorClass::Permanent),
        "{e}"
    );
    let (r, progress) = get(
        o,
        &source(vec![cdn.url("/big-unannounced.mp4")]),
        dir.path(),
    )
    .await;
    let e = r.unwrap_err();
    assert_eq!(
        (e.code, e.class),
        ("too-large", ErrorClass::Permanent),
        "{e}"
    );
    let (last, total) = *progress.last().unwrap();
    assert!(
        last <= 1024 * 1024 && total.is_none(),
        "stopped as soon as it passed: {last}"
    );
    assert_eq!(files_in(dir.path()), 0);
}

#[tokio::test]
async fn private_addresses_are_refused_including_redirect_hops() {
    let cdn = Cdn::start().await;
    let body = bytes(10_000, 8);
    // Through the Douyin rewrite the first hop is a public CDN name; its redirect is not.
    cdn.add(
        "/v26-web.douyinvod.com/video/a.mp4",
        body.clone(),
        Serve::Redirect {
            location: "http://169.254.169.254/latest/meta-data/".into(),
        },
    );
    cdn.add(
        "/v26-web.douyinvod.com/video/b.mp4",
        body.clone(),
        Serve::Normal,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.allow_private_networks = false;
    o.upstream = Upstream::rewrite_to(cdn.url.parse().unwrap());
    let (r, _) = get(
        o.clone(),
        &source(vec!["https://v26-web.douyinvod.com/video/a.mp4".into()]),
        dir.path(),
    )
    .await;
    let e = r.unwrap_err();
    assert!(e.message.contains("169.254.169.254"), "{e}");
    // The rewritten Douyin host works, and gets the cookie (a Douyin host).
    let (r, _) = get(
        o.clone(),
        &source(vec!["https://v26-web.douyinvod.com/video/b.mp4".into()]),
        dir.path(),
    )
    .await;
    assert_eq!(r.unwrap().sha256, sha(&body));
    let headers = cdn
        .last_headers("/v26-web.douyinvod.com/video/b.mp4")
        .unwrap();
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "cookie" && v.contains("ttwid=secret-cookie"))
    );
    // A loopback URL itself is refused before any connection.
    let before = cdn.requests().len();
    let (r, _) = get(
        o.clone(),
        &source(vec![cdn.url("/video/x.mp4")]),
        dir.path(),
    )
    .await;
    assert!(r.unwrap_err().message.contains("127.0.0.1"));
    assert_eq!(cdn.requests().len(), before);
    // Only http and https.
    let (r, _) = get(o, &source(vec!["file:///etc/passwd".into()]), dir.path()).await;
    assert!(r.unwrap_err().message.contains("file://"));
}

/// A host name (not an address, not `localhost`, which the URL check catches by name) that
/// this machine resolves to a loopback or private address: the machine's own name, as
/// `/etc/hosts` has it on Debian, Ubuntu and in containers.
fn a_name_resolving_to_a_private_address() -> String {
    use std::net::ToSocketAddrs;
    let mut candidates = Vec::new();
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `buf.len()` bytes into `buf`.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        candidates.push(String::from_utf8_lossy(&buf[..end]).into_owned());
    }
    candidates.extend(["ip6-localhost".to_string(), "ip6-loopback".to_string()]);
    candidates
        .iter()
        .find(|name| {
            !name.is_empty()
                && !name.eq_ignore_ascii_case("localhost")
                && (name.as_str(), 0).to_socket_addrs().is_ok_and(|mut addrs| {
                    addrs.any(|a| douyin_worker::net::guard::is_forbidden(a.ip()))
                })
        })
        .cloned()
        .unwrap_or_else(|| panic!("none of {candidates:?} resolves to a private address here"))
}

#[tokio::test]
async fn a_name_that_resolves_to_a_private_address_is_refused_after_resolution() {
    let cdn = Cdn::start().await;
    let body = bytes(10_000, 9);
    cdn.add("/v.mp4", body.clone(), Serve::Normal);
    let name = a_name_resolving_to_a_private_address();
    let port = cdn.url.rsplit(':').next().unwrap().to_string();
    let url = format!("http://{name}:{port}/v.mp4");
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.allow_private_networks = false;
    let (r, _) = get(o, &source(vec![url.clone()]), dir.path()).await;
    let e = r.unwrap_err();
    assert!(
        e.message.contains("resolves to") && e.message.contains(&name),
        "refused by the resolver, naming the host: {e}"
    );
    assert!(cdn.requests().is_empty(), "no connection was made");
    assert_eq!(files_in(dir.path()), 0);
}

#[tokio::test]
async fn cancelling_a_job_mid_download_leaves_no_temp_file() {
    use douyin_worker::queue::Lease;
    use douyin_worker::stage::{Downloader, JobContext, ProgressBoard};
    let cdn = Cdn::start().await;
    cdn.add(
        "/v.mp4",
        bytes(400_000, 9),
        Serve::StallAfter {
            after: 200_000,
            stall: Duration::from_secs(30),
        },
    );
    let root = tempfile::tempdir().unwrap();
    let ctx = JobContext::new(
        Lease {
            job_id: uuid::Uuid::new_v4(),
            lease_id: uuid::Uuid::new_v4(),
        },
        Arc::from("w"),
        tokio_util::sync::CancellationToken::new(),
        root.path(),
        Arc::new(ProgressBoard::default()),
    );
    let mut o = opts();
    o.idle_timeout = Duration::from_secs(30);
    let d = HttpDownloader::new(o).unwrap();
    let src = source(vec![cdn.url("/v.mp4")]);
    let work = d.download(&src, &ctx);
    // The worker drops the job's future when it cancels the job.
    let r = tokio::time::timeout(Duration::from_millis(700), work).await;
    assert!(r.is_err(), "the download should still be stalled");
    assert_eq!(
        files_in(root.path()),
        1,
        "the job folder exists while the job runs"
    );
    drop(ctx);
    assert_eq!(files_in(root.path()), 0, "the job folder goes with the job");
}

/// A tmpfs of a few bytes mounted on a fresh folder, unmounted on drop: a disk that really
/// fills up. Mounting needs root (or `CAP_SYS_ADMIN`); `None`, with a line saying the test
/// is skipped, where it is refused.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
            return None;
        }
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_stops_the_download_at_once_as_a_transient_failure() {
    let Some(disk) = SmallDisk::mount("1m") else {
        return;
    };
    let cdn = Cdn::start().await;
    let body = bytes(16 << 20, 11);
    cdn.add("/big.mp4", body.clone(), Serve::Normal);
    let (r, progress) = get(opts(), &source(vec![cdn.url("/big.mp4")]), disk.path()).await;
    let e = r.unwrap_err();
    assert_eq!(e.code, douyin_worker::download::DISK_FULL, "{e}");
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(e.message.contains("TEMP_DIR is full"), "{e}");
    // Stopped at the first failed write, not after reading the whole 16 MiB.
    let read = progress.last().map_or(0, |(done, _)| *done);
    assert!(
        read < 4 << 20,
        "read {read} bytes of a file that could not be written"
    );
    assert_eq!(files_in(disk.path()), 0, "the partial file is removed");
}
