//! Douyin extraction: from a link as users paste it to a direct, watermark-free media URL.
//!
//! - [`link`]: every link form (share text, short links, page links, bare ids) to an aweme id.
//! - [`aweme`]: the tolerant model of Douyin's "aweme" record and the pure parsers of the
//!   pages and APIs that carry it (share page, H5 item info, slides info, web detail).
//! - [`media`]: which file to download: candidates, ranking, expiry of CDN URLs, metadata.
//! - [`reflow`]: the encrypted `reflow_id` the H5 item-info API wants.
//! - [`client`]: HTTP sessions with Douyin's cookies; [`strategy`]: the chain of strategies.
//! - `probe`: each strategy on its own, for `doctor` ([`DouyinExtractor::probe`]);
//!   `record`: what a record found gives (status checked, file chosen, metadata).
//! - `browser` (feature `browser`, on by default): the last strategy, a shared headless
//!   Chromium driven over CDP.
//!
//! [`DouyinExtractor`] ties them together and is the pipeline's extraction stage.

pub mod aweme;
#[cfg(feature = "browser")]
pub mod browser;
pub mod client;
pub mod drift;
pub mod link;
pub mod media;
mod probe;
mod record;
pub mod reflow;
mod stage;
pub mod strategy;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{ErrorClass, JobError};
use crate::stage::VideoUpdate;
use crate::stage::{JobContext, MediaPart, MediaSource, StageJob};
use aweme::ParseError;
use client::{ClientOptions, DouyinClient, Session};
use link::{Link, PostKind, UnsupportedLink};
use media::{Choice, ChoiceError, ImagePolicy};
pub use probe::{Probe, ProbeOutcome, StrategyProbe};
use strategy::{Context, Strategy, StrategyError, Target};

/// How extraction behaves.
#[derive(Clone, Debug)]
pub struct ExtractOptions {
    /// HTTP settings (upstream rewrite, user cookie, timeout).
    pub client: ClientOptions,
    /// Rank H.264 above H.265 (players everywhere can play it).
    pub prefer_h264: bool,
    /// What to do with image posts.
    pub images: ImagePolicy,
    /// A cached direct URL is reused only when it stays valid at least this long.
    pub cache_margin: Duration,
    /// The headless-browser strategy (used only when built with the `browser` feature).
    pub browser: BrowserOptions,
    /// Where answers in a shape no parser knows are kept for the fix (`DRIFT_DIR`); `None`
    /// keeps nothing. See [`drift`].
    pub drift_dir: Option<PathBuf>,
    /// Every strategy's last answer is written to this folder, whatever it was
    /// (`extract --save`).
    pub save_answers: Option<PathBuf>,
}

/// Settings of the headless-browser strategy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserOptions {
    /// The strategy joins the chain (`BROWSER_ENABLED`). Off in [`Default`], so that code
    /// building options by hand never starts a browser by surprise; on in
    /// [`ExtractOptions::new`] unless switched off.
    pub enabled: bool,
    /// The executable (`CHROMIUM_PATH`); else `chromium`, `chromium-browser` or
    /// `google-chrome` on `PATH`.
    pub chromium_path: Option<PathBuf>,
    /// Pages one browser serves before it is replaced by a fresh one (`BROWSER_MAX_PAGES`).
    pub max_pages: u32,
    /// Time one browser extraction may take, launch included (`BROWSER_TIMEOUT_SECONDS`).
    pub timeout: Duration,
    /// Tabs open at once (`MAX_CONCURRENT`).
    pub max_tabs: usize,
}

impl Default for BrowserOptions {
    /// The settings' declared defaults, off, with two tabs.
    fn default() -> Self {
        let settings = crate::config::BrowserSettings::default();
        Self {
            enabled: false,
            chromium_path: settings.chromium_path,
            max_pages: settings.max_pages,
            timeout: settings.timeout,
            max_tabs: 2,
        }
    }
}

