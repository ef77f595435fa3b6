//! One browser per process, shared by every job: launched on first use, replaced when it
//! died or has served `BROWSER_MAX_PAGES` pages, with at most `MAX_CONCURRENT` tabs open.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::target::{CloseTargetParams, GetTargetsParams};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::launch::{self, Instance};
use super::{BrowserAnswer, BrowserError, page};
use crate::config::Secret;
use crate::extract::BrowserOptions;
use crate::extract::client::ClientOptions;
use crate::extract::strategy::Target;
use crate::net::upstream::Upstream;

/// How long closing a tab or the browser may take before it is given up (or killed).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The shared browser and its tabs. Cheap to keep around: nothing starts until the first
/// extraction; dropping it kills the browser and removes its profile folder.
pub struct BrowserPool {
    opts: BrowserOptions,
    upstream: Upstream,
    user_cookie: Option<Secret>,
    executable: OnceLock<Result<PathBuf, String>>,
    tabs: Arc<Semaphore>,
    current: Mutex<Option<Arc<Instance>>>,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    launches: AtomicU64,
    pages: AtomicU64,
    open_tabs: AtomicUsize,
    peak_tabs: AtomicUsize,
    pid: AtomicU32,
}

impl BrowserPool {
    /// A pool with these settings; `client` gives the `DOUYIN_UPSTREAM` rewrite (applied to
    /// the page URL) and the user's `DOUYIN_COOKIE` (set in the browser, handed on).
    pub fn new(opts: BrowserOptions, client: ClientOptions) -> Self {
        let max_tabs = opts.max_tabs.max(1);
        Self {
            opts,
            upstream: client.upstream,
            user_cookie: client.cookie,
            executable: OnceLock::new(),
            tabs: Arc::new(Semaphore::new(max_tabs)),
            current: Mutex::new(None),
            stats: Arc::default(),
        }
    }

    /// The record of `target` from a page of the shared browser, with the page's cookies and
    /// the browser's User-Agent. Ends as soon as the record arrives, or after
    /// [`BrowserOptions::timeout`] (launch and a wait for a free tab included); the tab is
    /// closed on every path.
    pub async fn extract(&self, target: &Target) -> Result<BrowserAnswer, BrowserError> {
        let started = Instant::now();
        let deadline = started + self.opts.timeout;
        let exe = self.executable()?.to_path_buf();
        let timeout = BrowserError::Timeout(self.opts.timeout);
        let tab = tokio::time::timeout_at(deadline, self.open(&exe, deadline))
            .await
            .map_err(|_| timeout.clone())??;
        let url = self.upstream.apply(&super::page_url(target));
        let user_cookie = self.user_cookie.as_ref().map(Secret::expose);
        let result = tokio::time::timeout_at(
            deadline,
            page::extract(&tab.instance, tab.page(), target, &url, user_cookie),
        )
        .await
        .unwrap_or(Err(timeout));
        tab.close().await;
        tracing::debug!(
            aweme_id = %target.aweme_id,
            ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "browser extraction"
        );
        result
    }

    /// The executable, looked up once; the first failure is logged (once per process).
    fn executable(&self) -> Result<&Path, BrowserError> {
        let found = self.executable.get_or_init(|| {
            let path = std::env::var_os("PATH");
            let found = launch::find_executable(self.opts.chromium_path.as_deref(), path.as_deref());
            match &found {
                Ok(exe) => tracing::info!(executable = %exe.display(), "browser strategy ready (the browser starts on first use)"),
                Err(why) => tracing::warn!(reason = %why, "browser strategy unavailable: extraction goes on without it"),
            }
            found
        });
        found
            .as_deref()
            .map_err(|why| BrowserError::NotFound(why.clone()))
    }

