//! The last strategy: a real headless Chromium, driven over the DevTools protocol
//! (chromiumoxide), that still works when Douyin changes its APIs again. Built with the
//! `browser` feature (on by default).
//!
//! - [`pool`]: one browser per process, launched on first use and shared by every job, at
//!   most `MAX_CONCURRENT` tabs, replaced after it dies or after `BROWSER_MAX_PAGES` pages.
//! - [`launch`]: finding the executable (`CHROMIUM_PATH`, else `chromium`,
//!   `chromium-browser` or `google-chrome` on `PATH`), root-safe flags, a fresh profile
//!   folder, and a cleanup that leaves no process or folder behind.
//! - `page`: one extraction in one tab, event-driven: the web detail API's answer the page
//!   fetches (`/aweme/v1/web/aweme/detail/`), or `_ROUTER_DATA` / `RENDER_DATA` in the page,
//!   whichever comes first; the captcha page ends it at once.
//! - [`capture`]: the pure parsers of what the browser saw.
//!
//! The page URL goes through the same `DOUYIN_UPSTREAM` rewrite as every other request; the
//! record comes back with the page's cookies and the browser's User-Agent, which the
//! downloader then sends.

pub mod capture;
pub mod launch;
mod page;
pub mod pool;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use url::Url;

use super::aweme::{Aweme, ParseError};
use super::client::FetchError;
use super::link::PostKind;
use super::strategy::{Context, Handoff, Strategy, StrategyError, Target};
use crate::error::ErrorClass;
pub use pool::BrowserPool;

/// What one browser extraction found.
#[derive(Clone)]
pub struct BrowserAnswer {
    /// The record.
    pub record: Aweme,
    /// The Cookie header for Douyin hosts (the user's `DOUYIN_COOKIE`, then the page's).
    /// A secret: never logged.
    pub cookie: Option<String>,
    /// The User-Agent the page was loaded with.
    pub user_agent: String,
}

impl std::fmt::Debug for BrowserAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserAnswer")
            .field("aweme_id", &self.record.aweme_id)
            .field("cookie", &self.cookie.as_ref().map(|_| "<redacted>"))
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

/// Why the browser gave no record.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BrowserError {
    /// No browser on this machine: the strategy is skipped (logged once per process).
    #[error("no browser: {0}")]
    NotFound(String),
    /// The browser did not start.
    #[error("browser launch failed: {0}")]
    Launch(String),
    /// The browser died during the extraction (it is restarted on next use).
    #[error("the browser died during the extraction")]
    Crashed,
    /// No record before the deadline (the tab was closed).
    #[error("no record within {0:?}")]
    Timeout(Duration),
    /// The page itself answered an HTTP error.
    #[error("the page answered HTTP {0}")]
    Status(u16),
    /// The page could not be loaded (`net::ERR_…`).
    #[error("navigation failed: {0}")]
    Navigation(String),
    /// A DevTools command failed.
    #[error("DevTools: {0}")]
    Cdp(String),
    /// What the page or the API answered (captcha, unavailable, drift...).
    #[error(transparent)]
    Parse(#[from] ParseError),
}

impl BrowserError {
    /// Whether a retry can help: no browser is permanent for this process, the parse errors
    /// keep their own class, everything else is transient.
    pub fn class(&self) -> ErrorClass {
        match self {
            BrowserError::NotFound(_) => ErrorClass::Permanent,
            BrowserError::Parse(e) => e.class(),
            _ => ErrorClass::Transient,
        }
    }
}

impl From<BrowserError> for StrategyError {
    fn from(e: BrowserError) -> Self {
        match e {
            BrowserError::NotFound(why) => StrategyError::Skipped(format!("no browser: {why}")),
            BrowserError::Parse(p) => StrategyError::Parse(p),
            BrowserError::Status(status) => StrategyError::Status {
                status,
                host: "www.douyin.com".into(),
            },
            other => StrategyError::Fetch(FetchError::Network(other.to_string())),
        }
    }
}

/// The Douyin web page of `target`: `https://www.douyin.com/note/{id}` for notes and slides,
/// else `https://www.douyin.com/video/{id}`.
pub(crate) fn page_url(target: &Target) -> Url {
    let kind = match target.kind {
        Some(PostKind::Note) | Some(PostKind::Slides) => "note",
        _ => "video",
    };
    Url::parse(&format!(
        "https://www.douyin.com/{kind}/{}",
        target.aweme_id
    ))
    .expect("a valid URL")
}

/// The browser strategy ("browser" in logs and metrics): last in the chain.
pub struct BrowserStrategy {
    pool: Arc<BrowserPool>,
}

impl BrowserStrategy {
    /// The strategy over a (shared) pool.
    pub fn new(pool: Arc<BrowserPool>) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl Strategy for BrowserStrategy {
    fn name(&self) -> &'static str {
        "browser"
    }

    async fn fetch(
        &self,
        target: &Target,
        cx: &mut Context<'_, '_>,
    ) -> Result<Aweme, StrategyError> {
        let answer = self.pool.extract(target).await?;
        cx.handoff = Some(Handoff {
            cookie: answer.cookie,
            user_agent: Some(answer.user_agent),
        });
        Ok(answer.record)
    }
}