impl ExtractOptions {
    /// Options from the validated configuration.
    pub fn new(
        extract: &crate::config::ExtractSettings,
        browser: &crate::config::BrowserSettings,
        net: &crate::config::NetSettings,
        max_tabs: usize,
    ) -> Self {
        Self {
            client: ClientOptions {
                upstream: crate::net::upstream::Upstream::from_setting(
                    net.douyin_upstream.as_ref(),
                ),
                cookie: extract.douyin_cookie.clone(),
                timeout: extract.timeout,
                allow_private_networks: net.allow_private_networks,
            },
            prefer_h264: extract.prefer_h264,
            images: extract.image_posts,
            browser: BrowserOptions {
                enabled: browser.enabled,
                chromium_path: browser.chromium_path.clone(),
                max_pages: browser.max_pages.max(1),
                timeout: browser.timeout,
                max_tabs: max_tabs.max(1),
            },
            cache_margin: CACHE_MARGIN,
            drift_dir: None,
            save_answers: None,
        }
    }
}

/// A cached direct URL is reused only when it stays valid at least this long.
const CACHE_MARGIN: Duration = Duration::from_secs(600);

/// One drift answer kept per strategy per hour, at most this many in the folder.
const DRIFT_EVERY: Duration = Duration::from_secs(3600);
const DRIFT_MAX_FILES: usize = 100;

impl Default for ExtractOptions {
    /// The settings' declared defaults, with the browser strategy off (see
    /// [`BrowserOptions::enabled`]).
    fn default() -> Self {
        let browser = crate::config::BrowserSettings {
            enabled: false,
            ..Default::default()
        };
        Self::new(
            &Default::default(),
            &browser,
            &Default::default(),
            BrowserOptions::default().max_tabs,
        )
    }
}

/// How one strategy fared in one extraction.
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    /// The strategy.
    pub strategy: &'static str,
    /// Milliseconds it took.
    pub ms: u64,
    /// `ok`, or why it gave no record.
    pub outcome: String,
}

/// The `result` label of one strategy's answer in the metrics.
fn strategy_result_label<T>(result: &Result<T, StrategyError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(StrategyError::Parse(ParseError::Unavailable { .. })) => "unavailable",
        Err(StrategyError::Parse(ParseError::Captcha)) => "captcha",
        Err(StrategyError::Parse(ParseError::Drift { .. })) => "drift",
        Err(StrategyError::Parse(_)) => "no_record",
        Err(StrategyError::Fetch(_)) => "network",
        Err(StrategyError::Status { .. }) => "http_status",
        Err(StrategyError::Skipped(_)) => "skipped",
    }
}

/// What an extraction found.
#[derive(Clone, Debug, Serialize)]
pub struct Extraction {
    /// The aweme id.
    pub aweme_id: String,
    /// The kind the link said, if it said.
    pub link_kind: Option<PostKind>,
    /// The description.
    pub title: Option<String>,
    /// The strategy that answered.
    pub strategy: &'static str,
    /// What to download.
    pub choice: Choice,
    /// The cover image.
    pub cover_url: Option<String>,
    /// Mirrors of the best static cover, best first (`media::cover_urls`).
    pub cover_urls: Vec<String>,
    /// Author, music, statistics, dimensions, codec.
    pub metadata: Value,
    /// Each strategy tried, in order.
    pub attempts: Vec<Attempt>,
    /// Milliseconds to resolve a short link (0 when there was none).
    pub resolve_ms: u64,
    /// Milliseconds in all.
    pub total_ms: u64,
    /// The Cookie header the CDN may want (Douyin's and the user's). Never printed.
    #[serde(skip)]
    pub cookie: Option<String>,
    /// The User-Agent the downloader must send, when the strategy that answered had its own
    /// (the browser's); else the downloader sends the iPhone Safari one of the HTTP strategies.
    #[serde(skip)]
    pub user_agent: Option<String>,
}

/// The error code of an input that is not a Douyin link at all (bad usage, not bad luck:
/// `extract` and `get` exit with the usage code).
pub(crate) const UNSUPPORTED_LINK: &str = "unsupported-link";

