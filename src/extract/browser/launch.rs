//! Starting one Chromium and making sure nothing of it outlives its use.
//!
//! Chromium runs as the leader of its own process group (its zygote, renderers and utility
//! processes join that group), with `PR_SET_PDEATHSIG` so that it dies with the worker even
//! when the worker is killed with `kill -9`, and with a fresh `--user-data-dir` in a temp
//! folder. `Process`'s `Drop` kills the whole group, reaps it and removes the folder. The
//! DevTools URL is read from Chromium's stderr (`--remote-debugging-port=0` picks a free
//! port), then chromiumoxide connects to it.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use chromiumoxide::Browser;
use chromiumoxide::handler::HandlerConfig;
use futures::StreamExt;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use super::BrowserError;
use super::capture::headful_user_agent;

/// Executables looked for on `PATH` when `CHROMIUM_PATH` is not set, in order.
pub(crate) const EXECUTABLES: &[&str] = &["chromium", "chromium-browser", "google-chrome"];

/// Flags of every launch: safe as root and in containers, no background traffic.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--mute-audio",
    "--hide-scrollbars",
    "--password-store=basic",
    "--use-mock-keychain",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
];

/// The browser executable: `explicit` (`CHROMIUM_PATH`) if given, which must be an executable
/// file; else the first of `EXECUTABLES` found in `path` (the `PATH` variable).
pub fn find_executable(explicit: Option<&Path>, path: Option<&OsStr>) -> Result<PathBuf, String> {
    if let Some(exe) = explicit {
        return if is_executable(exe) {
            Ok(exe.to_path_buf())
        } else {
            Err(format!(
                "CHROMIUM_PATH={} is not an executable file",
                exe.display()
            ))
        };
    }
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    EXECUTABLES
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            format!(
                "none of {} found on PATH; install Debian's `chromium` or set CHROMIUM_PATH",
                EXECUTABLES.join(", ")
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running Chromium: the process group, its profile folder, and its DevTools connection.
pub(super) struct Instance {
    /// The CDP connection.
    pub browser: Browser,
    /// The User-Agent its pages send (without the `Headless` mark).
    pub user_agent: String,
    /// Its product and version, as `Browser.getVersion` says (`HeadlessChrome/120.0...`).
    pub product: String,
    /// The process id (and process group id) of the browser process.
    pub pid: u32,
    /// The profile folder.
    pub profile: PathBuf,
    /// Cancelled when the browser process exits or the DevTools connection breaks.
    pub dead: CancellationToken,
    /// Pages opened in this browser.
    pub pages: AtomicU32,
    process: Mutex<Option<Process>>,
    handler: tokio::task::JoinHandle<()>,
}

impl Instance {
    /// Whether the browser can no longer serve pages.
    pub(crate) fn is_dead(&self) -> bool {
        if self.dead.is_cancelled() {
            return true;
        }
        let mut process = self.process.lock().unwrap_or_else(|e| e.into_inner());
        match process.as_mut() {
            Some(p) => !matches!(p.child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Kills the browser's processes now and removes its profile folder.
    pub fn terminate(&self) {
        self.dead.cancel();
        self.handler.abort();
        let process = self
            .process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(process);
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Launches Chromium and connects to it within `timeout`.
pub(super) async fn launch(exe: &Path, timeout: Duration) -> Result<Instance, BrowserError> {
    let launch_error = |what: String| BrowserError::Launch(format!("{}: {what}", exe.display()));
    let profile = tempfile::Builder::new()
        .prefix("douyin-worker-chromium-")
        .tempdir()
        .map_err(|e| launch_error(format!("profile folder: {e}")))?;
    let profile_path = profile.path().to_path_buf();
    let mut command = Command::new(exe);
    command
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile_path.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| launch_error(e.to_string()))?;
    let pid = child.id();
    let stderr = child.stderr.take();
    let process = Process {
        child,
        pid,
        profile: Some(profile),
    };
    let dead = CancellationToken::new();
    let (url_tx, url_rx) = tokio::sync::oneshot::channel();
    if let Some(stderr) = stderr {
        std::thread::Builder::new()
            .name("chromium-stderr".into())
            .spawn(move || read_devtools_url(stderr, url_tx))
            .map_err(|e| launch_error(e.to_string()))?;
    }
    {
        let dead = dead.clone();
        std::thread::Builder::new()
            .name("chromium-exit".into())
            .spawn(move || {
                wait_for_exit(pid);
                dead.cancel();
            })
            .map_err(|e| launch_error(e.to_string()))?;
    }
    let ws_url = match tokio::time::timeout(timeout, url_rx).await {
        Ok(Ok(Ok(url))) => url,
        Ok(Ok(Err(tail))) => {
            return Err(launch_error(format!(
                "exited before it printed its DevTools address: {tail}"
            )));
        }
        Ok(Err(_)) => return Err(launch_error("its stderr reader stopped".into())),
        Err(_) => {
            return Err(launch_error(format!(
                "no DevTools address within {timeout:?}"
            )));
        }
    };
    let config = HandlerConfig {
        request_timeout: timeout.max(Duration::from_secs(5)),
        ..HandlerConfig::default()
    };
    let (browser, mut handler) = Browser::connect_with_config(ws_url, config)
        .await
        .map_err(|e| launch_error(format!("DevTools connection: {e}")))?;
    let handler = {
        let dead = dead.clone();
        tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    tracing::debug!(error = %e, "browser DevTools connection ended");
                    break;
                }
            }
            dead.cancel();
        })
    };
    let mut instance = Instance {
        browser,
        user_agent: String::new(),
        product: String::new(),
        pid,
        profile: profile_path,
        dead,
        pages: AtomicU32::new(0),
        process: Mutex::new(Some(process)),
        handler,
    };
    identify(&mut instance, timeout)
        .await
        .map_err(launch_error)?;
    Ok(instance)
}

/// Asks the browser what it is: the User-Agent its pages send, and its product and version.
async fn identify(instance: &mut Instance, timeout: Duration) -> Result<(), String> {
    let version = tokio::time::timeout(timeout, instance.browser.version())
        .await
        .map_err(|_| "no answer to Browser.getVersion".to_string())?
        .map_err(|e| format!("Browser.getVersion: {e}"))?;
    instance.user_agent = headful_user_agent(&version.user_agent);
    instance.product = version.product;
    Ok(())
}

/// Reads Chromium's stderr until `DevTools listening on ws://…`, sends that URL (or, if the
/// stream ends first, its last lines), then drains the rest so Chromium never blocks on a
/// full pipe.
fn read_devtools_url(
    stderr: std::process::ChildStderr,
    tx: tokio::sync::oneshot::Sender<Result<String, String>>,
) {
    let mut tx = Some(tx);
    let mut tail: Vec<String> = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if let Some(url) = line.trim().strip_prefix("DevTools listening on ") {
            if let Some(tx) = tx.take() {
                let _ = tx.send(Ok(url.trim().to_string()));
            }
        } else if tx.is_some() {
            tail.push(line);
            if tail.len() > 5 {
                tail.remove(0);
            }
        }
    }
    if let Some(tx) = tx {
        let _ = tx.send(Err(tail.join(" | ")));
    }
}

/// Blocks until process `pid` (a child of this process) has exited, without reaping it.
fn wait_for_exit(pid: u32) {
    loop {
        // SAFETY: waitid writes only into `info`.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// The browser's process group and profile folder; dropping it kills the group, reaps the
/// browser process and removes the folder.
struct Process {
    child: Child,
    pid: u32,
    profile: Option<TempDir>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let pgid = self.pid as libc::pid_t;
        let exited = !matches!(self.child.try_wait(), Ok(None));
        if !exited || !group_members(self.pid).is_empty() {
            // SAFETY: a plain kill(2) of our own child's process group.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        while !group_members(self.pid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(profile) = self.profile.take() {
            let path = profile.path().to_path_buf();
            if profile.close().is_err() {
                // A process that was still writing when it was killed: once more.
                std::thread::sleep(Duration::from_millis(20));
                if let Err(e) = std::fs::remove_dir_all(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove the browser's profile folder");
                }
            }
        }
    }
}

/// The live (not zombie) processes of process group `pgid`, from `/proc`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let mut fields = after.split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
            pgrp == Some(pgid) && state != Some("Z") && state != Some("X")
        })
        .collect()
}

/// Proportional set size of `pid` in bytes (`Pss:` of `/proc/<pid>/smaps_rollup`).
pub(crate) fn pss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}