    /// A free tab (waiting for one), in the current browser (launching or replacing it).
    async fn open(&self, exe: &Path, deadline: Instant) -> Result<Tab, BrowserError> {
        let permit = self
            .tabs
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BrowserError::Cdp("the pool is closed".into()))?;
        let slot = Slot::new(permit, self.stats.clone());
        let instance = self.instance(exe, deadline).await?;
        let page = instance
            .browser
            .new_page("about:blank")
            .await
            .map_err(|e| match instance.dead.is_cancelled() {
                true => BrowserError::Crashed,
                false => BrowserError::Cdp(format!("new tab: {e}")),
            })?;
        self.stats.pages.fetch_add(1, Ordering::Relaxed);
        Ok(Tab {
            page: Some(page),
            instance,
            slot: Some(slot),
        })
    }

    /// The running browser, after counting one more page for it: launched on first use, and
    /// again after it died or served `max_pages` pages (the old one goes when its last tab
    /// closes).
    async fn instance(&self, exe: &Path, deadline: Instant) -> Result<Arc<Instance>, BrowserError> {
        let mut current = self.current.lock().await;
        if let Some(instance) = current.as_ref() {
            let served = instance.pages.load(Ordering::Relaxed);
            if instance.is_dead() {
                tracing::warn!(
                    pid = instance.pid,
                    pages = served,
                    "the browser died: starting a new one"
                );
                *current = None;
            } else if served >= self.opts.max_pages {
                tracing::info!(
                    pid = instance.pid,
                    pages = served,
                    "the browser served its pages: starting a fresh one"
                );
                *current = None;
            }
        }
        let instance = match current.as_ref() {
            Some(instance) => instance.clone(),
            None => {
                let started = std::time::Instant::now();
                let budget = deadline.saturating_duration_since(Instant::now());
                let instance = Arc::new(launch::launch(exe, budget).await?);
                self.stats.launches.fetch_add(1, Ordering::Relaxed);
                self.stats.pid.store(instance.pid, Ordering::Relaxed);
                tracing::info!(
                    pid = instance.pid,
                    ms = started.elapsed().as_millis() as u64,
                    user_agent = %instance.user_agent,
                    "browser started"
                );
                *current = Some(instance.clone());
                instance
            }
        };
        instance.pages.fetch_add(1, Ordering::Relaxed);
        Ok(instance)
    }

    /// Closes the browser (politely, then by force) and removes its profile folder. Tabs
    /// still open fail; a later extraction starts a new browser.
    pub async fn shutdown(&self) {
        let Some(instance) = self.current.lock().await.take() else {
            return;
        };
        if !instance.is_dead() {
            let mut browser_close = std::pin::pin!(async {
                let _ = instance
                    .browser
                    .execute(chromiumoxide::cdp::browser_protocol::browser::CloseParams::default())
                    .await;
            });
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, &mut browser_close).await;
        }
        instance.terminate();
        tracing::info!(pid = instance.pid, "browser closed");
    }

    /// Browsers launched so far.
    pub fn launches(&self) -> u64 {
        self.stats.launches.load(Ordering::Relaxed)
    }

    /// Pages (tabs) opened so far, over all browsers.
    pub fn pages_opened(&self) -> u64 {
        self.stats.pages.load(Ordering::Relaxed)
    }

    /// Tabs holding a pool slot now.
    pub fn open_tabs(&self) -> usize {
        self.stats.open_tabs.load(Ordering::Relaxed)
    }

    /// The most tabs that held a slot at once.
    pub fn peak_tabs(&self) -> usize {
        self.stats.peak_tabs.load(Ordering::Relaxed)
    }

    /// Free slots of the tab pool (the pool size when idle).
    pub fn free_slots(&self) -> usize {
        self.tabs.available_permits()
    }

    /// The process id of the current browser (the leader of its process group), if one runs.
    pub async fn browser_pid(&self) -> Option<u32> {
        self.current.lock().await.as_ref().map(|i| i.pid)
    }

    /// The product and version of the current browser (`HeadlessChrome/120.0...`), if one
    /// runs.
    pub async fn version(&self) -> Option<String> {
        self.current
            .lock()
            .await
            .as_ref()
            .map(|i| i.product.clone())
    }

    /// The executable the pool would launch, or why there is none (`CHROMIUM_PATH` names no
    /// executable file, or none of the usual names is on `PATH`).
    pub fn find_executable(&self) -> Result<PathBuf, String> {
        self.executable()
            .map(Path::to_path_buf)
            .map_err(|e| e.to_string())
    }

    /// The profile folder of the current browser, if one runs.
    pub async fn user_data_dir(&self) -> Option<PathBuf> {
        self.current
            .lock()
            .await
            .as_ref()
            .map(|i| i.profile.clone())
    }

    /// The live processes of the current browser (its process group).
    pub async fn process_ids(&self) -> Vec<u32> {
        match self.browser_pid().await {
            Some(pid) => launch::group_members(pid),
            None => Vec::new(),
        }
    }

    /// Memory of the current browser: the sum of the proportional set sizes (PSS) of its
    /// processes, in bytes; `None` when no browser runs.
    pub async fn memory_pss(&self) -> Option<u64> {
        let pids = self.process_ids().await;
        (!pids.is_empty()).then(|| pids.into_iter().filter_map(launch::pss_bytes).sum())
    }

    /// Tabs (page targets) the current browser has open, as the browser itself reports them:
    /// their target ids, so a caller can tell a tab that stayed open from one that is new.
    pub async fn browser_tabs(&self) -> Option<Vec<String>> {
        let instance = self.current.lock().await.clone()?;
        let targets = instance
            .browser
            .execute(GetTargetsParams::default())
            .await
            .ok()?;
        Some(
            targets
                .result
                .target_infos
                .iter()
                .filter(|t| t.r#type == "page")
                .map(|t| t.target_id.as_ref().to_string())
                .collect(),
        )
    }
}

/// A held slot of the tab pool, counted while held.
struct Slot {
    _permit: OwnedSemaphorePermit,
    stats: Arc<Stats>,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, stats: Arc<Stats>) -> Self {
        let open = stats.open_tabs.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak_tabs.fetch_max(open, Ordering::SeqCst);
        Self {
            _permit: permit,
            stats,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.open_tabs.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An open tab. [`Tab::close`] closes it; if the extraction is dropped midway instead, the
/// drop closes it in the background and frees the slot once it is closed.
struct Tab {
    page: Option<Page>,
    instance: Arc<Instance>,
    slot: Option<Slot>,
}

impl Tab {
    fn page(&self) -> &Page {
        self.page.as_ref().expect("an open tab has its page")
    }

    async fn close(mut self) {
        if let Some(page) = self.page.take() {
            close_tab(&self.instance, page).await;
        }
    }
}

/// Closes a tab through the browser (`Target.closeTarget`, which does not wait for the page's
/// navigation or unload handlers), unless the browser is gone.
async fn close_tab(instance: &Instance, page: Page) {
    if instance.dead.is_cancelled() {
        return;
    }
    let close = instance
        .browser
        .execute(CloseTargetParams::new(page.target_id().clone()));
    if let Err(e) = tokio::time::timeout(CLOSE_TIMEOUT, close)
        .await
        .unwrap_or_else(|_| Err(chromiumoxide::error::CdpError::Timeout))
    {
        tracing::debug!(error = %e, "could not close a tab");
    }
}

impl Drop for Tab {
    fn drop(&mut self) {
        let Some(page) = self.page.take() else {
            return;
        };
        let (slot, instance) = (self.slot.take(), self.instance.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                close_tab(&instance, page).await;
                drop((slot, instance));
            });
        }
    }
}