/// A failed extraction; [`ExtractError::class`] says whether a retry can help.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ExtractError {
    /// Not a link to a Douyin post.
    #[error(transparent)]
    Unsupported(#[from] UnsupportedLink),
    /// Douyin says the post is gone, private, prohibited or region blocked.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The post has nothing this worker downloads.
    #[error(transparent)]
    Choice(#[from] ChoiceError),
    /// A short link could not be resolved now.
    #[error("short link: {0}")]
    ShortLink(String),
    /// No strategy gave the record.
    #[error("no strategy answered: {summary}")]
    Exhausted {
        /// One clause per strategy.
        summary: String,
        /// Some strategy saw a shape no parser knows: the code needs a fix.
        drift: bool,
    },
}

impl ExtractError {
    /// Whether a retry can help.
    pub fn class(&self) -> ErrorClass {
        match self {
            ExtractError::Unsupported(_)
            | ExtractError::Unavailable(_)
            | ExtractError::Choice(_) => ErrorClass::Permanent,
            ExtractError::ShortLink(_) => ErrorClass::Transient,
            ExtractError::Exhausted { drift: true, .. } => ErrorClass::Drift,
            ExtractError::Exhausted { .. } => ErrorClass::Transient,
        }
    }

    /// A stable code for the job row and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ExtractError::Unsupported(_) => UNSUPPORTED_LINK,
            ExtractError::Unavailable(r) if r.contains("copyright_foreign") => "region-blocked",
            ExtractError::Unavailable(_) => "video-unavailable",
            ExtractError::Choice(ChoiceError::ImagePost(_)) => "image-post",
            ExtractError::Choice(_) => "nothing-downloadable",
            ExtractError::ShortLink(_) => "short-link",
            ExtractError::Exhausted { drift: true, .. } => "extract-drift",
            ExtractError::Exhausted { .. } => "extract-failed",
        }
    }
}

impl From<ExtractError> for JobError {
    fn from(e: ExtractError) -> Self {
        JobError::new(e.class(), e.code(), e.to_string())
    }
}

/// The extraction stage: links in, media sources out.
pub struct DouyinExtractor {
    client: DouyinClient,
    chain: Vec<Box<dyn Strategy>>,
    opts: ExtractOptions,
    drift: Option<drift::DriftKeeper>,
    #[cfg(feature = "browser")]
    browser: Option<std::sync::Arc<browser::BrowserPool>>,
}

impl DouyinExtractor {
    /// An extractor with the default chain of strategies, and the browser strategy at its end
    /// when [`BrowserOptions::enabled`] (and built with the `browser` feature).
    pub fn new(opts: ExtractOptions) -> Result<Self, String> {
        Self::with_chain(opts, strategy::default_chain())
    }

    /// An extractor with another chain; the browser strategy appends itself when enabled.
    #[allow(unused_mut)]
    pub fn with_chain(
        opts: ExtractOptions,
        mut chain: Vec<Box<dyn Strategy>>,
    ) -> Result<Self, String> {
        let client = DouyinClient::new(opts.client.clone())?;
        #[cfg(feature = "browser")]
        let browser = opts.browser.enabled.then(|| {
            let pool = std::sync::Arc::new(browser::BrowserPool::new(
                opts.browser.clone(),
                opts.client.clone(),
            ));
            chain.push(Box::new(browser::BrowserStrategy::new(pool.clone())));
            pool
        });
        let drift = opts
            .drift_dir
            .clone()
            .map(|dir| drift::DriftKeeper::new(dir, DRIFT_EVERY, DRIFT_MAX_FILES));
        Ok(Self {
            client,
            chain,
            opts,
            drift,
            #[cfg(feature = "browser")]
            browser,
        })
    }

    /// The shared browser of the browser strategy, when it is in the chain.
    #[cfg(feature = "browser")]
    pub fn browser_pool(&self) -> Option<&std::sync::Arc<browser::BrowserPool>> {
        self.browser.as_ref()
    }

    /// Closes what the extractor keeps running (the browser, if one was started) and removes
    /// its profile folder. Dropping the extractor does the same, less politely.
    pub async fn shutdown(&self) {
        #[cfg(feature = "browser")]
        if let Some(pool) = &self.browser {
            pool.shutdown().await;
        }
    }

    /// Keeps the strategy's last answer when it was drift, and every answer when
    /// `extract --save` asked for them (see [`drift::keep_answer`]).
    fn keep_answer(
        &self,
        strategy: &'static str,
        target: &Target,
        result: &Result<aweme::Aweme, StrategyError>,
        session: &Session<'_>,
    ) {
        let what = match result {
            Err(StrategyError::Parse(ParseError::Drift { what, .. })) => Some(what.as_str()),
            _ => None,
        };
        let keep = match (&self.opts.save_answers, what, &self.drift) {
            (Some(dir), what, _) => drift::Keep::Always(dir, what.unwrap_or("")),
            (None, Some(what), Some(keeper)) => drift::Keep::Drift(keeper, what),
            _ => return,
        };
        drift::keep_answer(keep, strategy, &target.aweme_id, session);
    }

    /// Extracts what `input` (a link, share text or id) points at.
    pub async fn extract(&self, input: &str) -> Result<Extraction, ExtractError> {
        let started = Instant::now();
        let mut session = self.client.session();
        let (target, resolve_ms) = self.target(input, &mut session).await?;
        let mut cx = Context::new(&mut session);
        let mut attempts = Vec::new();
        let mut clauses = Vec::new();
        let mut drift = false;
        let mut found = None;
        for s in &self.chain {
            let t = Instant::now();
            let result = s.fetch(&target, &mut cx).await;
            let ms = t.elapsed().as_millis() as u64;
            self.keep_answer(s.name(), &target, &result, cx.session);
            metrics::counter!(
                crate::metrics::EXTRACT_STRATEGY_RESULTS,
                "strategy" => s.name(),
                "result" => strategy_result_label(&result),
            )
            .increment(1);
            match result {
                Ok(record) => {
                    attempts.push(Attempt {
                        strategy: s.name(),
                        ms,
                        outcome: "ok".into(),
                    });
                    found = Some((s.name(), record));
                    break;
                }
                Err(StrategyError::Parse(ParseError::Unavailable { reason })) => {
                    return Err(ExtractError::Unavailable(reason));
                }
                Err(e) => {
                    if let StrategyError::Parse(ParseError::Drift { what, excerpt }) = &e {
                        drift = true;
                        tracing::error!(
                            strategy = s.name(),
                            aweme_id = %target.aweme_id,
                            what = %what,
                            excerpt = %excerpt,
                            "Douyin answered in a shape no parser knows (drift): the parser needs a fix"
                        );
                    } else {
                        tracing::debug!(strategy = s.name(), error = %e, "strategy gave no record");
                    }
                    clauses.push(format!("{}: {e}", s.name()));
                    attempts.push(Attempt {
                        strategy: s.name(),
                        ms,
                        outcome: e.to_string(),
                    });
                }
            }
        }
        let Some((strategy, record)) = found else {
            return Err(ExtractError::Exhausted {
                summary: clauses.join("; "),
                drift,
            });
        };
        let (cookie, user_agent) = cx.take_identity();
        let mut found = self.finish(&target, strategy, &record, cookie, user_agent)?;
        found.attempts = attempts;
        found.resolve_ms = resolve_ms;
        found.total_ms = started.elapsed().as_millis() as u64;
        Ok(found)
    }

    /// The aweme id of `input`, resolving a short link with one GET.
    async fn target(
        &self,
        input: &str,
        session: &mut Session<'_>,
    ) -> Result<(Target, u64), ExtractError> {
        match link::parse(input)? {
            Link::Id { aweme_id, kind } => Ok((Target { aweme_id, kind }, 0)),
            Link::Short { url } => {
                let t = Instant::now();
                let target = Self::follow_short_link(&url, session).await?;
                Ok((target, t.elapsed().as_millis() as u64))
            }
        }
    }

    /// The aweme id a short link leads to, asked with one GET, as [`DouyinExtractor::extract`]
    /// does (`enqueue` records it, so that a short link and the page link of one video find
    /// the same row). [`ExtractError::ShortLink`] when Douyin could not be asked now;
    /// [`ExtractError::Unsupported`] when the link leads nowhere.
    pub(crate) async fn resolve_short_link(&self, url: &url::Url) -> Result<String, ExtractError> {
        let mut session = self.client.session();
        Ok(Self::follow_short_link(url, &mut session).await?.aweme_id)
    }

    /// One GET of a short link, without following its redirect.
    async fn follow_short_link(
        url: &url::Url,
        session: &mut Session<'_>,
    ) -> Result<Target, ExtractError> {
        let page = session
            .get_once(url, &[])
            .await
            .map_err(|e| ExtractError::ShortLink(format!("{url}: {e}")))?;
        match (page.status, page.location) {
            (300..=399, Some(location)) => match link::id_from_url(&location) {
                Some((aweme_id, kind)) => Ok(Target { aweme_id, kind }),
                None => Err(UnsupportedLink(format!(
                    "{url} leads to {location}, which names no video"
                ))
                .into()),
            },
            (404 | 410, _) => {
                Err(UnsupportedLink(format!("{url} does not exist (HTTP {})", page.status)).into())
            }
            (status, _) => Err(ExtractError::ShortLink(format!(
                "{url} answered HTTP {status} without a redirect"
            ))),
        }
    }
}
